"""xenpmu_op: Xen 4.17's do_xenpmu_op (arch/x86/cpu/vpmu.c) with the vPMU
off, its default (`vpmu=` unset): every operation is -EOPNOTSUPP, before
its argument is read.  Linux then runs without PMU sampling.
"""
from pyxenon.hypervisor.errors import HypercallError
from pyxenon.public import errno, xen


def do_xenpmu_op(vcpu, op, arg, *_):
    raise HypercallError(errno.EOPNOTSUPP)


HYPERCALLS = {xen.HYPERVISOR_xenpmu_op: do_xenpmu_op}
