"""Generators for the scheduling family: sched_op (poll with real port
lists), set_timer_op, vcpu_op."""
import struct

from pyxenon.hypercalls import sched_op, vcpu_op
from pyxenon.public import sched, vcpu as vc, xen

from ..ops import call_op
from ..values import sub_op


SCHED_STRUCTS = {
    sched.SCHEDOP_shutdown: sched.sched_shutdown, sched.SCHEDOP_poll: sched.sched_poll,
    sched.SCHEDOP_remote_shutdown: sched.sched_remote_shutdown,
    sched.SCHEDOP_shutdown_code: sched.sched_shutdown, sched.SCHEDOP_watchdog: sched.sched_watchdog,
    sched.SCHEDOP_pin_override: sched.sched_pin_override,
}


def gen_sched_op(m, dom, slot):
    cmd = sub_op(m, sched_op.OPS)
    if cmd == sched.SCHEDOP_shutdown and m.chance(0.8):
        cmd = sched.SCHEDOP_shutdown_code      # end the domain only now and then
    if cmd == sched.SCHEDOP_poll and m.chance(0.7):
        return poll_call(m, dom, slot, cmd)
    return m.buffer_call(dom, slot, xen.HYPERVISOR_sched_op, (cmd,), SCHED_STRUCTS.get(cmd))


def poll_call(m, dom, slot, cmd):
    ports = struct.pack("<4I", *(m.port(dom) & 0xFFFFFFFF for _ in range(4)))
    ports_va = m.scratch(dom, len(ports))
    poll = m.struct(dom, sched.sched_poll, ports=ports_va, nr_ports=m.rng.randrange(5),
                    timeout=m.time())
    poll_va = m.scratch(dom, len(poll))
    return call_op(slot, xen.HYPERVISOR_sched_op, [cmd, poll_va], [(ports_va, ports), (poll_va, poll)])


def gen_set_timer_op(m, dom, slot):
    return call_op(slot, xen.HYPERVISOR_set_timer_op, [m.time()])


VCPU_STRUCTS = {
    vc.VCPUOP_register_runstate_memory_area: vc.vcpu_register_runstate_memory_area,
    vc.VCPUOP_set_periodic_timer: vc.vcpu_set_periodic_timer,
    vc.VCPUOP_set_singleshot_timer: vc.vcpu_set_singleshot_timer,
    vc.VCPUOP_register_vcpu_info: vc.vcpu_register_vcpu_info,
    vc.VCPUOP_get_physid: vc.vcpu_get_physid,
    vc.VCPUOP_register_vcpu_time_memory_area: vc.vcpu_register_time_memory_area,
    vc.VCPUOP_get_runstate_info: vc.vcpu_runstate_info,
}


def gen_vcpu_op(m, dom, slot):
    cmd = sub_op(m, vcpu_op.OPS)
    vcpu_id = 0 if m.chance(0.9) else m.of_kind("vcpu", dom)
    return m.buffer_call(dom, slot, xen.HYPERVISOR_vcpu_op, (cmd, vcpu_id), VCPU_STRUCTS.get(cmd))
