"""Grant tables v1 between domains, under the MSM policy: map, unmap, copy,
revocation, teardown on destruction."""
import struct

import pytest

from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import errno, grant_table as gt, xen
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.policy import parse_policy

PAGE = 4096
SELF = 0x7FF0
POLICY = """
version = 1
[labels]
ping = "granter"
pong = "grantee"
reader = "may only read"
intruder = "nothing"
[[allow]]
from = "pong"
to = "ping"
paths = ["grant_map", "grant_copy"]
access = "readwrite"
[[allow]]
from = "reader"
to = "ping"
paths = ["grant_map", "grant_copy"]
access = "read"
"""


@pytest.fixture
def world(guests):
    with Host(memory_mib=1024, policy=parse_policy(POLICY, "grants.toml")) as host:
        doms = {n: host.create(str(guests / "hello.cfg"), overrides=[f'name="{n}"', f'seclabel="{n}"'])
                for n in ("ping", "pong", "reader", "intruder")}
        yield host, doms


def scratch(dom, n=1):
    return dom.layout.stack + n * PAGE


def free_pfn(dom, n=0):
    return dom.layout.pfn(dom.layout.virt_end) + 10 + n


def grant(dom, ref, grantee, pfn, readonly=False):
    """The granter writes an entry into its table (frame 0), as a guest does."""
    flags = gt.GTF_permit_access | (gt.GTF_readonly if readonly else 0)
    ma = dom.grant_table.first_mfn * PAGE + ref * 8
    struct.pack_into("<HHI", dom.machine.mem, ma, flags, grantee.domid, dom.pfn_to_mfn(pfn))


def entry_flags(dom, ref):
    return struct.unpack_from("<H", dom.machine.mem, dom.grant_table.first_mfn * PAGE + ref * 8)[0]


def gnttab(hypercall, dom, cmd, fmt, *fields):
    va = scratch(dom)
    copy_to_guest(dom.vcpus[0], va, struct.pack(fmt, *fields))
    rc = hypercall(dom, xen.HYPERVISOR_grant_table_op, cmd, va, 1)
    return rc, struct.unpack(fmt, copy_from_guest(dom.vcpus[0], va, struct.calcsize(fmt)))


MAP = "<QIIHhIQ"     # host_addr, flags, ref, dom, status, handle, dev_bus_addr
UNMAP = "<QQIh"       # host_addr, dev_bus_addr, handle, status


def map_ref(hypercall, grantee, granter, ref, va, readonly=False):
    flags = gt.GNTMAP_host_map | (gt.GNTMAP_readonly if readonly else 0)
    rc, out = gnttab(hypercall, grantee, gt.GNTTABOP_map_grant_ref, MAP, va, flags, ref,
                     granter.domid, 0, 0, 0)
    assert rc == 0
    return out[4], out[5]            # status, handle


def test_setup_and_query(world, hypercall):
    _, d = world
    ping = d["ping"]
    rc, out = gnttab(hypercall, ping, gt.GNTTABOP_setup_table, "<HxxIhxxxxxxQ", SELF, 2, 0,
                     scratch(ping) + 512)
    assert rc == 0 and out[2] == gt.GNTST_okay
    frames = struct.unpack("<2Q", copy_from_guest(ping.vcpus[0], scratch(ping) + 512, 16))
    assert frames == (ping.grant_table.first_mfn, ping.grant_table.first_mfn + 1)
    rc, out = gnttab(hypercall, ping, gt.GNTTABOP_query_size, "<HxxIIh", SELF, 0, 0, 0)
    assert out[1:] == (2, 32, gt.GNTST_okay)
    rc, out = gnttab(hypercall, ping, gt.GNTTABOP_setup_table, "<HxxIhxxxxxxQ", SELF, 99, 0, 0)
    assert out[2] == gt.GNTST_general_error
    assert gnttab(hypercall, ping, gt.GNTTABOP_set_version, "<I", 1)[0] == 0
    assert gnttab(hypercall, ping, gt.GNTTABOP_set_version, "<I", 3) == (-errno.EINVAL, (1,))
    assert gnttab(hypercall, ping, gt.GNTTABOP_get_version, "<HHI", SELF, 0, 0)[1][2] == 1


def test_map_write_read_unmap(world, hypercall):
    _, d = world
    ping, pong = d["ping"], d["pong"]
    pfn = free_pfn(ping)
    ping.page(pfn)[:5] = b"hello"
    grant(ping, 3, pong, pfn)
    va = scratch(pong, 2)
    hypercall(pong, xen.HYPERVISOR_update_va_mapping, va, 0, 0)      # make room at va
    status, handle = map_ref(hypercall, pong, ping, 3, va)
    assert status == gt.GNTST_okay
    assert copy_from_guest(pong.vcpus[0], va, 5) == b"hello"           # the granter's frame
    copy_to_guest(pong.vcpus[0], va, b"HELLO")
    assert bytes(ping.page(pfn)[:5]) == b"HELLO"
    assert entry_flags(ping, 3) & (gt.GTF_reading | gt.GTF_writing) == gt.GTF_reading | gt.GTF_writing
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_unmap_grant_ref, UNMAP, va, 0, handle, 0)
    assert rc == 0 and out[3] == gt.GNTST_okay
    assert entry_flags(ping, 3) & (gt.GTF_reading | gt.GTF_writing) == 0
    with pytest.raises(Exception):
        copy_from_guest(pong.vcpus[0], va, 1)


def test_readonly_grant_honoured(world, hypercall):
    _, d = world
    ping, pong = d["ping"], d["pong"]
    grant(ping, 4, pong, free_pfn(ping), readonly=True)
    va = scratch(pong, 2)
    hypercall(pong, xen.HYPERVISOR_update_va_mapping, va, 0, 0)
    # _set_status_v1: "Attempt to write-pin a r/o grant entry" is general_error
    assert map_ref(hypercall, pong, ping, 4, va)[0] == gt.GNTST_general_error
    status, _ = map_ref(hypercall, pong, ping, 4, va, readonly=True)
    assert status == gt.GNTST_okay
    with pytest.raises(Exception):
        copy_to_guest(pong.vcpus[0], va, b"x")
    assert entry_flags(ping, 4) & gt.GTF_writing == 0


@pytest.mark.parametrize("who, ref, status", [
    ("intruder", 5, gt.GNTST_permission_denied),  # no rule: the policy refuses first
    ("pong", 4000, gt.GNTST_bad_gntref),           # beyond the table
    ("pong", 6, gt.GNTST_general_error),           # never granted (forged ref)
])
def test_refused_maps(world, hypercall, who, ref, status):
    _, d = world
    grant(d["ping"], 5, d["pong"], free_pfn(d["ping"]))
    grantee = d[who]
    va = scratch(grantee, 2)
    hypercall(grantee, xen.HYPERVISOR_update_va_mapping, va, 0, 0)
    assert map_ref(hypercall, grantee, d["ping"], ref, va)[0] == status


def test_policy_refuses_and_audits(world, hypercall):
    host, d = world
    ping, intruder, reader = d["ping"], d["intruder"], d["reader"]
    grant(ping, 7, intruder, free_pfn(ping))
    va = scratch(intruder, 2)
    hypercall(intruder, xen.HYPERVISOR_update_va_mapping, va, 0, 0)
    assert map_ref(hypercall, intruder, ping, 7, va)[0] == gt.GNTST_permission_denied
    grant(ping, 8, reader, free_pfn(ping, 1))
    va = scratch(reader, 2)
    hypercall(reader, xen.HYPERVISOR_update_va_mapping, va, 0, 0)
    assert map_ref(hypercall, reader, ping, 8, va)[0] == gt.GNTST_permission_denied   # rw
    assert map_ref(hypercall, reader, ping, 8, va, readonly=True)[0] == gt.GNTST_okay
    ops = [(r["operation"], r["decision"]) for r in host.machine.audit_log]
    assert ("grant_map:map_grant_ref", "deny") in ops and ("grant_map:map_grant_ref", "allow") in ops


def test_bad_domain_and_bad_handle(world, hypercall):
    _, d = world
    pong = d["pong"]
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_map_grant_ref, MAP, scratch(pong, 2),
                     gt.GNTMAP_host_map, 0, 999, 0, 0, 0)
    assert out[4] == gt.GNTST_bad_domain
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_unmap_grant_ref, UNMAP, 0, 0, 77, 0)
    assert out[3] == gt.GNTST_bad_handle


def test_grant_pte_cannot_be_unmapped_implicitly(world, hypercall):
    _, d = world
    ping, pong = d["ping"], d["pong"]
    grant(ping, 9, pong, free_pfn(ping))
    va = scratch(pong, 2)
    hypercall(pong, xen.HYPERVISOR_update_va_mapping, va, 0, 0)
    map_ref(hypercall, pong, ping, 9, va)
    assert hypercall(pong, xen.HYPERVISOR_update_va_mapping, va, 0, 0) == -errno.EINVAL


def test_forged_grant_bit_refused(world, hypercall):
    _, d = world
    pong = d["pong"]
    assert hypercall(pong, xen.HYPERVISOR_update_va_mapping, scratch(pong, 2),
                     d["ping"].first_mfn << 12 | 1 << 62 | 0x67, 0) == -errno.EINVAL


def test_destroyed_granter_is_torn_down_everywhere(world, hypercall):
    host, d = world
    ping, pong = d["ping"], d["pong"]
    grant(ping, 10, pong, free_pfn(ping))
    va = scratch(pong, 2)
    hypercall(pong, xen.HYPERVISOR_update_va_mapping, va, 0, 0)
    map_ref(hypercall, pong, ping, 10, va)
    mfn = ping.pfn_to_mfn(free_pfn(ping))
    host.machine.destroy_domain(ping)
    assert pong.grant_table.maptrack == {}
    with pytest.raises(Exception):
        copy_from_guest(pong.vcpus[0], va, 1)
    assert host.machine.frame_table.frames[mfn].owner != pong.domid


def copy_op(hypercall, dom, src, dst, length, flags):
    """src/dst: (ref_or_gmfn, domid, offset)."""
    fmt = "<QHHxxxxQHHxxxxHHh"
    return gnttab(hypercall, dom, gt.GNTTABOP_copy, fmt, src[0], src[1], src[2],
                  dst[0], dst[1], dst[2], length, flags, 0)


def test_grant_copy_both_ways(world, hypercall):
    _, d = world
    ping, pong = d["ping"], d["pong"]
    pfn = free_pfn(ping)
    grant(ping, 11, pong, pfn)
    ping.page(pfn)[100:104] = b"data"
    mine = pong.pfn_to_mfn(free_pfn(pong))
    rc, out = copy_op(hypercall, pong, (11, ping.domid, 100), (mine, SELF, 0), 4,
                      gt.GNTCOPY_source_gref)
    assert rc == 0 and out[-1] == gt.GNTST_okay
    assert bytes(pong.page(free_pfn(pong))[:4]) == b"data"
    pong.page(free_pfn(pong))[:4] = b"back"
    rc, out = copy_op(hypercall, pong, (mine, SELF, 0), (11, ping.domid, 200), 4, gt.GNTCOPY_dest_gref)
    assert out[-1] == gt.GNTST_okay and bytes(ping.page(pfn)[200:204]) == b"back"


def test_grant_copy_refusals(world, hypercall):
    _, d = world
    ping, pong, reader = d["ping"], d["pong"], d["reader"]
    grant(ping, 12, reader, free_pfn(ping))
    mine = reader.pfn_to_mfn(free_pfn(reader))
    out = copy_op(hypercall, reader, (mine, SELF, 0), (12, ping.domid, 0), 4, gt.GNTCOPY_dest_gref)[1]
    assert out[-1] == gt.GNTST_permission_denied          # reader may only read
    out = copy_op(hypercall, reader, (12, ping.domid, 4090), (mine, SELF, 0), 10,
                  gt.GNTCOPY_source_gref)[1]
    assert out[-1] == gt.GNTST_bad_copy_arg
    out = copy_op(hypercall, pong, (ping.first_mfn, ping.domid, 0), (mine, SELF, 0), 4, 0)[1]
    assert out[-1] == gt.GNTST_permission_denied          # foreign gmfn without a grant


def test_unknown_gnttab_op(world, hypercall):
    _, d = world
    assert hypercall(d["ping"], xen.HYPERVISOR_grant_table_op, 99, 0, 1) == -errno.ENOSYS


def test_map_copies_guest_avail_bits(world, hypercall):
    """XENFEAT_gnttab_map_avail_bits: GNTMAP_guest_avail bits land in PTE bits 9-11."""
    _, d = world
    ping, pong = d["ping"], d["pong"]
    grant(ping, 7, pong, free_pfn(ping, 1))
    va = scratch(pong, 2)
    hypercall(pong, xen.HYPERVISOR_update_va_mapping, va, 0, 0)
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_map_grant_ref, MAP, va,
                     gt.GNTMAP_host_map | 5 << 16, 7, ping.domid, 0, 0, 0)
    assert rc == 0 and out[4] == gt.GNTST_okay
    frames = pong.machine.frame_table
    table, index = frames.l1_slot(pong.vcpus[0].core.cr3, va)
    assert frames.read_entry(table, index) >> 9 & 7 == 5


def test_maptrack_is_bounded_and_handles_reused_lowest_first(world, hypercall, monkeypatch):
    """A grantee holds at most Xen's maptrack limit of mappings (then
    GNTST_no_space, as get_maptrack_handle's failure), so a guest mapping
    one grant over and over cannot grow the host; a freed handle is the
    next one handed out.  The limit (262,144) is lowered to 3 here."""
    from pyxenon.hypervisor import grants

    monkeypatch.setattr(grants, "MAX_MAPTRACK", 3)
    _, d = world
    ping, pong = d["ping"], d["pong"]
    grant(ping, 11, pong, free_pfn(ping), readonly=True)
    vas = [scratch(pong, 2 + i) for i in range(4)]
    for va in vas:
        hypercall(pong, xen.HYPERVISOR_update_va_mapping, va, 0, 0)      # make room at va
    handles = [map_ref(hypercall, pong, ping, 11, va, readonly=True) for va in vas[:3]]
    assert handles == [(gt.GNTST_okay, 0), (gt.GNTST_okay, 1), (gt.GNTST_okay, 2)]
    assert map_ref(hypercall, pong, ping, 11, vas[3], readonly=True)[0] == gt.GNTST_no_space
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_unmap_grant_ref, UNMAP, vas[1], 0, 1, 0)
    assert out[3] == gt.GNTST_okay
    assert map_ref(hypercall, pong, ping, 11, vas[3], readonly=True) == (gt.GNTST_okay, 1)
    assert entry_flags(ping, 11) & gt.GTF_reading         # three mappings still pin it
    for va, handle in ((vas[0], 0), (vas[2], 2), (vas[3], 1)):
        gnttab(hypercall, pong, gt.GNTTABOP_unmap_grant_ref, UNMAP, va, 0, handle, 0)
    assert not entry_flags(ping, 11) & gt.GTF_reading      # the last unmap clears it


def test_checker_holds_tlb_translations_of_foreign_frames_to_grants(world, hypercall):
    """The whole-state checker (hypervisor/audit.py) accepts a cached
    translation of another domain's frame only while the domain it was
    filled for has that frame grant-mapped: a hypervisor that dropped the
    mapping but not the translation is caught."""
    from pyxenon._core import lib
    from pyxenon.hypervisor import audit

    host, d = world
    ping, pong = d["ping"], d["pong"]
    machine = host.machine
    audit.shadow_tlb(machine)
    lib.xc_settle(machine.core)
    grant(ping, 12, pong, free_pfn(ping))
    va = scratch(pong, 2)
    hypercall(pong, xen.HYPERVISOR_update_va_mapping, va, 0, 0)
    status, handle = map_ref(hypercall, pong, ping, 12, va)
    lib.xc_settle(machine.core)
    assert lib.xc_tlb_probe(machine.core, pong.vcpus[0].core, va, 0) == 1
    assert audit.findings(machine) == []
    lost = pong.grant_table.maptrack.pop(handle)       # the planted bug: no unmap, no flush
    found = audit.findings(machine)
    assert any(f"mfn {lost.mfn:#x}: the TLB of d{pong.domid}" in f and "no grant mapping" in f
               for f in found), found


# -- as Xen's create_grant_pv_mapping and _set_status -------------------------------------

def frame_of(dom, va):
    """The frame mapping va in dom's tables, and that L1 entry."""
    ft = dom.machine.frame_table
    table, index = ft.l1_slot(dom.vcpus[0].core.cr3, va)
    entry = struct.unpack_from("<Q", dom.machine.mem, table * PAGE + index * 8)[0]
    return entry >> 12 & ((1 << 40) - 1)


def test_map_over_a_present_entry_replaces_it_and_drops_its_reference(world, hypercall):
    _, d = world
    ping, pong = d["ping"], d["pong"]
    pfn = free_pfn(ping, 1)
    ping.page(pfn)[:5] = b"grant"
    grant(ping, 11, pong, pfn)
    va = scratch(pong, 2)
    old = frame_of(pong, va)                    # pong's own page, mapped writable
    frames = pong.machine.frame_table.frames
    count, type_count = frames[old].count, frames[old].type_count
    assert map_ref(hypercall, pong, ping, 11, va)[0] == gt.GNTST_okay
    assert copy_from_guest(pong.vcpus[0], va, 5) == b"grant"
    assert (frames[old].count, frames[old].type_count) == (count - 1, type_count - 1)


def test_map_over_a_grant_entry_crashes_the_mapper(world, hypercall):
    _, d = world
    ping, pong = d["ping"], d["pong"]
    grant(ping, 12, pong, free_pfn(ping, 2))
    grant(ping, 13, pong, free_pfn(ping, 3))
    va = scratch(pong, 2)
    assert map_ref(hypercall, pong, ping, 12, va)[0] == gt.GNTST_okay
    map_ref(hypercall, pong, ping, 13, va)
    assert pong.crash_report and "implicit unmap" in pong.crash_report


def test_domain_0s_grants_are_not_the_callers(world, hypercall):
    _, d = world
    pong = d["pong"]
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_map_grant_ref, MAP, scratch(pong, 2),
                     gt.GNTMAP_host_map, 0, 0, 0, 0, 0)
    assert rc == 0 and out[4] == gt.GNTST_general_error
    rc, out = gnttab(hypercall, pong, gt.GNTTABOP_map_grant_ref, MAP, scratch(pong, 2),
                     0, 0, 0, 0, 0, 0)                         # no map flag: checked first
    assert out[4] == gt.GNTST_bad_gntref


def test_transfer_is_refused_as_xen_without_grant_transfer(world, hypercall):
    """GNTTABOP_transfer answers as Xen booted with gnttab=transfer=0
    (gnttab_transfer's opt_grant_transfer): -EOPNOTSUPP, and the page stays
    the caller's; a handle in Xen's range is -EFAULT first."""
    host, doms = world
    ping, pong = doms["ping"], doms["pong"]
    pfn = free_pfn(ping)
    mfn = ping.pfn_to_mfn(pfn)
    rc, _ = gnttab(hypercall, ping, gt.GNTTABOP_transfer, "<QHxxIh", pfn, pong.domid, 0, 0)
    assert rc == -errno.EOPNOTSUPP
    assert ping.pfn_to_mfn(pfn) == mfn and host.machine.frame_table.frames[mfn].owner == ping.domid
    rc = hypercall(ping, xen.HYPERVISOR_grant_table_op, gt.GNTTABOP_transfer, 0xFFFF800000001000, 1)
    assert rc == -errno.EFAULT
