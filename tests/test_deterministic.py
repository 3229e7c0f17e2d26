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
