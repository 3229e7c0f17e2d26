"""The machine: one engine, machine memory, the frame allocator, the domains.

A host has one Machine.  Every domain's vcpus run on the machine's single
Unicorn engine, one at a time, as Xen's domains share one physical CPU:
switching domains is a register-context switch plus a TLB flush in C.
"""
import array
import collections
import itertools
import os

from pyxenon._core import ffi, lib

from pyxenon.public import errno

from . import audit as checker, grants
from .domain import DEAD, Domain
from .errors import HypercallError
from .mm import FrameTable
from .traps import XEN_VERSION
from .msm import Msm
from .scheduler import Completions, Scheduler

PAGE = 4096
HV_FRAMES = 256  # the low 1 MiB: the hypervisor's frames and, as on Xen, DOMID_IO's
AUDIT_KEPT = 10_000    # decisions kept in memory when no audit sink is given
INVALID_M2P = 0xFFFFFFFFFFFFFFFF
DOMID_SELF = 0x7FF0
EXTRA_FRAMES = 1 + grants.MAX_FRAMES + grants.MAX_STATUS_FRAMES   # shared_info, grant table, v2 status


class Machine:
    """``memory_mib`` sizes the machine frame space (reserved, not committed:
    host memory is used only as domains touch their pages).  ``perfc``: the
    domains made keep hypercall statistics (hypervisor/perfc.py)."""

    def __init__(self, memory_mib=8192, slice_ms=10, deterministic=False, policy=None,
                 audit=None, fast_paths=True, perfc=True):
        self.nr_frames = memory_mib * 256
        self.core = lib.xc_machine_new(self.nr_frames, HV_FRAMES)
        if self.core == ffi.NULL:
            raise MemoryError("cannot create the machine (out of memory or Unicorn failed)")
        self.mem = memoryview(ffi.buffer(self.core.mem, self.nr_frames * PAGE))
        self.m2p = self.core.m2p
        self.in_engine = False                  # guest code (or a hook) is running
        self.frame_table = FrameTable(self)     # the page-type rules over core.frames
        self.core.fast_paths = int(fast_paths)   # C answers what _core/fast.c knows
        self.perfc = perfc                       # domains count their hypercalls (perfc.py)
        self.trace_buffer = None                 # xenperf.TraceBuffer while one is attached
        self.core.xen_version = XEN_VERSION[0] << 16 | XEN_VERSION[1]
        self.free_ranges = [(HV_FRAMES, self.nr_frames - HV_FRAMES)]
        self.domains = {}
        self.backend_grants = grants.BackendTable()   # dom0's backends' ring mappings
        self.completions = Completions(synchronous=deterministic)
        self.next_domid = 1
        self.scheduler = Scheduler(self, slice_ms=slice_ms, deterministic=deterministic)
        # MSM decisions, unless an audit sink is given: the newest AUDIT_KEPT
        # only, so a guest repeating a checked operation cannot grow the host.
        self.audit_log = collections.deque(maxlen=AUDIT_KEPT)
        self.msm = Msm(policy, audit if audit is not None else self.audit_log.append)
        self.console_listeners = []   # f(domain, bytes, source)
        self.shutdown_listeners = []  # f(domain), called outside the engine
        self.shutdown_queue = []
        self.destroy_listeners = []   # f(domain), before its memory goes
        # Debug mode: the whole-state checker after every slice (hypervisor/audit.py).
        self.check_state = os.environ.get("PYXENON_CHECK_STATE") == "1"
        if self.check_state:
            checker.shadow_tlb(self)

    def close(self):
        for domain in list(self.domains.values()):
            self.destroy_domain(domain)
        if self.core != ffi.NULL:
            self.mem.release()
            lib.xc_machine_free(self.core)
            self.core = ffi.NULL

    def now(self):
        """Xen system time: nanoseconds since the machine booted."""
        return self.scheduler.now()

    # -- frames -------------------------------------------------------------

    def _alloc_frames(self, count):
        for i, (first, size) in enumerate(self.free_ranges):
            if size >= count:
                self.free_ranges[i] = (first + count, size - count)
                return first
        raise MemoryError(f"machine memory exhausted ({count} frames wanted)")

    def _free_frames(self, first, count):
        self.free_ranges.append((first, count))
        self.free_ranges.sort()
        merged = []
        for start, size in self.free_ranges:
            if merged and merged[-1][0] + merged[-1][1] == start:
                merged[-1] = (merged[-1][0], merged[-1][1] + size)
            elif size:
                merged.append((start, size))
        self.free_ranges = merged

    # -- domains ------------------------------------------------------------

    def create_domain(self, name, nr_pages, label=None):
        """A new domain: nr_pages of RAM, then its shared_info frame and its
        grant-table frames (Xen's pages, owned by the domain)."""
        total = nr_pages + EXTRA_FRAMES
        first = self._alloc_frames(total)
        domid = self.next_domid
        if lib.xc_frames_assign(self.core, first, total, domid) < 0:
            self._free_frames(first, total)
            raise MemoryError("cannot map the domain's memory")
        self.next_domid += 1
        # the m2p of RAM is 0..nr_pages-1; Xen's own frames map to no pfn
        ffi.buffer(self.m2p + first, total * 8)[:] = array.array(
            "Q", itertools.chain(range(nr_pages), itertools.repeat(INVALID_M2P, EXTRA_FRAMES)))
        domain = Domain(self, domid, name, first, nr_pages, label)
        self.domains[domid] = domain
        return domain

    def find_domain(self, domid, caller):
        """The domain a guest names (DOMID_SELF is itself), or -ESRCH."""
        if domid == DOMID_SELF:
            return caller
        domain = self.domains.get(domid)
        if domain is None or domain.state == DEAD:
            raise HypercallError(errno.ESRCH)
        return domain

    def destroy_domain(self, domain):
        if domain.state == DEAD:
            return
        for listener in self.destroy_listeners:
            listener(domain)
        grants.teardown(domain)
        domain.events.close_all()
        domain.state = DEAD
        for vcpu in domain.vcpus:
            vcpu.free()
        domain.shared_info = None
        lib.xc_frames_release(self.core, domain.first_mfn, domain.nr_pages + EXTRA_FRAMES)
        self._free_frames(domain.first_mfn, domain.nr_pages + EXTRA_FRAMES)
        del self.domains[domain.domid]

    def watchdogs_armed(self):
        return any(domain.watchdogs for domain in self.domains.values())

    # -- notifications to the toolstack ---------------------------------------

    def on_console(self, domain, data, source):
        for listener in self.console_listeners:
            listener(domain, data, source)

    def after_slice(self):
        """Tell the toolstack about shutdowns, now that no guest code runs."""
        while self.shutdown_queue:
            domain = self.shutdown_queue.pop(0)
            for listener in self.shutdown_listeners:
                listener(domain)
        if self.check_state:
            checker.check(self)   # raises audit.Violation, naming what broke

    def run(self, timeout=None):
        """Run every domain until none can run (or timeout seconds pass)."""
        return self.scheduler.run(timeout)
