"""The invariant oracle run after every op: the whole-state checker in C
(hypervisor/audit.py over _core/audit.c: reference and type counts,
entries naming frames their domain owns with the types their level needs,
nothing typed reachable writable through the tables or the TLB), the
policy oracle (policy_oracle.py), and the rules only the fuzzer knows:
Xen's own pages stay plain, no hypercall outside the page-table paths
changes a table, base pointers and GDT frames have their types, grant PTEs
belong to live mappings."""
import re
import struct

from pyxenon._core import ffi
from pyxenon.hypervisor import audit, mm
from pyxenon.hypervisor.machine import EXTRA_FRAMES
from pyxenon.hypervisor.audit import OWNER_XEN
from pyxenon.public import grant_table as gt, xen

from .common import PAGE
from .ops import op_name
from .policy_oracle import event_problems, grant_problems, wanted_bits


# struct page_info: count, type_count, owner, type, flags, linear, nr_validated, tlbflush_stamp
ROW = struct.Struct("<IIHBBhHI")
ENTRIES = struct.Struct("<512Q")
MFN_BITS = (1 << 40) - 1
TYPE_AT, OWNER_AT = 10, 8     # offsets of type and owner in a row
TABLE_TYPES = bytes(1 if mm.L1 <= i <= mm.L4 else 0 for i in range(256))
NONZERO = re.compile(rb"[^\x00]")
TYPE_NAMES = {mm.NONE: "none", mm.L1: "L1", mm.L2: "L2", mm.L3: "L3", mm.L4: "L4",
              mm.SEG_DESC: "seg_desc", mm.WRITABLE: "writable"}


def type_name(kind):
    return TYPE_NAMES.get(kind, str(kind))


def frame_rows(machine, dom):
    count = dom.nr_pages + EXTRA_FRAMES
    return bytes(ffi.buffer(machine.core.frames + dom.first_mfn, count * ROW.size))


class DomainView:
    """One domain's frames as the checks see them (its RAM, shared_info and
    grant-table frames).  The counts are the C checker's."""

    def __init__(self, world, dom, rows, grant_index):
        self.world = world
        self.dom = dom
        self.grant_index = grant_index
        self.first = dom.first_mfn
        self.rows = rows
        self.end = self.first + len(rows) // ROW.size
        self.unchanged_by = None              # (op name, tables before) if op may not write them
        self.problems = []

    def owned(self, mfn):
        return self.first <= mfn < self.end

    def type_of(self, mfn):
        """The frame's type, NONE without type references; a table left
        part-way (not validated) is the C checker's (hypervisor/audit.py).
        A type with no references is kept, as Xen keeps it."""
        if not self.owned(mfn):
            return mm.NONE
        _, type_count, _, kind, flags, *_ = ROW.unpack_from(self.rows, (mfn - self.first) * ROW.size)
        if not type_count or (mm.L1 <= kind <= mm.L4 and not flags & mm.VALIDATED):
            return mm.NONE
        return kind

    def tables(self):
        """(mfn, level) of the validated tables: the candidates are found
        in the type column at C speed (a byte per frame), then checked."""
        kinds = self.rows[TYPE_AT::ROW.size].translate(TABLE_TYPES)
        found = (self.first + m.start() for m in NONZERO.finditer(kinds))
        return [(mfn, kind) for mfn in found if mm.L1 <= (kind := self.type_of(mfn)) <= mm.L4]

    def strangers(self):
        """The first frame of the range another owner holds (or none): the
        v2 status frames a table has not populated are Xen's.  Compared
        as byte strings, the expected owners built once per call."""
        owners = self.rows[OWNER_AT::ROW.size], self.rows[OWNER_AT + 1::ROW.size]
        domid = self.dom.domid
        if owners == (bytes([domid & 0xFF]) * len(owners[0]), bytes([domid >> 8]) * len(owners[0])):
            return []
        expected = self.expected_owners(len(owners[0]))
        if owners == expected:
            return []
        pairs = zip(zip(*owners), zip(*expected))
        return [self.first + i for i, (got, want) in enumerate(pairs) if got != want][:1]

    def expected_owners(self, count):
        """(low bytes, high bytes) of the owner each frame of the range should have."""
        domid = self.dom.domid
        low, high = bytearray([domid & 0xFF]) * count, bytearray([domid >> 8]) * count
        table = self.dom.grant_table
        for i in range(table.nr_status_frames, table.max_status_frames):
            at = table.status_mfn(i) - self.first
            if 0 <= at < count:
                low[at], high[at] = OWNER_XEN & 0xFF, OWNER_XEN >> 8
        return bytes(low), bytes(high)

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
        grant_key = tuple(sorted((mapping_key(g, h, m), g.domid, m.granter.domid, m.ref, m.mfn,
                                  m.readonly) for g, h, m in self.mappings()))
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

    def mappings(self):
        """(grantee, handle, Mapping) over every live domain."""
        for dom in self.world.live():
            for handle, mapping in dom.grant_table.maptrack.items():
                yield dom, handle, mapping

    def grant_index(self):
        """pte machine address -> (grantee, Mapping) of each host mapping."""
        return {m.pte_ma: (dom, m) for dom, _, m in self.mappings() if m.pte_ma is not None}

    def check_grants(self, before, now):
        """Every mapping; and the in-use bits Xen owes the granter's entry
        (before, now: the mappings at the last check and now): a new mapping
        that takes the reference's first pin of its kind sets its bits
        (map_grant_ref calls _set_status only when `!act->pin`, or for a
        writable map while no write pin is held), and ending one keeps the
        bits the others still need.  Any other change to an entry is its
        granter's own doing, a cleared bit under a held pin included."""
        added = {key[0] for key in now - before}
        ended = {(key[2], key[3]) for key in before - now}
        pins = held_pins(before)
        flags = {}
        problems = []
        for dom in self.world.live():
            for handle, m in dom.grant_table.maptrack.items():
                ref = (m.granter.domid, m.ref)
                flags[ref] = m.granter.grant_table.read_entry(m.ref)[0]
                owed = first_pin_bits(m, pins.get(ref)) if mapping_key(dom, handle, m) in added else \
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
GRANT_TABLE_WRITERS = (gt.GNTTABOP_map_grant_ref, gt.GNTTABOP_unmap_grant_ref,
                       gt.GNTTABOP_unmap_and_replace)
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
    """The frame-table rules the C checker does not hold, for one domain."""
    check_ownership(view)
    check_xen_pages(view)
    for vcpu in view.dom.vcpus:
        check_xen_written(view, vcpu)
        check_holders(view, vcpu)
    check_untouched_tables(view, tables)
    for mfn, level in tables:
        if level == mm.L1:
            check_grant_ptes(view, mfn)


def held_pins(keys):
    """(granter, ref) -> "r" or "rw": the pins the mappings in keys hold."""
    pins = {}
    for key in keys:
        ref, readonly = (key[2], key[3]), key[5]
        pins[ref] = "rw" if not readonly or pins.get(ref) == "rw" else "r"
    return pins


def first_pin_bits(m, held):
    """The bits Xen's map_grant_ref writes for a new mapping m of a reference
    whose other mappings held `held` ("r", "rw" or None) pins."""
    if held is None or (not m.readonly and held == "r"):
        return wanted_bits(m)
    return 0


def mapping_key(grantee, handle, m):
    """A mapping's PTE address; a device mapping (no PTE) its own negative key."""
    return m.pte_ma if m.pte_ma is not None else -1 - (grantee.domid << 32 | handle)


def check_ownership(view):
    for mfn in view.strangers():
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


def check_grant_ptes(view, table):
    """Every grant PTE of an L1 (the C checker follows maptrack to the PTE;
    this goes the other way).  The candidates, entries with the grant bit,
    are found at C speed in the column of the bytes that hold it."""
    mem = view.world.machine.mem
    column = bytes(mem[table * PAGE + GNTTAB_BYTE:(table + 1) * PAGE:8]).translate(GNTTAB_SET)
    for found in NONZERO.finditer(column):
        i = found.start()
        e = int.from_bytes(mem[table * PAGE + i * 8:table * PAGE + i * 8 + 8], "little")
        if e & GRANT_PTE == GRANT_PTE:
            check_grant_pte(view, table, i, e)


GRANT_PTE = mm.PRESENT | mm.GNTTAB
GNTTAB_BYTE = (mm.GNTTAB.bit_length() - 1) // 8           # the entry's byte with the grant bit
GNTTAB_SET = bytes(1 if i & (mm.GNTTAB >> 8 * GNTTAB_BYTE) else 0 for i in range(256))


def check_grant_pte(view, table, index, entry):
    """A grant PTE: it must be the PTE of one of this domain's live mappings."""
    where = f"L1 {table:#x}[{index}] = {entry:#x}"
    grantee, mapping = view.grant_index.get(table * PAGE + index * 8, (None, None))
    if grantee is not view.dom or mapping.mfn != (entry >> 12) & MFN_BITS:
        return view.problem("grant-pte-unknown", f"{where}: a grant PTE with no live mapping")
    if entry & mm.RW and mapping.readonly:
        view.problem("grant-pte-writable", f"{where}: writable PTE for a read-only grant")


def check_holders(view, vcpu):
    """Base pointers are L4s and GDT frames descriptor pages (the C checker
    counts their references, whatever their type)."""
    for base in (vcpu.core.kernel_cr3, vcpu.core.user_cr3):
        if base:
            want_type(view, base, mm.L4, "base pointer")
    for mfn in vcpu.gdt_frames:
        want_type(view, mfn, mm.SEG_DESC, "GDT frame")


def want_type(view, mfn, want, what):
    if view.type_of(mfn) != want:
        view.problem("mm-holder-type", f"{what} {mfn:#x} has type "
                     f"{type_name(view.type_of(mfn))}, not {type_name(want)}")


def check_xen_written(view, vcpu):
    """The frame Xen writes a vcpu's vcpu_info into must be a plain page."""
    mfn = vcpu.core.vcpu_info_ma // PAGE
    if mfn != view.dom.shared_info_mfn and view.type_of(mfn) not in (mm.NONE, mm.WRITABLE):
        view.problem("xen-writes-typed-frame", f"vcpu {vcpu.vcpu_id}'s vcpu_info is in frame "
                     f"{mfn:#x} of type {type_name(view.type_of(mfn))}")
