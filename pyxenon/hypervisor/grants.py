"""Grant tables (v1): how a domain lets one other domain reach a frame.

The granter writes grant_entry_v1 records {flags, domid, frame} into its
table frames (its own memory, shared with the hypervisor).  A grantee maps a
granted frame into its address space (map_grant_ref) or has the hypervisor
copy bytes (GNTTABOP_copy).  The hypervisor checks the entry (permit_access,
the grantee's domid, read-only), asks the MSM, and while a mapping exists
keeps GTF_reading/GTF_writing set in the entry: the granter's protocol may
not end a grant those bits show in use.  A grant PTE carries _PAGE_GNTTAB,
a bit guests may not set, so only unmap_grant_ref (or a domain's death)
removes it.
"""
import heapq
import struct

from pyxenon._core import ffi, lib
from pyxenon.public import errno, grant_table as gt

from .errors import HypercallError
from .mm import GNTTAB, L1, PRESENT, RW, USER, WRITABLE

PAGE = 4096
ENTRY = 8                         # sizeof(grant_entry_v1)
MAX_FRAMES = 32
# Xen 4.17's default gnttab_max_maptrack_frames (1024) of MAPTRACK_PER_PAGE
# (4096 / sizeof(struct grant_mapping), 16) handles: a grantee's mappings.
MAX_MAPTRACK = 1024 * 256
NX, GLOBAL, GUEST_KERNEL = 1 << 63, 0x100, 1 << 52
# Xen's grant_to_pte_flags (present, accessed, dirty, the grant bit, NX),
# then adjust_guest_l1e's user bits.
PTE_FLAGS = PRESENT | 0x20 | 0x40 | GNTTAB | NX | USER
DOMID_SELF = 0x7FF0
GNTMAP_GUEST_AVAIL0 = 16


class GrantError(Exception):
    """A grant operation fails with status GNTST_*."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


class Mapping:
    __slots__ = ("granter", "ref", "mfn", "pte_ma", "readonly")

    def __init__(self, granter, ref, mfn, pte_ma, readonly):
        self.granter, self.ref, self.mfn = granter, ref, mfn
        self.pte_ma, self.readonly = pte_ma, readonly


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
        self.nr_frames = 1
        self.pins = {}            # ref -> [readers, writers] mapping it (as granter)

    # -- the table ----------------------------------------------------------------

    def frame_mfn(self, idx):
        if not 0 <= idx < self.max_frames:
            raise HypercallError(errno.EINVAL)
        self.nr_frames = max(self.nr_frames, idx + 1)
        return self.first_mfn + idx

    def setup(self, nr_frames):
        if nr_frames > self.max_frames:
            raise GrantError(gt.GNTST_general_error)
        self.nr_frames = max(self.nr_frames, nr_frames)
        return [self.first_mfn + i for i in range(nr_frames)]

    def entry_offset(self, ref):
        if not 0 <= ref < self.nr_frames * PAGE // ENTRY:
            raise GrantError(gt.GNTST_bad_gntref)
        return self.first_mfn * PAGE + ref * ENTRY

    def read_entry(self, ref):
        """(flags, domid, frame) of entry ref."""
        return struct.unpack_from("<HHI", self.domain.machine.mem, self.entry_offset(ref))

    def set_flags(self, ref, set_bits=0, clear_bits=0):
        off = self.entry_offset(ref)
        mem = self.domain.machine.mem
        flags = struct.unpack_from("<H", mem, off)[0]
        struct.pack_into("<H", mem, off, (flags | set_bits) & ~clear_bits)
        lib.xc_frame_written(self.domain.machine.core, off // PAGE)   # code there is stale

    # -- checking a grant --------------------------------------------------------------

    def check(self, ref, grantee, write):
        """The frame entry ref lets grantee reach (for writing if write)."""
        flags, domid, frame = self.read_entry(ref)
        if flags & gt.GTF_type_mask != gt.GTF_permit_access or domid != grantee.domid:
            raise GrantError(gt.GNTST_general_error)
        if write and flags & gt.GTF_readonly:
            raise GrantError(gt.GNTST_permission_denied)
        if not self.domain.machine.frame_table.owned(frame, self.domain):
            raise GrantError(gt.GNTST_bad_page)
        return frame

    def in_use(self, ref, write):
        """Is ref still mapped by anyone (for reading, or for writing)?
        (Xen's active entry pin counts, kept per ref.)"""
        readers, writers = self.pins.get(ref, (0, 0))
        return writers > 0 if write else readers + writers > 0

    def pin(self, ref, readonly, delta):
        counts = self.pins.setdefault(ref, [0, 0])
        counts[0 if readonly else 1] += delta
        if counts == [0, 0]:
            del self.pins[ref]


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
    """Machine address of the L1 entry to write: given, or the one mapping
    host_addr in the grantee's current tables (which must exist)."""
    frames = vcpu.domain.machine.frame_table
    if contains_pte:
        ma = host_addr
    else:
        try:
            table, index = frames.l1_slot(vcpu.core.cr3, host_addr)
        except HypercallError:
            raise GrantError(gt.GNTST_bad_virt_addr) from None
        ma = table * PAGE + index * 8
    if ma & 7 or not frames.owned(ma >> 12, vcpu.domain) or not frames.is_table(ma >> 12, L1):
        raise GrantError(gt.GNTST_bad_virt_addr)
    return ma


def map_grant(vcpu, domid, ref, flags, host_addr):
    """GNTTABOP_map_grant_ref (host mappings only): returns the handle."""
    if not flags & (gt.GNTMAP_host_map | gt.GNTMAP_device_map):
        raise GrantError(gt.GNTST_bad_gntref)          # map_grant_ref: "Bad flags"
    if flags & gt.GNTMAP_device_map:
        raise GrantError(gt.GNTST_general_error)       # device mappings: not offered here
    grantee = vcpu.domain
    granter = granter_of(grantee, domid)
    readonly = bool(flags & gt.GNTMAP_readonly)
    # The policy first, then the entry (Xen's order: xsm_grant_mapref).
    allowed(grantee, granter, "grant_map", "r" if readonly else "rw", "map_grant_ref")
    table = grantee.grant_table
    handle = table.new_handle()
    try:
        mfn = granter.grant_table.check(ref, grantee, not readonly)
        pte_ma = pte_address(vcpu, host_addr, flags & gt.GNTMAP_contains_pte)
        install_pte(vcpu, granter, pte_ma, mfn, flags)
    except Exception:
        table.free_handle(handle)        # Xen's put_maptrack_handle on failure
        raise
    granter.grant_table.set_flags(ref, gt.GTF_reading | (0 if readonly else gt.GTF_writing))
    granter.grant_table.pin(ref, readonly, +1)
    table.maptrack[handle] = Mapping(granter, ref, mfn, pte_ma, readonly)
    return handle


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
    references (put_page_from_l1e), which crashes the domain if the entry
    was itself a grant's ("Attempt to implicitly unmap a granted PTE")."""
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
        raise GrantError(gt.GNTST_general_error)


def unmap_grant(vcpu, handle, host_addr, contains_pte=False):
    table = vcpu.domain.grant_table
    mapping = table.maptrack.get(handle)
    if mapping is None:
        raise GrantError(gt.GNTST_bad_handle)
    if host_addr and pte_address(vcpu, host_addr, contains_pte) != mapping.pte_ma:
        raise GrantError(gt.GNTST_general_error)
    release(vcpu.domain.machine, table, handle)


def release(machine, table, handle):
    """Tear one mapping down: the PTE, the frame references, the in-use bits."""
    m = table.maptrack.pop(handle)
    table.free_handle(handle)
    m.granter.grant_table.pin(m.ref, m.readonly, -1)
    if m.pte_ma is not None:      # a backend's mapping has no PTE
        entry = struct.unpack_from("<Q", machine.mem, m.pte_ma)[0]
        if entry & GNTTAB and entry >> 12 & ((1 << 40) - 1) == m.mfn:
            struct.pack_into("<Q", machine.mem, m.pte_ma, 0)
    if m.readonly:
        lib.xc_put_page(machine.core, m.mfn)
    else:
        lib.xc_put_page_and_type(machine.core, ffi.NULL, m.mfn, 0)
    if m.granter.state != "dead":
        clear_in_use_bits(m.granter.grant_table, m.ref)
    lib.xc_request_flush(machine.core)


def clear_in_use_bits(table, ref):
    """GTF_writing/GTF_reading stay only while some mapping still needs them."""
    clear = 0 if table.in_use(ref, write=True) else gt.GTF_writing
    clear |= 0 if table.in_use(ref, write=False) else gt.GTF_reading
    table.set_flags(ref, clear_bits=clear)


def teardown(domain):
    """A domain is dying: every mapping of its grants, everywhere, goes, and
    so do its own mappings of others' grants."""
    machine = domain.machine
    for table in grantee_tables(machine):
        for handle, m in list(table.maptrack.items()):
            if m.granter is domain or table is domain.grant_table:
                release(machine, table, handle)


# -- dom0's backends ----------------------------------------------------------------

def backend_map(granter, ref):
    """A backend maps granter's ref writable, as Linux's backends map their
    rings (xenbus_map_ring_valloc -> GNTTABOP_map_grant_ref from dom0): the
    entry must permit domid 0 writably; the frame's writable type and
    GTF_reading|GTF_writing are held until backend_unmap, so the guest can
    neither end the grant nor turn the frame into a page table meanwhile.
    Returns (handle, mfn)."""
    if granter.state == "dead":
        raise GrantError(gt.GNTST_bad_domain)
    mfn = granter.grant_table.check(ref, BACKEND, True)
    machine = granter.machine
    if lib.xc_get_page_and_type(machine.core, ffi.NULL, mfn, granter.domid, WRITABLE, 0) != 0:
        raise GrantError(gt.GNTST_general_error)
    granter.grant_table.set_flags(ref, gt.GTF_reading | gt.GTF_writing)
    granter.grant_table.pin(ref, False, +1)
    table = machine.backend_grants
    handle = table.new_handle()
    table.maptrack[handle] = Mapping(granter, ref, mfn, None, False)
    return handle, mfn


def backend_unmap(machine, handle):
    if handle in machine.backend_grants.maptrack:
        release(machine, machine.backend_grants, handle)


def backend_frame(granter, ref, write):
    """The frame a backend may copy to (write) or from, by granter's entry
    ref (__acquire_grant_for_copy's checks, grantee dom0): for one copy,
    done before the engine runs again, so no in-use bits are left set."""
    if granter.state == "dead":
        raise GrantError(gt.GNTST_bad_domain)
    mfn = granter.grant_table.check(ref, BACKEND, write)
    if write and not granter.machine.frame_table.writable_now(mfn):
        raise GrantError(gt.GNTST_general_error)
    return mfn


# -- copy --------------------------------------------------------------------------------

def copy_end(vcpu, ptr, is_gref, write):
    """Machine address of one end of a GNTTABOP_copy."""
    domain = vcpu.domain
    if is_gref:
        granter = granter_of(domain, ptr.domid)
        allowed(domain, granter, "grant_copy", "w" if write else "r", "copy")
        mfn = granter.grant_table.check(ptr.u.ref, domain, write)
    else:
        if ptr.domid not in (DOMID_SELF, domain.domid):
            raise GrantError(gt.GNTST_permission_denied)
        mfn = ptr.u.gmfn
        if not domain.machine.frame_table.owned(mfn, domain):
            raise GrantError(gt.GNTST_bad_page)
    if write and not domain.machine.frame_table.writable_now(mfn):
        raise GrantError(gt.GNTST_general_error)   # Xen needs the writable type to copy in
    return mfn * PAGE + ptr.offset


def grant_copy(vcpu, op):
    if op.source.offset + op.len > PAGE or op.dest.offset + op.len > PAGE:
        raise GrantError(gt.GNTST_bad_copy_arg)
    src = copy_end(vcpu, op.source, op.flags & gt.GNTCOPY_source_gref, False)
    dst = copy_end(vcpu, op.dest, op.flags & gt.GNTCOPY_dest_gref, True)
    mem = vcpu.domain.machine.mem
    mem[dst:dst + op.len] = mem[src:src + op.len]
    lib.xc_frame_written(vcpu.domain.machine.core, dst // PAGE)
