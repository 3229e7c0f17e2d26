"""Hostile-input campaigns: random hypercalls, and malformed host inputs.

    python -m pyxenon.toolstack.fuzz --hypercalls N --seed S [--parsers M] [--save DIR]

prints a short summary and exits 1 if anything was found (0 otherwise, 2 for
a bad command line).  Everything is deterministic from the seed.

The hypercall campaign (host-driven)
    A Host with three domains -- labels ping, pong and intruder under a small
    policy (ping and pong may use every path to each other, intruder is named
    by no rule) -- gets random hypercalls through the trap path's own entry,
    ``xc_hypercall`` (what the C syscall hook calls: the C fast paths, then
    ``Domain.dispatch(vcpu, nr, a1..a5)``).  Numbers come from Xen's table plus unknown ones, sub-ops
    lean toward the valid ones, arguments are edge values (0, 1, -1, 2**63,
    page boundaries, the start-of-day region, its page tables, Xen's range,
    non-canonical addresses, own, foreign, Xen's and free frames...), and
    argument structures are written into guest memory first (through the
    guest's page tables, as the guest would write them).  Short recipes
    (grant a frame and map it, join an event channel, make a new L1) reach
    states single random calls rarely do; every few hundred calls the guests
    run a few scheduler slices, so the engine path is exercised too.

    After every call: the result is an int64 that is a valid result or
    -errno (pyxenon.public.errno); no domain crashed with "hypervisor error"
    (dispatch's net for handler bugs); nothing raised in the C-to-Python
    callback; nothing took longer than CALL_LIMIT seconds; and the
    invariants hold (see ``Invariants``): page tables are never writable,
    every present entry of a validated table names a frame the domain owns
    (or, in an L1, a live grant mapping the policy allows), type and general
    reference counts equal the references, descriptor and base-pointer
    frames have their types, the frames Xen writes (shared_info, grant
    tables, vcpu_info) are plain pages and no hypercall outside the
    page-table paths changes a table; every grant mapping belongs to a live
    granter, is allowed by the policy, and Xen keeps its in-use bits in the
    granter's entry; interdomain event channels are symmetric and allowed by
    the policy in both directions.

    The campaign runs in epochs of EPOCH_CALLS calls, each on a fresh Host
    with its own Random(seed, epoch), so a finding replays from its epoch.
    The first finding of each kind is shrunk to a short op sequence and, with
    --save DIR, written as DIR/<signature>.json (seed, epoch, call index, the
    call, the ops).  A new invariant violation, a hang or a host exception
    ends the epoch; a known invariant violation destroys the domains it broke
    (their slots get new ones) and the epoch goes on.  docs/FUZZING.md says
    how to run a long campaign and read its result.

The parser campaign
    Malformed inputs for every host-side parser, mutated from good seeds or
    random: the ELF loader and its notes (load_kernel), xl.cfg (parse_cfg,
    load_cfg, overrides), the policy file (parse_policy, load_policy), the
    XenStore wire protocol (requests through a ring page and XenStore's
    on_event, and the host API), and the daemon's socket protocol
    (protocol.decode, daemon.check_request, Connection.pop).  Each input must
    be accepted or refused with the module's error type (UserInputError with
    one line for files; XenStoreError, ValueError, RequestError,
    ToolstackError for the others; nothing at all out of XenStore.on_event)
    within PARSE_LIMIT seconds.
"""
import argparse
import collections
import contextlib
import ctypes
import dataclasses
import json
import os
import pathlib
import random
import re
import signal
import struct
import sys
import tempfile
import time
import traceback

from pyxenon._core import ffi, lib
from pyxenon.errors import UserInputError
from pyxenon.hypervisor import audit, mm
from pyxenon.hypervisor import events as evtchn
from pyxenon.hypervisor.domain import DEAD
from pyxenon.hypervisor.errors import GuestFault
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.hypervisor.machine import EXTRA_FRAMES, HV_FRAMES
from pyxenon.hypercalls import (event_channel_op, grant_table_op, memory_op, mmu, sched_op,
                                traps as traps_op, vcpu_op, xen_version)
from pyxenon.public import (arch_x86, callback, errno, event_channel as ev, grant_table as gt,
                            io, memory, sched, vcpu as vc, version, xen)

ROOT = pathlib.Path(__file__).resolve().parents[2]
GUESTS = ROOT / "guests"
PAGE = 4096
MASK64 = (1 << 64) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

EPOCH_CALLS = 2000        # hypercalls per fresh Host
RUN_EVERY = 250           # about this many calls between engine runs
CALL_LIMIT = 10.0         # seconds one op may take: more is a hang
SLOW_CALL = 1.0           # seconds after which a call is listed as slow
HANG_REPLAY_LIMIT = 3.0   # seconds: replaying a saved hang need not wait CALL_LIMIT
PARSE_LIMIT = 5.0         # seconds one parser input may take
SHRINK_TRIALS = 150       # replays spent shrinking one finding
SHRINK_SECONDS = 120      # and at most this long
SCRATCH_PAGES = 32        # argument buffers: the first pages of the padding
MEMORY_MIB = 256
CONSOLE_KEEP = 1 << 16    # host-side console log trimmed past this
PROGRESS_EVERY = 10000    # calls between --progress lines

POLICY = """\
version = 1

[labels]
ping = "fuzzed domain, may reach pong on every path"
pong = "fuzzed domain, may reach ping on every path"
intruder = "fuzzed domain named by no rule"

[[allow]]
from = "ping"
to = "pong"
paths = ["event_channel", "grant_map", "grant_copy", "xenstore"]
access = "readwrite"
bidirectional = true
"""

# (name and label, cfg, command line): hello prints and powers off, nullcall
# keeps making hypercalls, hostile tries its 21 ways out.
SLOTS = (("ping", "hello.cfg", ""), ("pong", "nullcall.cfg", "loops=1000000000"),
         ("intruder", "hostile.cfg", ""))


# -- findings and counts ---------------------------------------------------------------

@dataclasses.dataclass
class Finding:
    kind: str            # hypervisor-error, bad-result, invariant, host-exception, hang, parser
    signature: str       # what makes two findings the same bug
    detail: str
    seed: int = None
    epoch: int = None
    index: int = None    # global call index (hypercall campaign)
    op: dict = None
    ops: list = None     # a replayable op sequence ending at op
    saved: str = None    # where the record was written


@dataclasses.dataclass
class Stats:
    calls: int = 0
    per_hypercall: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    errors: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    ok: int = 0
    runs: int = 0
    recreated: int = 0
    quarantined: int = 0
    epochs: int = 0
    slow: list = dataclasses.field(default_factory=list)
    elapsed: float = 0.0
    parser_inputs: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    parser_outcomes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    parser_elapsed: float = 0.0
    duplicates: collections.Counter = dataclasses.field(default_factory=collections.Counter)


class Hang(BaseException):
    """An op ran past its time limit (a BaseException, so that no handler's
    ``except Exception`` can swallow it)."""


@contextlib.contextmanager
def time_limit(seconds):
    """Raise Hang in this (main) thread if the block runs past seconds."""
    def expire(signum, frame):
        raise Hang(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def unraisable_to(sink):
    """Exceptions Python could not raise (e.g. in a cffi callback) go to sink."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda info: sink(info)
    try:
        yield
    finally:
        sys.unraisablehook = previous


def hypercall_name(nr):
    return xen.HYPERCALL_NAMES.get(nr, f"hypercall_{nr}" if nr < 64 else "hypercall_unknown")


# Hypercalls whose result is a guest value (a register), not a count or -errno.
VALUE_RESULTS = (xen.HYPERVISOR_iret, xen.HYPERVISOR_get_debugreg)


def result_problem(nr, rc):
    """Why rc is not a result of hypercall nr (None if it is one)."""
    if type(rc) is not int:
        return f"not an int ({type(rc).__name__})"
    if not INT64_MIN <= rc <= INT64_MAX:
        return "does not fit the int64 the C hook returns"
    if nr in VALUE_RESULTS:
        return None
    if rc < 0 and -rc not in errno.ERRNO_NAMES:
        return "negative but not -errno"
    if rc in (-errno.EINTR, -errno.ERESTART):
        return "Xen-internal errno returned to a guest"
    return None


def error_name(rc):
    return errno.ERRNO_NAMES.get(-rc, str(rc))


def last_frame(tb_text):
    """'file.py:function: ExceptionType' from a formatted traceback."""
    frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)', tb_text)
    lines = [line for line in tb_text.strip().splitlines() if line and not line.startswith(" ")]
    exc = lines[-1].split(":")[0] if lines else "?"
    where = f"{os.path.basename(frames[-1][0])}:{frames[-1][1]}" if frames else "?"
    return f"{where}: {exc}"


# -- argument structures -------------------------------------------------------------------

def field_kind(name):
    """What a structure field holds, guessed from its name."""
    name = name.lower()
    for kind, words in FIELD_KINDS:
        if name in words:
            return kind
    return "int"


FIELD_KINDS = (
    ("domid", ("dom", "domid", "remote_dom", "domain_id", "domain")),
    ("va", ("ports", "frame_list", "buffer", "extent_start", "host_addr", "address", "addr",
            "v_start", "v_end", "rip", "rsp", "vcpu_info", "idxs", "gpfns", "errs", "handle_p")),
    ("port", ("port", "remote_port", "local_port")),
    ("vcpu", ("vcpu", "vcpu_id")),
    ("ref", ("ref",)),
    ("handle", ("handle",)),
    ("mfn", ("mfn", "gmfn", "gpfn", "frame", "max_mfn", "dev_bus_addr")),
    ("count", ("nr_frames", "nr_ports", "nr_entries", "max_extents", "nr_extents", "len",
               "count", "size", "nr_exchanged", "max_nr_frames", "extent_order")),
    ("offset", ("offset",)),
    ("time", ("timeout", "timeout_abs_ns", "period", "state_entry_time")),
    ("small", ("type", "virq", "version", "space", "id", "submap_idx", "reason", "cmd",
               "vector", "status", "nr_vcpus", "idx")),
)


def struct_fields(ctype):
    """(name, offset, ctype) of each field of a ctypes structure or union."""
    for entry in ctype._fields_:
        name, ftype = entry[0], entry[1]
        yield name, getattr(ctype, name).offset, ftype


def is_record(ftype):
    return isinstance(ftype, type) and issubclass(ftype, (ctypes.Structure, ctypes.Union))


def field_bytes(maker, dom, name, ftype, given):
    size = ctypes.sizeof(ftype)
    if given and name in given:
        value = given[name]
        if not isinstance(value, int):
            return bytes(value)[:size].ljust(size, b"\0")
    elif is_record(ftype):
        return fill_struct(maker, dom, ftype)
    elif issubclass(ftype, ctypes.Array):
        return maker.random_bytes(size)
    else:
        value = maker.of_kind(field_kind(name), dom)
    return (value & ((1 << 8 * size) - 1)).to_bytes(size, "little")


def fill_struct(maker, dom, ctype, given=None):
    """Bytes of ctype with every field an edge value of its kind (given:
    {field: value} overrides)."""
    raw = bytearray(ctypes.sizeof(ctype))
    fields = list(struct_fields(ctype))
    if issubclass(ctype, ctypes.Union):
        fields = [maker.rng.choice(fields)]
    for name, offset, ftype in fields:
        size = ctypes.sizeof(ftype)
        raw[offset:offset + size] = field_bytes(maker, dom, name, ftype, given)
    return bytes(raw)


# -- the world: a Host, three domains, and ops ---------------------------------------------

def call_op(slot, nr, args, writes=()):
    args = [a & MASK64 for a in (list(args) + [0] * 5)[:5]]
    return {"op": "call", "slot": slot, "nr": nr & MASK64, "args": args,
            "writes": [[va & MASK64, bytes(data).hex()] for va, data in writes]}


def touch_op(slot, va, write):
    """The guest accesses va: what the access leaves in the TLB (the model
    of guest code touching memory; the checker looks at the TLB)."""
    return {"op": "touch", "slot": slot, "va": va & MASK64, "write": bool(write)}


def store_op(slot, mfn, offset, data):
    """A plain store by the guest into a frame of its own (e.g. its grant table)."""
    return {"op": "store", "slot": slot, "mfn": mfn, "offset": offset, "data": bytes(data).hex()}


def run_op(rounds):
    return {"op": "run", "rounds": rounds}


def destroy_op(slot):
    return {"op": "destroy", "slot": slot}


class ResultCheck:
    """Wraps a domain's dispatch: every result, nested ones (multicall) and
    the engine's included, is checked; problems go to sink(text, nr, problem)."""

    def __init__(self, inner, sink):
        self.inner = inner
        self.sink = sink

    def __call__(self, vcpu, nr, a1, a2, a3, a4, a5):
        rc = self.inner(vcpu, nr, a1, a2, a3, a4, a5)
        check_result(self.sink, nr, (a1, a2, a3, a4, a5), rc)
        return rc


def check_result(sink, nr, args, rc):
    problem = result_problem(nr, rc)
    if problem:
        sink(f"{hypercall_name(nr)}({', '.join(f'{a:#x}' for a in args)}) "
             f"returned {rc!r}: {problem}", nr, problem)


class World:
    """One Host (deterministic time) with a domain in each slot, recreated
    when it dies; applies ops and collects what went wrong."""

    def __init__(self, guests=GUESTS):
        from .host import Host
        from .policy import parse_policy

        self.guests = pathlib.Path(guests)
        self.policy = parse_policy(POLICY, "<fuzz policy>")
        self.host = Host(memory_mib=MEMORY_MIB, deterministic=True, policy=self.policy)
        self.machine = self.host.machine
        audit.shadow_tlb(self.machine)      # the checker sees what the TLB may hold
        self.slots = [None] * len(SLOTS)
        self.bad_results = []     # (text, nr, problem) from ResultCheck
        self.unraisable = []      # sys.unraisablehook records
        self.examined = set()     # ids of domains whose crash report was read
        self.tables = {}          # domid -> [(mfn, level)] validated tables, from Invariants
        self.recreated = 0
        self.refresh()

    def close(self):
        self.host.close()

    # -- domains --

    def create(self, slot):
        name, cfg, cmdline = SLOTS[slot]
        overrides = [f'name="{name}"', f'seclabel="{name}"', f'cmdline="{cmdline}"']
        overrides += [f'{key}="destroy"' for key in ("on_poweroff", "on_reboot", "on_crash",
                                                      "on_watchdog")]
        dom = self.host.create(str(self.guests / cfg), overrides=overrides)
        dom.dispatch = ResultCheck(dom.dispatch, self.note_bad_result)
        return dom

    def note_bad_result(self, text, nr, problem):
        self.bad_results.append((text, nr, problem))

    def refresh(self):
        """Let the toolstack act on shutdowns, then fill empty slots."""
        self.machine.after_slice()
        for slot, dom in enumerate(self.slots):
            if dom is None or dom.state == DEAD:
                self.slots[slot] = self.create(slot)
                self.recreated += dom is not None

    def domain(self, slot):
        dom = self.slots[slot]
        return dom if dom is not None and dom.state != DEAD else None

    def live(self):
        return [d for d in self.machine.domains.values() if d.state != DEAD]

    def guest_writable(self, dom, mfn):
        """Could the guest map this frame writable (its own, a plain page)?"""
        if self.owner(mfn) != dom.domid:
            return False
        page = self.machine.core.frames[mfn]
        return page.type_count == 0 or page.type == mm.WRITABLE

    def owner(self, mfn):
        if 0 <= mfn < self.machine.nr_frames:
            return self.machine.core.frames[mfn].owner
        return None

    # -- ops --

    def apply(self, op):
        kind = op["op"]
        if kind == "call":
            return self.call(op)
        if kind == "store":
            return self.store(op)
        if kind == "destroy":
            return self.destroy(op["slot"])
        if kind == "touch":
            return self.touch(op)
        return self.run(op["rounds"])

    def touch(self, op):
        dom = self.domain(op["slot"])
        if dom is None:
            return None
        return lib.xc_tlb_probe(self.machine.core, dom.vcpus[0].core, op["va"], int(op["write"]))

    def destroy(self, slot):
        """The toolstack destroys a domain (the slot gets a new one)."""
        dom = self.domain(slot)
        if dom is not None:
            self.machine.destroy_domain(dom)
        return 0

    def call(self, op):
        dom = self.domain(op["slot"])
        if dom is None:
            return None
        vcpu = dom.vcpus[0]
        for va, data in op["writes"]:
            try:
                copy_to_guest(vcpu, va, bytes.fromhex(data))
            except GuestFault:
                pass      # the guest could not have written there either
        seen = len(self.bad_results)
        rc = vcpu.hypercall(op["nr"], *op["args"])     # the trap's entry: C, then Python
        if len(self.bad_results) == seen:     # else Python's ResultCheck said it already
            check_result(self.note_bad_result, op["nr"], op["args"], rc)
        return rc

    def store(self, op):
        dom = self.domain(op["slot"])
        data = bytes.fromhex(op["data"])
        offset = op["offset"] % PAGE
        if dom is None or not self.guest_writable(dom, op["mfn"]) or offset + len(data) > PAGE:
            return None
        start = op["mfn"] * PAGE + offset
        self.machine.mem[start:start + len(data)] = data
        return 0

    def run(self, rounds):
        """Scheduler.run's loop with a budget of rounds instead of wall-clock
        time, so a run is the same on every machine (time is virtual)."""
        scheduler = self.machine.scheduler
        for _ in range(rounds):
            scheduler.wake_expired()
            if not scheduler.round() and not scheduler.wait_for_timer(None):
                break
        return 0

    # -- after each op --

    def crash_problems(self):
        """Domains newly crashed by a handler bug (dispatch's net)."""
        found = []
        for dom in self.host.domains:
            report = dom.crash_report
            if report and id(dom) not in self.examined:
                self.examined.add(id(dom))
                if "hypervisor error" in report:
                    found.append(report)
        return found

    def trim_logs(self):
        for dom in self.machine.domains.values():
            for log in (dom.console_log, dom.dmesg_log):
                if len(log) > CONSOLE_KEEP:
                    del log[:]


# -- invariants ----------------------------------------------------------------------------

# struct page_info: count, type_count, owner, type, flags, linear, nr_validated, tlbflush_stamp
ROW = struct.Struct("<IIHBBhHI")
ENTRIES = struct.Struct("<512Q")
MFN_BITS = (1 << 40) - 1
# The bits a guest may not set (Xen's base_disallow_mask; pagetype.c's L1_DISALLOW,
# which also refuses the grant bit and allows Global).
UPPER_DISALLOW = 0x198
L1_DISALLOW = 0x98 | mm.GNTTAB
GUEST_SLOTS = {level: [i for i in range(512) if level != mm.L4 or i not in mm.XEN_L4_SLOTS]
               for level in (mm.L1, mm.L2, mm.L3, mm.L4)}
TYPE_NAMES = {mm.NONE: "none", mm.L1: "L1", mm.L2: "L2", mm.L3: "L3", mm.L4: "L4",
              mm.SEG_DESC: "seg_desc", mm.WRITABLE: "writable"}


def type_name(kind):
    return TYPE_NAMES.get(kind, str(kind))


def frame_rows(machine, dom):
    count = dom.nr_pages + EXTRA_FRAMES
    return bytes(ffi.buffer(machine.core.frames + dom.first_mfn, count * ROW.size))


class DomainView:
    """One domain's frames as the checks see them (its RAM, shared_info and
    grant-table frames), and the references the checks find."""

    def __init__(self, world, dom, rows, grant_index):
        self.world = world
        self.dom = dom
        self.grant_index = grant_index
        self.first = dom.first_mfn
        rows = list(ROW.iter_unpack(rows))
        self.end = self.first + len(rows)
        self.count_now, self.type_count_now, owners, raw_kinds, flags, *_ = (
            list(column) for column in zip(*rows))
        # A type with no references is kept, as Xen keeps it; a table left
        # part-way (not validated) is the C checker's (hypervisor/audit.py).
        self.kinds = [kind if n and (f & mm.VALIDATED or not mm.L1 <= kind <= mm.L4) else mm.NONE
                      for kind, n, f in zip(raw_kinds, self.type_count_now, flags)]
        self.pinned = self.where(flags, lambda flag, n: flag & mm.PINNED)
        self.strangers = self.where(owners, lambda owner, n: owner != dom.domid)
        self.unchanged_by = None              # (op name, tables before) if op may not write them
        self.types = collections.Counter()    # mfn -> type references found
        self.counts = collections.Counter()   # mfn -> general references found
        self.problems = []

    def where(self, column, test):
        """Frames whose row passes test(value, type_count)."""
        return [self.first + i for i, (value, n) in enumerate(zip(column, self.type_count_now))
                if test(value, n)]

    def owned(self, mfn):
        return self.first <= mfn < self.end

    def type_of(self, mfn):
        return self.kinds[mfn - self.first] if self.owned(mfn) else mm.NONE

    def tables(self):
        return [(self.first + i, kind) for i, kind in enumerate(self.kinds)
                if mm.L1 <= kind <= mm.L4]

    def problem(self, rule, text):
        self.problems.append((rule, f"d{self.dom.domid} ({self.dom.name}): {text}"))


class Invariants:
    """The state checks run after every op.  A domain's frame-table checks
    are skipped when nothing they read changed since they last ran."""

    def __init__(self, world):
        self.world = world
        self.cache = {}      # domid -> (rows, pages, others, problems, {table: (level, bytes)})
        self.grant_key = ()
        self.grant_flags = {}  # (granter, ref) -> entry flags at the last check
        self.failing = set()  # domids with problems at the last check

    def check(self, op=None):
        """Every problem now; op is what just ran (None: nothing, or unknown).
        The domains with problems are left in self.failing."""
        self.failing = set()
        grant_index = self.grant_index()
        grant_key = tuple(sorted((ma, g.domid, m.granter.domid, m.ref, m.mfn, m.readonly)
                                 for ma, (g, m) in grant_index.items()))
        problems = self.check_events() + self.check_grants(set(self.grant_key), set(grant_key))
        # The C checker (hypervisor/audit.py): counts, types, reachability, the TLB.
        problems += [("audit", text) for text in audit.findings(self.world.machine)]
        writer = table_writer(op) or grant_key != self.grant_key
        cache = {}
        for dom in self.world.live():
            cache[dom.domid] = entry = self.check_domain(dom, grant_index, grant_key,
                                                         None if writer else op)
            problems += self.note(dom, entry[3])
        self.cache, self.grant_key = cache, grant_key
        return problems

    def note(self, dom, problems):
        if problems:
            self.failing.add(dom.domid)
        return problems

    def check_domain(self, dom, grant_index, grant_key, op):
        machine = self.world.machine
        rows = frame_rows(machine, dom)
        others = (vcpu_key(dom), grant_key)
        old = self.cache.get(dom.domid)
        tables = self.world.tables.get(dom.domid, ())
        if old and old[0] == rows and old[2] == others:
            pages = table_pages(machine, tables)
            if pages == old[1]:
                return old
        view = DomainView(self.world, dom, rows, grant_index)
        if old and op is not None:
            view.unchanged_by = (op_name(op), old[4])
        self.world.tables[dom.domid] = tables = view.tables()
        check_frames(view, tables)
        return (rows, table_pages(machine, tables), others, view.problems,
                {mfn: (level, table_bytes(machine, mfn)) for mfn, level in tables})

    def grant_index(self):
        """pte machine address -> (grantee, Mapping), over every live domain."""
        index = {}
        for dom in self.world.live():
            for mapping in dom.grant_table.maptrack.values():
                index[mapping.pte_ma] = (dom, mapping)
        return index

    def check_grants(self, before, now):
        """Every mapping; and the in-use bits Xen owes the granter's entry
        (before, now: the mappings at the last check and now): a new mapping
        sets its bits, and ending one keeps the bits the others still need.
        Any other change to an entry is its granter's own doing."""
        added = {key[0] for key in now - before}
        ended = {(key[2], key[3]) for key in before - now}
        flags = {}
        problems = []
        for dom in self.world.live():
            for handle, m in dom.grant_table.maptrack.items():
                ref = (m.granter.domid, m.ref)
                flags[ref] = m.granter.grant_table.read_entry(m.ref)[0]
                owed = wanted_bits(m) if m.pte_ma in added else \
                    wanted_bits(m) & self.grant_flags.get(ref, 0) if ref in ended else 0
                problems += self.note(dom, grant_problems(self.world, dom, handle, m, owed))
        self.grant_flags = flags
        return problems

    def check_events(self):
        problems = []
        for dom in self.world.live():
            problems += self.note(dom, event_problems(self.world, dom))
        return problems


def table_bytes(machine, mfn):
    return bytes(machine.mem[mfn * PAGE:(mfn + 1) * PAGE])


def table_pages(machine, tables):
    return b"".join(table_bytes(machine, mfn) for mfn, _ in tables)


# The hypercalls that change page tables (grant_table_op's map and unmap too).
TABLE_WRITERS = (xen.HYPERVISOR_mmu_update, xen.HYPERVISOR_update_va_mapping,
                 xen.HYPERVISOR_update_va_mapping_otherdomain, xen.HYPERVISOR_mmuext_op,
                 xen.HYPERVISOR_multicall)
GRANT_TABLE_WRITERS = (gt.GNTTABOP_map_grant_ref, gt.GNTTABOP_unmap_grant_ref)
AD_BITS = mm.ACCESSED | mm.DIRTY


def table_writer(op):
    """May op legitimately change a page table?  (A guest run may: the
    walker sets Accessed/Dirty, the writable-page-table path emulates.)"""
    if op is None or op["op"] != "call":
        return True
    nr, cmd = op["nr"], op["args"][0]
    return nr in TABLE_WRITERS or (nr == xen.HYPERVISOR_grant_table_op and cmd in GRANT_TABLE_WRITERS)


def check_untouched_tables(view, tables):
    """A hypercall outside the page-table paths left every table as it was
    (but for the Accessed/Dirty bits the walker sets on guest accesses)."""
    if view.unchanged_by is None:
        return
    name, before = view.unchanged_by
    mem = view.world.machine.mem
    for mfn, level in tables:
        old = before.get(mfn)
        if old and old[0] == level and old[1] != table_bytes(view.world.machine, mfn):
            now = ENTRIES.unpack_from(mem, mfn * PAGE)
            if [e & ~AD_BITS for e in ENTRIES.unpack(old[1])] != [e & ~AD_BITS for e in now]:
                return view.problem(f"xen-wrote-table:{name}",
                                    f"{name} changed L{level} table {mfn:#x}")


def vcpu_key(dom):
    return tuple((v.core.kernel_cr3, v.core.user_cr3, v.core.cr3, tuple(v.gdt_frames),
                  v.core.vcpu_info_ma) for v in dom.vcpus)


def check_frames(view, tables):
    """Every frame-table rule for one domain."""
    check_ownership(view)
    check_xen_pages(view)
    for vcpu in view.dom.vcpus:
        check_xen_written(view, vcpu)
    check_untouched_tables(view, tables)
    for mfn, level in tables:
        check_table(view, mfn, level)
    if unfinished(view):
        return      # partial (de)validation in flight: the C checker (audit) counts those
    count_holders(view)
    count_grant_holders(view)
    compare_counts(view)


def unfinished(view):
    """A table left part-way, or a put the vcpu has yet to finish."""
    machine = view.world.machine
    return any(v.core.old_guest_table for v in view.dom.vcpus) or any(
        machine.core.frames[mfn].flags & lib.PGF_PARTIAL for mfn in range(view.first, view.end))


def check_ownership(view):
    for mfn in view.strangers[:1]:
        view.problem("mm-owner", f"frame {mfn:#x} of the domain's range is owned by "
                     f"{view.world.owner(mfn)}")


def xen_pages(dom):
    return range(dom.shared_info_mfn, dom.shared_info_mfn + EXTRA_FRAMES)


def check_xen_pages(view):
    """shared_info and the grant-table frames, which Xen writes, stay plain pages."""
    dom = view.dom
    for mfn in xen_pages(dom):
        if view.type_of(mfn) not in (mm.NONE, mm.WRITABLE):
            what = "shared_info" if mfn == dom.shared_info_mfn else "grant-table frame"
            view.problem("xen-page-typed", f"{what} {mfn:#x} has type {type_name(view.type_of(mfn))}")


def check_table(view, table, level):
    """Every present entry of a validated table, and the references it holds."""
    present = present_entries(view, table, level)
    targets = [(e >> 12) & MFN_BITS for _, e in present]
    # An upper table naming itself (linear, read-only) takes no reference (Xen's
    # get_lN_linear_pagetable); an L1 naming itself takes a general one.
    view.counts.update(t for t in targets if level == mm.L1 or t != table)
    typed = TAKES_TYPE[level == mm.L1]
    view.types.update(t for (_, e), t in zip(present, targets) if typed(e, t, table))
    good = l1_ok if level == mm.L1 else upper_ok
    for (i, e), t in zip(present, targets):
        if not good(view, table, level, e, t):
            explain_entry(view, table, level, i, e, t)


# Whether an entry takes a type reference on its target: an L1 entry when
# writable, an upper one always -- except a self-map.
TAKES_TYPE = {True: lambda e, t, table: t != table and e & mm.RW,
              False: lambda e, t, table: t != table}


def present_entries(view, table, level):
    """(index, entry) of the guest's present entries; grant PTEs are
    checked here and left out (their references belong to the grant)."""
    entries = ENTRIES.unpack_from(view.world.machine.mem, table * PAGE)
    slots = GUEST_SLOTS[level]
    present = [(i, entries[i]) for i in slots if entries[i] & mm.PRESENT]
    if level != mm.L1:
        return present
    for i, e in present:
        if e & mm.GNTTAB:
            check_grant_pte(view, table, i, e)
    return [(i, e) for i, e in present if not e & mm.GNTTAB]


def l1_ok(view, table, level, e, t):
    return (not e & L1_DISALLOW and view.first <= t < view.end and
            (not e & mm.RW or (view.kinds[t - view.first] == mm.WRITABLE and t != table)))


def upper_ok(view, table, level, e, t):
    if e & UPPER_DISALLOW or not view.first <= t < view.end:
        return False
    kind = view.kinds[t - view.first]
    if e & mm.RW:
        return kind == level - 1 and t != table
    return t == table or kind in (level - 1, level)


def explain_entry(view, table, level, index, entry, target):
    where = f"L{level} {table:#x}[{index}] = {entry:#x}"
    kind = type_name(view.type_of(target))
    if entry & (L1_DISALLOW if level == mm.L1 else UPPER_DISALLOW):
        view.problem("mm-disallowed-bits", f"{where}: has bits a guest may not set")
    elif not view.owned(target):
        view.problem("mm-foreign-frame", f"{where}: names frame {target:#x}, owned by "
                     f"{view.world.owner(target)}, not through a grant")
    elif level == mm.L1:
        view.problem("mm-writable-table", f"{where}: maps frame {target:#x} (type {kind}) writable")
    elif entry & mm.RW:
        view.problem("mm-writable-upper", f"{where}: writable entry names frame {target:#x} "
                     f"of type {kind}, not a validated L{level - 1}")
    else:
        view.problem("mm-upper-type", f"{where}: names frame {target:#x} of type {kind}")


def check_grant_pte(view, table, index, entry):
    """A grant PTE: it must be the PTE of one of this domain's live mappings."""
    where = f"L1 {table:#x}[{index}] = {entry:#x}"
    grantee, mapping = view.grant_index.get(table * PAGE + index * 8, (None, None))
    if grantee is not view.dom or mapping.mfn != (entry >> 12) & MFN_BITS:
        return view.problem("grant-pte-unknown", f"{where}: a grant PTE with no live mapping")
    if entry & mm.RW and mapping.readonly:
        view.problem("grant-pte-writable", f"{where}: writable PTE for a read-only grant")


def count_holders(view):
    """Pins, base pointers and GDT frames hold a type and a general
    reference; Xen holds a writable type reference on the pages it shares
    with the domain (shared_info, the grant-table frames), as Xen's
    share_xen_page_with_guest does, so they never become tables."""
    for mfn in xen_pages(view.dom):
        view.types[mfn] += 1
    for mfn in view.pinned:
        hold(view, mfn)
    for vcpu in view.dom.vcpus:
        for base in (vcpu.core.kernel_cr3, vcpu.core.user_cr3):
            if base:
                hold(view, base, mm.L4, "base pointer")
        for mfn in vcpu.gdt_frames:
            hold(view, mfn, mm.SEG_DESC, "GDT frame")
        if vcpu.info_registered:     # register_vcpu_info keeps a writable type
            hold(view, vcpu.core.vcpu_info_ma // PAGE, mm.WRITABLE, "vcpu_info frame")
        hold_old_guest_table(view, vcpu)


def hold_old_guest_table(view, vcpu):
    """A put left for the vcpu's next table operation (Xen's old_guest_table,
    e.g. a pin of a pinned table, between the hypercall and its
    continuation) still holds its reference; a partial one holds only the
    general reference."""
    mfn = vcpu.core.old_guest_table
    if not mfn:
        return
    view.counts[mfn] += 1
    view.types[mfn] += 0 if vcpu.core.old_guest_partial else 1


def hold(view, mfn, want=None, what=""):
    view.types[mfn] += 1
    view.counts[mfn] += 1
    if want is not None and view.type_of(mfn) != want:
        view.problem("mm-holder-type", f"{what} {mfn:#x} has type "
                     f"{type_name(view.type_of(mfn))}, not {type_name(want)}")


def check_xen_written(view, vcpu):
    """The frame Xen writes a vcpu's vcpu_info into must be a plain page."""
    mfn = vcpu.core.vcpu_info_ma // PAGE
    if mfn != view.dom.shared_info_mfn and view.type_of(mfn) not in (mm.NONE, mm.WRITABLE):
        view.problem("xen-writes-typed-frame", f"vcpu {vcpu.vcpu_id}'s vcpu_info is in frame "
                     f"{mfn:#x} of type {type_name(view.type_of(mfn))}")


def count_grant_holders(view):
    """A grant mapping of one of our frames holds a general reference on
    it, and a type reference when writable."""
    for grantee, mapping in view.grant_index.values():
        if mapping.granter is view.dom:
            view.counts[mapping.mfn] += 1
            view.types[mapping.mfn] += 0 if mapping.readonly else 1


def expected(view, counter):
    found = [0] * (view.end - view.first)
    for mfn, n in counter.items():
        if view.owned(mfn):
            found[mfn - view.first] = n
    return found


def compare_counts(view):
    types, counts = expected(view, view.types), expected(view, view.counts)
    if types != view.type_count_now:
        i = next(i for i, (a, b) in enumerate(zip(types, view.type_count_now)) if a != b)
        view.problem("mm-type-count", f"frame {view.first + i:#x} (type {type_name(view.kinds[i])}) "
                     f"type_count {view.type_count_now[i]}, references {types[i]}")
    if counts != view.count_now:
        i = next(i for i, (a, b) in enumerate(zip(counts, view.count_now)) if a != b)
        view.problem("mm-count", f"frame {view.first + i:#x} count {view.count_now[i]}, "
                     f"references {counts[i]}")


def grant_problems(world, grantee, handle, m, owed):
    where = f"d{grantee.domid} handle {handle} (d{m.granter.domid} ref {m.ref} frame {m.mfn:#x})"
    if m.granter.state == DEAD or m.granter.domid not in world.machine.domains:
        return [("grant-dead-granter", f"{where}: the granter is gone")]
    if world.owner(m.mfn) != m.granter.domid:
        return [("grant-not-granters-frame", f"{where}: frame owned by {world.owner(m.mfn)}")]
    problems = grant_policy_problems(world, grantee, m, where)
    if owed and not in_use_shown(grantee, m, owed):
        problems.append(("grant-in-use-bits", f"{where}: entry flags lack {owed:#x} "
                         "after Xen mapped or unmapped this reference"))
    return problems


def wanted_bits(m):
    return gt.GTF_reading | (0 if m.readonly else gt.GTF_writing)


def in_use_shown(grantee, m, owed):
    """Does the granter's entry show the owed bits (if it still grants that
    frame to that domain, and no vcpu_info of the granter sits on it)?"""
    flags, domid, frame = m.granter.grant_table.read_entry(m.ref)
    if (flags & gt.GTF_type_mask != gt.GTF_permit_access or domid != grantee.domid
            or frame != m.mfn or under_vcpu_info(m.granter, m.ref)):
        return True
    return flags & owed == owed


def under_vcpu_info(granter, ref):
    """Did the granter put a vcpu_info over this grant entry?  (Then Xen's
    event bits land in the entry: the granter's own doing.)"""
    entry = granter.grant_table.entry_offset(ref)
    return any(v.core.vcpu_info_ma - 8 < entry < v.core.vcpu_info_ma + 64 for v in granter.vcpus)


def grant_policy_problems(world, grantee, m, where):
    if grantee is m.granter:
        return []
    rule_of = world.policy.rule_of
    needs = ("r",) if m.readonly else ("r", "w")
    if all((grantee.label, m.granter.label, "grant_map", a) in rule_of for a in needs):
        return []
    return [("grant-policy", f"{where}: mapped from {grantee.label} to "
             f"{m.granter.label} without a rule")]


def event_problems(world, dom):
    problems = []
    ports = dom.events.ports
    for port, p in enumerate(ports):
        if p.state == evtchn.INTERDOMAIN:
            problems += interdomain_problems(world, dom, port, p)
        elif p.state == evtchn.VIRQ and dom.events.virqs.get((p.virq, p.vcpu)) != port:
            problems.append(("evtchn-virq-map", f"d{dom.domid} port {port}: virq {p.virq} "
                             "not in the virq table"))
    for (virq, vcpu), port in dom.events.virqs.items():
        if not (port < len(ports) and ports[port].state == evtchn.VIRQ):
            problems.append(("evtchn-virq-map", f"d{dom.domid} virq {virq} names port {port}, "
                             "not a virq port"))
    return problems


def interdomain_problems(world, dom, port, p):
    where = f"d{dom.domid} port {port} -> d{p.remote_dom} port {p.remote_port}"
    peer = world.machine.domains.get(p.remote_dom)
    theirs = peer.events.ports[p.remote_port] \
        if peer is not None and p.remote_port < len(peer.events.ports) else None
    if theirs is None or theirs.state != evtchn.INTERDOMAIN or \
            (theirs.remote_dom, theirs.remote_port) != (dom.domid, port):
        return [("evtchn-asymmetric", f"{where}: the other end does not point back")]
    if peer is dom:
        return []
    rule_of = world.policy.rule_of
    pairs = ((dom.label, peer.label), (peer.label, dom.label))
    if all((a, b, "event_channel", "w") in rule_of for a, b in pairs):
        return []
    return [("evtchn-policy", f"{where}: joins {dom.label} and {peer.label} without rules")]


# -- values worth trying -------------------------------------------------------------------

EDGE_INTS = (0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 511, 512, 1023,
             1024, 4095, 4096, 4097, 0x7FFF, 0x7FF0, 0x7FF1, 0x7FF2, 0x7FF4, 0x8000, 0xFFFF,
             0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, (1 << 32) + 1, 1 << 40,
             (1 << 52) - 1, (1 << 63) - 1, 1 << 63, (1 << 63) + 1, MASK64, MASK64 - 1,
             MASK64 - 0xFFF, MASK64 - 7)
HV_VAS = (0xFFFF800000000000, 0xFFFF800000001000, 0xFFFF804000000000, 0xFFFF820000000000,
          0xFFFF820000000000 + 14 * PAGE, 0xFFFF830000000000, 0xFFFF82D040000000,
          0xFFFF82D040002000, 0xFFFF87FFFFFFF000, 0xFFFF880000000000 - 8)
ODD_VAS = (0, 8, 0xFFF, 0x1000, 0x100000000, 0x00007FFFFFFFF000, 0x00007FFFFFFFFFF8,
           0x0000800000000000, 0x8000000000000000, 0xFFFF7FFFFFFFF000, MASK64, MASK64 - 7,
           MASK64 - 0xFFF)
PTE_FLAGS = (0x67, 0x67, 0x65, 0x63, 0x61, 0x27, 0x25, 0x07, 0x05, 0x03, 0x01, 0x00,
             0x67 | 0x80, 0x67 | 0x800, 0x65 | 0x800, 0x67 | 0x08, 0x67 | 0x10, 0x67 | 0x100,
             0x67 | 1 << 63, 0x65 | 1 << 52, 0x67 | 0x200)


class Maker:
    """Draws values and builds ops, from a Random and the world's state."""

    def __init__(self, rng, world):
        self.rng = rng
        self.world = world

    # -- plain values --

    def chance(self, p):
        return self.rng.random() < p

    def random_bytes(self, n):
        return self.rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""

    def integer(self):
        roll = self.rng.random()
        if roll < 0.55:
            return self.rng.choice(EDGE_INTS)
        if roll < 0.8:
            return self.rng.randrange(4097)
        return self.rng.getrandbits(self.rng.choice((16, 32, 64)))

    def count(self):
        if self.chance(0.9):
            return self.rng.choice((0, 1, 1, 1, 2, 2, 3, 4, 8))
        return self.rng.choice((16, 256, 512, 4096, 0x7FFFFFFF, 0x80000001, 0xFFFFFFFF, MASK64))

    def small(self):
        return self.rng.randrange(12) if self.chance(0.85) else self.integer()

    def other(self, dom):
        live = self.world.live()
        return self.rng.choice(live) if live else dom

    # -- addresses --

    def scratch(self, dom, size=64):
        """An argument buffer in the start-of-day padding (free, writable)."""
        base = dom.layout.stack + PAGE
        if self.chance(0.05):
            return base + self.rng.randrange(SCRATCH_PAGES) * PAGE + PAGE - self.rng.randrange(1, 16)
        offset = self.rng.randrange(SCRATCH_PAGES * PAGE - size) & ~7
        return base + offset

    def va(self, dom):
        roll = self.rng.random()
        lay = dom.layout
        if roll < 0.45:
            return self.scratch(dom)
        if roll < 0.6:
            return lay.virt_base + self.rng.randrange((lay.virt_end - lay.virt_base) // PAGE) * PAGE
        if roll < 0.7:
            return lay.pt_base + self.rng.randrange(lay.nr_pt) * PAGE + self.rng.choice((0, 8))
        if roll < 0.78:
            return self.rng.choice((lay.start_info, lay.xenstore, lay.console, lay.stack,
                                    lay.p2m, lay.virt_end - 8, lay.virt_end - 1, lay.virt_end))
        if roll < 0.86:
            return self.rng.choice(HV_VAS)
        if roll < 0.94:
            return self.rng.choice(ODD_VAS)
        return self.rng.getrandbits(64)

    # -- frames --

    def mfn(self, dom):
        roll = self.rng.random()
        if roll < 0.25:
            return self.own_frame(dom)
        if roll < 0.45:
            return self.table_frame(dom)
        if roll < 0.55:
            return self.rng.choice((dom.shared_info_mfn, dom.grant_table.first_mfn,
                                    dom.grant_table.first_mfn + self.rng.randrange(EXTRA_FRAMES - 1)))
        if roll < 0.7:
            other = self.other(dom)
            return self.rng.choice((self.own_frame(other), self.table_frame(other)))
        if roll < 0.8:
            return self.rng.randrange(HV_FRAMES)
        return self.odd_frame()

    def own_frame(self, dom):
        if self.chance(0.5):     # a page of the start-of-day region
            return dom.first_mfn + self.rng.randrange((dom.layout.virt_end - dom.layout.virt_base) // PAGE)
        return dom.first_mfn + self.rng.randrange(dom.nr_pages + EXTRA_FRAMES)

    def table_frame(self, dom):
        tables = self.world.tables.get(dom.domid) or [(dom.first_mfn, 0)]
        return self.rng.choice(tables)[0]

    def odd_frame(self):
        nr = self.world.machine.nr_frames
        return self.rng.choice((0, nr - 1, nr, nr + 1, nr + 512, 1 << 40, (1 << 40) - 1,
                                self.rng.randrange(nr), self.rng.getrandbits(52)))

    def scratch_frame(self, dom):
        """(va, mfn) of one of the upper scratch pages (not argument buffers)."""
        lay = dom.layout
        first = lay.stack + PAGE + SCRATCH_PAGES * PAGE
        va = first + self.rng.randrange((lay.virt_end - first) // PAGE) * PAGE
        return va, dom.first_mfn + lay.pfn(va)

    def pte(self, dom):
        return self.mfn(dom) << 12 | self.rng.choice(PTE_FLAGS) if self.chance(0.9) else self.integer()

    def table_slot(self, dom):
        """Machine address of an entry of one of the domain's tables (or worse)."""
        mfn = self.table_frame(dom) if self.chance(0.7) else self.mfn(dom)
        return mfn << 12 | self.rng.randrange(512) * 8

    # -- domains, ports, grants --

    def domid(self, dom):
        roll = self.rng.random()
        if roll < 0.35:
            return xen.DOMID_SELF
        if roll < 0.75:
            return self.other(dom).domid
        if roll < 0.85:
            return dom.domid
        return self.rng.choice((0, xen.DOMID_IO, xen.DOMID_XEN, xen.DOMID_INVALID, 0xFFFF,
                                self.world.machine.next_domid, self.rng.randrange(1, 40)))

    def port(self, dom):
        if self.chance(0.8):
            target = self.other(dom) if self.chance(0.3) else dom
            return self.rng.randrange(len(target.events.ports) + 2)
        return self.rng.choice((0, 1023, 1024, 4095, 4096, 0xFFFFFFFF, self.integer()))

    def time(self):
        now = self.world.machine.now()
        return self.rng.choice((0, 1, now, now + 1_000_000, now + 10 ** 9, now - 1,
                                self.integer()))

    def of_kind(self, kind, dom):
        return KIND_DRAW[kind](self, dom)

    def struct(self, dom, ctype, /, **given):
        return fill_struct(self, dom, ctype, given)

    def buffer_call(self, dom, slot, nr, head, ctype=None, data=None, tail=()):
        """A call whose argument after head is a buffer holding data (or a
        filled ctype, or random bytes)."""
        if data is None:
            data = self.struct(dom, ctype) if ctype else self.random_bytes(self.rng.randrange(1, 64))
        va = self.scratch(dom, len(data))
        return call_op(slot, nr, list(head) + [va] + list(tail), [(va, data)])


KIND_DRAW = {
    "domid": Maker.domid, "va": Maker.va, "port": Maker.port, "mfn": Maker.mfn,
    "vcpu": lambda m, dom: m.rng.choice((0, 0, 0, 1, 2, 0xFFFF, 0xFFFFFFFF)),
    "ref": lambda m, dom: m.rng.randrange(16) if m.chance(0.8) else m.integer(),
    "handle": lambda m, dom: m.rng.randrange(4) if m.chance(0.8) else m.integer(),
    "count": lambda m, dom: m.count(), "small": lambda m, dom: m.small(),
    "offset": lambda m, dom: m.rng.choice((0, 8, 64, 4032, 4088, 4095, 4096, m.integer())),
    "time": lambda m, dom: m.time(), "int": lambda m, dom: m.integer(),
}


# -- hypercall generators ------------------------------------------------------------------
# Each makes one call op for (maker, dom, slot).

def sub_op(m, ops, spread=4):
    """A sub-operation number: a valid one mostly, else near or far off."""
    if m.chance(0.85):
        return m.rng.choice(sorted(ops))
    return m.rng.choice((max(ops) + 1 + m.rng.randrange(spread), m.integer()))


def gen_set_trap_table(m, dom, slot):
    if m.chance(0.1):
        return call_op(slot, xen.HYPERVISOR_set_trap_table, [m.rng.choice((0, m.va(dom)))])
    entries = b"".join(m.struct(dom, arch_x86.trap_info, vector=m.rng.randrange(256),
                                address=m.va(dom)) for _ in range(m.rng.randrange(1, 6)))
    end = bytes(16) if m.chance(0.7) else b""
    return m.buffer_call(dom, slot, xen.HYPERVISOR_set_trap_table, (), data=entries + end)


def gen_mmu_update(m, dom, slot):
    reqs = []
    for _ in range(m.rng.randrange(1, 5)):
        cmd = m.rng.choice((0, 0, 0, 1, 2, 3))
        reqs.append(struct.pack("<QQ", (m.table_slot(dom) | cmd) & MASK64, m.pte(dom) & MASK64))
    count = len(reqs) if m.chance(0.85) else m.count()
    done = m.scratch(dom) if m.chance(0.5) else m.rng.choice((0, m.va(dom)))
    foreign = xen.DOMID_SELF if m.chance(0.85) else m.domid(dom)
    return m.buffer_call(dom, slot, xen.HYPERVISOR_mmu_update, (), data=b"".join(reqs),
                         tail=(count, done, foreign))


def gen_set_gdt(m, dom, slot):
    frames = b"".join(struct.pack("<Q", m.mfn(dom)) for _ in range(m.rng.randrange(1, 4)))
    entries = m.rng.choice((0, 1, 8, 512, 513, 1024, 7168, 7169, m.integer()))
    return m.buffer_call(dom, slot, xen.HYPERVISOR_set_gdt, (), data=frames, tail=(entries,))


def gen_update_descriptor(m, dom, slot):
    maddr = m.mfn(dom) << 12 | (m.rng.randrange(512) * 8 if m.chance(0.9) else m.rng.randrange(4096))
    desc = m.rng.choice((0, 0x00AFFB000000FFFF, 0x00CFF3000000FFFF, 0x00AF9B000000FFFF,
                         0x0000EC0000080000, m.integer()))
    return call_op(slot, xen.HYPERVISOR_update_descriptor, [maddr, desc])


MEMORY_STRUCTS = {
    memory.XENMEM_current_reservation: memory.xen_memory_domain,
    memory.XENMEM_maximum_reservation: memory.xen_memory_domain,
    memory.XENMEM_machphys_mfn_list: memory.xen_machphys_mfn_list,
    memory.XENMEM_add_to_physmap: memory.xen_add_to_physmap,
    memory.XENMEM_memory_map: memory.xen_memory_map,
    memory.XENMEM_machphys_mapping: memory.xen_machphys_mapping,
    memory.XENMEM_increase_reservation: memory.xen_memory_reservation,
    memory.XENMEM_populate_physmap: memory.xen_memory_reservation,
}


def gen_memory_op(m, dom, slot):
    cmd = sub_op(m, memory_op.OPS)
    if m.chance(0.1):
        cmd |= m.rng.randrange(1, 1 << 10) << 6          # a continuation's start extent
    return m.buffer_call(dom, slot, xen.HYPERVISOR_memory_op, (cmd,),
                         MEMORY_STRUCTS.get(cmd & memory_op.CMD_MASK))


def gen_multicall(m, dom, slot):
    entries = []
    for _ in range(m.rng.randrange(1, 4)):
        op = m.rng.choice(SIMPLE_NRS) if m.chance(0.9) else m.integer()
        args = [m.rng.choice((m.integer(), m.scratch(dom), m.small())) for _ in range(6)]
        entries.append(struct.pack("<QQ6Q", op & MASK64, 0, *[a & MASK64 for a in args]))
    count = len(entries) if m.chance(0.9) else m.count()
    return m.buffer_call(dom, slot, xen.HYPERVISOR_multicall, (), data=b"".join(entries),
                         tail=(count,))


def uvmf(m):
    return m.rng.choice((0, 1, 2, 3, 4, 5, m.integer()))


def gen_update_va_mapping(m, dom, slot):
    va = m.va(dom) if m.chance(0.4) else m.scratch_frame(dom)[0]
    return call_op(slot, xen.HYPERVISOR_update_va_mapping, [va, m.pte(dom), uvmf(m)])


def gen_update_va_mapping_otherdomain(m, dom, slot):
    va = m.va(dom) if m.chance(0.4) else m.scratch_frame(dom)[0]
    return call_op(slot, xen.HYPERVISOR_update_va_mapping_otherdomain,
                   [va, m.pte(dom), uvmf(m), m.domid(dom)])


def gen_set_timer_op(m, dom, slot):
    return call_op(slot, xen.HYPERVISOR_set_timer_op, [m.time()])


def gen_xen_version(m, dom, slot):
    cmd = sub_op(m, xen_version.OPS)
    ctype = version.xen_feature_info if cmd == version.XENVER_get_features else None
    if ctype is None and m.chance(0.5):
        return call_op(slot, xen.HYPERVISOR_xen_version, [cmd, m.va(dom)])
    return m.buffer_call(dom, slot, xen.HYPERVISOR_xen_version, (cmd,), ctype)


def gen_console_io(m, dom, slot):
    cmd = sub_op(m, {xen.CONSOLEIO_write, xen.CONSOLEIO_read})
    count = m.rng.randrange(200) if m.chance(0.95) else m.count()
    return m.buffer_call(dom, slot, xen.HYPERVISOR_console_io, (cmd, count),
                         data=m.random_bytes(m.rng.randrange(1, 200)))


GNTTAB_STRUCTS = {
    gt.GNTTABOP_map_grant_ref: gt.gnttab_map_grant_ref,
    gt.GNTTABOP_unmap_grant_ref: gt.gnttab_unmap_grant_ref,
    gt.GNTTABOP_setup_table: gt.gnttab_setup_table,
    gt.GNTTABOP_dump_table: gt.gnttab_dump_table,
    gt.GNTTABOP_transfer: gt.gnttab_transfer,
    gt.GNTTABOP_copy: gt.gnttab_copy,
    gt.GNTTABOP_query_size: gt.gnttab_query_size,
    gt.GNTTABOP_unmap_and_replace: gt.gnttab_unmap_and_replace,
    gt.GNTTABOP_set_version: gt.gnttab_set_version,
    gt.GNTTABOP_get_status_frames: gt.gnttab_get_status_frames,
    gt.GNTTABOP_get_version: gt.gnttab_get_version,
    gt.GNTTABOP_swap_grant_ref: gt.gnttab_swap_grant_ref,
}
GNTMAP_FLAGS = (gt.GNTMAP_host_map, gt.GNTMAP_host_map | gt.GNTMAP_readonly,
                gt.GNTMAP_host_map | gt.GNTMAP_contains_pte, gt.GNTMAP_device_map, 0)


def grant_struct(m, dom, cmd, ctype):
    if cmd == gt.GNTTABOP_map_grant_ref and m.chance(0.7):
        flags = m.rng.choice(GNTMAP_FLAGS)
        addr = m.table_slot(dom) if flags & gt.GNTMAP_contains_pte else m.va(dom)
        return m.struct(dom, ctype, flags=flags, host_addr=addr)
    if cmd == gt.GNTTABOP_copy and m.chance(0.7):
        return copy_struct(m, dom)
    return m.struct(dom, ctype)


def copy_ptr(m, dom, gref):
    ref_or_frame = m.rng.randrange(16) if gref else m.mfn(dom)
    domid = m.domid(dom) if gref or m.chance(0.2) else xen.DOMID_SELF
    return struct.pack("<QHHxxxx", ref_or_frame, domid, m.rng.choice((0, 8, 2048, 4088, 4095)))


def copy_struct(m, dom):
    """A gnttab_copy: each end a grant reference or a local frame."""
    flags = m.rng.randrange(4)
    length = m.rng.choice((8, 64, 4096, 4097, 0, m.rng.randrange(4097)))
    return (copy_ptr(m, dom, flags & gt.GNTCOPY_source_gref) +
            copy_ptr(m, dom, flags & gt.GNTCOPY_dest_gref) +
            struct.pack("<HHh", length, flags, 0)).ljust(ctypes.sizeof(gt.gnttab_copy), b"\0")


def gen_grant_table_op(m, dom, slot):
    cmd = sub_op(m, grant_table_op.OPS)
    ctype = GNTTAB_STRUCTS.get(cmd)
    n = m.rng.randrange(1, 4)
    data = b"".join(grant_struct(m, dom, cmd, ctype) for _ in range(n)) if ctype else None
    count = n if m.chance(0.9) else m.count()
    return m.buffer_call(dom, slot, xen.HYPERVISOR_grant_table_op, (cmd,), data=data,
                         tail=(count,))


def gen_vm_assist(m, dom, slot):
    return call_op(slot, xen.HYPERVISOR_vm_assist, [m.rng.choice((0, 1, 2, m.integer())),
                                                    m.small()])


def gen_iret(m, dom, slot):
    """iret reads its frame at the vcpu's rsp: write a random one there."""
    rsp = dom.vcpus[0].regs()["rsp"]
    frame = m.struct(dom, arch_x86.iret_context, cs=m.rng.choice((0xE033, 0xE02B, 3, 0)),
                     rflags=m.rng.choice((0x202, 0x2, m.integer())))
    return call_op(slot, xen.HYPERVISOR_iret, [], [(rsp, frame)])


VCPU_STRUCTS = {
    vc.VCPUOP_register_runstate_memory_area: vc.vcpu_register_runstate_memory_area,
    vc.VCPUOP_set_periodic_timer: vc.vcpu_set_periodic_timer,
    vc.VCPUOP_set_singleshot_timer: vc.vcpu_set_singleshot_timer,
    vc.VCPUOP_register_vcpu_info: vc.vcpu_register_vcpu_info,
    vc.VCPUOP_get_physid: vc.vcpu_get_physid,
    vc.VCPUOP_register_vcpu_time_memory_area: vc.vcpu_register_time_memory_area,
    vc.VCPUOP_get_runstate_info: vc.vcpu_runstate_info,
}


def gen_vcpu_op(m, dom, slot):
    cmd = sub_op(m, vcpu_op.OPS)
    vcpu_id = 0 if m.chance(0.9) else m.of_kind("vcpu", dom)
    return m.buffer_call(dom, slot, xen.HYPERVISOR_vcpu_op, (cmd, vcpu_id), VCPU_STRUCTS.get(cmd))


def gen_set_segment_base(m, dom, slot):
    which = m.rng.randrange(4) if m.chance(0.9) else m.integer()
    return call_op(slot, xen.HYPERVISOR_set_segment_base, [which, m.va(dom)])


def mmuext_arg(m, dom, cmd):
    if cmd in (xen.MMUEXT_INVLPG_LOCAL, xen.MMUEXT_INVLPG_ALL, xen.MMUEXT_SET_LDT):
        return m.va(dom)
    return m.mfn(dom)


def gen_mmuext_op(m, dom, slot):
    ops = []
    for _ in range(m.rng.randrange(1, 4)):
        cmd = sub_op(m, mmu.EXT_OPS, spread=6) & 0xFFFFFFFF
        arg2 = m.rng.choice((m.mfn(dom), m.scratch(dom), m.small()))
        ops.append(struct.pack("<IxxxxQQ", cmd, mmuext_arg(m, dom, cmd) & MASK64, arg2 & MASK64))
    count = len(ops) if m.chance(0.9) else m.count()
    done = m.rng.choice((0, m.scratch(dom), m.va(dom)))
    foreign = xen.DOMID_SELF if m.chance(0.85) else m.domid(dom)
    return m.buffer_call(dom, slot, xen.HYPERVISOR_mmuext_op, (), data=b"".join(ops),
                         tail=(count, done, foreign))


SCHED_STRUCTS = {
    sched.SCHEDOP_shutdown: sched.sched_shutdown, sched.SCHEDOP_poll: sched.sched_poll,
    sched.SCHEDOP_remote_shutdown: sched.sched_remote_shutdown,
    sched.SCHEDOP_shutdown_code: sched.sched_shutdown, sched.SCHEDOP_watchdog: sched.sched_watchdog,
    sched.SCHEDOP_pin_override: sched.sched_pin_override,
}


def gen_sched_op(m, dom, slot):
    cmd = sub_op(m, sched_op.OPS)
    if cmd == sched.SCHEDOP_shutdown and m.chance(0.8):
        cmd = sched.SCHEDOP_shutdown_code      # end the domain only now and then
    if cmd == sched.SCHEDOP_poll and m.chance(0.7):
        return poll_call(m, dom, slot, cmd)
    return m.buffer_call(dom, slot, xen.HYPERVISOR_sched_op, (cmd,), SCHED_STRUCTS.get(cmd))


def poll_call(m, dom, slot, cmd):
    ports = struct.pack("<4I", *(m.port(dom) & 0xFFFFFFFF for _ in range(4)))
    ports_va = m.scratch(dom, len(ports))
    poll = m.struct(dom, sched.sched_poll, ports=ports_va, nr_ports=m.rng.randrange(5),
                    timeout=m.time())
    poll_va = m.scratch(dom, len(poll))
    return call_op(slot, xen.HYPERVISOR_sched_op, [cmd, poll_va], [(ports_va, ports), (poll_va, poll)])


def gen_callback_op(m, dom, slot):
    cmd = sub_op(m, traps_op.CALLBACK_OPS)
    ctype = callback.callback_unregister if cmd == callback.CALLBACKOP_unregister \
        else callback.callback_register
    return m.buffer_call(dom, slot, xen.HYPERVISOR_callback_op, (cmd,), ctype)


EVTCHN_STRUCTS = {
    ev.EVTCHNOP_bind_interdomain: ev.evtchn_bind_interdomain,
    ev.EVTCHNOP_bind_virq: ev.evtchn_bind_virq, ev.EVTCHNOP_bind_pirq: ev.evtchn_bind_pirq,
    ev.EVTCHNOP_close: ev.evtchn_close, ev.EVTCHNOP_send: ev.evtchn_send,
    ev.EVTCHNOP_status: ev.evtchn_status, ev.EVTCHNOP_alloc_unbound: ev.evtchn_alloc_unbound,
    ev.EVTCHNOP_bind_ipi: ev.evtchn_bind_ipi, ev.EVTCHNOP_bind_vcpu: ev.evtchn_bind_vcpu,
    ev.EVTCHNOP_unmask: ev.evtchn_unmask, ev.EVTCHNOP_reset: ev.evtchn_reset,
    ev.EVTCHNOP_init_control: ev.evtchn_init_control,
    ev.EVTCHNOP_expand_array: ev.evtchn_expand_array,
    ev.EVTCHNOP_set_priority: ev.evtchn_set_priority,
}


def gen_event_channel_op(m, dom, slot):
    cmd = sub_op(m, event_channel_op.OPS)
    return m.buffer_call(dom, slot, xen.HYPERVISOR_event_channel_op, (cmd,), EVTCHN_STRUCTS.get(cmd))


def gen_simple(nr, *draws):
    """A generator for a call whose arguments are drawn by name."""
    def gen(m, dom, slot):
        return call_op(slot, nr, [m.of_kind(kind, dom) for kind in draws])
    return gen


def gen_unknown(m, dom, slot):
    """A number with no handler (or any number at all)."""
    roll = m.rng.random()
    if roll < 0.5:
        nr = m.rng.choice([n for n in range(64) if n not in GENERATORS])
    elif roll < 0.8:
        nr = m.rng.randrange(64)
    else:
        nr = m.rng.choice((64, 255, 0xFFFFFFFF, MASK64, m.integer()))
    return call_op(slot, nr, [m.integer() for _ in range(5)])


GENERATORS = {      # nr: (weight, generator)
    xen.HYPERVISOR_set_trap_table: (3, gen_set_trap_table),
    xen.HYPERVISOR_mmu_update: (14, gen_mmu_update),
    xen.HYPERVISOR_set_gdt: (3, gen_set_gdt),
    xen.HYPERVISOR_stack_switch: (1, gen_simple(xen.HYPERVISOR_stack_switch, "int", "va")),
    xen.HYPERVISOR_set_callbacks: (1, gen_simple(xen.HYPERVISOR_set_callbacks, "va", "va", "va")),
    xen.HYPERVISOR_fpu_taskswitch: (1, gen_simple(xen.HYPERVISOR_fpu_taskswitch, "small")),
    xen.HYPERVISOR_set_debugreg: (2, gen_simple(xen.HYPERVISOR_set_debugreg, "small", "int")),
    xen.HYPERVISOR_get_debugreg: (2, gen_simple(xen.HYPERVISOR_get_debugreg, "small")),
    xen.HYPERVISOR_update_descriptor: (3, gen_update_descriptor),
    xen.HYPERVISOR_memory_op: (4, gen_memory_op),
    xen.HYPERVISOR_multicall: (3, gen_multicall),
    xen.HYPERVISOR_update_va_mapping: (10, gen_update_va_mapping),
    xen.HYPERVISOR_set_timer_op: (1, gen_set_timer_op),
    xen.HYPERVISOR_xen_version: (2, gen_xen_version),
    xen.HYPERVISOR_console_io: (2, gen_console_io),
    xen.HYPERVISOR_grant_table_op: (10, gen_grant_table_op),
    xen.HYPERVISOR_vm_assist: (1, gen_vm_assist),
    xen.HYPERVISOR_update_va_mapping_otherdomain: (2, gen_update_va_mapping_otherdomain),
    xen.HYPERVISOR_iret: (1, gen_iret),
    xen.HYPERVISOR_vcpu_op: (4, gen_vcpu_op),
    xen.HYPERVISOR_set_segment_base: (1, gen_set_segment_base),
    xen.HYPERVISOR_mmuext_op: (10, gen_mmuext_op),
    xen.HYPERVISOR_sched_op: (3, gen_sched_op),
    xen.HYPERVISOR_callback_op: (2, gen_callback_op),
    xen.HYPERVISOR_event_channel_op: (10, gen_event_channel_op),
}
UNKNOWN_WEIGHT = 3
SIMPLE_NRS = sorted(set(GENERATORS) - {xen.HYPERVISOR_multicall, xen.HYPERVISOR_iret})


# -- recipes: short sequences toward deep states --------------------------------------------
# Each is a generator of ops; it runs between them, so it can look at what
# the previous ones did (as a guest reads its hypercall results).

def recipe_grant_map(m, slot):
    """A granter writes a grant entry; the grantee unmaps a page and maps the grant there."""
    world = m.world
    granter_slot = m.rng.randrange(len(SLOTS))
    granter, grantee = world.domain(granter_slot), world.domain(slot)
    ref = m.rng.randrange(16)
    frame = m.scratch_frame(granter)[1] if m.chance(0.7) else m.mfn(granter)
    flags = gt.GTF_permit_access | (gt.GTF_readonly if m.chance(0.3) else 0)
    entry = struct.pack("<HHI", flags, grantee.domid, frame & 0xFFFFFFFF)
    yield store_op(granter_slot, granter.grant_table.first_mfn, ref * 8, entry)
    va = m.scratch_frame(grantee)[0]
    yield call_op(slot, xen.HYPERVISOR_update_va_mapping, [va, 0, xen.UVMF_INVLPG])
    grantee = world.domain(slot)
    if grantee is None:
        return
    mapflags = gt.GNTMAP_host_map | (gt.GNTMAP_readonly if m.chance(0.4) else 0)
    op = m.struct(grantee, gt.gnttab_map_grant_ref, host_addr=va, flags=mapflags, ref=ref,
                  dom=granter.domid)
    yield m.buffer_call(grantee, slot, xen.HYPERVISOR_grant_table_op,
                        (gt.GNTTABOP_map_grant_ref,), data=op, tail=(1,))


def recipe_grant_map_twice(m, slot):
    """One grant mapped twice, then one mapping ended: the in-use bits Xen
    keeps in the granter's entry must stay while the other one lives."""
    for op in recipe_grant_map(m, slot):
        yield op
    dom = m.world.domain(slot)
    if dom is None or not dom.grant_table.maptrack:
        return
    handle = max(dom.grant_table.maptrack)
    first = dom.grant_table.maptrack[handle]
    va = m.scratch_frame(dom)[0]
    yield call_op(slot, xen.HYPERVISOR_update_va_mapping, [va, 0, xen.UVMF_INVLPG])
    dom = m.world.domain(slot)
    if dom is None:
        return
    mapflags = gt.GNTMAP_host_map | (gt.GNTMAP_readonly if first.readonly else 0)
    op = m.struct(dom, gt.gnttab_map_grant_ref, host_addr=va, flags=mapflags, ref=first.ref,
                  dom=first.granter.domid)
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_grant_table_op, (gt.GNTTABOP_map_grant_ref,),
                        data=op, tail=(1,))
    dom = m.world.domain(slot)
    if dom is not None and handle in dom.grant_table.maptrack:
        op = m.struct(dom, gt.gnttab_unmap_grant_ref, handle=handle, host_addr=0)
        yield m.buffer_call(dom, slot, xen.HYPERVISOR_grant_table_op,
                            (gt.GNTTABOP_unmap_grant_ref,), data=op, tail=(1,))


def recipe_grant_unmap(m, slot):
    dom = m.world.domain(slot)
    if not dom.grant_table.maptrack:
        return
    handle = m.rng.choice(sorted(dom.grant_table.maptrack))
    host_addr = 0 if m.chance(0.7) else m.va(dom)
    op = m.struct(dom, gt.gnttab_unmap_grant_ref, handle=handle, host_addr=host_addr)
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_grant_table_op,
                        (gt.GNTTABOP_unmap_grant_ref,), data=op, tail=(1,))


def recipe_evtchn_connect(m, slot):
    """alloc_unbound in one domain, bind_interdomain from another, then a send."""
    world = m.world
    other_slot = m.rng.randrange(len(SLOTS))
    a, b = world.domain(slot), world.domain(other_slot)
    alloc = m.struct(a, ev.evtchn_alloc_unbound, dom=xen.DOMID_SELF, remote_dom=b.domid)
    op = m.buffer_call(a, slot, xen.HYPERVISOR_event_channel_op, (ev.EVTCHNOP_alloc_unbound,),
                       data=alloc)
    yield op
    port = read_back_u32(world, slot, op["args"][1] + 4)
    b = world.domain(other_slot)
    if port is None or b is None or world.domain(slot) is None:
        return
    bind = m.struct(b, ev.evtchn_bind_interdomain, remote_dom=a.domid, remote_port=port)
    bound = m.buffer_call(b, other_slot, xen.HYPERVISOR_event_channel_op,
                          (ev.EVTCHNOP_bind_interdomain,), data=bind)
    yield bound
    local = read_back_u32(world, other_slot, bound["args"][1] + 8)
    b = world.domain(other_slot)
    if local is not None and b is not None:
        send = struct.pack("<I", local)
        yield m.buffer_call(b, other_slot, xen.HYPERVISOR_event_channel_op,
                            (m.rng.choice((ev.EVTCHNOP_send, ev.EVTCHNOP_close)),), data=send)


def read_back_u32(world, slot, va):
    """A u32 the hypervisor wrote into the guest's buffer (as the guest reads it)."""
    dom = world.domain(slot)
    if dom is None:
        return None
    try:
        return struct.unpack("<I", copy_from_guest(dom.vcpus[0], va, 4))[0]
    except GuestFault:
        return None


def recipe_new_l1(m, slot):
    """Clear a free page, map it read-only, pin it as an L1, hook it into an L2."""
    dom = m.world.domain(slot)
    va, frame = m.scratch_frame(dom)
    ext = struct.pack("<IxxxxQQ", xen.MMUEXT_CLEAR_PAGE, frame, 0)
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmuext_op, (), data=ext,
                        tail=(1, 0, xen.DOMID_SELF))
    yield call_op(slot, xen.HYPERVISOR_update_va_mapping, [va, frame << 12 | 0x65, 2])
    pin = struct.pack("<IxxxxQQ", xen.MMUEXT_PIN_L1_TABLE, frame, 0)
    dom = m.world.domain(slot)
    if dom is None:
        return
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmuext_op, (), data=pin,
                        tail=(1, 0, xen.DOMID_SELF))
    l2s = [t for t, level in m.world.tables.get(dom.domid, ()) if level == mm.L2]
    dom = m.world.domain(slot)
    if l2s and dom is not None:
        req = struct.pack("<QQ", m.rng.choice(l2s) << 12 | m.rng.randrange(512) * 8,
                          frame << 12 | 0x67)
        yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmu_update, (), data=req,
                            tail=(1, 0, xen.DOMID_SELF))


def recipe_self_reference(m, slot):
    """The isolation issue's first breach: a plain page naming itself
    writable, unmapped, then hooked in (or pinned) as a table of any level."""
    dom = m.world.domain(slot)
    va, frame = m.scratch_frame(dom)
    yield store_op(slot, frame, m.rng.randrange(512) * 8, struct.pack("<Q", frame << 12 | 0x67))
    yield call_op(slot, xen.HYPERVISOR_update_va_mapping, [va, 0, m.rng.choice((0, 2))])
    dom = m.world.domain(slot)
    if dom is None:
        return
    level = m.rng.choice((mm.L2, mm.L3, mm.L4))
    parents = [t for t, lv in m.world.tables.get(dom.domid, ()) if lv == level + 1]
    if parents and m.chance(0.6):
        req = struct.pack("<QQ", m.rng.choice(parents) << 12 | m.rng.randrange(256) * 8,
                          frame << 12 | 0x67)
        yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmu_update, (), data=req,
                            tail=(1, 0, xen.DOMID_SELF))
    else:
        pin = struct.pack("<IxxxxQQ", xen.MMUEXT_PIN_L1_TABLE + level - 1, frame, 0)
        yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmuext_op, (), data=pin,
                            tail=(1, 0, xen.DOMID_SELF))


def recipe_stale_retype(m, slot):
    """The second breach: a write leaves the frame writable in the TLB, the
    mapping goes without a flush, the frame becomes a table."""
    dom = m.world.domain(slot)
    va, frame = m.scratch_frame(dom)
    yield call_op(slot, xen.HYPERVISOR_update_va_mapping, [va, frame << 12 | 0x67, 0])
    yield touch_op(slot, va, True)
    yield call_op(slot, xen.HYPERVISOR_update_va_mapping, [va, 0, 0])
    dom = m.world.domain(slot)
    if dom is None:
        return
    cmd = m.rng.choice((xen.MMUEXT_PIN_L1_TABLE, xen.MMUEXT_PIN_L2_TABLE,
                        xen.MMUEXT_PIN_L3_TABLE, xen.MMUEXT_PIN_L4_TABLE))
    pin = struct.pack("<IxxxxQQ", cmd, frame, 0)
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmuext_op, (), data=pin,
                        tail=(1, 0, xen.DOMID_SELF))
    yield touch_op(slot, va, m.chance(0.5))


def recipe_linear_or_unhook(m, slot):
    """An upper entry naming a table of its own level (a linear entry,
    read-only or not), or cleared (a table unhooked without a flush)."""
    dom = m.world.domain(slot)
    tables = [t for t in m.world.tables.get(dom.domid, ()) if t[1] >= mm.L2]
    if not tables:
        return
    table, level = m.rng.choice(tables)
    same = [t for t, lv in m.world.tables.get(dom.domid, ()) if lv == level]
    val = m.rng.choice(same) << 12 | m.rng.choice((0x25, 0x27)) if m.chance(0.7) else 0
    req = struct.pack("<QQ", table << 12 | m.rng.randrange(512) * 8, val)
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmu_update, (), data=req,
                        tail=(1, 0, xen.DOMID_SELF))
    yield touch_op(slot, m.va(dom), m.chance(0.5))


def recipe_long_batch(m, slot):
    """A multicall of grant-table batches, each over the megabytes of free
    padding: how long can one hypercall keep the hypervisor busy?"""
    dom = m.world.domain(slot)
    region = dom.layout.stack + PAGE * (SCRATCH_PAGES + 1)
    cmd = m.rng.choice((gt.GNTTABOP_query_size, gt.GNTTABOP_setup_table, gt.GNTTABOP_copy))
    entry = struct.pack("<QQ6Q", xen.HYPERVISOR_grant_table_op, 0, cmd, region, 0xFFFFFFFF,
                        0, 0, 0)
    yield m.buffer_call(dom, slot, xen.HYPERVISOR_multicall, (), data=entry * 16, tail=(16,))


RECIPES = (recipe_grant_map, recipe_grant_map, recipe_grant_unmap, recipe_evtchn_connect,
           recipe_new_l1) * 2 + (recipe_self_reference, recipe_stale_retype,
                                 recipe_linear_or_unhook, recipe_grant_map_twice)
RECIPE_CHANCE = 0.08          # a step is a recipe
LONG_BATCH_CHANCE = 0.00002   # a step is recipe_long_batch (each costs up to CALL_LIMIT)


class Generator:
    """The campaign's source of ops: mostly single calls, some recipes,
    now and then a run of the guests."""

    def __init__(self, rng, world):
        self.maker = Maker(rng, world)
        self.rng = rng
        nrs = list(GENERATORS) + [None]
        self.nrs = nrs
        self.weights = [GENERATORS[n][0] for n in nrs[:-1]] + [UNKNOWN_WEIGHT]
        self.until_run = rng.randrange(RUN_EVERY)

    def ops(self):
        """Yield ops forever (each is applied before the next is drawn)."""
        while True:
            self.until_run -= 1
            if self.until_run <= 0:
                self.until_run = self.rng.randrange(RUN_EVERY // 2, RUN_EVERY * 3 // 2)
                yield run_op(self.rng.randrange(1, 6))
            slot = self.rng.randrange(len(SLOTS))
            roll = self.rng.random()
            if roll < LONG_BATCH_CHANCE:
                yield from recipe_long_batch(self.maker, slot)
            elif roll < RECIPE_CHANCE:
                yield from self.rng.choice(RECIPES)(self.maker, slot)
            else:
                yield self.one_call(slot)

    def one_call(self, slot):
        dom = self.maker.world.domain(slot)
        nr = self.rng.choices(self.nrs, self.weights)[0]
        generator = gen_unknown if nr is None else GENERATORS[nr][1]
        return generator(self.maker, dom, slot)


# -- a session: one world, ops applied and checked ------------------------------------------

class Session:
    """A World plus its Invariants: perform(op) applies one op and returns
    (result, problems), problems being (kind, signature, detail)."""

    def __init__(self, guests=GUESTS):
        self.world = World(guests)
        self.invariants = Invariants(self.world)
        self.invariants.check()

    def close(self):
        self.world.close()

    def perform(self, op, limit=None):
        world = self.world
        limit = limit or CALL_LIMIT
        del world.bad_results[:], world.unraisable[:]
        try:
            with unraisable_to(world.unraisable.append), time_limit(limit):
                result = world.apply(op)
                world.refresh()
        except Hang as hang:
            return None, [("hang", f"hang:{op_name(op)}", f"{op_name(op)}: {hang}")]
        except Exception:
            text = traceback.format_exc()
            return None, [("host-exception", f"host-exception:{last_frame(text)}", text)]
        problems = self.problems(op)
        world.trim_logs()
        return result, problems

    def quarantine_ops(self):
        """Ops destroying the domains whose checks failed (their slots get
        new ones), so a campaign can go on past a known finding."""
        failing = self.invariants.failing
        return [destroy_op(slot) for slot, dom in enumerate(self.world.slots)
                if dom is not None and dom.domid in failing]

    def problems(self, op):
        world = self.world
        # A Hang raised inside a handler is swallowed by the C-to-Python
        # callback (it cannot unwind through C): it arrives as unraisable.
        found = [("hang", f"hang:{op_name(op)}", f"{op_name(op)}: {info.exc_value}")
                 for info in world.unraisable if info.exc_type is Hang]
        found += [("hypervisor-error", f"hypervisor-error:{last_frame(report)}", report)
                  for report in world.crash_problems()]
        found += [("bad-result", f"bad-result:{hypercall_name(nr)}:{problem}", text)
                  for text, nr, problem in world.bad_results]
        found += [("callback-exception", f"unraisable:{info.exc_type.__name__}:{op_name(op)}",
                   f"{info.err_msg}: {info.exc_type.__name__}: {info.exc_value}")
                  for info in world.unraisable if info.exc_type is not Hang]
        found += [("invariant", f"invariant:{rule}", text)
                  for rule, text in self.invariants.check(op)]
        return found


def op_name(op):
    if op["op"] == "call":
        return hypercall_name(op["nr"])
    return op["op"]


def replay(ops, guests=GUESTS, limit=None):
    """Apply ops to a fresh world; every problem found, as Findings."""
    session = Session(guests)
    found = []
    try:
        for op in ops:
            _, problems = session.perform(op, limit)
            found += [Finding(kind, sig, detail, op=op) for kind, sig, detail in problems]
            if any(kind == "hang" for kind, _, _ in problems):
                break
    finally:
        session.close()
    return found


def reproduces(ops, signature, guests, limit=None):
    return any(f.signature == signature for f in replay(ops, guests, limit))


def shrink(ops, signature, guests, budget=SHRINK_TRIALS, limit=None):
    """A shorter op sequence that still ends in the same finding: the
    shortest suffix that does, then ddmin over everything but its last op."""
    trials = [0]
    deadline = time.monotonic() + SHRINK_SECONDS

    def test(candidate):
        trials[0] += 1
        return (trials[0] <= budget and time.monotonic() < deadline
                and reproduces(candidate, signature, guests, limit))

    n = 1
    while n < len(ops) and not test(ops[-n:]):
        n *= 2
    ops = ops[-n:] if n < len(ops) else ops
    head, last = ops[:-1], ops[-1:]
    chunks = 2
    while len(head) >= 1 and trials[0] < budget and time.monotonic() < deadline:
        size = max(1, len(head) // chunks)
        for start in range(0, len(head), size):
            rest = head[:start] + head[start + size:]
            if test(rest + last):
                head, chunks = rest, max(chunks - 1, 2)
                break
        else:
            if size == 1:
                break
            chunks = min(len(head), chunks * 2)
    return head + last


# -- the hypercall campaign ------------------------------------------------------------------

# Findings after which the world is still consistent: the epoch goes on.
CARRY_ON = ("bad-result", "hypervisor-error", "callback-exception")


class Campaign:
    """N hypercalls from seed, epoch by epoch."""

    def __init__(self, seed, guests=GUESTS, save=None, known=None, shrink_budget=SHRINK_TRIALS,
                 progress=None, stats=None):
        """save: folder for new findings; known: folder of findings not to
        report again (default: save)."""
        self.seed = seed
        self.guests = pathlib.Path(guests)
        self.save = pathlib.Path(save) if save else None
        self.shrink_budget = shrink_budget
        self.progress = progress
        self.stats = stats or Stats()
        self.findings = []
        self.seen = known_signatures(known or self.save)
        self.reported = 0

    def run(self, calls, first_epoch=0):
        start = self.started = time.monotonic()
        epoch = first_epoch
        while self.stats.calls < calls:
            self.run_epoch(epoch, min(EPOCH_CALLS, calls - self.stats.calls))
            epoch += 1
            if self.progress:
                self.progress(self)
        self.stats.elapsed += time.monotonic() - start
        return self.findings

    def run_epoch(self, epoch, calls):
        rng = random.Random(self.seed * 1_000_003 + epoch)
        session = Session(self.guests)
        history = []
        done = 0
        try:
            ops = Generator(rng, session.world).ops()
            while done < calls:
                op = next(ops)
                history.append(op)
                index = epoch * EPOCH_CALLS + done
                done += op["op"] == "call"
                if self.perform(session, op, epoch, index, history):
                    break
        finally:
            self.stats.epochs += 1
            self.stats.recreated += session.world.recreated
            self.stats.calls += done
            session.close()

    def perform(self, session, op, epoch, index, history):
        """Apply one op, count it, record findings; True ends the epoch."""
        began = time.monotonic()
        result, problems = session.perform(op)
        self.count(op, result, time.monotonic() - began)
        if problems and problems[0][1] in self.seen:
            self.stats.duplicates[problems[0][1]] += 1
            if problems[0][0] == "invariant":
                return not self.quarantine(session, history)
        elif problems:      # the first problem is the cause; the rest may follow from it
            self.record(problems[0], epoch, index, op, list(history))
        return any(kind not in CARRY_ON for kind, _, _ in problems)

    def quarantine(self, session, history):
        """A known invariant broke: destroy the domains it broke in and go
        on, if that leaves a world with no problems."""
        ops = session.quarantine_ops()
        problems = []
        for op in ops:
            history.append(op)
            problems += session.perform(op)[1]
        self.stats.quarantined += len(ops)
        return bool(ops) and not problems

    def count(self, op, result, seconds):
        stats = self.stats
        if op["op"] == "run":
            stats.runs += 1
            return
        if op["op"] != "call":
            return
        name = hypercall_name(op["nr"])
        stats.per_hypercall[name] += 1
        if type(result) is int and result < 0 and op["nr"] not in VALUE_RESULTS:
            stats.errors[error_name(result)] += 1
        else:
            stats.ok += 1
        if seconds > SLOW_CALL:
            stats.slow.append((round(seconds, 2), name, op["args"]))

    def record(self, problem, epoch, index, op, history):
        kind, signature, detail = problem
        self.seen.add(signature)
        finding = Finding(kind, signature, detail, self.seed, epoch, index, op)
        if kind == "hang":      # each replay costs its limit: try a few suffixes only
            finding.ops = shrink(history, signature, self.guests, 3, HANG_REPLAY_LIMIT)
        else:
            finding.ops = shrink(history, signature, self.guests, self.shrink_budget)
        if self.save:
            finding.saved = str(save_finding(self.save, finding))
        self.findings.append(finding)


def known_signatures(folder):
    """Signatures of the open findings saved in folder (a fixed one, marked
    "open": false, is no longer known: seeing it again is news)."""
    folder = pathlib.Path(folder) if folder else None
    if not folder or not folder.is_dir():
        return set()
    records = [load_record(path) for path in sorted(folder.glob("*.json"))]
    return {r["finding"]["signature"] for r in records if r.get("open", True)}


def slug(signature):
    return re.sub(r"[^A-Za-z0-9]+", "-", signature).strip("-").lower()[:80]


def save_finding(folder, finding):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug(finding.signature)}.json"
    record = {
        "reason": f"finding: {finding.signature}",
        "open": True,
        "seed": finding.seed, "epoch": finding.epoch, "index": finding.index,
        "finding": {"kind": finding.kind, "signature": finding.signature,
                    "detail": finding.detail},
        "call": finding.op,
        "ops": finding.ops,
    }
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def load_record(path):
    return json.loads(pathlib.Path(path).read_text())


def replay_record(record, guests=GUESTS):
    """The findings a saved record still produces (with its signature)."""
    if "parser" in (record.get("call") or {}):
        return replay_parser_record(record)
    signature = record["finding"]["signature"]
    limit = HANG_REPLAY_LIMIT if record["finding"]["kind"] == "hang" else None
    return [f for f in replay(record["ops"], guests, limit) if f.signature == signature]


# -- the parser campaign ---------------------------------------------------------------------

class ParserFinding(Exception):
    """An input a parser mishandled (raised inside the parser campaign)."""


BYTE_EDGES = (0, 1, 0x7F, 0x80, 0xFE, 0xFF)
WORD_EDGES = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000,
              0xFFFFFFFF, 1 << 32, 1 << 63, MASK64, 0x1000, 0x38, 0x40)
CFG_TOKENS = (b"name", b"kernel", b"memory", b"maxmem", b"vcpus", b"on_crash", b"on_poweroff",
              b"on_reboot", b"on_watchdog", b"type", b"ramdisk", b"cmdline", b"extra", b"root",
              b"seclabel", b"builder", b" = ", b" += ", b"[", b"]", b",", b";", b"#", b'"', b"'",
              b"\\", b"\\x4", b"\\777", b"\\0", b"\n", b"\r", b"0x", b"0", b"-1", b"08",
              b"99999999999999999999999", b'"destroy"', b'"pv"', b'"hvm"', b'"x.elf"', b"\xc3\xa9",
              b"\xff", b"\x00", b"\t")
POLICY_TOKENS = (b"version", b"[labels]", b"[[allow]]", b"[allow]", b"from", b"to", b"paths",
                 b"access", b"bidirectional", b'"event_channel"', b'"grant_map"',
                 b'"grant_copy"', b'"xenstore"', b'"read"', b'"write"', b'"readwrite"', b"true",
                 b"false", b" = ", b"[", b"]", b"{", b"}", b'"""', b"'''", b"\n", b"#", b".",
                 b'"ping"', b'"pong"', b'"dom0"', b"1", b"2", b"inf", b"nan", b"1979-05-27",
                 b"\\u0000", b'"a.b"', b"\xff", b"\x00")
JSON_TOKENS = (b"{", b"}", b"[", b"]", b'"op"', b'"create"', b'"list"', b'"console"', b'"input"',
               b'"domain"', b'"cfg"', b'"overrides"', b'"data"', b'"paused"', b":", b",", b"null",
               b"true", b"false", b"1e999", b"-0", b'"\\ud800"', b"NaN", b"Infinity", b"\n",
               b'"\\u0000"', b"0", b"[[[[[[[[", b"\xff", b"\x00")
JSON_SEEDS = ({"op": "ping"}, {"op": "list"}, {"op": "list", "domain": "hello"},
              {"op": "create", "cfg": "/tmp/x.cfg", "overrides": ['memory=8'], "paused": True,
               "cwd": "/", "console": False},
              {"op": "pause", "domain": "1"}, {"op": "dmesg", "clear": True},
              {"op": "console", "domain": "d"}, {"op": "input", "data": "aGVsbG8="},
              {"op": "info"}, {"op": "stop"}, {"op": "vcpu_list"}, {"op": "shutdown", "domain": "x"})
XS_PATHS = (b"/", b"/local", b"/local/domain/1", b"/local/domain/1/data/x", b"data/x",
            b"@introduceDomain", b"@releaseDomain", b"@other", b"/local/domain/2/name",
            b"//", b"/a/", b"name", b"control/shutdown", b"a" * 2100, b"/" + b"b" * 3100, b"",
            b"/local/domain/0", b"\xff", b"a b", b"device/vif/0/state")
XS_VALUES = (b"", b"1", b"0", b"T", b"F", b"b1", b"r0", b"n1", b"w2", b"b65535", b"r99999",
             b"x" * 5000, b"\x00", b"4294967295", b"4294967296", b"-1", b"007")


def mutate(rng, data, tokens=(), seeds=()):
    """data after 1 to 8 random edits."""
    data = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        rng.choice(MUTATORS)(rng, data, tokens, seeds)
    return bytes(data)


def mut_flip(rng, data, tokens, seeds):
    if data:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)


def mut_byte(rng, data, tokens, seeds):
    if data:
        data[rng.randrange(len(data))] = rng.choice(BYTE_EDGES + (rng.randrange(256),))


def mut_word(rng, data, tokens, seeds):
    size = rng.choice((2, 4, 8))
    if len(data) > size:
        at = rng.randrange(len(data) - size)
        data[at:at + size] = (rng.choice(WORD_EDGES) & ((1 << 8 * size) - 1)).to_bytes(size, "little")


def mut_insert(rng, data, tokens, seeds):
    at = rng.randrange(len(data) + 1)
    piece = rng.choice(tokens) if tokens and rng.random() < 0.7 else \
        rng.getrandbits(8 * 8).to_bytes(8, "little")[:rng.randrange(1, 9)]
    data[at:at] = piece


def mut_delete(rng, data, tokens, seeds):
    if data:
        at = rng.randrange(len(data))
        del data[at:at + rng.choice((1, 2, 4, 16, 256))]


def mut_duplicate(rng, data, tokens, seeds):
    if data:
        at = rng.randrange(len(data))
        piece = data[at:at + rng.choice((1, 8, 64, 512))]
        data[at:at] = piece * rng.choice((1, 2, 16))


def mut_truncate(rng, data, tokens, seeds):
    if data:
        del data[rng.randrange(len(data)):]


def mut_splice(rng, data, tokens, seeds):
    if seeds:
        other = rng.choice(seeds)
        at, cut = rng.randrange(len(data) + 1), rng.randrange(len(other) + 1)
        data[at:] = other[cut:]


MUTATORS = (mut_flip, mut_byte, mut_word, mut_insert, mut_delete, mut_duplicate, mut_truncate,
            mut_splice)

ELF_HEADER_FIELDS = ((16, 2), (18, 2), (24, 8), (32, 8), (40, 8), (52, 2), (54, 2), (56, 2),
                     (58, 2), (60, 2), (62, 2), (4, 1), (5, 1), (6, 1), (7, 1))
PHDR_FIELDS = ((0, 4), (4, 4), (8, 8), (16, 8), (24, 8), (32, 8), (40, 8), (48, 8))


def mutate_elf(rng, blob, seeds):
    """A kernel with edits aimed at its headers and notes, or anywhere."""
    data = bytearray(blob)
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        rng.choice((elf_header_edit, elf_phdr_edit, elf_note_edit, elf_any_edit))(rng, data, seeds)
    return bytes(data)


def set_field(rng, data, at, size):
    if 0 <= at and at + size <= len(data):
        value = rng.choice(WORD_EDGES + (rng.getrandbits(8 * size), len(data), len(data) - 1))
        data[at:at + size] = (value & ((1 << 8 * size) - 1)).to_bytes(size, "little")


def elf_header_edit(rng, data, seeds):
    set_field(rng, data, *rng.choice(ELF_HEADER_FIELDS))


def elf_phdr_edit(rng, data, seeds):
    if len(data) < 64:
        return
    phoff, phnum = struct.unpack_from("<Q", data, 32)[0], struct.unpack_from("<H", data, 56)[0]
    if phnum:
        offset, size = rng.choice(PHDR_FIELDS)
        set_field(rng, data, phoff + rng.randrange(phnum) * 56 + offset, size)


def elf_note_edit(rng, data, seeds):
    """Edit a Xen note: namesz, descsz, type, or its descriptor."""
    spots = [m.start() for m in re.finditer(rb"Xen\0", bytes(data))]
    if spots:
        name = rng.choice(spots)
        at = rng.choice((name - 12, name - 8, name - 4, name + 4, name + 8))
        set_field(rng, data, at, rng.choice((4, 4, 8)))


def elf_any_edit(rng, data, seeds):
    rng.choice(MUTATORS)(rng, data, (), seeds)


def json_seed(rng):
    """A valid request line, now and then nested very deep."""
    line = json.dumps(rng.choice(JSON_SEEDS)).encode()
    if rng.random() < 0.1:
        depth = rng.choice((10, 100, 1000, 5000, 30000))
        line = line[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}"
    return line


# Each feeder runs one parser on one input (a JSON-able dict, so a finding
# can be saved and replayed) and says "accepted" or "refused"; a mishandled
# input raises.

def feed_elf(given, folder):
    from .elfimage import load_kernel

    path = write_file(folder, "kernel.elf", bytes.fromhex(given["data"]))
    return user_errors(lambda: load_kernel(path, max_bytes=16 << 20), path)


def feed_xlcfg(given, folder):
    from .xlcfg import load_cfg, parse_cfg

    data, overrides = bytes.fromhex(given["data"]), given["overrides"]
    if given["via"] == "file":
        path = write_file(folder, "domain.cfg", data)
        return user_errors(lambda: load_cfg(path, overrides), path)
    text = data.decode("utf-8", "replace")
    return user_errors(lambda: parse_cfg(text, "fuzz.cfg", overrides), "fuzz.cfg")


def feed_policy(given, folder):
    from .policy import load_policy, parse_policy

    data = bytes.fromhex(given["data"])
    if given["via"] == "file":
        path = write_file(folder, "policy.toml", data)
        return user_errors(lambda: load_policy(path), path)
    text = data.decode("utf-8", "replace")
    return user_errors(lambda: parse_policy(text, "fuzz.toml"), "fuzz.toml")


def feed_protocol(given, folder):
    """A request line through the daemon's decode and check, and a reply
    line through the client's framing."""
    from . import daemon, protocol

    line = bytes.fromhex(given["line"])
    conn = protocol.Connection(None)
    try:
        conn.feed(line + b"\n")
        conn.pop()
    except protocol.ToolstackError:
        pass
    try:
        daemon.check_request(protocol.decode(line))
    except (ValueError, daemon.RequestError):
        return "refused"
    return "accepted"


def feed_xenstore(given, folder):
    target = XenStoreTarget()
    for round_ in given["rounds"]:
        target.ring_round(round_)
    outcomes = [target.host_call(*call) for call in given["host"]]
    return "refused" if "refused" in outcomes else "served"


FEEDERS = {"elf": feed_elf, "xlcfg": feed_xlcfg, "policy": feed_policy,
           "protocol": feed_protocol, "xenstore": feed_xenstore}


def write_file(folder, name, data):
    path = pathlib.Path(folder) / name
    path.write_bytes(data)
    return path


def user_errors(call, path):
    """Run call(): accepted, or refused with one line naming path."""
    try:
        call()
    except UserInputError as err:
        if "\n" in str(err) or not str(err).startswith((str(path), "command line")):
            raise ParserFinding(f"UserInputError not one line naming the file: {err!r}") from None
        return "refused"
    return "accepted"


def check_input(name, given, folder):
    """(outcome, problem): problem is (what, detail) when the parser
    mishandled the input, else None."""
    try:
        with time_limit(PARSE_LIMIT):
            return FEEDERS[name](given, folder), None
    except Hang as hang:
        return "finding", ("hang", f"{name}: {hang}")
    except ParserFinding as finding:
        return "finding", (re.sub(r"\d+", "N", str(finding).split("\n")[0][:100]), str(finding))
    except Exception:
        text = traceback.format_exc()
        return "finding", (last_frame(text), text)


class XenStoreTarget:
    """A fresh XenStore serving one guest's ring page (a bytearray), with a
    second guest's node to reach for."""

    def __init__(self):
        from pyxenon.backends.xenstore import XenStore

        self.store = XenStore()
        self.page = bytearray(PAGE)
        self.poked = False
        self.store.connect(1, self.page, lambda: None)
        self.store.introduce(2)
        self.store.write("/local/domain/2/data/x", b"v")
        self.store.set_perms("/local/domain/2/data", [(2, "r")])

    def index(self, field):
        return struct.unpack_from("<I", self.page, getattr(io.xenstore_domain_interface, field).offset)[0]

    def set_index(self, field, value):
        struct.pack_into("<I", self.page, getattr(io.xenstore_domain_interface, field).offset,
                         value & 0xFFFFFFFF)

    def ring_round(self, round_):
        """Requests into req[], maybe a broken index, the event, then the
        guest reads all, half or none of the replies."""
        data = bytes.fromhex(round_["data"])[:1024]
        prod = self.index("req_prod")
        for i, byte in enumerate(data):
            self.page[(prod + i) % 1024] = byte
        self.set_index("req_prod", prod + len(data))
        if round_["poke"]:
            self.set_index(*round_["poke"])
            self.poked = True
        self.store.on_event(1)
        if not self.poked:      # a guest that scribbled on the indices gets what it asked for
            self.check_ring()
        pending = (self.index("rsp_prod") - self.index("rsp_cons")) & 0xFFFFFFFF
        if pending <= 1024:
            share = (pending, pending // 2, 0)[round_["consume"] % 3]
            self.set_index("rsp_cons", self.index("rsp_cons") + share)

    def check_ring(self):
        used = (self.index("rsp_prod") - self.index("rsp_cons")) & 0xFFFFFFFF
        if used > 1024 and self.index("error") == 0:
            raise ParserFinding(f"xenstore ring: {used} reply bytes outstanding in a 1024-byte ring")

    def host_call(self, name, path, arg):
        """The host API (dom0): refusals are XenStoreError or ValueError."""
        from pyxenon.backends.xenstore import XenStoreError

        try:
            HOST_CALLS[name](self.store, path, arg)
        except (XenStoreError, ValueError):
            return "refused"
        return "accepted"


HOST_CALLS = {
    "read": lambda store, path, arg: store.read(path),
    "write": lambda store, path, arg: store.write(path, bytes.fromhex(arg)),
    "mkdir": lambda store, path, arg: store.mkdir(path),
    "ls": lambda store, path, arg: store.ls(path),
    "rm": lambda store, path, arg: store.rm(path),
    "get_perms": lambda store, path, arg: store.get_perms(path),
    "set_perms": lambda store, path, arg: store.set_perms(path, [tuple(arg)]),
    "watch": lambda store, path, arg: store.unwatch(store.watch(path, lambda p: None)),
    "introduce": lambda store, path, arg: store.introduce(arg),
    "release": lambda store, path, arg: store.release(arg),
}


class ParserCampaign:
    """N malformed inputs spread over the host-side parsers."""

    def __init__(self, seed, guests=GUESTS, stats=None, save=None, known=None):
        self.rng = random.Random(f"parsers:{seed}")
        self.seed = seed
        self.stats = stats or Stats()
        self.save = pathlib.Path(save) if save else None
        self.findings = []
        self.seen = known_signatures(known or self.save)
        guests = pathlib.Path(guests)
        self.elf_seeds = [p.read_bytes() for p in sorted(guests.glob("*/*.elf"))]
        self.cfg_seeds = [p.read_bytes() for p in sorted(guests.glob("*.cfg"))]
        self.policy_seeds = [POLICY.encode()] + [p.read_bytes() for p in
                                                 sorted((ROOT / "examples").glob("**/*.toml"))]
        self.makers = {"elf": self.elf_input, "xlcfg": self.xlcfg_input,
                       "policy": self.policy_input, "protocol": self.protocol_input,
                       "xenstore": self.xenstore_input}
        if not self.elf_seeds:
            del self.makers["elf"]

    def run(self, count):
        start = time.monotonic()
        names = sorted(self.makers)
        with tempfile.TemporaryDirectory(prefix="pyxenon-fuzz-") as folder:
            for i in range(count):
                name = names[i % len(names)]
                self.one(name, i, self.makers[name](), folder)
        self.stats.parser_elapsed += time.monotonic() - start
        return self.findings

    def one(self, name, index, given, folder):
        self.stats.parser_inputs[name] += 1
        outcome, problem = check_input(name, given, folder)
        self.stats.parser_outcomes[f"{name} {outcome}"] += 1
        if problem is None:
            return
        signature = f"parser:{name}:{problem[0]}"
        if signature in self.seen:
            self.stats.duplicates[signature] += 1
            return
        self.seen.add(signature)
        finding = Finding("parser", signature, problem[1], self.seed, index=index,
                          op={"parser": name, "input": given})
        if self.save:
            finding.saved = str(save_finding(self.save, finding))
        self.findings.append(finding)

    # -- inputs --

    def elf_input(self):
        rng = self.rng
        blob = rng.choice(self.elf_seeds)
        roll = rng.random()
        if roll < 0.8:
            data = mutate_elf(rng, blob, self.elf_seeds)
        elif roll < 0.95:
            data = mutate(rng, blob[:rng.choice((64, 128, 512, 4096))], (), self.elf_seeds)
        else:
            data = rng.getrandbits(8 * 256).to_bytes(256, "little")
        return {"data": data.hex()}

    def text(self, seeds, tokens):
        if self.rng.random() < 0.05:
            return b"".join(self.rng.choice(tokens) for _ in range(self.rng.randrange(1, 40)))
        return mutate(self.rng, self.rng.choice(seeds), tokens, seeds)

    def via(self):
        return self.rng.choice(("file", "text"))

    def xlcfg_input(self):
        overrides = [mutate(self.rng, b"memory=8", CFG_TOKENS).decode("utf-8", "replace")
                     for _ in range(self.rng.choice((0, 0, 1, 2)))]
        return {"data": self.text(self.cfg_seeds, CFG_TOKENS).hex(), "overrides": overrides,
                "via": self.via()}

    def policy_input(self):
        return {"data": self.text(self.policy_seeds, POLICY_TOKENS).hex(), "via": self.via()}

    def protocol_input(self):
        rng = self.rng
        roll = rng.random()
        if roll < 0.75:
            line = mutate(rng, json_seed(rng), JSON_TOKENS)
        elif roll < 0.9:
            line = json_seed(rng)
        else:
            line = rng.getrandbits(8 * 64).to_bytes(64, "little")
        return {"line": line.replace(b"\n", b" ")[:64 * 1024 - 1].hex()}

    def xenstore_input(self):
        rng = self.rng
        rounds = [{"data": b"".join(self.xs_message() for _ in range(rng.randrange(1, 4))).hex(),
                   "poke": self.xs_poke(), "consume": rng.randrange(3)}
                  for _ in range(rng.randrange(1, 6))]
        host = [self.xs_host_call() for _ in range(rng.choice((0, 0, 1, 3)))]
        return {"rounds": rounds, "host": host}

    def xs_message(self):
        """One xsd_sockmsg: a good type and payload mostly, then perhaps mutated."""
        rng = self.rng
        kind = rng.randrange(24) if rng.random() < 0.9 else rng.choice((0xFFFF, 1000, 0xFFFFFFFF))
        parts = [rng.choice(XS_PATHS + XS_VALUES) for _ in range(rng.randrange(0, 4))]
        body = b"\0".join(parts) + (b"\0" if rng.random() < 0.8 else b"")
        tx_id = rng.choice((0, 0, 1, 2, rng.getrandbits(32)))
        length = len(body) if rng.random() < 0.9 else rng.choice((0, 4095, 4096, 4097, 0xFFFFFFFF))
        raw = struct.pack("<IIII", kind, rng.getrandbits(32), tx_id, length) + body
        return mutate(rng, raw, XS_PATHS) if rng.random() < 0.3 else raw

    def xs_poke(self):
        rng = self.rng
        roll = rng.random()
        if roll < 0.04:
            return [rng.choice(("req_prod", "rsp_cons", "req_cons", "rsp_prod")), rng.getrandbits(32)]
        if roll < 0.06:
            return ["connection", rng.choice((1, 1, 2, rng.getrandbits(32)))]
        return ["error", rng.getrandbits(32)] if roll < 0.07 else None

    def xs_host_call(self):
        rng = self.rng
        path = rng.choice(XS_PATHS)
        if rng.random() < 0.3:
            path = mutate(rng, path, XS_PATHS)
        name = rng.choice(sorted(HOST_CALLS))
        arg = {"write": rng.choice(XS_VALUES).hex(),
               "set_perms": [rng.choice((0, 1, 2, 65535, 65536, -1)), rng.choice("nrwbx")],
               "introduce": rng.choice((1, 2, 3, 0, 0x7FF0, -1)),
               "release": rng.choice((2, 3, 0, 0x7FF0))}.get(name)
        return [name, path.decode("latin-1"), arg]


def replay_parser_record(record):
    """The finding a saved parser record still produces (or None)."""
    name, given = record["call"]["parser"], record["call"]["input"]
    with tempfile.TemporaryDirectory(prefix="pyxenon-fuzz-") as folder:
        _, problem = check_input(name, given, folder)
    if problem is None or f"parser:{name}:{problem[0]}" != record["finding"]["signature"]:
        return []
    return [Finding("parser", record["finding"]["signature"], problem[1])]


# -- the command line -----------------------------------------------------------------------

def parser():
    p = argparse.ArgumentParser(prog="pyxenon fuzz", description=(
        "Hostile-input campaigns: random hypercalls against three domains, "
        "and malformed inputs for every host-side parser."))
    p.add_argument("--hypercalls", type=int, default=0, metavar="N", help="hypercalls to make")
    p.add_argument("--parsers", type=int, default=0, metavar="M",
                   help="malformed inputs, spread over the parsers")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--save", metavar="DIR",
                   help="write each new finding as DIR/<signature>.json (e.g. tests/fuzz_regressions)")
    p.add_argument("--known", metavar="DIR",
                   help="findings saved in DIR are not reported again (default: the --save DIR)")
    p.add_argument("--first-epoch", type=int, default=0, metavar="E",
                   help="start at epoch E (to replay one epoch: --first-epoch E --hypercalls 2000)")
    p.add_argument("--guests", default=str(GUESTS), metavar="DIR",
                   help="folder of built guests (make -C guests)")
    p.add_argument("--replay", metavar="JSON", help="replay a saved finding and report it")
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON to FILE")
    p.add_argument("--progress", action="store_true", help="a line per epoch on stderr")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    guests = pathlib.Path(args.guests)
    if not (guests / "hello" / "hello.elf").is_file():
        print(f"pyxenon fuzz: no built guests in {guests} (run: make -C guests)", file=sys.stderr)
        return 2
    if args.replay:
        return replay_main(args.replay, guests)
    stats, findings = Stats(), []
    if args.hypercalls:
        campaign = Campaign(args.seed, guests, args.save, args.known, stats=stats,
                            progress=progress_line if args.progress else None)
        findings += campaign.run(args.hypercalls, args.first_epoch)
    if args.parsers:
        findings += ParserCampaign(args.seed, guests, stats, args.save, args.known).run(args.parsers)
    print(summary(args.seed, stats, findings))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary_dict(args.seed, stats, findings),
                                                      indent=1) + "\n")
    return 1 if findings else 0


def replay_main(path, guests):
    record = load_record(path)
    found = replay_record(record, guests)
    state = "still reproduces" if found else "no longer reproduces"
    print(f"{path}: {record['finding']['signature']}: {state}")
    for finding in found[:1]:
        print(finding.detail)
    return 1 if found else 0


def progress_line(campaign):
    """Every PROGRESS_EVERY calls: where the campaign is, on stderr."""
    stats = campaign.stats
    if stats.calls // PROGRESS_EVERY == campaign.reported:
        return
    campaign.reported = stats.calls // PROGRESS_EVERY
    rate = stats.calls / max(time.monotonic() - campaign.started, 1e-9)
    print(f"pyxenon fuzz: seed {campaign.seed}: {stats.calls} calls, epoch {stats.epochs}, "
          f"{len(campaign.findings)} findings, {rate:.0f}/s", file=sys.stderr, flush=True)


def top(counter, n=40):
    return ", ".join(f"{k} {v}" for k, v in counter.most_common(n))


def summary(seed, stats, findings):
    lines = [f"pyxenon fuzz: seed {seed}"]
    if stats.calls:
        lines += hypercall_lines(stats)
    if sum(stats.parser_inputs.values()):
        lines += [f"parsers: {sum(stats.parser_inputs.values())} inputs in "
                  f"{stats.parser_elapsed:.1f} s: {top(stats.parser_outcomes)}"]
    lines.append(f"findings: {len(findings)}")
    for finding in findings:
        lines += finding_lines(finding)
    if stats.duplicates:
        lines.append(f"  repeats of known findings: {top(stats.duplicates)}")
    return "\n".join(lines)


def hypercall_lines(stats):
    rate = stats.calls / stats.elapsed if stats.elapsed else 0
    lines = [f"hypercalls: {stats.calls} in {stats.elapsed:.1f} s ({rate:.0f}/s), "
             f"{stats.epochs} epochs, {stats.runs} guest runs, "
             f"{stats.recreated} domains recreated ({stats.quarantined} after a known finding)",
             f"  per hypercall: {top(stats.per_hypercall)}",
             f"  results: {stats.ok} ok; errors: {top(stats.errors)}"]
    return lines + [f"  slow: {s} s {name}{tuple(args)}" for s, name, args in stats.slow[:5]]


def finding_lines(f):
    where = f" (epoch {f.epoch}, call {f.index})" if f.epoch is not None else ""
    lines = [f"  [{f.kind}] {f.signature}{where}"]
    lines += ["      " + line for line in f.detail.strip().splitlines()[-3:]]
    if f.saved:
        lines.append(f"      saved: {f.saved}" + (f" ({len(f.ops)} ops)" if f.ops else ""))
    return lines


def summary_dict(seed, stats, findings):
    return {
        "seed": seed, "calls": stats.calls, "elapsed": stats.elapsed, "epochs": stats.epochs,
        "runs": stats.runs, "recreated": stats.recreated, "quarantined": stats.quarantined,
        "ok": stats.ok,
        "per_hypercall": dict(stats.per_hypercall), "errors": dict(stats.errors),
        "slow": stats.slow, "parser_inputs": dict(stats.parser_inputs),
        "parser_outcomes": dict(stats.parser_outcomes), "parser_elapsed": stats.parser_elapsed,
        "duplicates": dict(stats.duplicates),
        "findings": [{"kind": f.kind, "signature": f.signature, "epoch": f.epoch,
                      "index": f.index, "saved": f.saved, "detail": f.detail} for f in findings],
    }


if __name__ == "__main__":
    sys.exit(main())
