"""grant_table_op: grant tables v1.  The rules live in hypervisor/grants.py;
this module moves the guest's structures.  Each operation of a batch gets
its own GNTST_* status; the hypercall fails only when a structure cannot be
read or written (-EFAULT) or the command is unknown (-ENOSYS)."""
import ctypes
import struct

from pyxenon.hypervisor import grants
from pyxenon._core import lib
from pyxenon.hypervisor.errors import Continuation, HypercallError, preempt_check, spend, sub_op
from pyxenon.hypervisor.guestmem import copy_to_guest, read_struct, write_struct
from pyxenon.public import errno, grant_table as gt, xen

DOMID_SELF = 0x7FF0


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
    op.handle = grants.map_grant(vcpu, op.dom, op.ref, op.flags, op.host_addr)
    op.dev_bus_addr = 0


@with_status
def unmap_one(vcpu, op):
    grants.unmap_grant(vcpu, op.handle, op.host_addr)


@with_status
def copy_one(vcpu, op):
    grants.grant_copy(vcpu, op)


def own_table(vcpu, domid):
    if domid not in (DOMID_SELF, vcpu.domain.domid):
        raise grants.GrantError(gt.GNTST_permission_denied)
    return vcpu.domain.grant_table


@with_status
def setup_one(vcpu, op):
    mfns = own_table(vcpu, op.dom).setup(op.nr_frames)
    copy_to_guest(vcpu, op.frame_list, struct.pack(f"<{len(mfns)}Q", *mfns))


@with_status
def query_one(vcpu, op):
    table = own_table(vcpu, op.dom)
    op.nr_frames, op.max_nr_frames = table.nr_frames, table.max_frames


def gnttab_get_version(vcpu, arg, count):
    op = read_struct(vcpu, arg, gt.gnttab_get_version)
    if op.dom not in (DOMID_SELF, vcpu.domain.domid):
        raise HypercallError(errno.EPERM)
    op.version = 1
    write_struct(vcpu, arg, op)
    return 0


def gnttab_set_version(vcpu, arg, count):
    op = read_struct(vcpu, arg, gt.gnttab_set_version)
    if op.version != 1:
        raise HypercallError(errno.EINVAL)      # v1 only
    return 0


OPS = {
    gt.GNTTABOP_map_grant_ref: lambda v, a, c: each(v, gt.GNTTABOP_map_grant_ref, a, c, gt.gnttab_map_grant_ref, map_one),
    gt.GNTTABOP_unmap_grant_ref: lambda v, a, c: each(v, gt.GNTTABOP_unmap_grant_ref, a, c, gt.gnttab_unmap_grant_ref, unmap_one),
    gt.GNTTABOP_setup_table: lambda v, a, c: each(v, gt.GNTTABOP_setup_table, a, c, gt.gnttab_setup_table, setup_one),
    gt.GNTTABOP_copy: lambda v, a, c: each(v, gt.GNTTABOP_copy, a, c, gt.gnttab_copy, copy_one),
    gt.GNTTABOP_query_size: lambda v, a, c: each(v, gt.GNTTABOP_query_size, a, c, gt.gnttab_query_size, query_one),
    gt.GNTTABOP_get_version: gnttab_get_version,
    gt.GNTTABOP_set_version: gnttab_set_version,
}


def do_grant_table_op(vcpu, cmd, arg, count, *_):
    return sub_op(OPS, cmd)(vcpu, arg, count)


HYPERCALLS = {xen.HYPERVISOR_grant_table_op: do_grant_table_op}
