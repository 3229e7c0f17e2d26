"""memory_op's sub-operations beyond the reservation queries, answered as
Xen 4.17's do_memory_op / arch_memory_op answer a PV domU at its fixed
reservation: the order of checks, the continuation bits, and the
domain's own e820 map."""
import struct

import pytest

from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import errno, memory, xen
from test_memory_op import PAGE, dom, scratch  # noqa: F401  (dom: the fixture)

SELF = xen.DOMID_SELF
UNMAPPED = 0x10
START = 1 << 6             # a continuation's start extent of 1


def mem(dom, cmd, arg):
    return dom.vcpus[0].hypercall(xen.HYPERVISOR_memory_op, cmd, arg)


def put(dom, data, n=1):
    copy_to_guest(dom.vcpus[0], scratch(dom, n), data)
    return scratch(dom, n)


def reservation(extent_start, nr, order=0, flags=0, domid=SELF):
    return struct.pack("<QQIIHxxxxxx", extent_start, nr, order, flags, domid)


@pytest.mark.parametrize("op", [memory.XENMEM_increase_reservation, memory.XENMEM_populate_physmap])
def test_no_extents_for_a_domain_at_its_limit(dom, op):
    """Every path of increase_reservation and populate_physmap returns the
    extents done so far: start_extent."""
    frames = scratch(dom, 2)
    before = copy_from_guest(dom.vcpus[0], frames, 64)
    arg = put(dom, reservation(frames, 8))
    assert mem(dom, op, arg) == 0
    assert mem(dom, op | 3 * START, arg) == 3                  # a continuation's start
    assert mem(dom, op | 9 * START, arg) == 9                  # past nr_extents
    assert mem(dom, op, UNMAPPED) == 0
    assert mem(dom, op, put(dom, reservation(frames, 8, domid=999))) == 0
    assert mem(dom, op, put(dom, reservation(frames, 8, flags=1 << 16))) == 0   # populate-on-demand
    assert copy_from_guest(dom.vcpus[0], frames, 64) == before   # no frame handed out
    assert mem(dom, memory.XENMEM_current_reservation, put(dom, struct.pack("<H", SELF))) \
        == dom.nr_pages


def memory_map(dom, room):
    arg = put(dom, struct.pack("<IxxxxQ", room, scratch(dom, 2)))
    rc = mem(dom, memory.XENMEM_memory_map, arg)
    return rc, struct.unpack("<I", copy_from_guest(dom.vcpus[0], arg, 4))[0]


def e820(*entries):
    return b"".join(struct.pack("<QQI", *e) for e in entries)


def set_memory_map(dom, entries, nr=None, domid=SELF, buf=None):
    buf = put(dom, entries, 3) if buf is None else buf
    count = len(entries) // 20 if nr is None else nr
    return mem(dom, memory.XENMEM_set_memory_map, put(dom, struct.pack("<HxxxxxxIxxxxQ", domid, count, buf)))


def test_memory_map_gives_at_most_the_room_asked(dom):
    assert memory_map(dom, 0) == (0, 0)                        # min(nr_entries, nr_e820)
    assert memory_map(dom, 5) == (0, 1)


def test_a_domain_sets_its_own_memory_map(dom):
    mine = e820((0, 0x9F000, memory.E820_RAM), (0x9F000, 0x61000, memory.E820_RESERVED),
                (0x100000, 0x400000, memory.E820_RAM))
    assert set_memory_map(dom, mine) == 0
    assert memory_map(dom, 8) == (0, 3)
    assert copy_from_guest(dom.vcpus[0], scratch(dom, 2), 60) == mine
    assert memory_map(dom, 2) == (0, 2)
    assert set_memory_map(dom, b"") == 0                       # an empty map: "backwards compatibility"
    assert memory_map(dom, 8)[0] == -errno.ENOSYS


def test_set_memory_map_checks_in_xens_order(dom):
    entry = e820((0, PAGE, memory.E820_RAM))
    assert mem(dom, memory.XENMEM_set_memory_map, UNMAPPED) == -errno.EFAULT
    assert set_memory_map(dom, entry, nr=1025) == -errno.EINVAL
    assert set_memory_map(dom, entry, domid=999) == -errno.ESRCH
    assert set_memory_map(dom, entry, domid=0) == -errno.EPERM      # XSM_TARGET: its own only
    end = dom.layout.virt_end
    copy_to_guest(dom.vcpus[0], end - 20, entry)
    assert set_memory_map(dom, entry, buf=end - 20) == 0
    assert set_memory_map(dom, entry, nr=2, buf=end - 20) == -errno.EFAULT   # past the mapped end
    assert memory_map(dom, 8) == (0, 1)
    assert set_memory_map(dom, entry, nr=1024, buf=end - 20) == -errno.EFAULT
    assert copy_from_guest(dom.vcpus[0], scratch(dom, 2), 20) == entry   # unchanged by the refusals


def test_arch_ops_with_continuation_bits_are_enosys(dom):
    arg = put(dom, struct.pack("<IxxxxQ", 4, scratch(dom, 2)))
    assert mem(dom, memory.XENMEM_memory_map | START, arg) == -errno.ENOSYS
    assert mem(dom, memory.XENMEM_machphys_mapping | START, arg) == -errno.ENOSYS


@pytest.mark.parametrize("op", [memory.XENMEM_maximum_ram_page, memory.XENMEM_current_reservation,
                                memory.XENMEM_remove_from_physmap, memory.XENMEM_get_vnumainfo,
                                memory.XENMEM_reserved_device_memory_map])
def test_single_shot_ops_refuse_a_continuation(dom, op):
    assert mem(dom, op | START, UNMAPPED) == -errno.EINVAL


def test_remove_from_physmap_is_not_for_pv(dom):
    op = memory.XENMEM_remove_from_physmap
    assert mem(dom, op, UNMAPPED) == -errno.EFAULT
    assert mem(dom, op, put(dom, struct.pack("<HxxxxxxQ", 999, 5))) == -errno.ESRCH
    for domid in (SELF, 0):
        assert mem(dom, op, put(dom, struct.pack("<HxxxxxxQ", domid, 5))) == -errno.EACCES


def test_access_op_wants_a_remote_hvm_domain(dom):
    op = memory.XENMEM_access_op

    def access(domid):
        return mem(dom, op, put(dom, struct.pack("<BBHIQQQ", 0, 0, domid, 0, 0, 0, 0)))
    assert mem(dom, op, UNMAPPED) == -errno.EFAULT
    assert access(SELF) == -errno.ESRCH                        # rcu_lock_domain_by_id knows no SELF
    assert access(999) == -errno.ESRCH
    assert access(dom.domid) == -errno.EPERM
    assert access(0) == -errno.EINVAL                          # not HVM


def test_machphys_compat_mfn_list_without_pv32(dom):
    assert mem(dom, memory.XENMEM_machphys_compat_mfn_list, UNMAPPED) == -errno.EOPNOTSUPP


def test_get_vnumainfo_finds_no_vnuma(dom):
    op = memory.XENMEM_get_vnumainfo

    def vnuma(domid, pad=0):
        return mem(dom, op, put(dom, struct.pack("<HHIIIQQQ", domid, pad, 1, 1, 1, 0, 0, 0)))
    assert mem(dom, op, UNMAPPED) == -errno.EFAULT
    assert vnuma(SELF, pad=1) == -errno.EINVAL
    assert vnuma(999) == -errno.ESRCH
    assert vnuma(0) == -errno.EPERM
    assert vnuma(SELF) == -errno.EOPNOTSUPP


def test_reserved_device_memory_map_is_empty(dom):
    op = memory.XENMEM_reserved_device_memory_map

    def rdm(flags, nr, buffer):
        arg = put(dom, struct.pack("<IIQHBBxxxx", flags, nr, buffer, 0, 0, 8))
        return mem(dom, op, arg), struct.unpack("<II", copy_from_guest(dom.vcpus[0], arg, 8))
    assert mem(dom, op, UNMAPPED) == -errno.EFAULT
    assert rdm(0, 4, 0xFFFF800000000000)[0] == -errno.EFAULT    # the buffer in Xen's range
    assert rdm(2, 4, scratch(dom, 2))[0] == -errno.EINVAL
    assert rdm(1, 4, scratch(dom, 2)) == (0, (1, 0))             # XENMEM_RDM_ALL: still none
    assert rdm(0, 4, scratch(dom, 2)) == (0, (0, 0))


def test_acquire_resource_is_the_device_models(dom):
    op = memory.XENMEM_acquire_resource

    def acquire(domid, nr=1, pad=0, frame=0):
        return mem(dom, op, put(dom, struct.pack("<HHIIIQQ", domid, 1, 0, nr, pad, frame, 0)))
    assert mem(dom, op, UNMAPPED) == -errno.EFAULT
    assert acquire(0, pad=1) == -errno.EINVAL
    assert acquire(0, frame=1 << 32) == -errno.EINVAL
    assert acquire(0, nr=2, frame=(1 << 32) - 1) == -errno.EINVAL
    assert acquire(SELF) == -errno.ESRCH
    assert acquire(dom.domid) == -errno.EPERM
    assert acquire(0) == -errno.EPERM
