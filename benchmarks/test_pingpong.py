"""Event-channel ping-pong between two domains: ping and pong (the demo
guests) exchange ROUNDS messages over a granted ring page, each round one
send and one wake-up each way, beside two domains that only yield to each
other (the floor of a domain switch) in the same run; and the same round
trips made by 1, 5 and 50 pairs at once (2, 10 and 100 domains)."""
import pathlib
import time

import pytest

from pyxenon.toolstack.host import Host

ROUNDS = 20000       # enough that a run's own start-up (~25 ms) is noise
CPU = []             # the engine thread's CPU time of each pairs() run, in order
POLICY = str(pathlib.Path(__file__).resolve().parent.parent / "examples/policies/ping-pong.toml")


def pingpong(guests, rounds):
    with Host(memory_mib=512, policy=POLICY, audit=lambda record: None) as host:
        ping = host.create(str(guests / "ping.cfg"),
                           overrides=[f'extra="peer=pong peer-domid=2 rounds={rounds}"'])
        pong = host.create(str(guests / "pong.cfg"))
        start = time.perf_counter()
        host.run(timeout=300)
        elapsed = time.perf_counter() - start
    assert ping.shutdown_reason == pong.shutdown_reason == "poweroff", ping.dmesg_text
    return elapsed


def pairs(guests, k, rounds, idle=0):
    """k ping-pong pairs at once (2k domains), rounds round trips in all,
    beside idle domains that block at once and are never woken."""
    with Host(memory_mib=64 + 40 * k + 20 * idle, policy=POLICY, audit=lambda record: None) as host:
        doms = []
        for i in range(k):
            doms.append(host.create(str(guests / "ping.cfg"), overrides=[
                f'name="ping{i}"', f'extra="peer=pong{i} peer-domid={2 * i + 2} rounds={rounds // k}"']))
            doms.append(host.create(str(guests / "pong.cfg"),
                                    overrides=[f'name="pong{i}"',
                                               f'extra="peer=ping{i} peer-domid={2 * i + 1}"']))
        for i in range(idle):
            host.create(str(guests / "nullcall.cfg"), overrides=[f'name="idle{i}"', 'cmdline="idle=1"'])
        start, cpu = time.perf_counter(), time.thread_time()
        host.run(timeout=300)
        elapsed = time.perf_counter() - start
        CPU.append(time.thread_time() - cpu)
    assert all(d.shutdown_reason == "poweroff" for d in doms), [d.dmesg_text for d in doms]
    return elapsed


def yields(guests, n):
    with Host(memory_mib=256) as host:
        for name in ("a", "b"):
            host.create(str(guests / "nullcall.cfg"), overrides=[f'name="{name}"', f'cmdline="yield={n}"'])
        start = time.perf_counter()
        host.run(timeout=300)
        return time.perf_counter() - start


def test_event_channel_ping_pong(benchmark, best, guests, results):
    empty = min(pingpong(guests, 1) for _ in range(3))
    results["evtchn_round_trip"] = max(best(pingpong, guests, ROUNDS) - empty, 1e-9) / ROUNDS
    benchmark.extra_info["round_trips_per_s"] = 1 / results["evtchn_round_trip"]


@pytest.mark.parametrize("domains", [2, 10, 100])
def test_event_channel_throughput(best, guests, results, domains):
    """The same round trips spread over 1, 5 or 50 pairs at once: per round
    trip, scheduling among the domains included."""
    per_round_trip(best, guests, results, f"evtchn_round_trip_{domains}_domains", domains // 2)


def per_round_trip(best, guests, results, name, k, idle=0):
    """(time of ROUNDS round trips - best of two runs of one each) / ROUNDS,
    by the wall clock and (name_cpu) by the engine thread's CPU time, which
    a loaded machine inflates less."""
    CPU.clear()
    empty = min(pairs(guests, k, k, idle) for _ in range(2))
    empty_cpu = min(CPU)
    CPU.clear()
    results[name] = max(best(pairs, guests, k, ROUNDS, idle) - empty, 1e-9) / ROUNDS
    results[name + "_cpu"] = max(min(CPU) - empty_cpu, 1e-9) / ROUNDS


def test_domain_switch_by_yield(best, guests, results):
    """Per switch = (time of ROUNDS yields each - best of three runs of 0) /
    switches: the two boots and poweroffs cancel out."""
    empty = min(yields(guests, 0) for _ in range(3))
    results["domain_switch_yield"] = max(best(yields, guests, ROUNDS) - empty, 1e-9) / (2 * ROUNDS)


def test_event_channel_beside_idle_domains(best, guests, results):
    """One ping-pong pair beside 98 idle domains (blocked, never woken):
    Xen's scheduler never looks at a blocked vcpu, so the round trip should
    cost what it costs alone (evtchn_round_trip_2_domains)."""
    per_round_trip(best, guests, results, "evtchn_round_trip_98_idle_domains", 1, idle=98)
