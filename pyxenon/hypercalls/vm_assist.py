"""vm_assist: optional hypervisor help a guest switches on or off.

The assists a 64-bit PV guest can have from pyxenon: writable page tables
(its L1 writes are trapped and checked), the runstate update flag, strict
m2p and architectural IOPL; the 32-bit-only ones are refused as Xen
refuses assists that are not valid for the guest.
"""
from pyxenon.hypervisor.errors import HypercallError
from pyxenon.public import errno, xen

VALID = {xen.VMASST_TYPE_writable_pagetables, xen.VMASST_TYPE_runstate_update_flag,
         xen.VMASST_TYPE_m2p_strict, xen.VMASST_TYPE_architectural_iopl}


def do_vm_assist(vcpu, cmd, kind, *_):
    if kind not in VALID:
        raise HypercallError(errno.EINVAL)
    if cmd == xen.VMASST_CMD_enable:
        vcpu.domain.vm_assist |= 1 << kind
    elif cmd == xen.VMASST_CMD_disable:
        vcpu.domain.vm_assist &= ~(1 << kind)
    else:
        raise HypercallError(errno.ENOSYS)
    return 0


HYPERCALLS = {xen.HYPERVISOR_vm_assist: do_vm_assist}
