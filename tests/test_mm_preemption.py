"""Preemptible validation and devalidation (Xen's promote/demote_l[234]_table
with PGT_partial, and old_guest_table): with a tiny work budget, pinning
and unpinning a tree of tables takes many calls, each leaving a state the
whole-state checker accepts, and the end state is the same as without
preemption."""
import pathlib

import pytest

from pyxenon._core import lib
from pyxenon.hypervisor import audit, mm
from pyxenon.toolstack.host import Host

GUESTS = pathlib.Path(__file__).resolve().parent.parent / "guests"
ERESTART = -lib.ERESTART
TABLE = 0x27          # present, writable, accessed
RO_TABLE = 0x25


@pytest.fixture
def world():
    host = Host(memory_mib=256)
    dom = host.create(str(GUESTS / "hello.cfg"))
    yield host, dom
    host.close()


def fresh_frames(dom, n):
    """Unmapped frames past the start-of-day region."""
    first = dom.layout.pfn(dom.layout.virt_end) + 8
    return [dom.pfn_to_mfn(first + i) for i in range(n)]


def build_tree(host, dom, l3s=2, l2s=3, l1s=4):
    """An L4 -> l3s L3 -> l2s L2 each -> l1s empty L1 each, written as plain
    pages (the guest writes them while they are still writable)."""
    t = host.machine.frame_table
    frames = iter(fresh_frames(dom, 1 + l3s * (1 + l2s * (1 + l1s))))
    l4 = next(frames)
    for a in range(l3s):
        l3 = next(frames)
        t.write_entry(l4, a, l3 << 12 | TABLE)
        for b in range(l2s):
            l2 = next(frames)
            t.write_entry(l3, b, l2 << 12 | TABLE)
            for c in range(l1s):
                t.write_entry(l2, c, next(frames) << 12 | TABLE)
    return l4


def until_done(host, op, *args):
    """Call a preemptible C operation again and again, as the guest's
    continuation would, checking the whole state between calls."""
    core, calls = host.machine.core, 0
    while True:
        core.work = 0
        rc = op(core, *args)
        calls += 1
        assert not audit.findings(host.machine)
        if rc != ERESTART:
            return rc, calls


def test_pin_and_unpin_a_tree_preempted(world):
    host, dom = world
    vcpu = dom.vcpus[0].core
    l4 = build_tree(host, dom)
    host.machine.core.work_budget = 3          # a few entries per call
    rc, calls = until_done(host, lib.xc_pin, vcpu, l4, mm.L4)
    assert rc == 0 and calls > 3
    assert host.machine.frame_table.is_table(l4, mm.L4)
    rc = lib.xc_unpin(host.machine.core, vcpu, l4)
    assert rc == 0
    rc, calls = until_done(host, lib.xc_put_old_guest_table, vcpu)
    assert rc == 0 and calls > 1 and vcpu.old_guest_table == 0
    assert host.machine.core.frames[l4].type_count == 0


def test_failure_after_the_first_entry_is_undone_later(world):
    """A bad entry late in an L3: the entries before it are put back
    through old_guest_table, preemptibly, and nothing stays referenced."""
    host, dom = world
    vcpu = dom.vcpus[0].core
    l4 = build_tree(host, dom, l3s=1, l2s=3)
    l3 = mm.entry_mfn(host.machine.frame_table.read_entry(l4, 0))
    host.machine.frame_table.write_entry(l3, 3, 0x100 << 12 | TABLE)    # not the domain's
    host.machine.core.work_budget = 2
    rc, _ = until_done(host, lib.xc_pin, vcpu, l4, mm.L4)
    assert rc == -22 and vcpu.old_guest_table
    rc, calls = until_done(host, lib.xc_put_old_guest_table, vcpu)
    assert rc == 0 and vcpu.old_guest_table == 0
    for mfn in fresh_frames(dom, 20):
        assert host.machine.core.frames[mfn].type_count == 0, hex(mfn)


def test_linear_entries_obey_xen(world):
    """A read-only L4 entry naming the L4 itself is accepted and takes no
    reference; a writable one is refused; Xen's slots are not the guest's.
    (guests/linearpt attacks the rest of the linear rules.)"""
    host, dom = world
    vcpu = dom.vcpus[0].core
    core = host.machine.core
    l4 = dom.vcpus[0].core.kernel_cr3
    before = core.frames[l4].count, core.frames[l4].type_count
    assert lib.xc_mod_entry(core, vcpu, l4, 256, l4 << 12 | RO_TABLE, 0) == -22
    assert lib.xc_mod_entry(core, vcpu, l4, 300, l4 << 12 | TABLE, 0) == -22
    assert lib.xc_mod_entry(core, vcpu, l4, 300, l4 << 12 | RO_TABLE, 0) == 0
    assert (core.frames[l4].count, core.frames[l4].type_count) == before
    assert not audit.findings(host.machine)
