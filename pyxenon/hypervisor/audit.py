"""The whole-state invariant checker: after any operation, every reference
a frame has is held by something, nothing typed page table or descriptor
page is reachable writable (through the tables or the engine's cached
translations), and every mapping names a frame its domain may reach.

The walk is in C (_core/audit.c); this side adds the references only
Python holds (grant mappings, registered vcpu_info, Xen's pages lent to a
domain), checks the grant maptrack against the tables and the engine's
cached translations of foreign frames against the grant mappings, and
names what it found.  Used by the property tests, the fuzzer, and the host's debug mode
($PYXENON_CHECK_STATE=1: a check after every slice).
"""
import struct

from pyxenon._core import ffi, lib

from .domain import DEAD
from .grants import MAX_FRAMES, MAX_STATUS_FRAMES
from .mm import GNTTAB, PRESENT, RW

MAX_REPORTED = 64
MESSAGES = {
    1: "general count {have} but {want} references found",
    2: "type count {have} but {want} type references found",
    3: "an entry names a frame its domain does not own",
    4: "an entry names a frame without the type its level needs",
    5: "a page table or descriptor page is reachable writable",
    6: "a page table or descriptor page is writable in the TLB",
    7: "the TLB maps a frame nobody owns",
    8: "an entry of a validated table has bits the rules refuse",
    9: "a type state that cannot happen",
}


class Violation(Exception):
    """The state broke an invariant: the list of findings, one line each."""

    def __init__(self, findings):
        super().__init__("\n".join(findings))
        self.findings = findings


def shadow_tlb(machine, on=True):
    """Record what the engine's TLB may hold (needed to check it)."""
    if lib.xc_shadow_enable(machine.core, int(on)) < 0:
        raise MemoryError("cannot allocate the TLB shadow")


def held_by_python(machine):
    """(mfn, general refs, type refs) the Python side holds."""
    held = []
    for domain in machine.domains.values():
        if domain.state == DEAD:
            continue
        table = domain.grant_table
        first = domain.shared_info_mfn
        held += [(mfn, 0, 1) for mfn in range(first, first + 1 + table.max_frames)]
        held += [(table.status_mfn(i), 0, 1) for i in range(table.nr_status_frames)]
        held += [(v.core.vcpu_info_ma >> 12, 1, 1) for v in domain.vcpus if v.info_registered]
        held += domain.events.fifo.held_frames() if domain.events.fifo else []
        held += [(m.mfn, *m.refs()) for m in table.maptrack.values()]
    held += [(m.mfn, *m.refs()) for m in machine.backend_grants.maptrack.values()]
    return held


def grant_findings(machine):
    """Every maptrack entry's PTE still maps its frame with the grant bit."""
    out = []
    for domain in machine.domains.values():
        for handle, m in domain.grant_table.maptrack.items():
            if m.pte_ma is None:
                continue          # a device mapping only: no PTE
            entry = struct.unpack_from("<Q", machine.mem, m.pte_ma)[0]
            if not entry & PRESENT or not entry & GNTTAB or (entry >> 12) & ((1 << 40) - 1) != m.mfn:
                out.append(f"d{domain.domid} grant handle {handle}: its entry at "
                           f"{m.pte_ma:#x} no longer maps mfn {m.mfn:#x}")
            elif entry & RW and m.readonly:
                out.append(f"d{domain.domid} grant handle {handle}: a read-only grant "
                           f"mapped writable at {m.pte_ma:#x}")
    return out


def pin_findings(machine):
    """Every mapping holds a pin of a live grant: its granter's active
    entry serves the grantee, resolved to the mapping's frame, and the
    entry's pins are exactly the mappings' parts (Xen's act->pin)."""
    want, out = {}, []
    tables = [(d.domid, d.grant_table) for d in machine.domains.values()]
    for domid, table in tables + [(0, machine.backend_grants)]:
        for handle, m in table.maptrack.items():
            out += unpinned(domid, handle, m)
            pins = want.setdefault((m.granter.domid, m.ref), [0, 0])
            pins[0 if m.readonly else 1] += m.refs()[0]
    for domid, table in tables:
        for ref, act in table.active.items():
            held = want.get((domid, ref), [0, 0])
            if held != [act.readers, act.writers]:
                out.append(f"d{domid} ref {ref}: pinned {act.readers}r/{act.writers}w, mapped {held}")
    return out


def unpinned(domid, handle, m):
    act = m.granter.grant_table.active.get(m.ref)
    if act is None or act.domid != domid or act.mfn != m.mfn:
        return [f"d{domid} grant handle {handle}: d{m.granter.domid} ref {m.ref} "
                "has no active entry for it"]
    return []


OWNER_XEN = 0x7FF2    # _core/core.h: Xen's own frames (GDT page, zero page)
OWNER_FREE = 0x7FF4   # nobody's (the C half reports a TLB entry of one)


def shadow_entries(machine):
    """(va, mfn, domid) of each translation the engine's TLB may hold now,
    with the domain whose page walk filled it."""
    va, mfn, domid = ffi.new("uint64_t *"), ffi.new("uint64_t *"), ffi.new("uint16_t *")
    i = 0
    while lib.xc_shadow_entry(machine.core, i, va, mfn, domid) == 0:
        yield va[0], mfn[0], domid[0]
        i += 1


def tlb_foreign_findings(machine):
    """A cached translation of another domain's frame is one the domain it
    was filled for holds a grant mapping of: for a PV domain on Xen a grant
    is the only way to reach a foreign frame."""
    granted = {d.domid: {m.mfn for m in d.grant_table.maptrack.values()}
               for d in machine.domains.values()}
    out = []
    for va, mfn, domid in shadow_entries(machine):
        if mfn >= machine.nr_frames or mfn in granted.get(domid, ()):
            continue
        owner = machine.core.frames[mfn].owner
        if owner not in (domid, OWNER_XEN, OWNER_FREE) and len(out) < MAX_REPORTED:
            out.append(f"mfn {mfn:#x}: the TLB of d{domid} maps it at {va:#x}, but "
                       f"d{owner} owns it and d{domid} has no grant mapping of it")
    return out


def describe(v):
    have, want = v.detail & 0xFFFFFFFF, v.detail >> 32
    text = MESSAGES.get(v.code, f"violation {v.code}").format(have=have, want=want)
    return f"mfn {v.mfn:#x}: {text} (detail {v.detail:#x})"


def flat(rows):
    return [x for row in rows for x in row]


def findings(machine):
    """What is wrong with the machine's state now, one line each."""
    ranges = flat((d.first_mfn, d.nr_pages + 1 + MAX_FRAMES + MAX_STATUS_FRAMES)  # RAM, Xen's pages
                  for d in machine.domains.values() if d.state != DEAD)
    extra = flat(held_by_python(machine))
    out = ffi.new("struct xc_violation[]", MAX_REPORTED)
    n = lib.xc_audit(machine.core, ffi.new("uint64_t[]", ranges or [0]), len(ranges) // 2,
                     ffi.new("uint64_t[]", extra or [0]), len(extra) // 3, out, MAX_REPORTED)
    if n < 0:
        raise MemoryError("the checker could not allocate its tables")
    return ([describe(out[i]) for i in range(min(n, MAX_REPORTED))] + grant_findings(machine)
            + pin_findings(machine) + tlb_foreign_findings(machine))


def check(machine):
    """Raise Violation if any invariant is broken."""
    found = findings(machine)
    if found:
        raise Violation(found)
