"""Grant copies and dom0's backends: GNTTABOP_copy (gnttab_copy_one),
acquire_grant_for_copy's checks (v1, v2 full-page, sub-page and one level
of transitive grant), and the host backends' way to a guest's granted
frames (backend_map keeps a ring mapped; backend_frame checks one copy).

A copy finishes before the engine runs again, so the pin and in-use bits
acquire_grant_for_copy takes are dropped at once (release_grant_for_copy):
only the checks and the frame and byte range they yield remain.
"""
import struct

from pyxenon._core import ffi, lib
from pyxenon.public import grant_table as gt

from .errors import GrantError
from .grants import BACKEND, DOMID_SELF, PAGE, WRITABLE, Mapping, allowed, granter_of, release

GNTCOPY_REFS = {True: gt.GNTCOPY_source_gref, False: gt.GNTCOPY_dest_gref}


class Span:
    """A granted frame and the bytes of it a copy may touch."""
    __slots__ = ("mfn", "start", "length")

    def __init__(self, mfn, start=0, length=PAGE):
        self.mfn, self.start, self.length = mfn, start, length

    def covers(self, offset, length):
        return self.start <= offset and offset + length <= self.start + self.length


def acquire(granter, ref, grantee, readonly, allow_transitive=True):
    """acquire_grant_for_copy (then release_grant_for_copy): the Span
    granter's ref gives grantee, or GrantError."""
    table = granter.grant_table
    off = table.entry_offset(ref)                         # GNTST_bad_gntref
    act = usable_active(table, ref, grantee, readonly)
    flags = struct.unpack_from("<H", granter.machine.mem, off)[0]
    if table.version == 2 and flags & gt.GTF_type_mask == gt.GTF_transitive:
        return transitive(granter, ref, grantee, readonly, allow_transitive)
    if act is not None and (readonly or act.writers):
        # Pinned already: the active entry's frame, still the granter's.
        if not granter.machine.frame_table.owned(act.mfn, granter):
            raise GrantError(gt.GNTST_bad_domain)
        return Span(act.mfn)
    flags = table.set_status(ref, grantee, not readonly, mapflag=False, mark=False)
    try:
        return own_span(table, ref, flags)
    finally:
        table.reduce_status(ref, readonly)


def usable_active(table, ref, grantee, readonly):
    """ref's active entry, if pinned: for grantee, its counter not full."""
    act = table.active.get(ref)
    if act is not None and (act.domid != grantee.domid
                            or act.would_overflow(gt.GNTMAP_host_map, readonly)):
        raise GrantError(gt.GNTST_general_error)
    return act


def own_span(table, ref, flags):
    """The entry's own frame (get_paged_frame) and bytes: the whole page,
    or a v2 sub-page grant's page_off and length."""
    frame = table.paged_frame(ref)
    if table.version == 2 and flags & gt.GTF_sub_page:
        off = table.entry_offset(ref)
        page_off, length = struct.unpack_from("<HH", table.domain.machine.mem, off + 4)
        return Span(frame, page_off, length)
    return Span(frame)


def transitive(granter, ref, grantee, readonly, allow_transitive):
    """A v2 GTF_transitive entry: granter passes on trans_domid's grant
    gref; the copy reaches that one (acquired for granter, never itself
    transitive).  A transitive entry is never pinned by a map, so one that
    is was rewritten under its pin: Xen retries the copy (ERESTART) until
    it changes; here it fails."""
    table = granter.grant_table
    if ref in table.active:
        raise GrantError(gt.GNTST_general_error)
    table.set_status(ref, grantee, not readonly, mapflag=False, mark=False)
    try:
        if not allow_transitive:
            raise GrantError(gt.GNTST_general_error)
        trans_domid, gref = struct.unpack_from("<HxxI", granter.machine.mem, table.entry_offset(ref) + 4)
        if trans_domid == granter.domid:
            raise GrantError(gt.GNTST_general_error)    # "cannot be self-referential"
        td = trans_domain(granter, trans_domid)
        if grantee is not BACKEND and td is not grantee:
            # pyxenon's MSM: the copy is a path from grantee to td as well.
            allowed(grantee, td, "grant_copy", "r" if readonly else "w", "copy")
        return acquire(td, gref, granter, readonly, allow_transitive=False)
    finally:
        table.reduce_status(ref, readonly)


def trans_domain(granter, domid):
    """The domain a transitive grant names; any that does not exist (or
    domain 0, which grants nothing to a guest) fails the copy."""
    try:
        return granter_of(granter, domid if domid != DOMID_SELF else 0xFFFF)
    except GrantError:
        raise GrantError(gt.GNTST_general_error) from None


# -- GNTTABOP_copy -------------------------------------------------------------------

def copy_domain(vcpu, ptr, is_gref):
    """gnttab_copy_lock_domain: a frame end must be DOMID_SELF."""
    if not is_gref:
        if ptr.domid != DOMID_SELF:
            raise GrantError(gt.GNTST_permission_denied)
        return vcpu.domain
    return granter_of(vcpu.domain, ptr.domid)


def claim(vcpu, domain, ptr, is_gref, write):
    """gnttab_copy_claim_buf: the Span of one end, writable if it is the
    destination."""
    if is_gref:
        span = acquire(domain, ptr.u.ref, vcpu.domain, readonly=not write)
    else:
        if not domain.machine.frame_table.owned(ptr.u.gmfn, domain):
            raise GrantError(gt.GNTST_bad_page)         # get_paged_frame
        span = Span(ptr.u.gmfn)
    if write and not domain.machine.frame_table.writable_now(span.mfn):
        raise GrantError(gt.GNTST_general_error)       # "Could not get writable frame"
    return span


def grant_copy(vcpu, op):
    """gnttab_copy_one: both domains, the policy, both ends, then the
    bounds (of the page, then of a sub-page grant)."""
    src_gref, dst_gref = op.flags & gt.GNTCOPY_source_gref, op.flags & gt.GNTCOPY_dest_gref
    src_dom = copy_domain(vcpu, op.source, src_gref)
    dst_dom = copy_domain(vcpu, op.dest, dst_gref)
    for dom, access in ((src_dom, "r"), (dst_dom, "w")):
        if dom is not vcpu.domain:
            allowed(vcpu.domain, dom, "grant_copy", access, "copy")
    src = claim(vcpu, src_dom, op.source, src_gref, False)
    dst = claim(vcpu, dst_dom, op.dest, dst_gref, True)
    if op.source.offset + op.len > PAGE or op.dest.offset + op.len > PAGE:
        raise GrantError(gt.GNTST_bad_copy_arg)
    if not src.covers(op.source.offset, op.len) or not dst.covers(op.dest.offset, op.len):
        raise GrantError(gt.GNTST_general_error)       # "copy source/dest out of bounds"
    mem = vcpu.domain.machine.mem
    s, d = src.mfn * PAGE + op.source.offset, dst.mfn * PAGE + op.dest.offset
    mem[d:d + op.len] = mem[s:s + op.len]
    lib.xc_frame_written(vcpu.domain.machine.core, dst.mfn)


# -- dom0's backends ----------------------------------------------------------------

def backend_map(granter, ref):
    """A backend maps granter's ref writable, as Linux's backends map their
    rings (xenbus_map_ring_valloc -> GNTTABOP_map_grant_ref from dom0): the
    entry must permit domid 0 writably (a full page: no sub-page or
    transitive grant maps); the frame's writable type and the in-use bits
    are held until backend_unmap, so the guest can neither end the grant
    nor turn the frame into a page table meanwhile.  Returns (handle, mfn)."""
    if granter.state == "dead":
        raise GrantError(gt.GNTST_bad_domain)
    table = granter.grant_table
    mfn = table.pin_for_map(ref, BACKEND, True, gt.GNTMAP_device_map)
    machine = granter.machine
    if lib.xc_get_page_and_type(machine.core, ffi.NULL, mfn, granter.domid, WRITABLE, 0) != 0:
        table.pin(ref, False, gt.GNTMAP_device_map, -1)
        table.reduce_status(ref, False)
        raise GrantError(gt.GNTST_general_error)
    backends = machine.backend_grants
    handle = backends.new_handle()
    backends.maptrack[handle] = Mapping(granter, ref, mfn, None, False, gt.GNTMAP_device_map)
    return handle, mfn


def backend_unmap(machine, handle):
    if handle in machine.backend_grants.maptrack:
        release(machine, machine.backend_grants, handle)


def backend_frame(granter, ref, write, offset=0, length=PAGE, mapped=False):
    """The frame a backend may copy to (write) or from, by granter's entry
    ref, for length bytes at offset, done before the engine runs again:
    checked as GNTTABOP_copy checks it (acquire_grant_for_copy, grantee
    dom0: a transitive grant followed, a sub-page one covering the bytes),
    or, for a backend that maps (blkback), as map_grant_ref does (a
    whole-page grant only)."""
    if granter.state == "dead":
        raise GrantError(gt.GNTST_bad_domain)
    span = acquire(granter, ref, BACKEND, not write, allow_transitive=not mapped)
    if write and not granter.machine.frame_table.writable_now(span.mfn):
        raise GrantError(gt.GNTST_general_error)
    whole = span.start == 0 and span.length == PAGE
    if not span.covers(offset, length) or (mapped and not whole):
        raise GrantError(gt.GNTST_general_error)
    return span.mfn
