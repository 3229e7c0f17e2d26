"""Grant tables: how a domain lets one other domain reach a frame.

The granter writes entries into its table frames (its own memory, shared
with the hypervisor): v1 grant_entry_v1 {flags, domid, frame}, or after
GNTTABOP_set_version 2 the 16-byte grant_entry_v2 (grants_v2.py) with the
in-use bits in separate status frames.  A grantee maps a granted frame
(map_grant_ref: for the CPU, GNTMAP_host_map, and/or for devices,
GNTMAP_device_map) or has the hypervisor copy bytes (GNTTABOP_copy).  The
hypervisor checks the entry (permit_access, the grantee's domid,
read-only), asks the MSM, and while a mapping exists keeps the entry
pinned (Xen's active entry) and GTF_reading/GTF_writing set in its
status: the granter's protocol may not end a grant those bits show in
use.  A grant PTE carries _PAGE_GNTTAB, a bit guests may not set, so only
unmap_grant_ref (or a domain's death) removes it.
"""
import heapq
import struct

from pyxenon._core import ffi, lib
from pyxenon.public import errno, grant_table as gt

from . import grants_v2
from .errors import GrantError, HypercallError
from .mm import GNTTAB, L1, PRESENT, RW, USER, WRITABLE

__all__ = ["GrantError"]    # re-exported: the handlers and backends catch it here

PAGE = 4096
ENTRY = 8                         # sizeof(grant_entry_v1)
MAX_FRAMES = 32
MAX_STATUS_FRAMES = grants_v2.grant_to_status_frames(MAX_FRAMES)
# Xen 4.17's default gnttab_max_maptrack_frames (1024) of MAPTRACK_PER_PAGE
# (4096 / sizeof(struct grant_mapping), 16) handles: a grantee's mappings.
MAX_MAPTRACK = 1024 * 256
NX, GLOBAL, GUEST_KERNEL = 1 << 63, 0x100, 1 << 52
# Xen's grant_to_pte_flags (present, accessed, dirty, the grant bit, NX),
# then adjust_guest_l1e's user bits.
PTE_FLAGS = PRESENT | 0x20 | 0x40 | GNTTAB | NX | USER
DOMID_SELF = 0x7FF0
GNTMAP_GUEST_AVAIL0 = 16
BUSY = gt.GTF_reading | gt.GTF_writing
MFN_MASK = (1 << 40) - 1


class Mapping:
    """One maptrack entry (Xen's struct grant_mapping): what it holds now
    (flags: GNTMAP_host_map and/or GNTMAP_device_map, each with its own
    frame reference, and writable type unless read-only); by_pte: made
    with GNTMAP_contains_pte, so an unmap's host_addr is a PTE's address."""
    __slots__ = ("granter", "ref", "mfn", "pte_ma", "readonly", "flags", "by_pte")

    def __init__(self, granter, ref, mfn, pte_ma, readonly, flags=gt.GNTMAP_host_map):
        self.granter, self.ref, self.mfn = granter, ref, mfn
        self.pte_ma, self.readonly, self.flags = pte_ma, readonly, flags
        self.by_pte = False

    def refs(self):
        """(general, type) references this mapping holds on its frame."""
        n = bool(self.flags & gt.GNTMAP_host_map) + bool(self.flags & gt.GNTMAP_device_map)
        return n, 0 if self.readonly else n


PARTS = (gt.GNTMAP_host_map, gt.GNTMAP_device_map)
PIN_LIMIT = 128     # GNTPIN_incr2oflow_mask: a byte-wide counter's top bit


class Active:
    """Xen's active_grant_entry: the grantee a pinned ref serves, the frame
    it resolved to, and its pins: a count per (part, read-only), Xen's
    hstw/hstr/devw/devr bytes."""
    __slots__ = ("domid", "mfn", "counts")

    def __init__(self, domid, mfn):
        self.domid, self.mfn = domid, mfn
        self.counts = {(part, ro): 0 for part in PARTS for ro in (False, True)}

    @property
    def readers(self):
        return sum(n for (_, ro), n in self.counts.items() if ro)

    @property
    def writers(self):
        return sum(n for (_, ro), n in self.counts.items() if not ro)

    def would_overflow(self, parts, readonly):
        return any(self.counts[part, readonly] >= PIN_LIMIT for part in PARTS if parts & part)


class Grantee:
    """A grantee's maptrack: handle -> Mapping, handles as Xen hands them out."""

    def __init__(self):
        self.maptrack = {}
        self.free_handles = []    # a heap of handles below next_handle not in use
        self.next_handle = 0

    def new_handle(self):
        """The lowest free handle, or GNTST_no_space at Xen's default limit
        (get_maptrack_handle: max_maptrack_frames of MAPTRACK_PER_PAGE)."""
        if len(self.maptrack) >= MAX_MAPTRACK:
            raise GrantError(gt.GNTST_no_space)
        if self.free_handles:
            return heapq.heappop(self.free_handles)
        self.next_handle += 1
        return self.next_handle - 1

    def free_handle(self, handle):
        heapq.heappush(self.free_handles, handle)


class GrantTable(Grantee):
    def __init__(self, domain, first_mfn, max_frames=MAX_FRAMES):
        super().__init__()
        self.domain = domain
        self.first_mfn = first_mfn
        self.max_frames = max_frames
        self.max_status_frames = grants_v2.grant_to_status_frames(max_frames)
        self.nr_frames = 1
        self.nr_status_frames = 0
        self.version = 1
        self.max_version = 2      # opt_gnttab_max_version on x86 (xl's default too)
        self.active = {}          # ref -> Active (as granter)
        grants_v2.unshare_all(self)

    # -- the table ----------------------------------------------------------------

    def status_mfn(self, idx):
        return self.first_mfn + self.max_frames + idx

    def grow(self, nr_frames):
        """gnttab_grow_table: more frames (and, in v2, their status frames)."""
        self.nr_frames = max(self.nr_frames, nr_frames)
        if self.version == 2:
            grants_v2.populate(self, self.nr_frames)

    def frame_mfn(self, idx):
        """gnttab_map_frame (add_to_physmap's grant_table space): a status
        frame in v2 with XENMAPIDX_grant_table_status, else a shared one."""
        mfn = None
        if self.version == 2 and idx & 0x80000000:
            mfn = grants_v2.status_frame_mfn(self, idx & 0x7FFFFFFF)
        elif 0 <= idx < self.max_frames:
            self.grow(idx + 1)
            mfn = self.first_mfn + idx
        if mfn is None:
            raise HypercallError(errno.EINVAL)
        return mfn

    def setup(self, nr_frames):
        if nr_frames > self.max_frames:
            raise GrantError(gt.GNTST_general_error)
        self.grow(nr_frames)
        return [self.first_mfn + i for i in range(nr_frames)]

    def entry_size(self):
        return ENTRY if self.version == 1 else grants_v2.ENTRY

    def nr_entries(self):
        return self.nr_frames * PAGE // self.entry_size()

    def entry_offset(self, ref):
        if not 0 <= ref < self.nr_entries():
            raise GrantError(gt.GNTST_bad_gntref)
        return self.first_mfn * PAGE + ref * self.entry_size()

    def status_offset(self, ref):
        """Where ref's GTF_reading/GTF_writing live: the entry's flags (v1)
        or its grant_status_t in the status frames (v2)."""
        off = self.entry_offset(ref)
        return off if self.version == 1 else self.status_mfn(0) * PAGE + ref * 2

    def status(self, ref):
        return struct.unpack_from("<H", self.domain.machine.mem, self.status_offset(ref))[0]

    def read_entry(self, ref):
        """(flags, domid, frame) of entry ref, flags with its in-use bits."""
        mem = self.domain.machine.mem
        if self.version == 1:
            return struct.unpack_from("<HHI", mem, self.entry_offset(ref))
        flags, domid, _mid, frame = grants_v2.read_v2(mem, self.entry_offset(ref))
        return flags | self.status(ref), domid, frame

    def set_flags(self, ref, set_bits=0, clear_bits=0):
        off = self.status_offset(ref)
        mem = self.domain.machine.mem
        flags = struct.unpack_from("<H", mem, off)[0]
        if (flags | set_bits) & ~clear_bits != flags:
            struct.pack_into("<H", mem, off, (flags | set_bits) & ~clear_bits)
            lib.xc_frame_written(self.domain.machine.core, off // PAGE)   # code there is stale

    # -- checking a grant --------------------------------------------------------------

    def set_status(self, ref, grantee, write, mapflag, mark=True):
        """_set_status_v1/_v2: unless ref is pinned, the entry must permit
        grantee (a map also refuses a sub-page grant; a copy in v2 takes a
        transitive one); a write needs an entry without GTF_readonly.  Sets
        the in-use bits (mark: a copy, over before the guest runs again,
        leaves only what reduce_status makes of them); returns the entry's
        flags."""
        flags, domid = struct.unpack_from("<HH", self.domain.machine.mem, self.entry_offset(ref))
        if ref not in self.active and (not self.grants_kind(flags, mapflag) or domid != grantee.domid):
            raise GrantError(gt.GNTST_general_error)
        if write and flags & gt.GTF_readonly:
            raise GrantError(gt.GNTST_general_error)     # "write-pin a r/o grant entry"
        if mark:
            self.set_flags(ref, gt.GTF_reading | (gt.GTF_writing if write else 0))
        return flags

    def grants_kind(self, flags, mapflag):
        """The entry's type is one this use takes: permit_access (without
        GTF_sub_page for a map), or for a v2 copy also transitive."""
        mask = gt.GTF_type_mask | (gt.GTF_sub_page if mapflag else 0)
        kinds = (gt.GTF_permit_access,) if mapflag or self.version == 1 else \
            (gt.GTF_permit_access, gt.GTF_transitive)
        return flags & mask in kinds

    def reduce_status(self, ref, readonly):
        """reduce_status_for_pin: drop the in-use bits no pin needs any more."""
        act = self.active.get(ref)
        clear = 0 if act else gt.GTF_reading
        if not readonly and not (act and act.writers):
            clear |= gt.GTF_writing
        if clear:
            self.set_flags(ref, clear_bits=clear)

    def paged_frame(self, ref):
        """get_paged_frame of the entry's frame: for a PV granter the frame
        is a machine frame, which it must own."""
        frame = self.read_entry(ref)[2]
        if not self.domain.machine.frame_table.owned(frame, self.domain):
            raise GrantError(gt.GNTST_bad_page)
        return frame

    def pin_for_map(self, ref, grantee, write, parts):
        """map_grant_ref's part under the granter's lock: check ref and pin
        it for grantee, once per part (GNTMAP_host_map, GNTMAP_device_map);
        returns the frame."""
        act = self.active.get(ref)
        if act is None:
            self.entry_offset(ref)                            # GNTST_bad_gntref first
        elif act.domid != grantee.domid or act.would_overflow(parts, not write):
            raise GrantError(gt.GNTST_general_error)
        if act is None or (write and not act.writers):
            self.set_status(ref, grantee, write, mapflag=True)
            if act is None:
                try:
                    act = Active(grantee.domid, self.paged_frame(ref))
                except GrantError:
                    self.reduce_status(ref, not write)
                    raise
                self.active[ref] = act
        self.pin(ref, not write, parts, +1)
        return act.mfn

    def swap(self, ref_a, ref_b):
        """swap_grant_ref: both in range, neither pinned (GNTST_eagain);
        entries swap, and in v2 their status words with them."""
        off_a, off_b = self.entry_offset(ref_a), self.entry_offset(ref_b)
        if ref_a == ref_b:
            return
        if ref_a in self.active or ref_b in self.active:
            raise GrantError(gt.GNTST_eagain)
        swap_bytes(self.domain.machine.mem, off_a, off_b, self.entry_size())
        if self.version == 2:
            swap_bytes(self.domain.machine.mem, self.status_offset(ref_a), self.status_offset(ref_b), 2)
        lib.xc_frame_written(self.domain.machine.core, off_a // PAGE)
        lib.xc_frame_written(self.domain.machine.core, off_b // PAGE)

    def in_use(self, ref, write):
        """Is ref still mapped by anyone (for reading, or for writing)?"""
        act = self.active.get(ref)
        return bool(act) and (act.writers > 0 if write else act.readers + act.writers > 0)

    def pin(self, ref, readonly, parts, delta):
        act = self.active[ref]
        for part in PARTS:
            if parts & part:
                act.counts[part, readonly] += delta
        if not any(act.counts.values()):
            del self.active[ref]


def swap_bytes(mem, a, b, size):
    first, second = bytes(mem[a:a + size]), bytes(mem[b:b + size])
    mem[a:a + size], mem[b:b + size] = second, first


class BackendTable(Grantee):
    """dom0's maptrack: the grants the host's backends hold mapped (their
    rings).  dom0 is no Domain here; its backends reach granted frames only
    through backend_map and backend_frame below."""

    domid = 0


BACKEND = BackendTable()       # the grantee a backend's checks name (domid 0)


def grantee_tables(machine):
    return [d.grant_table for d in machine.domains.values()] + [machine.backend_grants]


def granter_of(grantee, domid):
    if domid == 0:
        # Domain 0 exists on Xen (the toolstack here) and grants nothing to
        # a guest: its entry fails _set_status's permit_access/domid check.
        raise GrantError(gt.GNTST_general_error)
    granter = grantee.machine.domains.get(grantee.domid if domid == DOMID_SELF else domid)
    if granter is None or granter.state == "dead":
        raise GrantError(gt.GNTST_bad_domain)
    return granter


def allowed(grantee, granter, path, access, op):
    try:
        grantee.machine.msm.check(grantee, granter, path, access, op)
    except HypercallError:
        raise GrantError(gt.GNTST_permission_denied) from None


# -- map and unmap -----------------------------------------------------------------

def pte_address(vcpu, host_addr, contains_pte):
    """Machine address of the L1 entry to write (create_grant_pv_mapping):
    given, or the one mapping host_addr in the grantee's current tables;
    in an L1 table the grantee owns.  Anything else is GNTST_general_error."""
    frames = vcpu.domain.machine.frame_table
    if contains_pte:
        ma = host_addr
    else:
        try:
            table, index = frames.l1_slot(vcpu.core.cr3, host_addr)
        except HypercallError:
            raise GrantError(gt.GNTST_general_error) from None
        ma = table * PAGE + index * 8
    if ma & 7 or not frames.owned(ma >> 12, vcpu.domain) or not frames.is_table(ma >> 12, L1):
        raise GrantError(gt.GNTST_general_error)
    return ma


def map_grant(vcpu, domid, ref, flags, host_addr):
    """GNTTABOP_map_grant_ref: returns (handle, dev_bus_addr)."""
    if not flags & (gt.GNTMAP_host_map | gt.GNTMAP_device_map):
        raise GrantError(gt.GNTST_bad_gntref)          # map_grant_ref: "Bad flags"
    grantee = vcpu.domain
    granter = granter_of(grantee, domid)
    readonly = bool(flags & gt.GNTMAP_readonly)
    # The policy first, then the entry (Xen's order: xsm_grant_mapref).
    allowed(grantee, granter, "grant_map", "r" if readonly else "rw", "map_grant_ref")
    table = grantee.grant_table
    handle = table.new_handle()
    try:
        mapping = map_pinned(vcpu, granter, ref, flags, host_addr)
    except GrantError:
        table.free_handle(handle)        # Xen's put_maptrack_handle on failure
        raise
    table.maptrack[handle] = mapping
    return handle, mapping.mfn << 12


def map_pinned(vcpu, granter, ref, flags, host_addr):
    """Pin ref, take the frame references (the device part's, then the
    host part's), write the PTE: the Mapping, or GrantError with
    everything undone (map_grant_ref's undo_out)."""
    readonly = bool(flags & gt.GNTMAP_readonly)
    parts = flags & (gt.GNTMAP_host_map | gt.GNTMAP_device_map)
    table = granter.grant_table
    mfn = table.pin_for_map(ref, vcpu.domain, not readonly, parts)
    mapping = Mapping(granter, ref, mfn, None, readonly, 0)
    try:
        if flags & gt.GNTMAP_device_map:
            take_refs(vcpu, granter, mfn, readonly)
            mapping.flags |= gt.GNTMAP_device_map
        if flags & gt.GNTMAP_host_map:
            pte_ma = pte_address(vcpu, host_addr, flags & gt.GNTMAP_contains_pte)
            install_pte(vcpu, granter, pte_ma, mfn, flags)
            mapping.pte_ma, mapping.by_pte = pte_ma, bool(flags & gt.GNTMAP_contains_pte)
            mapping.flags |= gt.GNTMAP_host_map
    except GrantError:
        drop_refs(vcpu.domain.machine, mapping)
        table.pin(ref, readonly, parts, -1)
        table.reduce_status(ref, readonly)
        raise
    return mapping


def install_pte(vcpu, granter, pte_ma, mfn, flags):
    """The grant's own references on the granter's frame (writable type for
    a writable mapping, as Xen's map_grant_ref takes), then the entry."""
    machine = vcpu.domain.machine
    old = struct.unpack_from("<Q", machine.mem, pte_ma)[0]
    readonly = bool(flags & gt.GNTMAP_readonly)
    take_refs(vcpu, granter, mfn, readonly)
    user_bits = GLOBAL if flags & gt.GNTMAP_application_map else GUEST_KERNEL
    struct.pack_into("<Q", machine.mem, pte_ma, mfn << 12 | PTE_FLAGS | user_bits
                     | (0 if readonly else RW) | avail_bits(flags))
    lib.xc_request_flush(machine.core)
    put_replaced(vcpu, old)


def put_replaced(vcpu, old):
    """create_grant_pv_mapping replaces a present entry and drops its
    references (put_page_from_l1e).  Over a granted PTE a Xen debug build
    (the one _PAGE_GNTTAB exists in) injects #GP and leaves the old
    mapping undestroyable; here the mapper is crashed instead (see
    ARCHITECTURE's deliberate differences)."""
    if old & PRESENT and old & GNTTAB:
        vcpu.domain.crash("grant map over a granted PTE: an implicit unmap (put_page_from_l1e)")
    elif old & PRESENT:
        lib.xc_put_l1e(vcpu.domain.machine.core, vcpu.core, old)


def avail_bits(flags):
    """XENFEAT_gnttab_map_avail_bits: the map's guest-available flags go to
    the PTE's available bits 9-11 (grant_to_pte_flags)."""
    return (flags >> GNTMAP_GUEST_AVAIL0 & 7) << 9


def take_refs(vcpu, granter, mfn, readonly):
    core = vcpu.domain.machine.core
    if readonly:
        ok = lib.xc_get_page(core, mfn, granter.domid)
    else:
        ok = lib.xc_get_page_and_type(core, vcpu.core, mfn, granter.domid, WRITABLE, 0) == 0
    if not ok:
        raise GrantError(gt.GNTST_general_error)       # "Could not pin grant frame"


def drop_refs(machine, mapping):
    """The references the mapping's parts hold (unmap_common_complete)."""
    for part in (gt.GNTMAP_device_map, gt.GNTMAP_host_map):
        if mapping.flags & part:
            put_ref(machine, mapping.mfn, mapping.readonly)


def put_ref(machine, mfn, readonly):
    if readonly:
        lib.xc_put_page(machine.core, mfn)
    else:
        lib.xc_put_page_and_type(machine.core, ffi.NULL, mfn, 0)


def unmap_grant(vcpu, handle, host_addr, dev_bus_addr=0, new_addr=0):
    """unmap_common: the host part if host_addr names it, the device part
    if dev_bus_addr does; the handle goes when neither part is left.
    new_addr: GNTTABOP_unmap_and_replace's entry to move in."""
    table = vcpu.domain.grant_table
    mapping = table.maptrack.get(handle)
    if mapping is None:
        raise GrantError(gt.GNTST_bad_handle)
    if dev_bus_addr and mapping.flags & gt.GNTMAP_device_map and dev_bus_addr != mapping.mfn << 12:
        raise GrantError(gt.GNTST_bad_dev_addr)
    done = 0
    if host_addr and mapping.flags & gt.GNTMAP_host_map:
        clear_host_pte(vcpu, mapping, host_addr, new_addr)
        done |= gt.GNTMAP_host_map
    if dev_bus_addr and mapping.flags & gt.GNTMAP_device_map:
        done |= gt.GNTMAP_device_map
    release_parts(vcpu.domain.machine, table, handle, done)


def clear_host_pte(vcpu, mapping, host_addr, new_addr=0):
    """replace_grant_pv_mapping: the entry at host_addr (a PTE's machine
    address if the map was GNTMAP_contains_pte) must map the mapping's
    frame, present and writable as the mapping is; it is cleared, or
    with new_addr takes the entry that mapped new_addr, which is cleared
    (steal_linear_address; a contains_pte mapping cannot: general_error).
    When the check fails after the steal, the stolen entry's references
    go (put_page_from_l1e), as Xen's.  Xen does not ask which mapping
    wrote the entry: another of the grantee's mappings of the same frame
    swaps entries with this one."""
    if new_addr and mapping.by_pte:
        raise GrantError(gt.GNTST_general_error)
    stolen = steal_linear_address(vcpu, new_addr) if new_addr else (None, 0)
    try:
        ma = grant_pte_of(vcpu, mapping, host_addr)
    except GrantError:
        put_replaced(vcpu, stolen[1])
        raise
    move_pte(vcpu.domain.grant_table, mapping, ma, stolen[0])
    struct.pack_into("<Q", vcpu.domain.machine.mem, ma, stolen[1])
    lib.xc_request_flush(vcpu.domain.machine.core)


def move_pte(table, mapping, ma, stolen_ma):
    """The maptrack follows the entries: mapping's is the one at ma (the
    mapping that had ma gets mapping's), and a stolen grant entry's
    mapping now lives at ma."""
    if ma != mapping.pte_ma:
        for other in table.maptrack.values():
            if other.pte_ma == ma:
                other.pte_ma = mapping.pte_ma
        mapping.pte_ma = ma
    for other in table.maptrack.values():
        if stolen_ma is not None and other.pte_ma == stolen_ma:
            other.pte_ma = ma


def grant_pte_of(vcpu, mapping, host_addr):
    ma = pte_address(vcpu, host_addr, mapping.by_pte)
    entry = struct.unpack_from("<Q", vcpu.domain.machine.mem, ma)[0]
    if (not entry & PRESENT or not entry & GNTTAB or entry >> 12 & MFN_MASK != mapping.mfn
            or bool(entry & RW) == mapping.readonly):
        raise GrantError(gt.GNTST_general_error)
    return ma


def steal_linear_address(vcpu, linear):
    """(machine address, entry) of the L1 entry mapping linear, now cleared."""
    ma = pte_address(vcpu, linear, False)
    entry = struct.unpack_from("<Q", vcpu.domain.machine.mem, ma)[0]
    struct.pack_into("<Q", vcpu.domain.machine.mem, ma, 0)
    return ma, entry


def release_parts(machine, table, handle, done):
    """unmap_common_complete for the parts done: their references, the pins,
    the in-use bits; the handle when nothing is left."""
    m = table.maptrack[handle]
    done &= m.flags
    if not done:
        return
    part = Mapping(m.granter, m.ref, m.mfn, None, m.readonly, done)
    drop_refs(machine, part)
    m.flags &= ~done
    if not m.flags & gt.GNTMAP_host_map:
        m.pte_ma = None
    if not m.flags:
        del table.maptrack[handle]
        table.free_handle(handle)
    m.granter.grant_table.pin(m.ref, m.readonly, done, -1)
    if m.granter.state != "dead":
        m.granter.grant_table.reduce_status(m.ref, m.readonly)
    lib.xc_request_flush(machine.core)


def release(machine, table, handle):
    """Tear one mapping down: the PTE, the frame references, the pin."""
    m = table.maptrack[handle]
    if m.pte_ma is not None:
        entry = struct.unpack_from("<Q", machine.mem, m.pte_ma)[0]
        if entry & GNTTAB and entry >> 12 & MFN_MASK == m.mfn:
            struct.pack_into("<Q", machine.mem, m.pte_ma, 0)
    release_parts(machine, table, handle, m.flags)


def teardown(domain):
    """A domain is dying: every mapping of its grants, everywhere, goes, and
    so do its own mappings of others' grants."""
    machine = domain.machine
    for table in grantee_tables(machine):
        for handle, m in list(table.maptrack.items()):
            if m.granter is domain or table is domain.grant_table:
                release(machine, table, handle)
