"""vm_assist: optional hypervisor help a guest switches on or off.

The assists Xen's do_vm_assist accepts from a 64-bit PV guest
(PV64_VM_ASSIST_MASK, asm/domain.h): the 32-bit ones too, which mean
nothing for 64-bit but which Xen cannot start refusing; writable page
tables (L1 writes are trapped and checked in any case), the runstate
update flag, strict m2p and architectural IOPL.  Any other type is -EINVAL.
"""
from pyxenon.hypervisor.errors import HypercallError
from pyxenon.public import errno, xen

VALID = {xen.VMASST_TYPE_4gb_segments, xen.VMASST_TYPE_4gb_segments_notify,
         xen.VMASST_TYPE_writable_pagetables, xen.VMASST_TYPE_pae_extended_cr3,
         xen.VMASST_TYPE_architectural_iopl, xen.VMASST_TYPE_runstate_update_flag,
         xen.VMASST_TYPE_m2p_strict}


def do_vm_assist(vcpu, cmd, kind, *_):
    if kind not in VALID:
        raise HypercallError(errno.EINVAL)
    if cmd == xen.VMASST_CMD_enable:
        vcpu.domain.vm_assist |= 1 << kind
    elif cmd == xen.VMASST_CMD_disable:
        vcpu.domain.vm_assist &= ~(1 << kind)
    else:
        raise HypercallError(errno.ENOSYS)
    vcpu.domain.io.arch_iopl = vcpu.domain.vm_assist >> xen.VMASST_TYPE_architectural_iopl & 1
    return 0


HYPERCALLS = {xen.HYPERVISOR_vm_assist: do_vm_assist}
