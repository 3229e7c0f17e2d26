"""Reading the hypercall statistics and the trace buffer (as Xen's xenperf
and xentrace read perfc and t_buf): the toolstack's half of _core/perfc.h.

A domain's counters are ``domain.perfc`` (hypervisor/perfc.py); ``snapshot``
turns them into plain data (run --stats, the daemon's stats, top), with
times in nanoseconds at the TSC rate timekeeping measured: fast-path calls
are timed one in XC_SAMPLE+1 and their total extrapolated; every Python
call is timed.  ``TraceBuffer`` is xentrace's t_buf: C writes one record per
hypercall trap, the toolstack drains it between slices; a full buffer loses
records and counts them (``lost``), never blocks the guest or grows.
"""
import struct

from pyxenon._core import ffi, lib
from pyxenon.hypervisor import timekeeping
from pyxenon.public import xen

NR_SLOTS = lib.XC_PERFC_NR + 1     # the last slot: numbers past the table
TRACE_RECORDS = 1 << 18            # 16 MiB: a 10 ms slice of null hypercalls
RECORD = struct.Struct("<5QqIHHII")  # struct xc_trec
RECORD_FIELDS = ("tsc", "nr", "a1", "a2", "a3", "rc", "cycles", "domid", "vcpu_id", "python",
                 "pad")


def tsc_hz():
    """The host TSC rate, measured once per process: the one system time's
    scale comes from (hypervisor/timekeeping.py)."""
    return timekeeping.tsc_hz()


def cycles_to_ns(cycles):
    return int(cycles * 1e9 / tsc_hz())


def hypercall_name(nr):
    return xen.HYPERCALL_NAMES.get(nr, f"hypercall_{nr}") if nr < lib.XC_PERFC_NR \
        else "past_the_table"


def totals(perfc):
    """(hypercalls, events sent): what `xl top` shows per second."""
    if perfc.core == ffi.NULL:
        return 0, 0
    return sum(c.calls for c in perfc.core.calls), perfc.core.events_sent


def calls(perfc):
    """{hypercall name: {calls, c, python, ns, c_ns, python_ns}} for each number called."""
    if perfc.core == ffi.NULL:
        return {}
    return {hypercall_name(nr): call_row(perfc.core.calls[nr])
            for nr in range(NR_SLOTS) if perfc.core.calls[nr].calls}


def snapshot(perfc):
    """Everything counted, as plain data (the daemon sends it as JSON)."""
    rows = calls(perfc)
    return {"hypercalls": sum(c["calls"] for c in rows.values()),
            "c": sum(c["c"] for c in rows.values()),
            "python": sum(c["python"] for c in rows.values()),
            "ns": sum(c["ns"] for c in rows.values()),
            "events_sent": perfc.core.events_sent if perfc.core != ffi.NULL else 0,
            "faults_bounced": sum(perfc.bounced.values()),
            "bounced": {str(v): n for v, n in sorted(perfc.bounced.items())},
            "msr": msr_counts(perfc),
            "calls": rows}


def msr_counts(perfc):
    """The guest kernel's rdmsr and wrmsr, by who answered (_core/msr.c in
    the #GP hook, or hypervisor/emulate.py)."""
    if perfc.core == ffi.NULL:
        return {"rdmsr": 0, "wrmsr": 0, "rdmsr_python": 0, "wrmsr_python": 0}
    c, py = perfc.core.msr, perfc.core.msr_python
    return {"rdmsr": c[0] + py[0], "wrmsr": c[1] + py[1],
            "rdmsr_python": py[0], "wrmsr_python": py[1]}


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
        self.tsc0, self.ns0 = lib.xc_host_tsc(), machine.now()
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
