"""grant_table_op: grant tables v1 and v2.  The rules live in
hypervisor/grants.py (maps), grants_copy.py (copies) and grants_v2.py (the
v2 layout, versions, status frames); this module moves the guest's
structures.  Each operation of a batch gets
its own GNTST_* status; the hypercall fails only when a structure cannot be
read or written (-EFAULT) or the command is unknown (-ENOSYS)."""
import ctypes
import struct

from pyxenon.hypervisor import grants, grants_copy, grants_v2
from pyxenon._core import lib
from pyxenon.hypervisor.errors import (Continuation, GuestFault, HypercallError, preempt_check,
                                       spend, sub_op)
from pyxenon.hypervisor.guestmem import copy_to_guest, guest_handle_okay, read_struct, write_struct
from pyxenon.public import errno, grant_table as gt, xen

DOMID_SELF = 0x7FF0


PAGE = 4096
BUDGET = 256     # operations per trap; the rest through a continuation


def each(vcpu, cmd, arg, count, ctype, one):
    """Run one(op) on count structures at arg, writing each back; a long
    batch, or one past the trap's budget (a copy costs its bytes), continues
    from where it stopped, as Xen's does."""
    size = ctypes.sizeof(ctype)
    count &= 0xFFFFFFFF
    for i in range(min(count, BUDGET)):
        if i and preempt_check(vcpu):
            raise Continuation(cmd, arg + i * size, count - i)
        op = read_struct(vcpu, arg + i * size, ctype)
        one(vcpu, op)
        write_struct(vcpu, arg + i * size, op)
        spend(vcpu, lib.XC_ENTRY_COST + getattr(op, "len", 0))
    if count > BUDGET:
        raise Continuation(cmd, arg + BUDGET * size, count - BUDGET)
    return 0


def with_status(fn):
    def run(vcpu, op):
        try:
            fn(vcpu, op)
            op.status = gt.GNTST_okay
        except grants.GrantError as e:
            op.status = e.status
    return run


@with_status
def map_one(vcpu, op):
    op.handle, op.dev_bus_addr = grants.map_grant(vcpu, op.dom, op.ref, op.flags, op.host_addr)


@with_status
def unmap_one(vcpu, op):
    grants.unmap_grant(vcpu, op.handle, op.host_addr, op.dev_bus_addr)


@with_status
def replace_one(vcpu, op):
    grants.unmap_grant(vcpu, op.handle, op.host_addr, 0, op.new_addr)


@with_status
def copy_one(vcpu, op):
    grants_copy.grant_copy(vcpu, op)


@with_status
def swap_one(vcpu, op):
    vcpu.domain.grant_table.swap(op.ref_a, op.ref_b)


def one_struct(vcpu, arg, count, ctype):
    """setup_table and query_size take exactly one structure (-EINVAL)."""
    if count != 1:
        raise HypercallError(errno.EINVAL)
    return read_struct(vcpu, arg, ctype)


def gnttab_setup_table(vcpu, arg, count):
    """gnttab_setup_table: the frame list's handle checked (-EFAULT), the
    table grown, each frame number copied out best effort (a frame the list
    cannot take: GNTST_bad_virt_addr); only the status goes back."""
    op = one_struct(vcpu, arg, count, gt.gnttab_setup_table)
    if not guest_handle_okay(op.frame_list):
        raise HypercallError(errno.EFAULT)
    try:
        table = domain_by_any_id(vcpu, op.dom)
        status = gt.GNTST_bad_domain if table is None else \
            frame_list_status(vcpu, op.frame_list, table.setup(op.nr_frames))
    except HypercallError:
        status = gt.GNTST_permission_denied       # xsm_grant_setup
    except grants.GrantError as e:
        status = e.status
    copy_to_guest(vcpu, arg + gt.gnttab_setup_table.status.offset, struct.pack("<h", status))
    return 0


def gnttab_query_size(vcpu, arg, count):
    op = one_struct(vcpu, arg, count, gt.gnttab_query_size)
    try:
        table = domain_by_any_id(vcpu, op.dom)
        op.status = gt.GNTST_bad_domain if table is None else gt.GNTST_okay
        if table is not None:
            op.nr_frames, op.max_nr_frames = table.nr_frames, table.max_frames
    except HypercallError:
        op.status = gt.GNTST_permission_denied    # xsm_grant_query_size
    write_struct(vcpu, arg, op)
    return 0


def frame_list_status(vcpu, frame_list, mfns):
    status = gt.GNTST_okay
    for i, mfn in enumerate(mfns):
        try:
            copy_to_guest(vcpu, frame_list + 8 * i, struct.pack("<Q", mfn))
        except GuestFault:
            status = gt.GNTST_bad_virt_addr
    return status


def cache_flush_one(vcpu, op):
    """_cache_flush on x86: the range and op checked (-EINVAL; the
    GNTTAB_CACHE_SOURCE_GREF bit is outside the op mask, so -EINVAL too);
    nothing to do is 0; then the frame (cache_flush_frame).  A clean (with
    or without invalidate) is a cache flush, which the engine needs not:
    0; invalidate alone is -EOPNOTSUPP on x86."""
    flush = gt.GNTTAB_CACHE_CLEAN | gt.GNTTAB_CACHE_INVAL
    if op.offset >= PAGE or op.offset + op.length > PAGE or op.op & ~flush:
        return -errno.EINVAL           # (length > PAGE fails offset + length too)
    if op.length == 0 or op.op == 0:
        return 0
    rc = cache_flush_frame(vcpu, op.a.dev_bus_addr >> 12)
    return rc or (-errno.EOPNOTSUPP if op.op == gt.GNTTAB_CACHE_INVAL else 0)


def cache_flush_frame(vcpu, mfn):
    """The frame must exist (-EINVAL), belong to a domain (-EPERM) and, if
    not the caller's, be mapped by the caller through one of its owner's
    grants (grant_map_exists: -EINVAL)."""
    machine = vcpu.domain.machine
    if mfn >= machine.nr_frames:
        return -errno.EINVAL
    owner = machine.domains.get(machine.core.frames[mfn].owner)
    if owner is None or owner.state == "dead":
        return -errno.EPERM
    me = vcpu.domain.domid
    if owner is not vcpu.domain and not any(
            a.domid == me and a.mfn == mfn for a in owner.grant_table.active.values()):
        return -errno.EINVAL
    return 0


def gnttab_cache_flush(vcpu, arg, count):
    """gnttab_cache_flush: the first failure is the hypercall's answer."""
    size = ctypes.sizeof(gt.gnttab_cache_flush)
    count &= 0xFFFFFFFF
    for i in range(min(count, BUDGET)):
        if i and preempt_check(vcpu):
            raise Continuation(gt.GNTTABOP_cache_flush, arg + i * size, count - i)
        rc = cache_flush_one(vcpu, read_struct(vcpu, arg + i * size, gt.gnttab_cache_flush))
        if rc < 0:
            return rc
    if count > BUDGET:
        raise Continuation(gt.GNTTABOP_cache_flush, arg + BUDGET * size, count - BUDGET)
    return 0


def domain_by_any_id(vcpu, domid):
    """rcu_lock_domain_by_any_id then xsm's XSM_TARGET check: the caller's
    own table, or None for a domain that does not exist; -EPERM for
    another domain (domain 0, the toolstack here, exists)."""
    if domid in (DOMID_SELF, vcpu.domain.domid):
        return vcpu.domain.grant_table
    other = vcpu.domain.machine.domains.get(domid)
    if domid != 0 and (other is None or other.state == "dead"):
        return None
    raise HypercallError(errno.EPERM)


def gnttab_get_version(vcpu, arg, count):
    """gnttab_get_version: -ESRCH, then XSM's -EPERM, then the version."""
    op = read_struct(vcpu, arg, gt.gnttab_get_version)
    table = domain_by_any_id(vcpu, op.dom)
    if table is None:
        raise HypercallError(errno.ESRCH)
    op.version = table.version
    write_struct(vcpu, arg, op)
    return 0


def gnttab_set_version(vcpu, arg, count):
    """gnttab_set_version: the version in use is written back whatever
    the answer."""
    op = read_struct(vcpu, arg, gt.gnttab_set_version)
    rc, op.version = grants_v2.set_version(vcpu.domain.grant_table, op.version)
    write_struct(vcpu, arg, op)
    return rc


def gnttab_get_status_frames(vcpu, arg, count):
    """gnttab_get_status_frames: one structure only (-EINVAL), its frame
    list's handle checked (-EFAULT), then a GNTST_* status."""
    if count != 1:
        raise HypercallError(errno.EINVAL)
    op = read_struct(vcpu, arg, gt.gnttab_get_status_frames)
    if not guest_handle_okay(op.frame_list):
        raise HypercallError(errno.EFAULT)
    try:
        op.status = status_frames(vcpu, op)
    except HypercallError:
        op.status = gt.GNTST_permission_denied       # xsm_grant_setup
    write_struct(vcpu, arg, op)
    return 0


def status_frames(vcpu, op):
    table = domain_by_any_id(vcpu, op.dom)
    if table is None:
        return gt.GNTST_bad_domain
    if op.nr_frames > table.nr_status_frames:
        return gt.GNTST_general_error
    return frame_list_status(vcpu, op.frame_list,
                             [table.status_mfn(i) for i in range(op.nr_frames)])


def gnttab_transfer(vcpu, arg, count):
    """Refused: EOPNOTSUPP pages never change owner (after -EFAULT; gnttab_transfer)

    Xen's answer when booted with gnttab=transfer=0 (opt_grant_transfer):
    each domain's memory stays the partition it was created with."""
    if not guest_handle_okay(arg):
        raise HypercallError(errno.EFAULT)
    raise HypercallError(errno.EOPNOTSUPP)


OPS = {
    gt.GNTTABOP_map_grant_ref: lambda v, a, c: each(v, gt.GNTTABOP_map_grant_ref, a, c, gt.gnttab_map_grant_ref, map_one),
    gt.GNTTABOP_unmap_grant_ref: lambda v, a, c: each(v, gt.GNTTABOP_unmap_grant_ref, a, c, gt.gnttab_unmap_grant_ref, unmap_one),
    gt.GNTTABOP_unmap_and_replace: lambda v, a, c: each(v, gt.GNTTABOP_unmap_and_replace, a, c, gt.gnttab_unmap_and_replace, replace_one),
    gt.GNTTABOP_setup_table: gnttab_setup_table,
    gt.GNTTABOP_copy: lambda v, a, c: each(v, gt.GNTTABOP_copy, a, c, gt.gnttab_copy, copy_one),
    gt.GNTTABOP_query_size: gnttab_query_size,
    gt.GNTTABOP_get_version: gnttab_get_version,
    gt.GNTTABOP_swap_grant_ref: lambda v, a, c: each(v, gt.GNTTABOP_swap_grant_ref, a, c, gt.gnttab_swap_grant_ref, swap_one),
    gt.GNTTABOP_set_version: gnttab_set_version,
    gt.GNTTABOP_get_status_frames: gnttab_get_status_frames,
    gt.GNTTABOP_cache_flush: gnttab_cache_flush,
    gt.GNTTABOP_transfer: gnttab_transfer,
}


# Xen's own (common/grant_table.c, not public): cmd's bits above the
# command carry a continuation's progress, for cache_flush only.
GNTTABOP_CMD_MASK = (1 << 12) - 1


def do_grant_table_op(vcpu, cmd, arg, count, *_):
    """do_grant_table_op: a negative (int) count and progress bits on any
    command but cache_flush are -EINVAL, before the command is looked at."""
    cmd, count = cmd & 0xFFFFFFFF, count & 0xFFFFFFFF
    if count >= 1 << 31:
        raise HypercallError(errno.EINVAL)
    if cmd & ~GNTTABOP_CMD_MASK and cmd & GNTTABOP_CMD_MASK != gt.GNTTABOP_cache_flush:
        raise HypercallError(errno.EINVAL)
    return sub_op(OPS, cmd & GNTTABOP_CMD_MASK)(vcpu, arg, count)


HYPERCALLS = {xen.HYPERVISOR_grant_table_op: do_grant_table_op}
