"""Grant tables v2 and device mappings, as Xen 4.17's common/grant_table.c
answers them: set_version's rules, status frames, get_status_frames,
sub-page and transitive grants in copies, GNTMAP_device_map for PV."""
import struct

import pytest

from pyxenon.hypervisor import audit
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import errno, grant_table as gt, memory, xen

from test_grants import MAP, PAGE, SELF, UNMAP, copy_op, free_pfn, gnttab, map_ref, scratch
from test_grants import world  # noqa: F401 - the fixture
from grant_policy import mutual_grants
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.policy import parse_policy

TRIO = """
version = 1
[labels]
a = "copies"
b = "passes a grant on"
c = "grants"
""" + "".join(f"""
[[allow]]
from = "{x}"
to = "{y}"
paths = ["grant_map", "grant_copy"]
access = "readwrite"
""" for x in "abc" for y in "abc" if x != y)

STATUS_FRAMES = "<IHhQ"     # nr_frames, dom, status, frame_list


def set_version(hypercall, dom, version):
    rc, out = gnttab(hypercall, dom, gt.GNTTABOP_set_version, "<I", version)
    return rc, out[0]


def grant_v2(dom, ref, grantee, mfn, flags=gt.GTF_permit_access, mid=0):
    """A v2 entry (16 bytes) in the granter's table frame 0."""
    ma = dom.grant_table.first_mfn * PAGE + ref * 16
    struct.pack_into("<HHIQ", dom.machine.mem, ma, flags, grantee.domid, mid, mfn)


def status_of(dom, ref):
    ma = dom.grant_table.status_mfn(0) * PAGE + ref * 2
    return struct.unpack_from("<H", dom.machine.mem, ma)[0]


def v2_header(dom, ref):
    return struct.unpack_from("<HH", dom.machine.mem, dom.grant_table.first_mfn * PAGE + ref * 16)


def make_room(hypercall, dom, n=2):
    va = scratch(dom, n)
    hypercall(dom, xen.HYPERVISOR_update_va_mapping, va, 0, 0)
    return va


def test_set_version_switches_layout_and_status_frames(world, hypercall):
    host, d = world
    ping = d["ping"]
    assert set_version(hypercall, ping, 2) == (0, 2)
    assert gnttab(hypercall, ping, gt.GNTTABOP_get_version, "<HHI", SELF, 0, 0)[1][2] == 2
    assert ping.grant_table.nr_status_frames == 1        # grant_to_status_frames(1)
    rc, out = gnttab(hypercall, ping, gt.GNTTABOP_get_status_frames, STATUS_FRAMES, 1, SELF, 0,
                     scratch(ping) + 512)
    assert rc == 0 and out[2] == gt.GNTST_okay
    assert struct.unpack("<Q", copy_from_guest(ping.vcpus[0], scratch(ping) + 512, 8))[0] == \
        ping.grant_table.status_mfn(0)
    rc, out = gnttab(hypercall, ping, gt.GNTTABOP_get_status_frames, STATUS_FRAMES, 2, SELF, 0, 0)
    assert out[2] == gt.GNTST_general_error               # more than nr_status_frames
    # growing a v2 table populates its status frames (gnttab_grow_table)
    rc, out = gnttab(hypercall, ping, gt.GNTTABOP_setup_table, "<HxxIhxxxxxxQ", SELF, 9, 0,
                     scratch(ping) + 512)
    assert out[2] == gt.GNTST_okay and ping.grant_table.nr_status_frames == 2
    assert set_version(hypercall, ping, 1) == (0, 1)
    assert ping.grant_table.nr_status_frames == 0
    assert set_version(hypercall, ping, 0) == (-errno.EINVAL, 1)
    audit.check(host.machine)


def test_get_status_frames_errors(world, hypercall):
    _, d = world
    ping, pong = d["ping"], d["pong"]
    buf = scratch(ping) + 512
    rc, out = gnttab(hypercall, ping, gt.GNTTABOP_get_status_frames, STATUS_FRAMES, 1, SELF, 0, buf)
    assert out[2] == gt.GNTST_general_error               # v1: no status frames
    rc, out = gnttab(hypercall, ping, gt.GNTTABOP_get_status_frames, STATUS_FRAMES, 0, SELF, 0, buf)
    assert out[2] == gt.GNTST_okay
    for dom, status in ((999, gt.GNTST_bad_domain), (pong.domid, gt.GNTST_permission_denied),
                        (0, gt.GNTST_permission_denied)):
        rc, out = gnttab(hypercall, ping, gt.GNTTABOP_get_status_frames, STATUS_FRAMES, 0, dom, 0, buf)
        assert rc == 0 and out[2] == status
    va = scratch(ping)
    copy_to_guest(ping.vcpus[0], va, struct.pack(STATUS_FRAMES, 0, SELF, 0, buf))
    assert hypercall(ping, xen.HYPERVISOR_grant_table_op, gt.GNTTABOP_get_status_frames, va, 2) == -errno.EINVAL
    copy_to_guest(ping.vcpus[0], va, struct.pack(STATUS_FRAMES, 1, SELF, 0, 0xFFFF800000000000))
    assert hypercall(ping, xen.HYPERVISOR_grant_table_op, gt.GNTTABOP_get_status_frames, va, 1) == -errno.EFAULT
    set_version(hypercall, ping, 2)
    rc, out = gnttab(hypercall, ping, gt.GNTTABOP_get_status_frames, STATUS_FRAMES, 1, SELF, 0, 0x1000)
    assert out[2] == gt.GNTST_bad_virt_addr               # the list is unmapped
    assert gnttab(hypercall, ping, gt.GNTTABOP_get_version, "<HHI", 999, 0, 0)[0] == -errno.ESRCH
    assert gnttab(hypercall, ping, gt.GNTTABOP_get_version, "<HHI", 0, 0, 0)[0] == -errno.EPERM


def test_v2_map_keeps_status_apart_and_blocks_switch(world, hypercall):
    host, d = world
    ping, pong = d["ping"], d["pong"]
    set_version(hypercall, ping, 2)
    pfn = free_pfn(ping)
    ping.page(pfn)[:2] = b"v2"
    grant_v2(ping, 9, pong, ping.pfn_to_mfn(pfn))
    va = make_room(hypercall, pong)
    status, handle = map_ref(hypercall, pong, ping, 9, va)
    assert status == gt.GNTST_okay
    assert copy_from_guest(pong.vcpus[0], va, 2) == b"v2"
    assert status_of(ping, 9) == gt.GTF_reading | gt.GTF_writing
    assert v2_header(ping, 9) == (gt.GTF_permit_access, pong.domid)    # flags untouched
    audit.check(host.machine)
    assert set_version(hypercall, ping, 1) == (-errno.EBUSY, 2)       # ref 9 >= 8 is pinned
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_unmap_grant_ref, UNMAP, va, 0, handle, 0)
    assert out[3] == gt.GNTST_okay and status_of(ping, 9) == 0
    assert set_version(hypercall, ping, 1) == (0, 1)


def test_reserved_entries_survive_a_switch(world, hypercall):
    host, d = world
    ping, pong = d["ping"], d["pong"]
    mfn = ping.pfn_to_mfn(free_pfn(ping))
    struct.pack_into("<HHI", ping.machine.mem, ping.grant_table.first_mfn * PAGE + 2 * 8,
                     gt.GTF_permit_access | gt.GTF_readonly, pong.domid, mfn)
    va = make_room(hypercall, pong)
    assert map_ref(hypercall, pong, ping, 2, va, readonly=True)[0] == gt.GNTST_okay
    assert set_version(hypercall, ping, 2) == (0, 2)       # a pinned reserved entry is allowed
    assert v2_header(ping, 2) == (gt.GTF_permit_access | gt.GTF_readonly, pong.domid)
    assert status_of(ping, 2) == gt.GTF_reading
    assert ping.grant_table.read_entry(2)[2] == mfn
    grant_v2(ping, 3, pong, 1 << 33)                       # no v1 form
    assert set_version(hypercall, ping, 1) == (-errno.ERANGE, 2)
    grant_v2(ping, 3, pong, 0, flags=gt.GTF_transitive)
    assert set_version(hypercall, ping, 1) == (-errno.ERANGE, 2)
    grant_v2(ping, 3, pong, 0, flags=0)
    assert set_version(hypercall, ping, 1) == (0, 1)
    assert struct.unpack_from("<HHI", ping.machine.mem, ping.grant_table.first_mfn * PAGE + 16) == \
        (gt.GTF_permit_access | gt.GTF_readonly | gt.GTF_reading, pong.domid, mfn)
    audit.check(host.machine)


def test_mapped_status_frame_blocks_the_switch_back(world, hypercall):
    host, d = world
    ping = d["ping"]
    set_version(hypercall, ping, 2)
    va = scratch(ping, 3)
    smfn = ping.grant_table.status_mfn(0)
    assert hypercall(ping, xen.HYPERVISOR_update_va_mapping, va, smfn << 12 | 0x67, 0) == 0
    assert set_version(hypercall, ping, 1) == (-errno.EBUSY, 2)    # unpopulate: still referenced
    assert hypercall(ping, xen.HYPERVISOR_update_va_mapping, va, 0, 0) == 0
    assert set_version(hypercall, ping, 1) == (0, 1)
    # Xen's again: the guest cannot map it any more
    assert hypercall(ping, xen.HYPERVISOR_update_va_mapping, va, smfn << 12 | 0x67, 0) < 0
    audit.check(host.machine)


def test_add_to_physmap_status_index(world, hypercall):
    _, d = world
    ping = d["ping"]
    fmt = "<HHIQQ"         # domid, size, space, idx, gpfn
    status = memory.XENMAPIDX_grant_table_status
    rc, _ = gnttab_mem(hypercall, ping, fmt, SELF, 0, memory.XENMAPSPACE_grant_table, status, 0x900)
    assert rc == -errno.EINVAL                              # v1: no such frame
    set_version(hypercall, ping, 2)
    rc, _ = gnttab_mem(hypercall, ping, fmt, SELF, 0, memory.XENMAPSPACE_grant_table, status | 3, 0x900)
    assert rc == 0 and ping.grant_table.nr_status_frames == 4 and ping.grant_table.nr_frames == 32
    rc, _ = gnttab_mem(hypercall, ping, fmt, SELF, 0, memory.XENMAPSPACE_grant_table, status | 4, 0x900)
    assert rc == -errno.EINVAL                              # beyond max_grant_frames' status frames


def gnttab_mem(hypercall, dom, fmt, *fields):
    va = scratch(dom)
    copy_to_guest(dom.vcpus[0], va, struct.pack(fmt, *fields))
    return hypercall(dom, xen.HYPERVISOR_memory_op, memory.XENMEM_add_to_physmap, va), None


def test_v2_maps_refuse_sub_page_and_transitive(world, hypercall):
    _, d = world
    ping, pong = d["ping"], d["pong"]
    set_version(hypercall, ping, 2)
    mfn = ping.pfn_to_mfn(free_pfn(ping))
    grant_v2(ping, 10, pong, mfn, gt.GTF_permit_access | gt.GTF_sub_page, 16 | 32 << 16)
    grant_v2(ping, 11, pong, 0, gt.GTF_transitive)
    va = make_room(hypercall, pong)
    assert map_ref(hypercall, pong, ping, 10, va)[0] == gt.GNTST_general_error
    assert map_ref(hypercall, pong, ping, 11, va)[0] == gt.GNTST_general_error
    assert status_of(ping, 10) == status_of(ping, 11) == 0


def test_v2_copies_sub_page_and_transitive(world, hypercall):
    _, d = world
    ping, pong, reader = d["ping"], d["pong"], d["reader"]
    set_version(hypercall, ping, 2)
    pfn = free_pfn(ping)
    ping.page(pfn)[:64] = bytes(range(64))
    mine = pong.pfn_to_mfn(free_pfn(pong))
    grant_v2(ping, 12, pong, ping.pfn_to_mfn(pfn), gt.GTF_permit_access | gt.GTF_sub_page,
             16 | 32 << 16)                              # bytes 16..47
    rc, out = copy_op(hypercall, pong, (12, ping.domid, 16), (mine, SELF, 0), 32, gt.GNTCOPY_source_gref)
    assert out[-1] == gt.GNTST_okay
    assert bytes(pong.machine.mem[mine * PAGE:mine * PAGE + 32]) == bytes(range(16, 48))
    rc, out = copy_op(hypercall, pong, (12, ping.domid, 8), (mine, SELF, 0), 32, gt.GNTCOPY_source_gref)
    assert out[-1] == gt.GNTST_general_error             # "copy source out of bounds"


def test_device_map_as_xen_does_for_pv(world, hypercall):
    host, d = world
    ping, pong = d["ping"], d["pong"]
    mfn = ping.pfn_to_mfn(free_pfn(ping))
    struct.pack_into("<HHI", ping.machine.mem, ping.grant_table.first_mfn * PAGE + 20 * 8,
                     gt.GTF_permit_access, pong.domid, mfn)
    frames = host.machine.frame_table.frames
    count, types = frames[mfn].count, frames[mfn].type_count
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_map_grant_ref, MAP, 0, gt.GNTMAP_device_map, 20,
                     ping.domid, 0, 0, 0)
    assert rc == 0 and out[4] == gt.GNTST_okay and out[6] == mfn << 12   # dev_bus_addr
    handle = out[5]
    assert (frames[mfn].count, frames[mfn].type_count) == (count + 1, types + 1)
    audit.check(host.machine)
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_unmap_grant_ref, UNMAP, 0, 0, handle, 0)
    assert out[3] == gt.GNTST_okay and handle in pong.grant_table.maptrack   # nothing named
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_unmap_grant_ref, UNMAP, 0, (mfn + 1) << 12, handle, 0)
    assert out[3] == gt.GNTST_bad_dev_addr
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_unmap_grant_ref, UNMAP, 0, mfn << 12, handle, 0)
    assert out[3] == gt.GNTST_okay and handle not in pong.grant_table.maptrack
    assert (frames[mfn].count, frames[mfn].type_count) == (count, types)
    # both parts at once: two references, unmapped part by part
    va = make_room(hypercall, pong)
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_map_grant_ref, MAP, va,
                     gt.GNTMAP_device_map | gt.GNTMAP_host_map | gt.GNTMAP_readonly, 20, ping.domid, 0, 0, 0)
    assert out[4] == gt.GNTST_okay and frames[mfn].count == count + 2
    handle = out[5]
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_unmap_grant_ref, UNMAP, va, 0, handle, 0)
    assert out[3] == gt.GNTST_okay and frames[mfn].count == count + 1
    audit.check(host.machine)
    assert ping.grant_table.read_entry(20)[0] & gt.GTF_reading
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_unmap_grant_ref, UNMAP, 0, mfn << 12, handle, 0)
    assert out[3] == gt.GNTST_okay and frames[mfn].count == count
    assert ping.grant_table.read_entry(20)[0] & (gt.GTF_reading | gt.GTF_writing) == 0


@pytest.mark.parametrize("readonly", [False, True])
def test_backends_read_a_v2_table(world, hypercall, readonly):
    from pyxenon.hypervisor import grants_copy
    _, d = world
    ping = d["ping"]
    set_version(hypercall, ping, 2)
    mfn = ping.pfn_to_mfn(free_pfn(ping))
    flags = gt.GTF_permit_access | (gt.GTF_readonly if readonly else 0)
    struct.pack_into("<HHIQ", ping.machine.mem, ping.grant_table.first_mfn * PAGE + 30 * 16, flags, 0, 0, mfn)
    assert grants_copy.backend_frame(ping, 30, write=False) == mfn
    if readonly:
        with pytest.raises(grants_copy.GrantError):
            grants_copy.backend_map(ping, 30)
        return
    handle, got = grants_copy.backend_map(ping, 30)
    assert got == mfn and status_of(ping, 30) == gt.GTF_reading | gt.GTF_writing
    grants_copy.backend_unmap(ping.machine, handle)
    assert status_of(ping, 30) == 0
    struct.pack_into("<HHHHQ", ping.machine.mem, ping.grant_table.first_mfn * PAGE + 30 * 16,
                     flags | gt.GTF_sub_page, 0, 100, 50, mfn)
    assert grants_copy.backend_frame(ping, 30, False, 100, 50) == mfn
    with pytest.raises(grants_copy.GrantError):
        grants_copy.backend_frame(ping, 30, False, 0, 50)
    with pytest.raises(grants_copy.GrantError):
        grants_copy.backend_frame(ping, 30, False, 100, 50, mapped=True)


@pytest.fixture
def trio(guests):
    with Host(memory_mib=512, policy=parse_policy(TRIO, "trio.toml")) as host:
        yield [host.create(str(guests / "hello.cfg"), overrides=[f'name="{n}"', f'seclabel="{n}"'])
               for n in "abc"]


def test_transitive_copy(trio, hypercall):
    """c grants a page to b; b passes it to a with a transitive entry; a
    copies through b's entry (acquire_grant_for_copy, one level)."""
    a, b, c = trio
    set_version(hypercall, b, 2)
    pfn = free_pfn(c)
    c.page(pfn)[:4] = b"deep"
    struct.pack_into("<HHI", c.machine.mem, c.grant_table.first_mfn * PAGE + 13 * 8,
                     gt.GTF_permit_access, b.domid, c.pfn_to_mfn(pfn))
    mine = a.pfn_to_mfn(free_pfn(a))

    def through(trans_domid, gref=13, ref=14):
        struct.pack_into("<HHHHI", b.machine.mem, b.grant_table.first_mfn * PAGE + ref * 16,
                         gt.GTF_transitive, a.domid, trans_domid, 0, gref)
        return copy_op(hypercall, a, (ref, b.domid, 0), (mine, SELF, 0), 4, gt.GNTCOPY_source_gref)[1][-1]

    assert through(c.domid) == gt.GNTST_okay
    assert bytes(a.machine.mem[mine * PAGE:mine * PAGE + 4]) == b"deep"
    assert status_of(b, 14) == 0 and c.grant_table.read_entry(13)[0] == gt.GTF_permit_access
    assert through(b.domid) == gt.GNTST_general_error          # self-referential
    assert through(999) == gt.GNTST_general_error              # no such domain
    assert through(0) == gt.GNTST_general_error                # dom0 grants nothing
    assert through(c.domid, gref=12) == gt.GNTST_general_error  # c's ref 12 is not b's
    struct.pack_into("<HHHHI", b.machine.mem, b.grant_table.first_mfn * PAGE + 15 * 16,
                     gt.GTF_transitive, b.domid, b.domid, 0, 14)
    assert through(b.domid, gref=15, ref=16) == gt.GNTST_general_error   # two levels
    va = make_room(hypercall, a)
    through(c.domid)
    assert map_ref(hypercall, a, b, 14, va)[0] == gt.GNTST_general_error  # maps refuse it
    # write through a transitive grant of a read-only grant: refused
    struct.pack_into("<H", c.machine.mem, c.grant_table.first_mfn * PAGE + 13 * 8,
                     gt.GTF_permit_access | gt.GTF_readonly)
    out = copy_op(hypercall, a, (mine, SELF, 0), (14, b.domid, 0), 4, gt.GNTCOPY_dest_gref)[1]
    assert out[-1] == gt.GNTST_general_error


GNTV2 = mutual_grants({"gntv2-granter": "grants, switches versions",
                       "gntv2-mapper": "maps and copies"})


def test_gntv2_guests(guests):
    """guests/gntv2: two domains, v1 and v2, hostile cases, each answer
    Xen's (the guests check and say so; the checker holds at the end)."""
    with Host(memory_mib=256, policy=parse_policy(GNTV2, "gntv2.toml")) as host:
        doms = [host.create(str(guests / f"gntv2-{role}.cfg")) for role in ("granter", "mapper")]
        assert [d.domid for d in doms] == [1, 2]
        host.run(timeout=60)
        text = "\n".join(d.dmesg_text + (d.crash_report or "") for d in doms)
        assert "FAILED" not in text, text
        for dom, role in zip(doms, ("granter", "mapper")):
            assert f"gntv2: {role}: all " in dom.dmesg_text, text
            assert dom.shutdown_reason == "poweroff", text
        for needle in ("set_version 2 with ref 8 mapped (gnttab_set_version): -16 OK",
                       "set_version 1 with a reserved entry above 32 bits: -34 OK",
                       "get_status_frames 2 (one more than populated): -1 OK",
                       "map domain 0's ref 0 (not granted to us): -1 OK",
                       "copy through the transitive grant: 0 OK",
                       "map a forged entry (frame not the granter's): -9 OK"):
            assert needle in text, text


@pytest.mark.parametrize("version", [1, 2])
def test_swap_grant_ref(world, hypercall, version):
    _, d = world
    ping, pong = d["ping"], d["pong"]
    set_version(hypercall, ping, version)
    table = ping.grant_table
    mfn = ping.pfn_to_mfn(free_pfn(ping))
    if version == 1:
        struct.pack_into("<HHI", ping.machine.mem, table.first_mfn * PAGE + 9 * 8, gt.GTF_permit_access,
                         pong.domid, mfn)
    else:
        grant_v2(ping, 9, pong, mfn)
        table.set_flags(9, gt.GTF_reading)              # a status word travels with its entry
    swap = "<IIh"
    rc, out = gnttab(hypercall, ping, gt.GNTTABOP_swap_grant_ref, swap, 9, 10, 0)
    assert rc == 0 and out[2] == gt.GNTST_okay
    assert table.read_entry(10)[1:] == (pong.domid, mfn) and table.read_entry(9)[0] == 0
    assert table.status(10) & gt.GTF_reading == (gt.GTF_reading if version == 2 else 0)
    table.set_flags(10, clear_bits=gt.GTF_reading)
    assert gnttab(hypercall, ping, gt.GNTTABOP_swap_grant_ref, swap, 9, 99999, 0)[1][2] == gt.GNTST_bad_gntref
    va = make_room(hypercall, pong)
    assert map_ref(hypercall, pong, ping, 10, va)[0] == gt.GNTST_okay
    assert gnttab(hypercall, ping, gt.GNTTABOP_swap_grant_ref, swap, 10, 11, 0)[1][2] == gt.GNTST_eagain


def test_checker_holds_mappings_to_pins(world, hypercall):
    """A mapping whose grant lost its pin (or a pin no mapping holds) is a finding."""
    host, d = world
    ping, pong = d["ping"], d["pong"]
    set_version(hypercall, ping, 2)
    grant_v2(ping, 9, pong, ping.pfn_to_mfn(free_pfn(ping)))
    va = make_room(hypercall, pong)
    assert map_ref(hypercall, pong, ping, 9, va)[0] == gt.GNTST_okay
    assert audit.findings(host.machine) == []
    ping.grant_table.active[9].counts[gt.GNTMAP_host_map, False] += 1   # planted: a pin nobody holds
    assert any("ref 9: pinned 0r/2w" in f for f in audit.findings(host.machine))
    act = ping.grant_table.active.pop(9)                     # planted: the pin is gone
    assert any("has no active entry" in f for f in audit.findings(host.machine))
    ping.grant_table.active[9] = act
    act.counts[gt.GNTMAP_host_map, False] -= 1
    assert audit.findings(host.machine) == []


def test_contains_pte_map_over_a_present_entry(world, hypercall):
    """create_grant_pv_mapping with GNTMAP_contains_pte: the named L1 entry
    is replaced and the page it mapped loses that reference; a misaligned
    or foreign PTE address is GNTST_general_error."""
    from test_grants import frame_of, grant
    host, d = world
    ping, pong = d["ping"], d["pong"]
    pfn = free_pfn(ping, 1)
    ping.page(pfn)[:3] = b"pte"
    grant(ping, 11, pong, pfn)
    va = scratch(pong, 2)
    table, index = host.machine.frame_table.l1_slot(pong.vcpus[0].core.cr3, va)
    old = frame_of(pong, va)
    frames = host.machine.frame_table.frames
    count, types = frames[old].count, frames[old].type_count
    flags = gt.GNTMAP_host_map | gt.GNTMAP_contains_pte
    for bad in (table * PAGE + index * 8 + 4, ping.grant_table.first_mfn * PAGE):
        rc, out = gnttab(hypercall, pong, gt.GNTTABOP_map_grant_ref, MAP, bad, flags, 11, ping.domid, 0, 0, 0)
        assert out[4] == gt.GNTST_general_error
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_map_grant_ref, MAP, table * PAGE + index * 8, flags, 11,
                     ping.domid, 0, 0, 0)
    assert out[4] == gt.GNTST_okay
    assert copy_from_guest(pong.vcpus[0], va, 3) == b"pte"
    assert (frames[old].count, frames[old].type_count) == (count - 1, types - 1)
    audit.check(host.machine)
    # its unmap names the PTE the same way (the maptrack keeps GNTMAP_contains_pte)
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_unmap_grant_ref, UNMAP, va, 0, out[5], 0)
    assert out[3] == gt.GNTST_general_error
    handle = next(iter(pong.grant_table.maptrack))
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_unmap_grant_ref, UNMAP, table * PAGE + index * 8, 0,
                     handle, 0)
    assert out[3] == gt.GNTST_okay and not pong.grant_table.maptrack
    audit.check(host.machine)


def test_unmap_and_replace(world, hypercall):
    """GNTTABOP_unmap_and_replace: the grant's entry at host_addr takes the
    entry that mapped new_addr, which is cleared (replace_grant_pv_mapping,
    steal_linear_address); a contains_pte mapping cannot (general_error)."""
    from test_grants import frame_of, grant
    host, d = world
    ping, pong = d["ping"], d["pong"]
    grant(ping, 11, pong, free_pfn(ping))
    va = make_room(hypercall, pong)
    status, handle = map_ref(hypercall, pong, ping, 11, va)
    other = scratch(pong, 3)
    copy_to_guest(pong.vcpus[0], other, b"mine")
    own = frame_of(pong, other)
    replace = "<QQIh"          # host_addr, new_addr, handle, status
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_unmap_and_replace, replace, va, other, handle + 1, 0)
    assert out[3] == gt.GNTST_bad_handle
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_unmap_and_replace, replace, va, other, handle, 0)
    assert rc == 0 and out[3] == gt.GNTST_okay and not pong.grant_table.maptrack
    assert frame_of(pong, va) == own and copy_from_guest(pong.vcpus[0], va, 4) == b"mine"
    with pytest.raises(Exception):
        copy_from_guest(pong.vcpus[0], other, 1)
    assert ping.grant_table.read_entry(11)[0] == gt.GTF_permit_access
    audit.check(host.machine)


def test_cache_flush_as_x86_answers(world, hypercall):
    """GNTTABOP_cache_flush (_cache_flush, x86's dcache helpers)."""
    from test_grants import grant
    _, d = world
    ping, pong = d["ping"], d["pong"]
    flush = "<QHHI"            # a (dev_bus_addr), offset, length, op
    own = pong.pfn_to_mfn(free_pfn(pong)) << 12
    foreign = ping.pfn_to_mfn(free_pfn(ping)) << 12
    clean, inval = gt.GNTTAB_CACHE_CLEAN, gt.GNTTAB_CACHE_INVAL

    def cache_flush(addr, offset, length, op):
        return gnttab(hypercall, pong, gt.GNTTABOP_cache_flush, flush, addr, offset, length, op)[0]

    assert cache_flush(own, 4096, 1, clean) == -errno.EINVAL
    assert cache_flush(own, 4000, 100, clean) == -errno.EINVAL
    assert cache_flush(own, 0, 8, gt.GNTTAB_CACHE_SOURCE_GREF | clean) == -errno.EINVAL
    assert cache_flush(own, 0, 0, clean) == 0
    assert cache_flush(own, 0, 8, clean) == 0
    assert cache_flush(own, 0, 8, clean | inval) == 0
    assert cache_flush(own, 0, 8, inval) == -errno.EOPNOTSUPP
    assert cache_flush(1 << 52, 0, 8, clean) == -errno.EINVAL          # no such frame
    assert cache_flush(0x2000, 0, 8, clean) == -errno.EPERM            # Xen's own
    assert cache_flush(foreign, 0, 8, clean) == -errno.EINVAL          # not mapped by us
    grant(ping, 11, pong, free_pfn(ping))
    map_ref(hypercall, pong, ping, 11, make_room(hypercall, pong))
    assert cache_flush(foreign, 0, 8, clean) == 0


def test_pin_counters_are_byte_wide(world, hypercall):
    """map_grant_ref refuses a map whose pin counter (device read-only here)
    has reached 128 (GNTPIN_incr2oflow_mask): GNTST_general_error; the
    other counters are apart."""
    from test_grants import grant
    host, d = world
    ping, pong = d["ping"], d["pong"]
    grant(ping, 11, pong, free_pfn(ping))

    def device_map():
        return gnttab(hypercall, pong, gt.GNTTABOP_map_grant_ref, MAP, 0,
                      gt.GNTMAP_device_map | gt.GNTMAP_readonly, 11, ping.domid, 0, 0, 0)[1][4]

    assert [device_map() for _ in range(128)] == [gt.GNTST_okay] * 128
    assert device_map() == gt.GNTST_general_error
    assert map_ref(hypercall, pong, ping, 11, make_room(hypercall, pong), readonly=True)[0] == gt.GNTST_okay
    audit.check(host.machine)


def test_grant_table_op_arguments(world, hypercall):
    """do_grant_table_op: (int)count < 0 and progress bits on a command
    other than cache_flush are -EINVAL; an unknown command -ENOSYS."""
    _, d = world
    ping = d["ping"]
    va = scratch(ping)
    op = xen.HYPERVISOR_grant_table_op
    assert hypercall(ping, op, gt.GNTTABOP_query_size, va, 0x80000000) == -errno.EINVAL
    assert hypercall(ping, op, gt.GNTTABOP_query_size | 1 << 12, va, 1) == -errno.EINVAL
    assert hypercall(ping, op, gt.GNTTABOP_cache_flush | 1 << 12, va, 0) == 0
    assert hypercall(ping, op, gt.GNTTABOP_dump_table, va, 1) == -errno.ENOSYS
    assert hypercall(ping, op, 13, va, 1) == -errno.ENOSYS
