"""Values worth trying, drawn from a Random and the world's state: edge
integers, addresses, frames (own, page tables, Xen's pages, another
domain's, free), domids, ports, times."""
from pyxenon.hypervisor import events as evtchn
from pyxenon.hypervisor.machine import EXTRA_FRAMES, HV_FRAMES
from pyxenon.public import grant_table as gt, xen

from .common import MASK64, PAGE
from .ops import call_op
from .structs import fill_struct
from .world import SCRATCH_PAGES


EDGE_INTS = (0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 511, 512, 1023,
             1024, 4095, 4096, 4097, 0x7FFF, 0x7FF0, 0x7FF1, 0x7FF2, 0x7FF4, 0x8000, 0xFFFF,
             0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, (1 << 32) + 1, 1 << 40,
             (1 << 52) - 1, (1 << 63) - 1, 1 << 63, (1 << 63) + 1, MASK64, MASK64 - 1,
             MASK64 - 0xFFF, MASK64 - 7)
HV_VAS = (0xFFFF800000000000, 0xFFFF800000001000, 0xFFFF804000000000, 0xFFFF820000000000,
          0xFFFF820000000000 + 14 * PAGE, 0xFFFF830000000000, 0xFFFF82D040000000,
          0xFFFF82D040002000, 0xFFFF87FFFFFFF000, 0xFFFF880000000000 - 8)
ODD_VAS = (0, 8, 0xFFF, 0x1000, 0x100000000, 0x00007FFFFFFFF000, 0x00007FFFFFFFFFF8,
           0x0000800000000000, 0x8000000000000000, 0xFFFF7FFFFFFFF000, MASK64, MASK64 - 7,
           MASK64 - 0xFFF)
PTE_FLAGS = (0x67, 0x67, 0x65, 0x63, 0x61, 0x27, 0x25, 0x07, 0x05, 0x03, 0x01, 0x00,
             0x67 | 0x80, 0x67 | 0x800, 0x65 | 0x800, 0x67 | 0x08, 0x67 | 0x10, 0x67 | 0x100,
             0x67 | 1 << 63, 0x65 | 1 << 52, 0x67 | 0x200)


class Maker:
    """Draws values and builds ops, from a Random and the world's state."""

    def __init__(self, rng, world):
        self.rng = rng
        self.world = world

    # -- plain values --

    def chance(self, p):
        return self.rng.random() < p

    def random_bytes(self, n):
        return self.rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""

    def integer(self):
        roll = self.rng.random()
        if roll < 0.55:
            return self.rng.choice(EDGE_INTS)
        if roll < 0.8:
            return self.rng.randrange(4097)
        return self.rng.getrandbits(self.rng.choice((16, 32, 64)))

    def count(self):
        if self.chance(0.9):
            return self.rng.choice((0, 1, 1, 1, 2, 2, 3, 4, 8))
        return self.rng.choice((16, 256, 512, 4096, 0x7FFFFFFF, 0x80000001, 0xFFFFFFFF, MASK64))

    def small(self):
        return self.rng.randrange(12) if self.chance(0.85) else self.integer()

    def other(self, dom):
        live = self.world.live()
        return self.rng.choice(live) if live else dom

    # -- addresses --

    def scratch(self, dom, size=64):
        """An argument buffer in the start-of-day padding (free, writable)."""
        base = dom.layout.stack + PAGE
        if self.chance(0.05):
            return base + self.rng.randrange(SCRATCH_PAGES) * PAGE + PAGE - self.rng.randrange(1, 16)
        offset = self.rng.randrange(SCRATCH_PAGES * PAGE - size) & ~7
        return base + offset

    def va(self, dom):
        roll = self.rng.random()
        lay = dom.layout
        if roll < 0.45:
            return self.scratch(dom)
        if roll < 0.6:
            return lay.virt_base + self.rng.randrange((lay.virt_end - lay.virt_base) // PAGE) * PAGE
        if roll < 0.7:
            return lay.pt_base + self.rng.randrange(lay.nr_pt) * PAGE + self.rng.choice((0, 8))
        if roll < 0.78:
            return self.rng.choice((lay.start_info, lay.xenstore, lay.console, lay.stack,
                                    lay.p2m, lay.virt_end - 8, lay.virt_end - 1, lay.virt_end))
        if roll < 0.86:
            return self.rng.choice(HV_VAS)
        if roll < 0.94:
            return self.rng.choice(ODD_VAS)
        return self.rng.getrandbits(64)

    # -- frames --

    def mfn(self, dom):
        roll = self.rng.random()
        if roll < 0.25:
            return self.own_frame(dom)
        if roll < 0.45:
            return self.table_frame(dom)
        if roll < 0.55:
            return self.rng.choice((dom.shared_info_mfn, dom.grant_table.first_mfn,
                                    dom.grant_table.first_mfn + self.rng.randrange(EXTRA_FRAMES - 1)))
        if roll < 0.7:
            other = self.other(dom)
            return self.rng.choice((self.own_frame(other), self.table_frame(other)))
        if roll < 0.8:
            return self.rng.randrange(HV_FRAMES)
        return self.odd_frame()

    def own_frame(self, dom):
        if self.chance(0.5):     # a page of the start-of-day region
            return dom.first_mfn + self.rng.randrange((dom.layout.virt_end - dom.layout.virt_base) // PAGE)
        return dom.first_mfn + self.rng.randrange(dom.nr_pages + EXTRA_FRAMES)

    def table_frame(self, dom):
        tables = self.world.tables.get(dom.domid) or [(dom.first_mfn, 0)]
        return self.rng.choice(tables)[0]

    def odd_frame(self):
        nr = self.world.machine.nr_frames
        return self.rng.choice((0, nr - 1, nr, nr + 1, nr + 512, 1 << 40, (1 << 40) - 1,
                                self.rng.randrange(nr), self.rng.getrandbits(52)))

    def scratch_frame(self, dom):
        """(va, mfn) of one of the upper scratch pages (not argument buffers)."""
        lay = dom.layout
        first = lay.stack + PAGE + SCRATCH_PAGES * PAGE
        va = first + self.rng.randrange((lay.virt_end - first) // PAGE) * PAGE
        return va, dom.first_mfn + lay.pfn(va)

    def pte(self, dom):
        return self.mfn(dom) << 12 | self.rng.choice(PTE_FLAGS) if self.chance(0.9) else self.integer()

    def table_slot(self, dom):
        """Machine address of an entry of one of the domain's tables (or worse)."""
        mfn = self.table_frame(dom) if self.chance(0.7) else self.mfn(dom)
        return mfn << 12 | self.rng.randrange(512) * 8

    # -- domains, ports, grants --

    def domid(self, dom):
        roll = self.rng.random()
        if roll < 0.35:
            return xen.DOMID_SELF
        if roll < 0.75:
            return self.other(dom).domid
        if roll < 0.85:
            return dom.domid
        return self.rng.choice((0, xen.DOMID_IO, xen.DOMID_XEN, xen.DOMID_INVALID, 0xFFFF,
                                self.world.machine.next_domid, self.rng.randrange(1, 40)))

    def port(self, dom):
        """A port this domain has open, one another domain has, any index
        near the end of a table, or an edge value."""
        roll = self.rng.random()
        if roll < 0.45:
            return self.in_use(open_ports(dom if roll < 0.3 else self.other(dom)))
        if roll < 0.8:
            target = self.other(dom) if self.chance(0.3) else dom
            return self.rng.randrange(len(target.events.ports) + 2)
        return self.rng.choice((0, 1023, 1024, 4095, 4096, 0xFFFFFFFF, self.integer()))

    def ref(self, dom):
        """A grant reference: one this domain grants, one another domain
        grants it, a low one, or any value."""
        roll = self.rng.random()
        if roll < 0.45:
            granter = dom if roll < 0.25 else self.other(dom)
            return self.in_use(granted_refs(granter, None if granter is dom else dom.domid))
        return self.rng.randrange(16) if roll < 0.85 else self.integer()

    def in_use(self, values):
        return self.rng.choice(values) if values else self.rng.randrange(16)

    def time(self):
        now = self.world.machine.now()
        return self.rng.choice((0, 1, now, now + 1_000_000, now + 10 ** 9, now - 1,
                                self.integer()))

    def of_kind(self, kind, dom):
        return KIND_DRAW[kind](self, dom)

    def struct(self, dom, ctype, /, **given):
        return fill_struct(self, dom, ctype, given)

    def buffer_call(self, dom, slot, nr, head, ctype=None, data=None, tail=()):
        """A call whose argument after head is a buffer holding data (or a
        filled ctype, or random bytes)."""
        if data is None:
            data = self.struct(dom, ctype) if ctype else self.random_bytes(self.rng.randrange(1, 64))
        va = self.scratch(dom, len(data))
        return call_op(slot, nr, list(head) + [va] + list(tail), [(va, data)])


KIND_DRAW = {
    "domid": Maker.domid, "va": Maker.va, "port": Maker.port, "mfn": Maker.mfn,
    "vcpu": lambda m, dom: m.rng.choice((0, 0, 0, 1, 2, 0xFFFF, 0xFFFFFFFF)),
    "ref": Maker.ref,
    "handle": lambda m, dom: m.rng.randrange(4) if m.chance(0.8) else m.integer(),
    "count": lambda m, dom: m.count(), "small": lambda m, dom: m.small(),
    "offset": lambda m, dom: m.rng.choice((0, 8, 64, 4032, 4088, 4095, 4096, m.integer())),
    "time": lambda m, dom: m.time(), "int": lambda m, dom: m.integer(),
}


def open_ports(dom):
    return [p for p, port in enumerate(dom.events.ports) if port.state != evtchn.FREE]


GRANT_REFS = 32     # the references worth scanning: the recipes use the first 16


def granted_refs(granter, grantee=None):
    """References of granter's table that permit access (to grantee, if given)."""
    table = granter.grant_table
    refs = []
    for ref in range(GRANT_REFS):
        flags, domid, _ = table.read_entry(ref)
        if flags & gt.GTF_type_mask == gt.GTF_permit_access and grantee in (None, domid):
            refs.append(ref)
    return refs


def sub_op(m, ops, spread=4):
    """A sub-operation number: a valid one mostly, else near or far off."""
    if m.chance(0.85):
        return m.rng.choice(sorted(ops))
    return m.rng.choice((max(ops) + 1 + m.rng.randrange(spread), m.integer()))
