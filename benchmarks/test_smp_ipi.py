"""IPIs between two vcpus of one domain (guests/smp: vcpu 0 and vcpu 1
pass an event back and forth over EVTCHNOP_bind_ipi ports, each waiting
in SCHEDOP_poll) beside the event-channel round trip between two domains
(guests/ping and pong) in the same run.  Each figure is (a run of ROUNDS
round trips - the best of runs of 1) / ROUNDS, so boots and poweroffs
cancel out."""
import time

from pyxenon.toolstack.host import Host
from test_pingpong import pingpong

ROUNDS = 5000            # IPI round trips (each ~50 us: two vcpu switches through Python)
EVTCHN_ROUNDS = 20000    # as test_pingpong: its C fast paths make a round trip ~2 us


def ipis(guests, rounds):
    with Host(memory_mib=256, audit=lambda record: None) as host:
        dom = host.create(str(guests / "smp.cfg"), overrides=[f'extra="rounds={rounds}"'])
        start = time.perf_counter()
        host.run(timeout=300)
        elapsed = time.perf_counter() - start
    assert dom.shutdown_reason == "poweroff" and dom.crash_report is None, dom.dmesg_text
    return elapsed


def test_ipi_round_trip_beside_event_channel_round_trip(best, guests, results):
    empty = min(ipis(guests, 1) for _ in range(3))
    results["ipi_round_trip"] = max(best(ipis, guests, ROUNDS) - empty, 1e-9) / ROUNDS
    empty = min(pingpong(guests, 1) for _ in range(3))
    full = min(pingpong(guests, EVTCHN_ROUNDS) for _ in range(2))   # (best: once a test)
    results["evtchn_round_trip_same_run"] = max(full - empty, 1e-9) / EVTCHN_ROUNDS
