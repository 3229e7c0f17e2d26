"""Hypercall statistics and the trace buffer, the Python half (_core/perfc.h).

A domain's ``Perfc`` holds the C counters its vcpus' traps keep (Xen's
perfc ``hypercalls`` array, split into the C fast path and the Python
handlers) plus what only Python sees: exceptions bounced to the guest, by
vector.  The machine's ``TraceBuffer`` is xentrace's t_buf: C writes one
record per hypercall trap, Python drains it between slices; a full buffer
loses records and counts them (``lost``), never blocks the guest or grows.

Times are host TSC cycles in C, turned into nanoseconds here at the rate
timekeeping measured.  Fast-path calls are timed one in XC_SAMPLE+1 and
their total extrapolated; every Python call is timed.
"""
import collections
import struct
import time

from pyxenon._core import ffi, lib
from pyxenon.public import xen

from . import timekeeping

NR_SLOTS = lib.XC_PERFC_NR + 1     # the last slot: numbers past the table
TRACE_RECORDS = 1 << 18            # 16 MiB: a 10 ms slice of null hypercalls
RECORD = struct.Struct("<5QqIHHII")  # struct xc_trec
RECORD_FIELDS = ("tsc", "nr", "a1", "a2", "a3", "rc", "cycles", "domid", "vcpu_id", "python",
                 "pad")
_HZ = []


def tsc_hz():
    """The host TSC rate, measured once per process."""
    if not _HZ:
        _HZ.append(timekeeping.measure_tsc_hz())
    return _HZ[0]


def cycles_to_ns(cycles):
    return int(cycles * 1e9 / tsc_hz())


def hypercall_name(nr):
    return xen.HYPERCALL_NAMES.get(nr, f"hypercall_{nr}") if nr < lib.XC_PERFC_NR \
        else "past_the_table"


class Perfc:
    """One domain's counters; on (counted by C) unless made with on=False."""

    def __init__(self, on=True):
        self.core = ffi.new("struct xc_perfc *") if on else ffi.NULL
        if on:
            self.core.tick = lib.XC_SAMPLE     # the first fast-path call is timed, then 1 in 64
        self.bounced = collections.Counter()      # exception vector -> bounces to the guest

    def attach(self, vcpu_core):
        vcpu_core.perfc = self.core

    def totals(self):
        """(hypercalls, events sent): what `xl top` shows per second."""
        if self.core == ffi.NULL:
            return 0, 0
        return sum(c.calls for c in self.core.calls), self.core.events_sent

    def calls(self):
        """{hypercall name: {calls, c, python, ns}} for each number called."""
        if self.core == ffi.NULL:
            return {}
        return {hypercall_name(nr): call_row(self.core.calls[nr])
                for nr in range(NR_SLOTS) if self.core.calls[nr].calls}

    def snapshot(self):
        """Everything counted, as plain data (the daemon sends it as JSON)."""
        calls = self.calls()
        return {"hypercalls": sum(c["calls"] for c in calls.values()),
                "c": sum(c["c"] for c in calls.values()),
                "python": sum(c["python"] for c in calls.values()),
                "ns": sum(c["ns"] for c in calls.values()),
                "events_sent": self.core.events_sent if self.core != ffi.NULL else 0,
                "faults_bounced": sum(self.bounced.values()),
                "bounced": {str(v): n for v, n in sorted(self.bounced.items())},
                "calls": calls}


def call_row(c):
    fast = c.calls - c.python
    fast_ns = cycles_to_ns(c.fast_cycles) * fast // c.fast_timed if c.fast_timed else 0
    py_ns = cycles_to_ns(c.py_cycles)
    return {"calls": c.calls, "c": fast, "python": c.python, "ns": fast_ns + py_ns,
            "c_ns": fast_ns, "python_ns": py_ns}


class TraceBuffer:
    """The machine's hypercall trace buffer while it exists (close() ends it)."""

    def __init__(self, machine, records=TRACE_RECORDS):
        if records < 1 or records & (records - 1):
            raise ValueError("the trace buffer holds a power of two of records")
        if machine.core.tbuf != ffi.NULL:
            raise ValueError("the machine has a trace buffer already (one reader at a time)")
        self.machine = machine
        self.recs = ffi.new("struct xc_trec[]", records)
        self.raw = ffi.buffer(self.recs)
        self.tbuf = ffi.new("struct xc_tbuf *", {"size": records, "recs": self.recs})
        # TSC -> system time (ns since the machine booted), from one sample now
        self.tsc0, self.ns0 = lib.xc_host_tsc(), time.monotonic_ns() - machine.boot_ns
        self.hz = tsc_hz()
        machine.core.tbuf = self.tbuf
        machine.trace_buffer = self      # C points into it: it lives while attached

    @property
    def lost(self):
        return self.tbuf.lost

    def drain(self):
        """The records written since the last drain, oldest first, as
        struct xc_trec unpacks (RECORD_FIELDS); system_ns and ns convert
        their times.  Kept raw: a slice can leave 200,000 of them."""
        t = self.tbuf
        size, out = t.size, []
        while t.cons != t.prod:
            first = t.cons & (size - 1)
            n = min(t.prod - t.cons, size - first)
            out.extend(RECORD.iter_unpack(self.raw[first * RECORD.size:(first + n) * RECORD.size]))
            t.cons += n
        return out

    def system_ns(self, tsc):
        """A record's TSC as system time (ns since the machine booted)."""
        return self.ns0 + int((tsc - self.tsc0) * 1e9 / self.hz)

    def ns(self, cycles):
        return int(cycles * 1e9 / self.hz)

    def close(self):
        if self.machine.core != ffi.NULL and self.machine.core.tbuf == self.tbuf:
            self.machine.core.tbuf = ffi.NULL
            self.machine.trace_buffer = None
