"""Deterministic mode: the interleaving of domains depends only on what the
guests do, so two runs of the same guests make the same hypercalls, in the
same order, with the same results."""
from pyxenon.toolstack.host import Host

POLICY = "examples/policies/ping-pong.toml"


def run_demo(guests, root):
    lines = []
    with Host(memory_mib=512, deterministic=True, policy=str(root / POLICY)) as host:
        doms = [host.create(str(guests / f"{name}.cfg"), trace=lines.append,
                            overrides=['extra="peer=pong peer-domid=2 rounds=50"']
                            if name == "ping" else [])
                for name in ("ping", "pong")]
        host.run(timeout=60)
        return lines, [d.dmesg_text + d.console_text for d in doms], [d.shutdown_reason for d in doms]


def test_two_deterministic_runs_agree(guests):
    root = guests.parent
    first = run_demo(guests, root)
    second = run_demo(guests, root)
    assert first[2] == ["poweroff", "poweroff"], first[1]
    # Calls, every argument register and results, in order: even the guests'
    # rdtsc readings (some land in argument registers a call does not use)
    # are the same, the TSC being emulated (_core/time.c).
    assert first[0] == second[0]
    assert first[1] == second[1]


def test_a_deadline_past_the_end_of_time_never_comes(guests):
    """Found by the fuzzer: virtual time jumped to a guest's deadline of
    2**64 - 1 ns and overflowed the C clock.  Such a deadline never comes:
    the run ends blocked, virtual time within Xen's signed 64 bits."""
    with Host(memory_mib=64, deterministic=True) as host:
        dom = host.create(str(guests / "hello.cfg"))
        dom.vcpus[0].block(wake_at=(1 << 64) - 1)
        dom.vcpus[0].timer_at = (1 << 64) - 1
        assert host.run(timeout=30) == "blocked"
        assert host.machine.scheduler.virtual_ns < 1 << 63


def test_the_deterministic_tsc_is_virtual_time_at_1_ghz(guests):
    """Xen's emulated TSC (pv_soft_rdtsc): virtual system time at 1 GHz,
    never the same value twice; vcpu_time_info carries that scale, so the
    guest's clock is its TSC; RDRAND (the host's entropy) is hidden."""
    from pyxenon._core import ffi, lib

    with Host(memory_mib=64, deterministic=True) as host:
        dom = host.create(str(guests / "hello.cfg"))
        core, vcpu = host.machine.core, dom.vcpus[0].core
        assert (core.tsc_mul, core.tsc_shift) == (1 << 31, 1)
        lib.xc_enter(core, vcpu, 5_000_000)
        t = dom.vcpu_info(0).time
        assert (t.system_time, t.tsc_timestamp, t.tsc_to_system_mul) == (5_000_000,) * 2 + (1 << 31,)
        reads = [lib.xc_guest_tsc(core, vcpu) for _ in range(3)]
        assert reads == [5_000_000, 5_000_001, 5_000_002]
        lib.xc_enter(core, vcpu, 6_000_000)
        assert lib.xc_guest_tsc(core, vcpu) == 6_000_000
        leaf1 = ffi.new("uint32_t[4]")
        lib.xc_cpuid(core, 1, 0, leaf1)
        assert not leaf1[2] & 1 << 30
    with Host(memory_mib=64) as host:
        lib.xc_cpuid(host.machine.core, 1, 0, leaf1)
        assert leaf1[2] & 1 << 30          # offered otherwise, as Xen's PV policy does
