"""Round-robin scheduling of vcpus on the machine's one engine.

A vcpu runs until its slice ends, it yields, blocks or polls, or it faults.
In the default mode a slice is wall-clock time (Unicorn's timeout) and
system time is the host's TSC scaled; in deterministic mode a slice is a
count of translated blocks, system time is virtual and the TSC emulated,
so a run depends only on what the guests do.
"""
import collections
import threading
import time

from pyxenon._core import ffi, lib

from . import timekeeping, traps
from .domain import RUNNING
from .vcpu import vcpu_by_handle

SHUTDOWN_watchdog = 4
VIRQ_TIMER = 0

STOP_HYPERCALL = 1
STOP_EXCEPTION = 2
STOP_DEBUG = 3
DET_SLICE_BLOCKS = 40_000      # translated blocks per slice in deterministic mode (~200,000 instructions)
DET_NS_PER_SLICE = 1_000_000   # virtual time a deterministic slice advances
TIME_MAX = (1 << 63) - 1       # Xen's system time is a signed 64-bit count of ns
CHAIN_NS = 1_000_000           # how long C may switch between vcpus before Python looks
RIP_RESUMES = 8                # runs one slice may take, each ended by an iret's rip


class Completions:
    """Work the host's backends finished off the engine's thread (a disk
    read, a write, a flush), run on it between slices: only this thread
    touches guest memory and rings.  A backend says start() before handing
    work to its thread, which post()s the function to run when done.  In
    deterministic mode (synchronous) backends do their I/O inline instead,
    so a run depends only on what the guests do."""

    def __init__(self, synchronous=False):
        self.synchronous = synchronous
        self.done = collections.deque()
        self.in_flight = 0
        self.cond = threading.Condition()

    def start(self):
        with self.cond:
            self.in_flight += 1

    def post(self, work):
        with self.cond:
            self.done.append(work)
            self.in_flight -= 1
            self.cond.notify()

    def run(self):
        while self.done:
            self.done.popleft()()

    def wait(self, seconds):
        """Sleep up to seconds (None: while work is in flight), less if
        work completes; False if there was nothing to wait for."""
        with self.cond:
            if self.done:
                return True
            if seconds is None and not self.in_flight:
                return False
            self.cond.wait(seconds)
            return True


class Scheduler:
    def __init__(self, machine, slice_ms=10, deterministic=False):
        self.machine = machine
        self.slice_us = int(slice_ms * 1000)
        self.deterministic = deterministic
        self.virtual_ns = 0
        # C chains slices without Python only when nothing must look between them
        machine.core.chain_ns = 0 if deterministic or machine.check_state else CHAIN_NS
        if deterministic:
            lib.xc_set_vtsc(machine.core)      # an emulated TSC, virtual time
        else:
            lib.xc_set_tsc_hz(machine.core, timekeeping.tsc_hz())
        self._handles = ffi.new("uint32_t[]", 64)

    @property
    def slices(self):
        return self.machine.core.slices

    def now(self):
        if self.deterministic:
            return self.virtual_ns
        return lib.xc_system_time(self.machine.core)

    def ready(self):
        """The vcpus that can run, in creation order (the C vcpus know)."""
        handles = self._handles
        n = lib.xc_ready(self.machine.core, handles, len(handles))
        if n == len(handles):       # maybe more: grow and ask again
            self._handles = ffi.new("uint32_t[]", 2 * n)
            return self.ready()
        return [vcpu_by_handle(h) for h in handles[0:n]]

    def due(self, now):
        """The vcpus whose timer or block deadline is due, in creation order
        (the deadline heap knows: no other vcpu is looked at)."""
        handles = self._handles
        n = lib.xc_due_list(self.machine.core, now, handles, len(handles))
        if n > len(handles):
            self._handles = ffi.new("uint32_t[]", 2 * n)
            return self.due(now)
        return [vcpu_by_handle(h) for h in handles[0:n]]

    def fire_timers(self, now, due=None):
        """An expired timer raises VIRQ_TIMER (which may wake the vcpu)."""
        for vcpu in self.due(now) if due is None else due:
            if vcpu.timer_at is not None and vcpu.timer_at <= now:
                vcpu.timer_at = now + vcpu.timer_period if vcpu.timer_period else None
                vcpu.domain.events.raise_virq(VIRQ_TIMER, vcpu.vcpu_id)

    def run(self, timeout=None):
        """Run until nothing can run: returns "idle" (no live domain),
        "blocked" (live domains wait on nothing that can come) or "timeout"."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            self.machine.completions.run()
            self.wake_expired()
            if not self.round() and not self.wait_for_timer(end) \
                    and not self.wait_for_backends(end):
                return "blocked" if self.machine.domains else "idle"
            if end is not None and time.monotonic() >= end:
                return "timeout"

    def round(self):
        """One slice for each vcpu that can run; False if none could."""
        ready = self.ready()
        for vcpu in ready:
            if vcpu.domain.state == RUNNING and vcpu.runnable:   # (a dead one is freed)
                self.run_slice(vcpu)
        return bool(ready)

    def run_slice(self, vcpu):
        """A slice for vcpu.  An iret's new rip needs the engine stopped
        (vcpu.py set_regs); the vcpu then goes on in the same slice, up to
        RIP_RESUMES times: ended there, a vcpu whose timer interrupt comes
        round by its next slice -- a round of several busy vcpus is longer
        than Linux's tick -- would only ever run its handler (Xen returns
        from the iret hypercall to the guest at once)."""
        started = time.monotonic()
        for _ in range(RIP_RESUMES):    # deterministic mode: by count alone
            vcpu, resume = self.run_once(vcpu)
            if not resume or (not self.deterministic and
                              time.monotonic() - started >= self.slice_us / 1e6):
                return

    def run_once(self, vcpu):
        """(the vcpu that ran last, whether it stopped only for a rip to apply)."""
        machine, start = self.machine, self.now()
        upcall_due = lib.xc_enter(machine.core, vcpu.core, start)   # switched
        if vcpu.nmi_pending or upcall_due:
            traps.test_all_events(vcpu)
            if not vcpu.runnable or vcpu.domain.state != RUNNING:
                return vcpu, False
        machine.in_engine = True
        if self.deterministic:
            err = lib.xc_run(machine.core, 0, DET_SLICE_BLOCKS)
            self.virtual_ns = min(self.virtual_ns + DET_NS_PER_SLICE, TIME_MAX)
            machine.core.slices += 1
            vcpu.runstate[0] += self.now() - start
        else:   # C may go on to other vcpus while each slice ends in a fast path
            err = lib.xc_run_chain(machine.core, self.slice_us)
            vcpu = vcpu_by_handle(machine.core.current.handle)
        machine.in_engine = False
        moved = vcpu.apply_pending_rip()
        stop = vcpu.core.stop
        self.after_run(vcpu, err, stop)
        return vcpu, moved and not err and stop == STOP_HYPERCALL and may_go_on(vcpu)

    def after_run(self, vcpu, err, stop):
        machine = self.machine
        if stop == STOP_EXCEPTION:
            traps.on_exception(vcpu)
        elif err:
            traps.on_engine_error(vcpu, err)
        elif stop == STOP_DEBUG:
            on_debug_stop(vcpu)
        if machine.shutdown_queue or machine.check_state:
            machine.after_slice()     # with the checker on: after every slice, as audit.py says

    def wake_expired(self):
        """Fire timers, end timed-out blocks and polls, act on watchdogs."""
        now = self.now()
        armed = self.machine.watchdogs_armed()
        if not lib.xc_due(self.machine.core, now) and not armed:
            return
        due = self.due(now)
        self.fire_timers(now, due)
        if armed:
            self.fire_watchdogs(now)
        for vcpu in due:
            wake_at = vcpu.wake_at
            if vcpu.domain.state == RUNNING and wake_at is not None and wake_at <= now:
                vcpu.wake()

    def fire_watchdogs(self, now):
        for domain in list(self.machine.domains.values()):
            if domain.state == RUNNING and domain.watchdogs and min(domain.watchdogs.values()) <= now:
                domain.watchdogs.clear()
                domain.shutdown(SHUTDOWN_watchdog)

    def wait_for_timer(self, end):
        """Sleep (or jump virtual time) to the next timer; False if none."""
        wake = lib.xc_next_wake(self.machine.core)   # the earliest deadline of a running domain
        if not wake:
            return False
        if wake > TIME_MAX:
            return False          # a deadline past the end of system time never comes
        if self.deterministic:
            self.virtual_ns = max(self.virtual_ns, wake)   # the guest named it; time jumps there
            return True
        delay = (wake - self.now()) / 1e9
        if end is not None:
            delay = min(delay, end - time.monotonic())
        if delay > 0:
            self.machine.completions.wait(delay)   # a backend's completion wakes us early
        return True

    def wait_for_backends(self, end):
        """Nothing runs and no timer is set: wait for backend I/O in flight."""
        if not self.machine.completions.in_flight and not self.machine.completions.done:
            return False
        if end is None:
            return self.machine.completions.wait(None)
        left = end - time.monotonic()
        return left > 0 and self.machine.completions.wait(left)

def may_go_on(vcpu):
    """Still runnable, up, and its domain running and not held by a debugger."""
    domain = vcpu.domain
    return vcpu.runnable and vcpu.up and domain.state == RUNNING and not domain.debug_paused


def on_debug_stop(vcpu):
    """A debugger's hook stopped vcpu (hypervisor/debugger.py decides)."""
    debugger = vcpu.domain.debugger
    if debugger is None:
        vcpu.core.stop = 0
    else:
        debugger.on_stop(vcpu)
