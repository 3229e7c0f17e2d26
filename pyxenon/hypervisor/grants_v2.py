"""Grant tables v2 (Xen 4.17's common/grant_table.c): 16-byte entries
(grant_entry_v2: full-page, sub-page and transitive grants), the status
frames that hold GTF_reading/GTF_writing apart from the entries (one
grant_status_t per ref), and the switch between layouts
(gnttab_set_version).

The status frames are Xen's pages: while the table is v1 they are Xen's
own (not populated, unreachable by the guest); gnttab_populate_status_frames
shares them with the domain (a permanent writable type, as
share_xen_page_with_guest gives), gnttab_unpopulate_status_frames takes
them back, refusing (-EBUSY) while the guest still holds a reference to one
(a mapping in its page tables).
"""
import struct

from pyxenon._core import lib
from pyxenon.public import errno, grant_table as gt

PAGE = 4096
ENTRY = 16                          # sizeof(grant_entry_v2_t)
GRANT_PER_PAGE = PAGE // ENTRY      # 256
STATUS_PER_PAGE = PAGE // 2         # sizeof(grant_status_t) == 2
OWNER_XEN = 0x7FF2                  # _core/core.h: Xen's own frames


def grant_to_status_frames(grant_frames):
    """grant_to_status_frames: status frames covering that many v2 frames."""
    return -(-grant_frames * GRANT_PER_PAGE // STATUS_PER_PAGE)


def status_to_grant_frames(status_frames):
    return -(-status_frames * STATUS_PER_PAGE // GRANT_PER_PAGE)


def read_v2(mem, off):
    """(flags, domid, the 8 bytes after the header, frame) of the v2 entry at off."""
    flags, domid, mid, frame = struct.unpack_from("<HHIQ", mem, off)
    return flags, domid, mid, frame


# -- status frames -------------------------------------------------------------------

def unshare_all(table):
    """At creation: every status frame is Xen's until a v2 table needs it."""
    frames = table.domain.machine.core.frames
    for i in range(table.max_status_frames):
        frames[table.status_mfn(i)].owner = OWNER_XEN


def populate(table, grant_frames):
    """gnttab_populate_status_frames: enough cleared status frames for
    grant_frames v2 frames, shared with the domain."""
    machine = table.domain.machine
    frames = machine.core.frames
    for i in range(table.nr_status_frames, grant_to_status_frames(grant_frames)):
        mfn = table.status_mfn(i)
        machine.mem[mfn * PAGE:(mfn + 1) * PAGE] = bytes(PAGE)      # clear_page
        frames[mfn].owner = table.domain.domid
        frames[mfn].type, frames[mfn].type_count = lib.PGT_WRITABLE, 1
        frames[mfn].flags |= lib.PGF_VALIDATED
        table.nr_status_frames = i + 1


def unpopulate(table):
    """gnttab_unpopulate_status_frames: -EBUSY while any status frame has
    a reference beyond Xen's own (the page's count_info after
    put_page_alloc_ref); then every frame is Xen's again."""
    machine = table.domain.machine
    frames = machine.core.frames
    mfns = [table.status_mfn(i) for i in range(table.nr_status_frames)]
    if any(frames[mfn].count or frames[mfn].type_count != 1 for mfn in mfns):
        return -errno.EBUSY
    for mfn in mfns:
        frames[mfn].owner, frames[mfn].type_count = OWNER_XEN, 0
        lib.xc_frame_written(machine.core, mfn)
    table.nr_status_frames = 0
    lib.xc_request_flush(machine.core)
    return 0


def status_frame_mfn(table, idx):
    """gnttab_get_status_frame_mfn (add_to_physmap's XENMAPIDX_grant_table_status):
    the table grows to make idx valid when it can, else -EINVAL."""
    if idx >= table.nr_status_frames:
        nr_grant = status_to_grant_frames(idx + 1)
        if nr_grant <= table.max_frames:
            table.grow(nr_grant)
        if idx >= table.nr_status_frames:
            return None
    return table.status_mfn(idx)


# -- switching versions -------------------------------------------------------------

def set_version(table, version):
    """gnttab_set_version: (rc, version now in use)."""
    if version not in (1, 2):
        return -errno.EINVAL, table.version
    if version == 2 and table.max_version == 1:
        return -errno.ENOSYS, table.version     # "behave as before set_version"
    if version == table.version:
        return 0, table.version
    rc = switch_refused(table)
    if rc:
        return rc, table.version
    if table.version == 1:
        populate(table, table.nr_frames)
    reserved = reserved_entries(table)
    if table.version == 2:
        rc = unpopulate(table)
        if rc:
            return rc, table.version
    clear_shared(table)
    table.version = version
    restore_reserved(table, reserved)
    return 0, version


def switch_refused(table):
    """-EBUSY while any entry past the toolstack's reserved ones is pinned
    (the first 8 may stay mapped: xenconsoled and xenstored keep them);
    -ERANGE leaving v2 if a reserved entry has no v1 form (a frame above
    32 bits, or a transitive grant)."""
    nr = table.nr_entries()
    if any(gt.GNTTAB_NR_RESERVED_ENTRIES <= ref < nr for ref in table.active):
        return -errno.EBUSY
    if table.version == 2:
        for ref in range(gt.GNTTAB_NR_RESERVED_ENTRIES):
            flags, _domid, _mid, frame = read_v2(table.domain.machine.mem, table.entry_offset(ref))
            kind = flags & gt.GTF_type_mask
            if kind == gt.GTF_transitive or (kind == gt.GTF_permit_access and frame >> 32):
                return -errno.ERANGE
    return 0


def reserved_entries(table):
    """The first 8 entries as v1 entries (flags with the in-use bits):
    from v2 only full-page permit_access entries survive, the rest become
    invalid, as gnttab_set_version's "preserve" step has it."""
    mem = table.domain.machine.mem
    out = []
    for ref in range(gt.GNTTAB_NR_RESERVED_ENTRIES):
        off = table.entry_offset(ref)
        if table.version == 1:
            out.append(struct.unpack_from("<HHI", mem, off))
            continue
        flags, domid, _mid, frame = read_v2(mem, off)
        if flags & gt.GTF_type_mask == gt.GTF_permit_access:
            out.append((flags | table.status(ref), domid, frame & 0xFFFFFFFF))
        else:
            out.append((0, 0, 0))
    return out


def clear_shared(table):
    mem = table.domain.machine.mem
    for i in range(table.nr_frames):
        mfn = table.first_mfn + i
        mem[mfn * PAGE:(mfn + 1) * PAGE] = bytes(PAGE)
        lib.xc_frame_written(table.domain.machine.core, mfn)


def restore_reserved(table, reserved):
    mem = table.domain.machine.mem
    busy = gt.GTF_reading | gt.GTF_writing
    for ref, (flags, domid, frame) in enumerate(reserved):
        off = table.entry_offset(ref)
        if table.version == 1:
            struct.pack_into("<HHI", mem, off, flags, domid, frame)
        else:
            struct.pack_into("<HHIQ", mem, off, flags & ~busy, domid, 0, frame)
            struct.pack_into("<H", mem, table.status_offset(ref), flags & busy)
