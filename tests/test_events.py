"""Event channels between domains, under the MSM policy; virqs, ipis,
timers and event upcalls."""
import struct
import time

import pytest

from pyxenon.hypervisor import traps
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import errno, event_channel as ev, vcpu as vc, xen
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.policy import parse_policy

PAGE = 4096
SELF = 0x7FF0
POLICY = """
version = 1
[labels]
ping = "a"
pong = "b"
intruder = "c"
[[allow]]
from = "ping"
to = "pong"
paths = ["event_channel"]
bidirectional = true
"""


@pytest.fixture
def trio(guests):
    with Host(memory_mib=1024, policy=parse_policy(POLICY, "test.toml")) as host:
        doms = [host.create(str(guests / "hello.cfg"),
                            overrides=[f'name="{n}"', f'seclabel="{n}"'])
                for n in ("ping", "pong", "intruder")]
        yield host, doms


def scratch(dom, n=1):
    return dom.layout.stack + n * PAGE


def call(hypercall, dom, cmd, fmt, *fields):
    va = scratch(dom)
    copy_to_guest(dom.vcpus[0], va, struct.pack(fmt, *fields))
    rc = hypercall(dom, xen.HYPERVISOR_event_channel_op, cmd, va)
    return rc, copy_from_guest(dom.vcpus[0], va, struct.calcsize(fmt))


def alloc_unbound(hypercall, dom, remote):
    rc, raw = call(hypercall, dom, ev.EVTCHNOP_alloc_unbound, "<HHI", SELF, remote, 0)
    return rc, struct.unpack("<HHI", raw)[2]


def bind(hypercall, dom, remote, port):
    rc, raw = call(hypercall, dom, ev.EVTCHNOP_bind_interdomain, "<HxxII", remote, port, 0)
    return rc, struct.unpack("<HxxII", raw)[2]


def connect(hypercall, a, b):
    rc, port_a = alloc_unbound(hypercall, a, b.domid)
    assert rc == 0
    rc, port_b = bind(hypercall, b, a.domid, port_a)
    assert rc == 0
    return port_a, port_b


def send(hypercall, dom, port):
    return call(hypercall, dom, ev.EVTCHNOP_send, "<I", port)[0]


def test_interdomain_channel_both_ways(trio, hypercall):
    host, (ping, pong, _) = trio
    port_a, port_b = connect(hypercall, ping, pong)
    assert pong.events.is_pending(port_b)          # Xen raises the new port once
    pong.events.clear_pending(port_b)
    assert send(hypercall, ping, port_a) == 0
    assert pong.events.is_pending(port_b)
    assert send(hypercall, pong, port_b) == 0
    assert ping.events.is_pending(port_a)
    decisions = [(r["operation"], r["decision"]) for r in host.machine.audit_log]
    assert ("event_channel:alloc_unbound", "allow") in decisions
    assert ("event_channel:bind_interdomain", "allow") in decisions


def test_intruder_is_refused_and_audited(trio, hypercall):
    host, (ping, pong, intruder) = trio
    assert alloc_unbound(hypercall, intruder, ping.domid)[0] == -errno.EACCES
    rc, port = alloc_unbound(hypercall, ping, intruder.domid)
    assert rc == -errno.EACCES
    rc, port = alloc_unbound(hypercall, ping, pong.domid)     # offered to pong only
    assert bind(hypercall, intruder, ping.domid, port)[0] == -errno.EINVAL
    denied = [r for r in host.machine.audit_log if r["decision"] == "deny"]
    assert len(denied) == 2 and all(r["rule"] == "default deny" for r in denied)


def test_no_policy_refuses_everything(guests, hypercall):
    with Host(memory_mib=512) as host:
        a = host.create(str(guests / "hello.cfg"))
        b = host.create(str(guests / "hello.cfg"), overrides=['name="b"'])
        assert alloc_unbound(hypercall, a, b.domid)[0] == -errno.EACCES
        assert host.machine.audit_log[-1]["rule"] == "no policy"
        assert alloc_unbound(hypercall, a, SELF)[0] == 0      # its own: no rule needed


def test_bad_ports_and_foreign_sends(trio, hypercall):
    host, (ping, pong, intruder) = trio
    port_a, port_b = connect(hypercall, ping, pong)
    for port in (0, 999, 5000, 0xFFFFFFFF):
        assert send(hypercall, intruder, port) == -errno.EINVAL
    assert send(hypercall, intruder, port_a) == -errno.EINVAL   # not its port
    assert bind(hypercall, intruder, 999, 1)[0] == -errno.ESRCH
    assert bind(hypercall, intruder, ping.domid, 999)[0] == -errno.EINVAL


def test_close_returns_peer_to_unbound(trio, hypercall):
    _, (ping, pong, _) = trio
    port_a, port_b = connect(hypercall, ping, pong)
    assert call(hypercall, pong, ev.EVTCHNOP_close, "<I", port_b)[0] == 0
    rc, raw = call(hypercall, ping, ev.EVTCHNOP_status, "<HxxIIIII", SELF, port_a, 0, 0, 0, 0)
    assert rc == 0 and struct.unpack("<HxxIIIII", raw)[2] == ev.EVTCHNSTAT_unbound
    assert bind(hypercall, pong, ping.domid, port_a)[0] == 0  # can bind again


def test_status_interdomain(trio, hypercall):
    _, (ping, pong, _) = trio
    port_a, port_b = connect(hypercall, ping, pong)
    rc, raw = call(hypercall, ping, ev.EVTCHNOP_status, "<HxxIIIHxxI", SELF, port_a, 0, 0, 0, 0)
    _, _, status, vcpu, dom, port = struct.unpack("<HxxIIIHxxI", raw)
    assert (rc, status, dom, port) == (0, ev.EVTCHNSTAT_interdomain, pong.domid, port_b)


def test_virq_ipi_unmask_bind_vcpu_reset(trio, hypercall):
    _, (ping, _, _) = trio
    rc, raw = call(hypercall, ping, ev.EVTCHNOP_bind_virq, "<III", xen_virq_timer(), 0, 0)
    timer_port = struct.unpack("<III", raw)[2]
    assert rc == 0
    assert call(hypercall, ping, ev.EVTCHNOP_bind_virq, "<III", 0, 0, 0)[0] == -errno.EEXIST
    assert call(hypercall, ping, ev.EVTCHNOP_bind_virq, "<III", 3, 1, 0)[0] == -errno.EINVAL
    assert call(hypercall, ping, ev.EVTCHNOP_bind_virq, "<III", 99, 0, 0)[0] == -errno.EINVAL
    rc, raw = call(hypercall, ping, ev.EVTCHNOP_bind_ipi, "<II", 0, 0)
    ipi = struct.unpack("<II", raw)[1]
    ping.shared_info.evtchn_mask[0] |= 1 << ipi
    assert send(hypercall, ping, ipi) == 0
    assert ping.events.is_pending(ipi) and not ping.vcpu_info(0).evtchn_upcall_pending
    assert call(hypercall, ping, ev.EVTCHNOP_unmask, "<I", ipi)[0] == 0
    assert ping.vcpu_info(0).evtchn_upcall_pending
    assert call(hypercall, ping, ev.EVTCHNOP_bind_ipi, "<II", 3, 0)[0] == -errno.ENOENT
    assert call(hypercall, ping, ev.EVTCHNOP_bind_vcpu, "<II", ipi, 0)[0] == -errno.EINVAL
    assert call(hypercall, ping, ev.EVTCHNOP_reset, "<H", SELF)[0] == 0
    assert send(hypercall, ping, timer_port) == -errno.EINVAL


def xen_virq_timer():
    return ev.VIRQ_TIMER


def test_timer_raises_virq_timer(trio, hypercall):
    host, (ping, _, _) = trio
    rc, raw = call(hypercall, ping, ev.EVTCHNOP_bind_virq, "<III", ev.VIRQ_TIMER, 0, 0)
    port = struct.unpack("<III", raw)[2]
    assert hypercall(ping, xen.HYPERVISOR_set_timer_op, 1) == 0     # already past
    host.machine.scheduler.fire_timers(host.machine.now())
    assert ping.events.is_pending(port)


def test_singleshot_timer_and_vcpu_op(trio, hypercall):
    host, (ping, _, _) = trio
    va = scratch(ping)
    # Xen 4.17: a deadline already past sends the timer event at once, even
    # with VCPU_SSHOTTMR_future (once -ETIME)
    rc, raw = call(hypercall, ping, ev.EVTCHNOP_bind_virq, "<III", ev.VIRQ_TIMER, 0, 0)
    copy_to_guest(ping.vcpus[0], va, struct.pack("<QI", 1, vc.VCPU_SSHOTTMR_future))
    assert hypercall(ping, xen.HYPERVISOR_vcpu_op, vc.VCPUOP_set_singleshot_timer, 0, va) == 0
    assert ping.events.is_pending(struct.unpack("<III", raw)[2]) and ping.vcpus[0].timer_at is None
    copy_to_guest(ping.vcpus[0], va, struct.pack("<QI", 10 ** 15, 0))
    assert hypercall(ping, xen.HYPERVISOR_vcpu_op, vc.VCPUOP_set_singleshot_timer, 0, va) == 0
    assert ping.vcpus[0].timer_at == 10 ** 15
    assert hypercall(ping, xen.HYPERVISOR_vcpu_op, vc.VCPUOP_stop_singleshot_timer, 0, 0) == 0
    assert ping.vcpus[0].timer_at is None
    assert hypercall(ping, xen.HYPERVISOR_vcpu_op, vc.VCPUOP_is_up, 0, 0) == 1
    assert hypercall(ping, xen.HYPERVISOR_vcpu_op, vc.VCPUOP_is_up, 1, 0) == -errno.ENOENT
    assert hypercall(ping, xen.HYPERVISOR_vcpu_op, vc.VCPUOP_get_runstate_info, 0, va) == 0
    assert struct.unpack("<i", copy_from_guest(ping.vcpus[0], va, 4))[0] == vc.RUNSTATE_running


def test_registered_time_and_runstate_copies_are_written(trio, hypercall):
    """Xen writes a guest's registered vcpu_time_info and runstate copies
    at each context switch; pyxenon at each slice's start."""
    from pyxenon._core import lib

    host, (ping, _, _) = trio
    vcpu, va = ping.vcpus[0], scratch(ping)
    for op, where in ((vc.VCPUOP_register_vcpu_time_memory_area, va + 256),
                      (vc.VCPUOP_register_runstate_memory_area, va + 512)):
        copy_to_guest(vcpu, va, struct.pack("<Q", where))
        assert hypercall(ping, xen.HYPERVISOR_vcpu_op, op, 0, va) == 0
    vcpu.runstate[0] = 777
    lib.xc_enter(host.machine.core, vcpu.core, 4242)
    copy = copy_from_guest(vcpu, va + 256, 32)
    assert copy == bytes(ping.vcpu_info(0).time) and struct.unpack("<I", copy[:4])[0] % 2 == 0
    state, _, entered, running = struct.unpack("<iIQQ", copy_from_guest(vcpu, va + 512, 24))
    assert (state, entered, running) == (vc.RUNSTATE_running, 4242, 777)


def test_a_periodic_timer_past_2_64_ns_is_never(trio, hypercall):
    """Found by the fuzzer: now + a period near 2**64 overflowed the C
    deadline and crashed the domain with a hypervisor error.  Xen refuses
    a period past STIME_DELTA_MAX (2**62 - 1 ns) and takes that one."""
    host, (ping, _, _) = trio
    va = scratch(ping)
    copy_to_guest(ping.vcpus[0], va, struct.pack("<Q", (1 << 64) - 1))
    assert hypercall(ping, xen.HYPERVISOR_vcpu_op, vc.VCPUOP_set_periodic_timer, 0, va) == -22
    copy_to_guest(ping.vcpus[0], va, struct.pack("<Q", (1 << 62) - 1))
    assert hypercall(ping, xen.HYPERVISOR_vcpu_op, vc.VCPUOP_set_periodic_timer, 0, va) == 0
    assert ping.vcpus[0].timer_at >= (1 << 62) - 1 and ping.crash_report is None
    host.machine.scheduler.fire_timers(host.machine.now())
    assert ping.crash_report is None


def test_register_vcpu_info_moves_it(trio, hypercall):
    _, (ping, _, _) = trio
    mfn = ping.pfn_to_mfn(ping.layout.pfn(ping.layout.virt_end) + 1)
    va = scratch(ping)
    copy_to_guest(ping.vcpus[0], va, struct.pack("<QII", mfn, 128, 0))
    assert hypercall(ping, xen.HYPERVISOR_vcpu_op, vc.VCPUOP_register_vcpu_info, 0, va) == 0
    ping.events.set_pending(ping.console.port)
    assert ping.machine.mem[mfn * PAGE + 128] == 1          # upcall_pending, at the new place
    assert hypercall(ping, xen.HYPERVISOR_vcpu_op, vc.VCPUOP_register_vcpu_info, 0, va) == -errno.EINVAL


def test_upcall_is_delivered_to_event_callback(trio, hypercall):
    _, (ping, _, _) = trio
    vcpu = ping.vcpus[0]
    hypercall(ping, xen.HYPERVISOR_set_callbacks, 0xFFFFFFFF80001000, 0xFFFFFFFF80001010, 0)
    vcpu.set_regs(rsp=scratch(ping, 2), rip=0x4444)
    ping.vcpu_info(0).evtchn_upcall_mask = 0
    ping.events.set_pending(ping.console.port)
    traps.deliver_upcall(vcpu)
    regs = vcpu.regs()
    assert regs["rip"] == 0xFFFFFFFF80001000
    assert ping.vcpu_info(0).evtchn_upcall_mask == 1
    assert struct.unpack("<3Q", copy_from_guest(vcpu, regs["rsp"], 24))[2] == 0x4444


def guest_clock(t, tsc):
    """What a guest computes from vcpu_time_info at TSC tsc (Linux's
    pvclock_clocksource_read): system_time + scale(tsc - tsc_timestamp)."""
    from pyxenon._core import lib

    return t.system_time + lib.xc_scale_delta(tsc - t.tsc_timestamp, t.tsc_to_system_mul,
                                              t.tsc_shift)


def test_time_info_is_consistent(trio):
    """A slice starts with the vcpu's clock written (_core xc_enter): a stamp
    and scale from which the guest's TSC gives the hypervisor's system time
    itself (get_s_time), before and after the stamp alike."""
    from pyxenon._core import lib

    host, (ping, _, _) = trio
    core = host.machine.core
    info = ping.vcpu_info(0)
    before = info.time.version
    lib.xc_enter(core, ping.vcpus[0].core, 12345)
    t = info.time
    assert t.version == before + 2 and t.tsc_to_system_mul > 0
    for _ in range(3):
        tsc = lib.xc_host_tsc()
        now = lib.xc_system_time(core)
        assert 0 <= now - guest_clock(t, tsc) < 10 ** 7    # the two reads' distance
        time.sleep(0.002)


def test_time_scale_is_xens_set_time_scale(trio):
    """(mul, shift) as Xen's set_time_scale: ns = ((ticks << shift) * mul) >> 32."""
    from pyxenon._core import lib

    host, _ = trio
    core = host.machine.core
    for hz, want in ((2_500_000_000, (0xCCCCCCCC, -1)), (1_000_000_000, (1 << 31, 1)),
                     (3_000_000_000, (0xAAAAAAAA, -1)), (25_000_000, (0xA0000000, 6))):
        lib.xc_set_tsc_hz(core, hz)
        assert (core.tsc_mul, core.tsc_shift) == want
        assert abs(lib.xc_scale_delta(hz, core.tsc_mul, core.tsc_shift) - 10 ** 9) <= 1


def test_poll_wakes_on_a_masked_port(trio, hypercall):
    """As Xen's evtchn_check_pollers: a poll waits on the port, mask or not."""
    _, (ping, _, _) = trio
    port = ping.console.port
    ping.shared_info.evtchn_mask[0] |= 1 << port
    va = scratch(ping)
    copy_to_guest(ping.vcpus[0], va + 64, struct.pack("<I", port))
    copy_to_guest(ping.vcpus[0], va, struct.pack("<QIxxxxQ", va + 64, 1, 0))
    assert hypercall(ping, xen.HYPERVISOR_sched_op, 3, va) == 0
    assert not ping.vcpus[0].runnable
    ping.events.set_pending(port)
    assert ping.vcpus[0].runnable and not ping.vcpu_info(0).evtchn_upcall_pending


# -- alloc_unbound as evtchn_alloc_unbound: the remote is not looked up ---------------

def status(hypercall, dom, port):
    rc, raw = call(hypercall, dom, ev.EVTCHNOP_status, "<HxxIIIHxxxxxx", SELF, port, 0, 0, 0)
    return rc, struct.unpack("<HxxIIIHxxxxxx", raw)


def test_alloc_unbound_for_domain_0_and_one_not_yet_created(trio, hypercall):
    _host, (ping, _pong, _intruder) = trio
    for remote in (0, 999):
        rc, port = alloc_unbound(hypercall, ping, remote)
        assert rc == 0 and port > 0
        rc, (_, _, st, _, dom) = status(hypercall, ping, port)
        assert rc == 0 and st == ev.EVTCHNSTAT_unbound and dom == remote
    # a later bind is where the remote is checked: 999 is no domain
    assert bind(hypercall, ping, 999, 1)[0] == -errno.ESRCH


def test_alloc_unbound_is_enospc_at_the_domains_limit(trio, hypercall):
    _host, (ping, _pong, _intruder) = trio
    limit = ping.events.max_ports
    results = [alloc_unbound(hypercall, ping, SELF) for _ in range(limit)]
    failed = [rc for rc, _ in results if rc]
    assert failed and set(failed) == {-errno.ENOSPC}
    assert max(p for rc, p in results if rc == 0) == limit - 1     # port 0 is never given
    assert len(ping.events.ports) == limit


@pytest.mark.parametrize("pending", [True, False])
def test_an_event_that_came_while_paused_ends_the_block_at_unpause(guests, pending):
    """Xen unblocks a paused domain's vcpu when an event comes (vcpu_unblock)
    and it runs once unpaused; the C paths wake only a running domain's
    vcpus, so unpause looks again (there was a lost wake-up here)."""
    with Host(memory_mib=32) as host:
        dom = host.create(str(guests / "hello.cfg"))
        vcpu = dom.vcpus[0]
        dom.pause()
        vcpu.block()
        info = dom.vcpu_info(0)
        info.evtchn_upcall_mask = 0
        info.evtchn_upcall_pending = 1 if pending else 0
        dom.unpause()
        assert vcpu.runnable == pending


def test_bind_pirq_is_refused_as_for_a_domain_without_irqs(trio, hypercall):
    """evtchn_bind_pirq: a PIRQ past the domain's nr_pirqs is -EINVAL, any
    other -EPERM (a domU has no IRQ access), and no port is taken."""
    _, (ping, _, _) = trio
    before = len(ping.events.ports)
    rc, _ = call(hypercall, ping, ev.EVTCHNOP_bind_pirq, "<III", 3, 0, 0)
    assert rc == -errno.EPERM
    rc, _ = call(hypercall, ping, ev.EVTCHNOP_bind_pirq, "<III", 56, 0, 0)
    assert rc == -errno.EINVAL
    rc, _ = call(hypercall, ping, ev.EVTCHNOP_bind_pirq, "<III", 0xFFFFFFFF, 0, 0)
    assert rc == -errno.EINVAL
    assert len(ping.events.ports) == before
