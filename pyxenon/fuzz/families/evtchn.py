"""Generators for event_channel_op: every sub-operation's structure."""
from pyxenon.hypercalls import event_channel_op
from pyxenon.public import event_channel as ev, xen

from ..values import sub_op


EVTCHN_STRUCTS = {
    ev.EVTCHNOP_bind_interdomain: ev.evtchn_bind_interdomain,
    ev.EVTCHNOP_bind_virq: ev.evtchn_bind_virq, ev.EVTCHNOP_bind_pirq: ev.evtchn_bind_pirq,
    ev.EVTCHNOP_close: ev.evtchn_close, ev.EVTCHNOP_send: ev.evtchn_send,
    ev.EVTCHNOP_status: ev.evtchn_status, ev.EVTCHNOP_alloc_unbound: ev.evtchn_alloc_unbound,
    ev.EVTCHNOP_bind_ipi: ev.evtchn_bind_ipi, ev.EVTCHNOP_bind_vcpu: ev.evtchn_bind_vcpu,
    ev.EVTCHNOP_unmask: ev.evtchn_unmask, ev.EVTCHNOP_reset: ev.evtchn_reset,
    ev.EVTCHNOP_init_control: ev.evtchn_init_control,
    ev.EVTCHNOP_expand_array: ev.evtchn_expand_array,
    ev.EVTCHNOP_set_priority: ev.evtchn_set_priority,
}


def gen_event_channel_op(m, dom, slot):
    cmd = sub_op(m, event_channel_op.OPS)
    return m.buffer_call(dom, slot, xen.HYPERVISOR_event_channel_op, (cmd,), EVTCHN_STRUCTS.get(cmd))
