"""What hypercall statistics cost the C fast path (the observability issue's
target: at most 5% on the null hypercall).

The nullcall guest's xen_version calls answered in C, on hosts that differ
only in what the trap records: nothing (perfc off: the baseline), the
statistics every domain keeps by default (perfc.h: two counters, one call
in 64 timed), and the statistics plus the trace buffer (every call timed
and written as a record; the buffer is drained after the run, as `run
--trace-file` drains it after each slice).  The three are measured in
turns, in this run, best of five each; per call = (time(N) - time(0)) / N.
"""
import time

from pyxenon.hypervisor.perfc import TraceBuffer
from pyxenon.toolstack.host import Host

N = 200_000          # below the trace buffer's size: no record is lost
ROUNDS = 5
MODES = ("null_hypercall_c_perfc_off", "null_hypercall_c_perfc_on", "null_hypercall_c_traced")


def boot(guests, loops, mode):
    with Host(memory_mib=256, perfc=mode != MODES[0]) as host:
        dom = host.create(str(guests / "nullcall.cfg"), overrides=[f'cmdline="loops={loops}"'])
        trace = TraceBuffer(host.machine) if mode == MODES[2] else None
        start = time.perf_counter()
        host.run(timeout=120)
        elapsed = time.perf_counter() - start
        assert dom.shutdown_reason == "poweroff"
        if trace is not None:
            assert trace.lost == 0 and len(trace.drain()) == loops + 1   # + the shutdown
            trace.close()
        return elapsed


def measure_in_turns(guests, rounds):
    """{mode: seconds per call}, each mode's best of rounds, taken in turns."""
    empty = {m: min(boot(guests, 0, m) for _ in range(2)) for m in MODES}
    full = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode in MODES:
            full[mode].append(boot(guests, N, mode))
    return {m: (min(full[m]) - empty[m]) / N for m in MODES}


def test_perfc_cost(benchmark, guests, results):
    measured = {}
    benchmark.pedantic(lambda: measured.update(measure_in_turns(guests, ROUNDS)),
                       rounds=1, iterations=1)
    results.update(measured)
