"""What a run shows of its domains while and after they run: the statistics
table (`run --stats`, `pyxenon stats DOMAIN`), the progress line of a long
`run` on a terminal, and the hook that runs them after each slice.

The figures are the domain's perfc (toolstack/xenperf.py): hypercall traps
by number, split into those C answered and those the Python handlers did,
the time they took (fast-path time sampled, one call in 64), events sent
(EVTCHNOP_send traps that succeeded) and exceptions bounced to the guest.
"""
import time

from . import xenperf

PROGRESS_EVERY = 1.0     # seconds between progress lines
PROGRESS_AFTER = 2.0     # a run shorter than this shows none
CLEAR_LINE = "\r\x1b[K"


def after_each_slice(machine, fn):
    """Call fn() after every scheduler slice of machine (on this instance)."""
    scheduler = machine.scheduler
    inner = scheduler.run_slice

    def run_slice(vcpu):
        try:
            inner(vcpu)
        finally:
            fn()
    scheduler.run_slice = run_slice


def stats_lines(name, domid, snapshot):
    """The table `run --stats` and `pyxenon stats` print for one domain."""
    s = snapshot
    lines = [f"domain {name} (d{domid}): {s['hypercalls']} hypercalls ({s['c']} in C, "
             f"{s['python']} in Python), {s['ns'] / 1e6:.3f} ms in the hypervisor; "
             f"{s['events_sent']} events sent; {s['faults_bounced']} faults bounced"
             + bounced_text(s["bounced"]) + msr_text(s.get("msr")),
             f"  {'hypercall':<20} {'calls':>10} {'C':>10} {'Python':>10} "
             f"{'time(ms)':>10} {'ns/call':>9}"]
    for call, row in sorted(s["calls"].items(), key=lambda kv: -kv[1]["ns"]):
        lines.append(f"  {call:<20} {row['calls']:>10} {row['c']:>10} {row['python']:>10} "
                     f"{row['ns'] / 1e6:>10.3f} {row['ns'] // max(row['calls'], 1):>9}")
    return lines


def msr_text(msr):
    if not msr or not msr["rdmsr"] + msr["wrmsr"]:
        return ""
    return (f"; {msr['rdmsr']} rdmsr, {msr['wrmsr']} wrmsr "
            f"({msr['rdmsr_python']} and {msr['wrmsr_python']} in Python)")


def bounced_text(bounced):
    return f" (vector: count {bounced})" if bounced else ""


class Progress:
    """One line on stderr, rewritten each second once a run is past a few
    seconds: elapsed time and each domain's hypercalls per second.  Only on
    a terminal: `make_progress` returns None otherwise."""

    def __init__(self, machine, stream, clock=time.monotonic):
        self.machine = machine
        self.stream = stream
        self.clock = clock
        self.start = self.last = clock()
        self.counts = {}          # domid -> hypercalls at the last line
        self.shown = False

    def tick(self):
        now = self.clock()
        if now - self.last < PROGRESS_EVERY or now - self.start < PROGRESS_AFTER:
            return
        self.stream.write(CLEAR_LINE + self.text(now - self.last, now - self.start))
        self.stream.flush()
        self.last, self.shown = now, True

    def text(self, interval, elapsed):
        parts = []
        for domid, domain in sorted(self.machine.domains.items()):
            calls, _events = xenperf.totals(domain.perfc)
            rate = (calls - self.counts.get(domid, 0)) / interval if interval > 0 else 0
            self.counts[domid] = calls
            parts.append(f"{domain.name} {rate:,.0f} hypercalls/s")
        return f"pyxenon: {elapsed:7.1f} s  " + ("; ".join(parts) or "no domains")

    def clear(self, *_console_args):
        """Before console output and at the end: the line goes."""
        if self.shown:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()
            self.shown = False


def make_progress(machine, stream):
    isatty = getattr(stream, "isatty", None)
    return Progress(machine, stream) if isatty is not None and isatty() else None


class RunWatch:
    """`run`'s observers: the trace file (--trace-file), the progress line
    (stderr a terminal), and the statistics printed at the end (--stats)."""

    def __init__(self, machine, stream, trace_file=None, stats=False):
        from .xentrace import TraceFile

        self.stream = stream
        self.stats = stats
        self.trace = TraceFile(machine, trace_file) if trace_file else None
        self.progress = make_progress(machine, stream)
        if self.progress is not None:
            machine.console_listeners.insert(0, self.progress.clear)
        if self.trace is not None or self.progress is not None:
            after_each_slice(machine, self.after_slice)

    def after_slice(self):
        if self.trace is not None:
            self.trace.drain()
        if self.progress is not None:
            self.progress.tick()

    def finish(self, domains):
        """The end of the run: the line goes, the trace is closed, the stats shown."""
        if self.progress is not None:
            self.progress.clear()
        if self.trace is not None:
            lost = self.trace.close()
            if lost:
                self.say(f"pyxenon: the trace lost {lost} records (the buffer was full "
                         "between two slices, or the file reached its limit)")
        if self.stats:
            for domain in domains:
                for line in stats_lines(domain.name, domain.domid,
                                       xenperf.snapshot(domain.perfc)):
                    self.say(line)

    def say(self, line):
        self.stream.write(line + "\n")
        self.stream.flush()
