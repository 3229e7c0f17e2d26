"""physdev_op's PIRQ and PCI operations, answered as Xen 4.17's
do_physdev_op and pci_physdev_op answer an unprivileged PV domU with no
devices: the order of checks (-EFAULT, -EINVAL, -ESRCH before XSM's -EPERM,
or XSM first), and get_free_pirq's numbering."""
import struct

import pytest

from pyxenon.hypercalls import physdev_op
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import errno, event_channel as ev, physdev as ph, xen
from test_xen_refusals import PAGE, UNMAPPED, dom  # noqa: F401  (dom: the fixture)

GSI, MSI = ph.MAP_PIRQ_TYPE_GSI, ph.MAP_PIRQ_TYPE_MSI


def physdev(hypercall, dom, cmd, data):
    """(rc, the argument afterwards) of physdev_op(cmd) on data in guest memory."""
    va = dom.layout.stack + 2 * PAGE
    copy_to_guest(dom.vcpus[0], va, data)
    rc = hypercall(dom, xen.HYPERVISOR_physdev_op, cmd, va)
    return rc, copy_from_guest(dom.vcpus[0], va, len(data))


def get_free_pirq(hypercall, dom, kind):
    rc, out = physdev(hypercall, dom, ph.PHYSDEVOP_get_free_pirq, struct.pack("<iI", kind, 0))
    return rc, struct.unpack("<iI", out)[1]


def test_get_free_pirq_numbers_as_xen():
    """get_free_pirq: a GSI takes the lowest free of 16..23, then as any
    other type the highest free above nr_irqs_gsi (24..55)."""
    assert physdev_op.free_pirq(set(), GSI) == 16
    assert physdev_op.free_pirq(set(range(16, 24)), GSI) == 55
    assert physdev_op.free_pirq(set(), MSI) == 55
    assert physdev_op.free_pirq({55, 54}, MSI) == 53
    with pytest.raises(Exception) as info:
        physdev_op.free_pirq(set(range(24, 56)), MSI)
    assert info.value.errno == errno.ENOSPC
    assert physdev_op.free_pirq(set(range(24, 56)), GSI) == 16


def test_get_free_pirq_allocates_until_none_is_left(dom, hypercall):
    assert get_free_pirq(hypercall, dom, GSI) == (0, 16)
    assert get_free_pirq(hypercall, dom, MSI) == (0, 55)
    assert get_free_pirq(hypercall, dom, 99) == (0, 54)         # any other type: from the top
    got = [get_free_pirq(hypercall, dom, MSI) for _ in range(30)]
    assert got == [(0, p) for p in range(53, 24 - 1, -1)]
    assert get_free_pirq(hypercall, dom, MSI)[0] == -errno.ENOSPC
    assert [get_free_pirq(hypercall, dom, GSI) for _ in range(7)] == [(0, p) for p in range(17, 24)]
    assert get_free_pirq(hypercall, dom, GSI)[0] == -errno.ENOSPC
    assert dom.pirqs == set(range(16, 56))


def test_get_free_pirq_faults_before_and_after(dom, hypercall):
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, ph.PHYSDEVOP_get_free_pirq, UNMAPPED) \
        == -errno.EFAULT
    assert dom.pirqs == set()
    # read-only argument: Xen allocates under the event lock, then the copy back faults
    ro = dom.layout.pt_base
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, ph.PHYSDEVOP_get_free_pirq, ro) \
        == -errno.EFAULT
    assert len(dom.pirqs) == 1


def test_eoi_knows_the_allocated_pirqs_only(dom, hypercall):
    eoi = ph.PHYSDEVOP_eoi
    assert physdev(hypercall, dom, eoi, struct.pack("<I", 55))[0] == -errno.EINVAL
    assert get_free_pirq(hypercall, dom, MSI) == (0, 55)
    assert physdev(hypercall, dom, eoi, struct.pack("<I", 55))[0] == 0
    assert physdev(hypercall, dom, eoi, struct.pack("<I", 54))[0] == -errno.EINVAL
    assert physdev(hypercall, dom, eoi, struct.pack("<I", 56))[0] == -errno.EINVAL


def test_an_allocated_pirq_is_still_not_the_domains_to_bind(dom, hypercall):
    """evtchn_bind_pirq: pirq_access_permitted finds no IRQ behind
    PIRQ_ALLOCATED; irq_status_query answers as before."""
    assert get_free_pirq(hypercall, dom, MSI) == (0, 55)
    va = dom.layout.stack + 2 * PAGE
    copy_to_guest(dom.vcpus[0], va, struct.pack("<III", 55, 0, 0))
    assert hypercall(dom, xen.HYPERVISOR_event_channel_op, ev.EVTCHNOP_bind_pirq, va) == -errno.EPERM
    rc, out = physdev(hypercall, dom, ph.PHYSDEVOP_irq_status_query, struct.pack("<iI", 55, 0))
    assert rc == 0 and struct.unpack("<iI", out)[1] == 1        # XENIRQSTAT_needs_eoi only


def map_pirq_arg(domid, kind, table_base=0):
    return struct.pack(physdev_op.MAP_PIRQ, domid, kind, 0, -1, 0, 0, 1, table_base)


def test_map_pirq_in_xens_order(dom, hypercall):
    op = ph.PHYSDEVOP_map_pirq
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, op, UNMAPPED) == -errno.EFAULT
    multi = ph.MAP_PIRQ_TYPE_MULTI_MSI
    assert physdev(hypercall, dom, op, map_pirq_arg(999, multi, table_base=1))[0] == -errno.EINVAL
    assert physdev(hypercall, dom, op, map_pirq_arg(999, GSI))[0] == -errno.ESRCH
    for domid in (xen.DOMID_SELF, dom.domid, 0):
        rc, out = physdev(hypercall, dom, op, map_pirq_arg(domid, GSI))
        assert rc == -errno.EPERM and out == map_pirq_arg(domid, GSI)


def test_map_pirq_copies_back_even_a_refusal(dom, hypercall):
    ro = dom.layout.pt_base
    before = copy_from_guest(dom.vcpus[0], ro, 40)
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, ph.PHYSDEVOP_map_pirq, ro) == -errno.EFAULT
    assert copy_from_guest(dom.vcpus[0], ro, 40) == before


def test_unmap_pirq(dom, hypercall):
    op = ph.PHYSDEVOP_unmap_pirq
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, op, UNMAPPED) == -errno.EFAULT
    assert physdev(hypercall, dom, op, struct.pack("<Hxxi", 999, 55))[0] == -errno.ESRCH
    assert physdev(hypercall, dom, op, struct.pack("<Hxxi", xen.DOMID_SELF, 55))[0] == -errno.EPERM


@pytest.mark.parametrize("cmd, size", [
    (ph.PHYSDEVOP_manage_pci_add, 2), (ph.PHYSDEVOP_manage_pci_remove, 2),
    (ph.PHYSDEVOP_manage_pci_add_ext, 16), (ph.PHYSDEVOP_pci_device_add, 12),
    (ph.PHYSDEVOP_pci_device_remove, 4), (ph.PHYSDEVOP_prepare_msix, 4),
    (ph.PHYSDEVOP_release_msix, 4), (ph.PHYSDEVOP_apic_read, 16),
    (ph.PHYSDEVOP_apic_write, 16), (ph.PHYSDEVOP_alloc_irq_vector, 8),
    (ph.PHYSDEVOP_setup_gsi, 8),
])
def test_pci_ops_copy_then_xsm_refuses(dom, hypercall, cmd, size):
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, cmd, UNMAPPED) == -errno.EFAULT
    # the argument ends at the last byte of a mapped page: one byte less to read faults nothing
    end = dom.layout.virt_end
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, cmd, end - size) == -errno.EPERM
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, cmd, end - size + 1) == -errno.EFAULT


@pytest.mark.parametrize("cmd", [ph.PHYSDEVOP_pci_mmcfg_reserved, ph.PHYSDEVOP_dbgp_op])
def test_xsm_first_ops_refuse_before_reading(dom, hypercall, cmd):
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, cmd, UNMAPPED) == -errno.EPERM


def test_manage_pci_add_ext_checks_its_flags_first(dom, hypercall):
    op = ph.PHYSDEVOP_manage_pci_add_ext
    assert physdev(hypercall, dom, op, struct.pack("<BBxxIIBBxx", 0, 8, 2, 0, 0, 0))[0] == -errno.EINVAL
    assert physdev(hypercall, dom, op, struct.pack("<BBxxIIBBxx", 0, 8, 0, 2, 0, 0))[0] == -errno.EINVAL
    assert physdev(hypercall, dom, op, struct.pack("<BBxxIIBBxx", 0, 8, 1, 1, 0, 0))[0] == -errno.EPERM


def test_pci_device_add_reads_the_pxm_when_flagged(dom, hypercall):
    end = dom.layout.virt_end
    copy_to_guest(dom.vcpus[0], end - 12, struct.pack("<HBBIBBxx", 0, 0, 8, ph.XEN_PCI_DEV_PXM, 0, 0))
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, ph.PHYSDEVOP_pci_device_add, end - 12) \
        == -errno.EFAULT                                        # optarr[0] lies past the end
    copy_to_guest(dom.vcpus[0], end - 12, struct.pack("<HBBIBBxx", 0, 0, 8, ph.XEN_PCI_DEV_VIRTFN, 0, 0))
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, ph.PHYSDEVOP_pci_device_add, end - 12) \
        == -errno.EPERM


def test_setup_gsi_checks_the_gsi_before_xsm(dom, hypercall):
    op = ph.PHYSDEVOP_setup_gsi
    for gsi in (-1, physdev_op.NR_IRQS_GSI):
        assert physdev(hypercall, dom, op, struct.pack("<iBBxx", gsi, 0, 0))[0] == -errno.EINVAL
    assert physdev(hypercall, dom, op, struct.pack("<iBBxx", 9, 1, 1))[0] == -errno.EPERM


@pytest.mark.parametrize("cmd, size", [(ph.PHYSDEVOP_restore_msi, 2), (ph.PHYSDEVOP_restore_msi_ext, 4)])
def test_restore_msi_finds_no_device(dom, hypercall, cmd, size):
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, cmd, UNMAPPED) == -errno.EFAULT
    assert physdev(hypercall, dom, cmd, bytes(size))[0] == -errno.ENODEV


def test_free_irq_vector_and_unknown_ops_are_enosys(dom, hypercall):
    for cmd in (ph.PHYSDEVOP_free_irq_vector, 22, 32, 999):
        assert hypercall(dom, xen.HYPERVISOR_physdev_op, cmd, UNMAPPED) == -errno.ENOSYS
