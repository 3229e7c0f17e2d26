"""Generators for grant_table_op: map and unmap structures aimed at the
domain's own tables, copies between references and local frames, and the
v2 switch (set_version 1 or 2, get_status_frames near the table's size)."""
import ctypes
import struct

from pyxenon.hypercalls import grant_table_op
from pyxenon.public import grant_table as gt, xen

from ..values import sub_op


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
    gt.GNTTABOP_cache_flush: gt.gnttab_cache_flush,
}
GNTMAP_FLAGS = (gt.GNTMAP_host_map, gt.GNTMAP_host_map | gt.GNTMAP_readonly,
                gt.GNTMAP_host_map | gt.GNTMAP_contains_pte, gt.GNTMAP_device_map,
                gt.GNTMAP_device_map | gt.GNTMAP_readonly, gt.GNTMAP_device_map | gt.GNTMAP_host_map, 0)
SINGLE = (gt.GNTTABOP_set_version, gt.GNTTABOP_get_status_frames, gt.GNTTABOP_get_version)


def grant_struct(m, dom, cmd, ctype):
    if cmd == gt.GNTTABOP_map_grant_ref and m.chance(0.7):
        flags = m.rng.choice(GNTMAP_FLAGS)
        addr = m.table_slot(dom) if flags & gt.GNTMAP_contains_pte else m.va(dom)
        return m.struct(dom, ctype, flags=flags, host_addr=addr)
    if cmd == gt.GNTTABOP_copy and m.chance(0.7):
        return copy_struct(m, dom)
    if cmd == gt.GNTTABOP_set_version and m.chance(0.8):
        return m.struct(dom, ctype, version=m.rng.choice((1, 2, 2, 0, 3)))
    if cmd == gt.GNTTABOP_get_status_frames and m.chance(0.8):
        return m.struct(dom, ctype, nr_frames=m.rng.choice((0, 1, 4, 5, 0x80000000)))
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
    # set_version and get_status_frames take one structure (count is 1)
    n = 1 if cmd in SINGLE and m.chance(0.8) else m.rng.randrange(1, 4)
    data = b"".join(grant_struct(m, dom, cmd, ctype) for _ in range(n)) if ctype else None
    count = n if m.chance(0.9) else m.count()
    return m.buffer_call(dom, slot, xen.HYPERVISOR_grant_table_op, (cmd,), data=data,
                         tail=(count,))
