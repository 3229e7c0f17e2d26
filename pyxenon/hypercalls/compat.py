"""The legacy hypercalls a 64-bit PV guest still has on Xen 4.17
(xen/arch/x86/compat.c): sched_op_compat (as of 0x00030101), and
event_channel_op_compat and physdev_op_compat (as of 0x00030202), which
take the command inside the argument and call through to the new ones.
"""
from pyxenon.hypervisor.errors import HypercallError
from pyxenon.hypervisor.guestmem import copy_from_guest
from pyxenon.public import errno, event_channel as ev, sched, xen

from . import event_channel_op, physdev_op, sched_op

# struct evtchn_op: cmd, then the union at 4 (28 bytes); struct physdev_op:
# cmd, then the union at 8, aligned for set_iobitmap's handle (24 bytes)
EVTCHN_OP_SIZE, EVTCHN_OP_U = 28, 4
PHYSDEV_OP_SIZE, PHYSDEV_OP_U = 24, 8

# do_event_channel_op_compat's list: the later commands (unmask's
# successors reset, init_control ...) are -ENOSYS through the old call
EVTCHN_COMPAT_CMDS = frozenset((
    ev.EVTCHNOP_bind_interdomain, ev.EVTCHNOP_bind_virq, ev.EVTCHNOP_bind_pirq,
    ev.EVTCHNOP_close, ev.EVTCHNOP_send, ev.EVTCHNOP_status, ev.EVTCHNOP_alloc_unbound,
    ev.EVTCHNOP_bind_ipi, ev.EVTCHNOP_bind_vcpu, ev.EVTCHNOP_unmask))


def command(vcpu, uop, size):
    """The cmd of a request copied in whole first (copy_from_guest, -EFAULT)."""
    return int.from_bytes(copy_from_guest(vcpu, uop, size)[:4], "little")


def do_sched_op_compat(vcpu, cmd, arg, *_):
    """do_sched_op_compat: yield and block as sched_op's; shutdown takes
    its reason in arg itself ((u8)arg)."""
    cmd &= 0xFFFFFFFF
    if cmd in (sched.SCHEDOP_yield, sched.SCHEDOP_block):
        return sched_op.do_sched_op(vcpu, cmd, 0)
    if cmd == sched.SCHEDOP_shutdown:
        vcpu.domain.shutdown(arg & 0xFF)
        return 0
    raise HypercallError(errno.ENOSYS)


def do_event_channel_op_compat(vcpu, uop, *_):
    """do_event_channel_op_compat: the listed commands on &uop->u."""
    cmd = command(vcpu, uop, EVTCHN_OP_SIZE)
    if cmd not in EVTCHN_COMPAT_CMDS:
        raise HypercallError(errno.ENOSYS)
    return event_channel_op.do_event_channel_op(vcpu, cmd, uop + EVTCHN_OP_U)


def do_physdev_op_compat(vcpu, uop, *_):
    """do_physdev_op_compat: every command, on &uop->u."""
    cmd = command(vcpu, uop, PHYSDEV_OP_SIZE)
    return physdev_op.do_physdev_op(vcpu, cmd, uop + PHYSDEV_OP_U)


HYPERCALLS = {
    xen.HYPERVISOR_sched_op_compat: do_sched_op_compat,
    xen.HYPERVISOR_event_channel_op_compat: do_event_channel_op_compat,
    xen.HYPERVISOR_physdev_op_compat: do_physdev_op_compat,
}
