"""What hypercall statistics and traces cost the C fast path (the
observability issue's target: statistics within 5% on the null hypercall).

The nullcall guest's xen_version calls answered in C, on hosts that differ
only in what the trap records:

- perfc_off: nothing (the baseline);
- perfc_on: the statistics every domain keeps by default (perfc.h: two
  counters a call, one call in 64 timed);
- trace_record: statistics plus the trace buffer (every call timed and
  written as a record), N_RECORD calls (they fit: drained after the run,
  untimed) -- what C alone pays;
- traced: the same, drained after each slice as `run --trace-file` drains it;
- trace_file: all of `run --trace-file`, the JSON lines written (to
  /dev/null, so the disk is not measured).

The trace modes are measured in turns in this run, best of ROUNDS each;
per call = (time(n) - time(0)) / n, so boot and teardown cancel.  The time
is the running thread's CPU time (the engine runs on it), not the wall
clock: on a shared machine, other processes' load then counts far less.

Statistics on against off is a difference of a few per cent, below what a
loaded machine's noise lets turns resolve, so it is measured in PAIRS: one
host of each kind, a domain booted on each in alternating order, and the
ratio of the two times taken per pair.  perfc_off_paired is the off
host's best per-call time; perfc_on is reported as that times the median
of the pair ratios (perfc_on_best: the on host's own best, for comparison).
"""
import statistics
import os
import time

from pyxenon.toolstack.xenperf import TraceBuffer
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.observe import after_each_slice
from pyxenon.toolstack.xentrace import TraceFile

from test_null_hypercall import run_nullcall

N = 2_000_000
ROUNDS = 5
PAIRS = 40
N_RECORD = 200_000                  # below TRACE_RECORDS: none lost, none drained while timed
CALLS = {"null_hypercall_c_trace_file": N // 10,   # the Python writer is slow: fewer
         "null_hypercall_c_trace_record": N_RECORD}
MODES = ("null_hypercall_c_perfc_off", "null_hypercall_c_perfc_on",
         "null_hypercall_c_trace_record", "null_hypercall_c_traced", "null_hypercall_c_trace_file")
TURNS = MODES[:1] + MODES[2:]   # perfc_on against perfc_off: measure_pairs


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


class Recorded:
    """The trace buffer, read only once the run is over."""

    def __init__(self, machine):
        self.buffer = TraceBuffer(machine)

    def close(self):
        seen = len(self.buffer.drain())
        self.buffer.close()
        return seen + self.buffer.lost


TRACERS = {MODES[2]: Recorded, MODES[3]: Drained, MODES[4]: Written}


def run_on(host, guests, loops):
    return run_nullcall(host, guests, loops, time.thread_time)


def boot(guests, loops, mode):
    with Host(memory_mib=256, perfc=mode != MODES[0]) as host:
        tracer = TRACERS[mode](host.machine) if mode in TRACERS else None
        elapsed = run_on(host, guests, loops)
        if tracer is not None:
            assert tracer.close() == loops + 1      # every trap: kept, or lost and counted
        return elapsed


def measure_in_turns(guests, rounds, n):
    """{mode: seconds per call}, each mode's best of rounds, taken in turns."""
    calls = {m: CALLS.get(m, N) * n // N for m in TURNS}
    empty = {m: min(boot(guests, 0, m) for _ in range(3)) for m in TURNS}
    full = {m: [] for m in TURNS}
    for _ in range(rounds):
        for mode in TURNS:
            full[mode].append(boot(guests, calls[mode], mode))
    return {m: (min(full[m]) - empty[m]) / calls[m] for m in TURNS}


def measure_pairs(guests, pairs, n):
    """perfc off and on, in alternating pairs (see the module's comment)."""
    hosts = {on: Host(memory_mib=256, perfc=on) for on in (False, True)}
    try:
        empty = {on: min(run_on(hosts[on], guests, 0) for _ in range(3)) for on in hosts}
        times = {False: [], True: []}
        for i in range(pairs):
            for on in ((False, True) if i % 2 == 0 else (True, False)):
                times[on].append(run_on(hosts[on], guests, n) - empty[on])
    finally:
        for host in hosts.values():
            host.close()
    ratio = statistics.median(t1 / t0 for t0, t1 in zip(times[False], times[True]))
    best_off = min(times[False]) / n
    return {"null_hypercall_c_perfc_off_paired": best_off, MODES[1]: best_off * ratio,
            "null_hypercall_c_perfc_on_best": min(times[True]) / n}


def test_perfc_cost(benchmark, guests, results):
    measured = {}
    # the default test run is a smoke pass: one short round
    rounds, n, pairs = (1, N // 20, 2) if benchmark.disabled else (ROUNDS, N, PAIRS)

    def measure():
        measured.update(measure_in_turns(guests, rounds, n))
        measured.update(measure_pairs(guests, pairs, n // 4))
    benchmark.pedantic(measure, rounds=1, iterations=1)
    results.update(measured)
