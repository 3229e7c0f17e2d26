"""event_channel_op: signalling between a domain and the other end of a port.

This issue's subset: EVTCHNOP_send, on the ports the toolstack gave the
domain (console and XenStore).  The other operations are not yet supported
and return -ENOSYS.
"""
from pyxenon.hypervisor.errors import HypercallError
from pyxenon.hypervisor.guestmem import read_struct
from pyxenon.public import errno, event_channel, xen


def evtchn_send(vcpu, arg):
    send = read_struct(vcpu, arg, event_channel.evtchn_send)
    return vcpu.domain.events.send(send.port)


OPS = {event_channel.EVTCHNOP_send: evtchn_send}


def do_event_channel_op(vcpu, cmd, arg, *_):
    op = OPS.get(cmd)
    if op is None:
        raise HypercallError(errno.ENOSYS)
    return op(vcpu, arg)


HYPERCALLS = {xen.HYPERVISOR_event_channel_op: do_event_channel_op}
