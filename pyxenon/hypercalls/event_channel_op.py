"""event_channel_op: event channels, 2-level and FIFO.

The rules live in hypervisor/events.py (and evtchn_fifo.py for the FIFO
ABI: init_control, expand_array, set_priority); this module reads and
writes the guest's structures.  Physical IRQs are not offered: -ENOSYS.
"""
from pyxenon.hypervisor import evtchn_fifo
from pyxenon.hypervisor.errors import HypercallError, sub_op
from pyxenon.hypervisor.events import DOMID_SELF, HOST, INTERDOMAIN, IPI, UNBOUND, VIRQ
from pyxenon.hypervisor.guestmem import read_struct, write_struct
from pyxenon.public import errno, event_channel as ev, xen

from .physdev_op import NR_PIRQS


def own(vcpu, domid):
    """Operations on a domain's ports are for that domain alone here."""
    if domid not in (DOMID_SELF, vcpu.domain.domid):
        raise HypercallError(errno.ESRCH if domid not in vcpu.domain.machine.domains
                             else errno.EPERM)


def evtchn_alloc_unbound(vcpu, arg):
    op = read_struct(vcpu, arg, ev.evtchn_alloc_unbound)
    own(vcpu, op.dom)
    op.port = vcpu.domain.events.alloc_unbound(op.remote_dom)
    write_struct(vcpu, arg, op)
    return 0


def evtchn_bind_interdomain(vcpu, arg):
    op = read_struct(vcpu, arg, ev.evtchn_bind_interdomain)
    op.local_port = vcpu.domain.events.bind_interdomain(op.remote_dom, op.remote_port)
    write_struct(vcpu, arg, op)
    return 0


def evtchn_bind_virq(vcpu, arg):
    op = read_struct(vcpu, arg, ev.evtchn_bind_virq)
    op.port = vcpu.domain.events.bind_virq(op.virq, op.vcpu)
    write_struct(vcpu, arg, op)
    return 0


def evtchn_bind_pirq(vcpu, arg):
    """Refused: EPERM no physical IRQs (after -EFAULT, -EINVAL past nr_pirqs; evtchn_bind_pirq)

    A domU has no IRQ access, so pirq_access_permitted finds none."""
    if read_struct(vcpu, arg, ev.evtchn_bind_pirq).pirq >= NR_PIRQS:
        raise HypercallError(errno.EINVAL)
    raise HypercallError(errno.EPERM)


def evtchn_bind_ipi(vcpu, arg):
    op = read_struct(vcpu, arg, ev.evtchn_bind_ipi)
    op.port = vcpu.domain.events.bind_ipi(op.vcpu)
    write_struct(vcpu, arg, op)
    return 0


def evtchn_close(vcpu, arg):
    vcpu.domain.events.close(read_struct(vcpu, arg, ev.evtchn_close).port)
    return 0


def evtchn_send(vcpu, arg):
    return vcpu.domain.events.send(read_struct(vcpu, arg, ev.evtchn_send).port)


def fill_status(status, p):
    kinds = {UNBOUND: ev.EVTCHNSTAT_unbound, INTERDOMAIN: ev.EVTCHNSTAT_interdomain,
             HOST: ev.EVTCHNSTAT_interdomain, VIRQ: ev.EVTCHNSTAT_virq, IPI: ev.EVTCHNSTAT_ipi}
    status.status = kinds.get(p.state, ev.EVTCHNSTAT_closed)
    status.vcpu = p.vcpu
    if p.state == UNBOUND:
        status.u.unbound.dom = p.remote_dom
    elif p.state in (INTERDOMAIN, HOST):
        status.u.interdomain.dom = p.remote_dom
        status.u.interdomain.port = p.remote_port
    elif p.state == VIRQ:
        status.u.virq = p.virq


def evtchn_status(vcpu, arg):
    status = read_struct(vcpu, arg, ev.evtchn_status)
    own(vcpu, status.dom)
    events = vcpu.domain.events
    if not 0 < status.port < events.max_ports:
        raise HypercallError(errno.EINVAL)
    if status.port < len(events.ports):
        fill_status(status, events.ports[status.port])
    else:
        status.status = ev.EVTCHNSTAT_closed
    write_struct(vcpu, arg, status)
    return 0


def evtchn_bind_vcpu(vcpu, arg):
    op = read_struct(vcpu, arg, ev.evtchn_bind_vcpu)
    vcpu.domain.events.bind_vcpu(op.port, op.vcpu)
    return 0


def evtchn_unmask(vcpu, arg):
    vcpu.domain.events.unmask(read_struct(vcpu, arg, ev.evtchn_unmask).port)
    return 0


def evtchn_reset(vcpu, arg):
    """evtchn_reset(): every port closed, then back to the 2-level ABI."""
    own(vcpu, read_struct(vcpu, arg, ev.evtchn_reset).dom)
    vcpu.domain.events.close_all()
    evtchn_fifo.reset(vcpu)
    return 0


def evtchn_init_control(vcpu, arg):
    """link_bits is written back only on success (do_event_channel_op)."""
    op = read_struct(vcpu, arg, ev.evtchn_init_control)
    op.link_bits = evtchn_fifo.init_control(vcpu, op.vcpu, op.control_gfn, op.offset)
    write_struct(vcpu, arg, op)
    return 0


def evtchn_expand_array(vcpu, arg):
    evtchn_fifo.expand_array(vcpu, read_struct(vcpu, arg, ev.evtchn_expand_array).array_gfn)
    return 0


def evtchn_set_priority(vcpu, arg):
    op = read_struct(vcpu, arg, ev.evtchn_set_priority)
    evtchn_fifo.set_priority(vcpu, op.port, op.priority)
    return 0


OPS = {
    ev.EVTCHNOP_alloc_unbound: evtchn_alloc_unbound,
    ev.EVTCHNOP_bind_interdomain: evtchn_bind_interdomain,
    ev.EVTCHNOP_bind_virq: evtchn_bind_virq,
    ev.EVTCHNOP_bind_ipi: evtchn_bind_ipi,
    ev.EVTCHNOP_bind_pirq: evtchn_bind_pirq,
    ev.EVTCHNOP_close: evtchn_close,
    ev.EVTCHNOP_send: evtchn_send,
    ev.EVTCHNOP_status: evtchn_status,
    ev.EVTCHNOP_bind_vcpu: evtchn_bind_vcpu,
    ev.EVTCHNOP_unmask: evtchn_unmask,
    ev.EVTCHNOP_reset: evtchn_reset,
    ev.EVTCHNOP_init_control: evtchn_init_control,
    ev.EVTCHNOP_expand_array: evtchn_expand_array,
    ev.EVTCHNOP_set_priority: evtchn_set_priority,
}


def do_event_channel_op(vcpu, cmd, arg, *_):
    return sub_op(OPS, cmd)(vcpu, arg)


HYPERCALLS = {xen.HYPERVISOR_event_channel_op: do_event_channel_op}
