"""Outputs Xen 4.17 writes best effort, and the grant-table calls that take
one structure: an unwritable done count keeps mmu_update's and mmuext_op's
answer (do_mmu_update, do_mmuext_op ignore copy_to_guest's result), an
unwritable frame list is GNTST_bad_virt_addr with the table grown
(gnttab_setup_table), and setup_table and query_size with a count other
than 1 are -EINVAL.  The deputy guest makes the same calls from inside."""
import struct

import pytest

from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import errno, grant_table as gt, xen

PAGE = 4096
SELF = 0x7FF0
UNMAPPED = 0x1000          # below the start-of-day region: no mapping
SETUP = "<HxxIhxxxxxxQ"    # dom, nr_frames, status, frame_list
QUERY = "<HxxIIhxx"        # dom, nr_frames, max_nr_frames, status


@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"))


def scratch(dom):
    return dom.layout.stack + PAGE


def put(dom, data, off=0):
    copy_to_guest(dom.vcpus[0], scratch(dom) + off, data)
    return scratch(dom) + off


def test_mmu_update_with_an_unwritable_done_count_keeps_its_answer(dom, hypercall):
    target = scratch(dom) + 1024
    ma = dom.pfn_to_mfn(dom.layout.pfn(target)) * PAGE + (target & (PAGE - 1))
    va = put(dom, struct.pack("<QQ", ma | xen.MMU_NORMAL_PT_UPDATE, 42))
    assert hypercall(dom, xen.HYPERVISOR_mmu_update, va, 1, UNMAPPED, SELF) == 0
    assert copy_from_guest(dom.vcpus[0], target, 8) == struct.pack("<Q", 42)


def test_mmuext_op_with_an_unwritable_done_count_keeps_its_answer(dom, hypercall):
    va = put(dom, struct.pack("<IxxxxQQ", xen.MMUEXT_TLB_FLUSH_LOCAL, 0, 0))
    assert hypercall(dom, xen.HYPERVISOR_mmuext_op, va, 1, UNMAPPED, SELF) == 0
    bad = put(dom, struct.pack("<IxxxxQQ", 0xFFFF, 0, 0))
    assert hypercall(dom, xen.HYPERVISOR_mmuext_op, bad, 1, UNMAPPED, SELF) == -errno.ENOSYS


def test_setup_table_with_an_unwritable_frame_list_is_bad_virt_addr(dom, hypercall):
    va = put(dom, struct.pack(SETUP, SELF, 2, 0x55, UNMAPPED))
    assert hypercall(dom, xen.HYPERVISOR_grant_table_op, gt.GNTTABOP_setup_table, va, 1) == 0
    dom_, nr, status, frames = struct.unpack(SETUP, copy_from_guest(dom.vcpus[0], va, 24))
    assert status == gt.GNTST_bad_virt_addr
    assert (dom_, nr, frames) == (SELF, 2, UNMAPPED)       # only the status goes back
    assert dom.grant_table.nr_frames == 2                  # grown all the same


@pytest.mark.parametrize("cmd,fmt,fields", [
    (gt.GNTTABOP_setup_table, SETUP, (SELF, 1, 0, 0)),
    (gt.GNTTABOP_query_size, QUERY, (SELF, 0, 0, 0)),
], ids=["setup_table", "query_size"])
@pytest.mark.parametrize("count", [0, 2])
def test_setup_table_and_query_size_take_one_structure(dom, hypercall, cmd, fmt, fields, count):
    va = put(dom, struct.pack(fmt, *fields))
    assert hypercall(dom, xen.HYPERVISOR_grant_table_op, cmd, va, count) == -errno.EINVAL


@pytest.mark.parametrize("domid,status", [(0, gt.GNTST_permission_denied),
                                          (0x7FEF, gt.GNTST_bad_domain)])
def test_setup_table_and_query_size_for_another_domain(dom, hypercall, domid, status):
    """rcu_lock_domain_by_any_id, then XSM_TARGET: domain 0 exists."""
    va = put(dom, struct.pack(SETUP, domid, 1, 0, scratch(dom) + 512))
    assert hypercall(dom, xen.HYPERVISOR_grant_table_op, gt.GNTTABOP_setup_table, va, 1) == 0
    assert struct.unpack(SETUP, copy_from_guest(dom.vcpus[0], va, 24))[2] == status
    va = put(dom, struct.pack(QUERY, domid, 0, 0, 0))
    assert hypercall(dom, xen.HYPERVISOR_grant_table_op, gt.GNTTABOP_query_size, va, 1) == 0
    assert struct.unpack(QUERY, copy_from_guest(dom.vcpus[0], va, 16))[3] == status
