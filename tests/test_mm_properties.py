"""Stateful property test of the frame table: random sequences of
mmu_update, update_va_mapping and mmuext_op, checking after each step that
no frame is both a page table and mapped writable, that every present entry
names a frame the domain owns, and that each type count equals the number
of references to it."""
import pathlib
import struct

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pyxenon.hypervisor import mm
from pyxenon.public import xen
from pyxenon.toolstack.host import Host

GUESTS = pathlib.Path(__file__).resolve().parent.parent / "guests"

PAGE = 4096
SELF = 0x7FF0


def expected_type_counts(dom):
    """Type references recomputed from the tables themselves."""
    t = dom.machine.frame_table
    counts = {}
    for mfn in domain_frames(dom):
        page = t.frames[mfn]
        if mm.L1 <= page.type <= mm.L4 and page.type_count:
            for i in t.guest_slots(page.type):
                e = t.read_entry(mfn, i)
                if not e & mm.PRESENT or e & mm.GNTTAB:
                    continue
                target = mm.entry_mfn(e)
                if page.type == mm.L1 and not e & mm.RW:
                    continue
                if target != mfn:
                    counts[target] = counts.get(target, 0) + 1
        if page.flags & mm.PINNED:
            counts[mfn] = counts.get(mfn, 0) + 1
    for vcpu in dom.vcpus:
        for base in (vcpu.core.kernel_cr3, vcpu.core.user_cr3):
            if base:
                counts[base] = counts.get(base, 0) + 1
    return counts


def domain_frames(dom):
    return range(dom.first_mfn, dom.first_mfn + dom.nr_pages)


class FrameTableMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.host = Host(memory_mib=256)
        self.dom = self.host.create(str(GUESTS / "hello.cfg"))
        self.other = self.host.create(str(GUESTS / "hello.cfg"), overrides=['name="other"'])
        self.t = self.host.machine.frame_table
        lay = self.dom.layout
        self.scratch = lay.stack + PAGE
        # candidate frames: own RAM (tables, mapped pages, free pages), foreign, Xen's
        self.frames = ([self.dom.pfn_to_mfn(p) for p in range(0, lay.pfn(lay.virt_end) + 64)]
                       + [self.other.first_mfn, 0, 5])
        self.vas = list(range(lay.virt_base, lay.virt_end, PAGE))
        # Requests are written through machine memory: a random update may
        # unmap the scratch page itself (the hypercall then fails -EFAULT).
        self.scratch_ma = self.dom.pfn_to_mfn(lay.pfn(self.scratch)) * PAGE

    def put(self, data):
        self.host.machine.mem[self.scratch_ma:self.scratch_ma + len(data)] = data

    def teardown(self):
        self.host.close()

    def hypercall(self, nr, *args):
        a = (list(args) + [0] * 5)[:5]
        return self.dom.dispatch(self.dom.vcpus[0], nr, *a)

    def l1_tables(self):
        return [m for m in domain_frames(self.dom)
                if self.t.frames[m].type == mm.L1 and self.t.frames[m].type_count]

    @rule(data=st.data(), rw=st.booleans(), present=st.booleans())
    def mmu_update(self, data, rw, present):
        tables = self.l1_tables() + [data.draw(st.sampled_from(self.frames))]
        table = data.draw(st.sampled_from(tables))
        index = data.draw(st.integers(0, 511))
        target = data.draw(st.sampled_from(self.frames))
        val = target << 12 | (0x65 if present else 0) | (0x2 if rw else 0)
        self.put(struct.pack("<QQ", table << 12 | index * 8, val))
        self.hypercall(xen.HYPERVISOR_mmu_update, self.scratch, 1, 0, SELF)

    @rule(data=st.data(), rw=st.booleans())
    def update_va_mapping(self, data, rw):
        va = data.draw(st.sampled_from(self.vas))
        if va in (self.scratch,) or self.dom.layout.stack <= va < self.dom.layout.stack + PAGE:
            return
        target = data.draw(st.sampled_from(self.frames))
        self.hypercall(xen.HYPERVISOR_update_va_mapping, va, target << 12 | 0x65 | (2 if rw else 0), 0)

    @rule(data=st.data(), level=st.integers(0, 4))
    def pin_or_unpin(self, data, level):
        mfn = data.draw(st.sampled_from(self.frames))
        cmd = xen.MMUEXT_UNPIN_TABLE if level == 4 else xen.MMUEXT_PIN_L1_TABLE + level
        self.put(struct.pack("<IxxxxQQ", cmd, mfn, 0))
        self.hypercall(xen.HYPERVISOR_mmuext_op, self.scratch, 1, 0, SELF)

    @invariant()
    def no_writable_page_table_and_owned_entries(self):
        for table in self.l1_tables():
            for i in range(512):
                e = self.t.read_entry(table, i)
                if not e & mm.PRESENT:
                    continue
                target = mm.entry_mfn(e)
                assert self.t.owned(target, self.dom)
                if e & mm.RW:
                    assert self.t.frames[target].type == mm.WRITABLE

    @invariant()
    def type_counts_match_references(self):
        expected = expected_type_counts(self.dom)
        for mfn in domain_frames(self.dom):
            assert self.t.frames[mfn].type_count == expected.get(mfn, 0), hex(mfn)


FrameTableMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])


def test_frame_table_properties(guests):
    FrameTableMachine.TestCase("runTest").runTest()
