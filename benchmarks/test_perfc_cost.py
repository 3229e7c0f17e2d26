"""What hypercall statistics and traces cost the C fast path (the
observability issue's target: statistics within 5% on the null hypercall).

The nullcall guest's xen_version calls answered in C, on hosts that differ
only in what the trap records:

- perfc_off: nothing (the baseline);
- perfc_on: the statistics every domain keeps by default (perfc.h: two
  counters a call, one call in 64 timed);
- traced: statistics plus the trace buffer (every call timed and written as
  a record), drained after each slice as `run --trace-file` drains it;
- trace_file: all of `run --trace-file`, the JSON lines written (to
  /dev/null, so the disk is not measured).

Measured in turns in this run, best of ROUNDS each; per call =
(time(N) - time(0)) / N, so boot and teardown cancel.
"""
import os
import time

from pyxenon.hypervisor.perfc import TraceBuffer
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.observe import after_each_slice
from pyxenon.toolstack.xentrace import TraceFile

N = 1_000_000
ROUNDS = 5
MODES = ("null_hypercall_c_perfc_off", "null_hypercall_c_perfc_on", "null_hypercall_c_traced",
         "null_hypercall_c_trace_file")


class Drained:
    """The trace buffer drained after each slice; counts what it saw."""

    def __init__(self, machine):
        self.buffer, self.seen = TraceBuffer(machine), 0
        after_each_slice(machine, self.drain)

    def drain(self):
        self.seen += len(self.buffer.drain())

    def close(self):
        self.drain()
        self.buffer.close()
        return self.seen + self.buffer.lost


class Written:
    """run --trace-file's writer, to /dev/null."""

    def __init__(self, machine):
        self.file = TraceFile(machine, os.devnull)
        after_each_slice(machine, self.file.drain)

    def close(self):
        self.file.close()
        return self.file.records + self.file.buffer.lost + self.file.refused


TRACERS = {MODES[2]: Drained, MODES[3]: Written}


def boot(guests, loops, mode):
    with Host(memory_mib=256, perfc=mode != MODES[0]) as host:
        dom = host.create(str(guests / "nullcall.cfg"), overrides=[f'cmdline="loops={loops}"'])
        tracer = TRACERS[mode](host.machine) if mode in TRACERS else None
        start = time.perf_counter()
        host.run(timeout=300)
        elapsed = time.perf_counter() - start
        assert dom.shutdown_reason == "poweroff"
        if tracer is not None:
            assert tracer.close() == loops + 1      # every trap: kept, or lost and counted
        return elapsed


def measure_in_turns(guests, rounds, n):
    """{mode: seconds per call}, each mode's best of rounds, taken in turns."""
    empty = {m: min(boot(guests, 0, m) for _ in range(2)) for m in MODES}
    full = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode in MODES:
            full[mode].append(boot(guests, n, mode))
    return {m: (min(full[m]) - empty[m]) / n for m in MODES}


def test_perfc_cost(benchmark, guests, results):
    measured = {}
    # the default test run is a smoke pass: one short round
    rounds, n = (1, N // 20) if benchmark.disabled else (ROUNDS, N)
    benchmark.pedantic(lambda: measured.update(measure_in_turns(guests, rounds, n)),
                       rounds=1, iterations=1)
    results.update(measured)
