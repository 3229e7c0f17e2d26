"""hvm_op from a PV domain, answered as Xen 4.17's do_hvm_op answers one:
the HVM-only ops refuse in their own order of checks, get_time, xentrace
and guest_request_vm_event work, anything else is -ENOSYS."""
import struct

import pytest

from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import errno, hvm, xen

PAGE = 4096
UNMAPPED = 0x10
SELF = xen.DOMID_SELF


@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"))


def hvm_op(dom, op, data=None):
    """hvm_op(op) on data put in guest memory (or on UNMAPPED)."""
    va = UNMAPPED
    if data is not None:
        va = dom.layout.stack + 2 * PAGE
        copy_to_guest(dom.vcpus[0], va, data)
    return dom.vcpus[0].hypercall(xen.HYPERVISOR_hvm_op, op, va)


@pytest.mark.parametrize("op", [hvm.HVMOP_set_param, hvm.HVMOP_get_param])
def test_params_are_hvm_domains(dom, op):
    assert hvm_op(dom, op) == -errno.EFAULT
    assert hvm_op(dom, op, struct.pack("<HxxIQ", SELF, hvm.HVM_NR_PARAMS, 0)) == -errno.EINVAL
    assert hvm_op(dom, op, struct.pack("<HxxIQ", 999, 1, 0)) == -errno.ESRCH
    for domid in (SELF, 0):
        assert hvm_op(dom, op, struct.pack("<HxxIQ", domid, 1, 0)) == -errno.EINVAL


def test_pv_caller_ops_refuse_before_reading(dom):
    assert hvm_op(dom, hvm.HVMOP_set_evtchn_upcall_vector) == -errno.EINVAL
    assert hvm_op(dom, hvm.HVMOP_altp2m) == -errno.EOPNOTSUPP
    assert dom.vcpus[0].hypercall(xen.HYPERVISOR_hvm_op, hvm.HVMOP_flush_tlbs, 0) == -errno.EINVAL
    assert hvm_op(dom, hvm.HVMOP_flush_tlbs) == -errno.EINVAL


def test_pagetable_dying(dom):
    op = hvm.HVMOP_pagetable_dying
    assert hvm_op(dom, op) == -errno.EFAULT
    assert hvm_op(dom, op, struct.pack("<H6xQ", 999, 0)) == -errno.ESRCH
    assert hvm_op(dom, op, struct.pack("<H6xQ", 0, 0)) == -errno.EOPNOTSUPP
    assert hvm_op(dom, op, struct.pack("<H6xQ", SELF, 0)) == -errno.EINVAL
    assert hvm_op(dom, op, struct.pack("<H6xQ", dom.domid, 0)) == -errno.EINVAL


def test_get_mem_type(dom):
    op = hvm.HVMOP_get_mem_type
    assert hvm_op(dom, op) == -errno.EFAULT
    assert hvm_op(dom, op, struct.pack("<HH4xQ", 999, 0, 0)) == -errno.ESRCH
    assert hvm_op(dom, op, struct.pack("<HH4xQ", 0, 0, 0)) == -errno.EPERM
    assert hvm_op(dom, op, struct.pack("<HH4xQ", SELF, 0, 0)) == -errno.EINVAL


def test_get_time_is_xens_system_time(dom):
    va = dom.layout.stack + 2 * PAGE
    before = dom.machine.now()
    assert dom.vcpus[0].hypercall(xen.HYPERVISOR_hvm_op, hvm.HVMOP_get_time, va) == 0
    (now,) = struct.unpack("<Q", copy_from_guest(dom.vcpus[0], va, 8))
    assert before <= now <= dom.machine.now()
    assert hvm_op(dom, hvm.HVMOP_get_time) == -errno.EFAULT


def test_xentrace_checks_the_record(dom):
    op = hvm.HVMOP_xentrace
    assert hvm_op(dom, op) == -errno.EFAULT
    assert hvm_op(dom, op, struct.pack("<HH28x", 0x123, 28)) == 0
    assert hvm_op(dom, op, struct.pack("<HH28x", 0x123, 29)) == -errno.EINVAL
    assert hvm_op(dom, op, struct.pack("<HH28x", 0x1000, 0)) == -errno.EINVAL


def test_guest_request_vm_event_wants_null(dom):
    assert dom.vcpus[0].hypercall(xen.HYPERVISOR_hvm_op, hvm.HVMOP_guest_request_vm_event, 0) == 0
    assert hvm_op(dom, hvm.HVMOP_guest_request_vm_event) == -errno.EINVAL


@pytest.mark.parametrize("op", [2, 3, 4, hvm.HVMOP_set_mem_access, hvm.HVMOP_get_mem_access, 14, 26, 1 << 32])
def test_other_ops_are_enosys(dom, op):
    assert hvm_op(dom, op) == -errno.ENOSYS
