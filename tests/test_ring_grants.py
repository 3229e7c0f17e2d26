"""The console and store rings, granted to domain 0 and kept mapped by its
daemons (xc_dom_gnttab_seed; xenconsoled's domain_create_ring and
xenstored's map_interface): entries 0 and 1 in use while the domain lives,
the frames typed writable, all of it gone with the domain.  The guest's side
of it is guests/heldpt (tests/test_isolation_attacks.py)."""
import struct

from pyxenon.hypervisor import mm
from pyxenon.public import grant_table as gt
from pyxenon.toolstack.host import Host

PAGE = 4096
BUSY = gt.GTF_permit_access | gt.GTF_reading | gt.GTF_writing


def entry(dom, ref):
    return struct.unpack_from("<HHI", dom.machine.mem, dom.grant_table.entry_offset(ref))


def ring_mfns(dom):
    lay = dom.layout
    return dom.pfn_to_mfn(lay.pfn(lay.console)), dom.pfn_to_mfn(lay.pfn(lay.xenstore))


def mapped_by_dom0(host, dom):
    return sorted((m.ref, m.mfn) for m in host.machine.backend_grants.maptrack.values()
                  if m.granter is dom)


def test_the_rings_are_granted_to_dom0_and_held_mapped(guests):
    with Host(memory_mib=64) as host:
        dom = host.create(str(guests / "hello.cfg"), paused=True)
        console, store = ring_mfns(dom)
        assert entry(dom, gt.GNTTAB_RESERVED_CONSOLE) == (BUSY, 0, console)
        assert entry(dom, gt.GNTTAB_RESERVED_XENSTORE) == (BUSY, 0, store)
        assert mapped_by_dom0(host, dom) == [(0, console), (1, store)]
        for mfn in (console, store):
            page = host.machine.core.frames[mfn]
            assert page.type == mm.WRITABLE and page.type_count >= 1


def test_the_daemons_unmap_when_the_domain_goes(guests):
    with Host(memory_mib=64) as host:
        first = host.create(str(guests / "hello.cfg"), paused=True)
        host.machine.destroy_domain(first)
        assert not host.machine.backend_grants.maptrack
        again = host.create(str(guests / "hello.cfg"))
        host.run(timeout=30)
        assert again.shutdown_reason == "poweroff" and "Hello" in again.console_text

