"""Frames and page types: every attempt to break isolation is refused with
the error Xen gives, and the frame table stays consistent."""
import struct

import pytest

from pyxenon.hypervisor import mm
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import errno, xen

PAGE = 4096
SELF = 0x7FF0


@pytest.fixture
def two(guests, host):
    a = host.create(str(guests / "hello.cfg"))
    b = host.create(str(guests / "hello.cfg"), overrides=['name="other"'])
    return a, b


@pytest.fixture
def dom(two):
    return two[0]


def ft(dom):
    return dom.machine.frame_table


def scratch(dom):
    return dom.layout.stack + PAGE


def mmu_update(hypercall, dom, reqs, foreign=SELF):
    va = scratch(dom)
    copy_to_guest(dom.vcpus[0], va, b"".join(struct.pack("<QQ", p, v) for p, v in reqs))
    rc = hypercall(dom, xen.HYPERVISOR_mmu_update, va, len(reqs), va + 2048, foreign)
    done = struct.unpack("<I", copy_from_guest(dom.vcpus[0], va + 2048, 4))[0]
    return rc, done


def mmuext(hypercall, dom, cmd, arg1=0, arg2=0):
    va = scratch(dom)
    copy_to_guest(dom.vcpus[0], va, struct.pack("<IxxxxQQ", cmd, arg1, arg2))
    return hypercall(dom, xen.HYPERVISOR_mmuext_op, va, 1, 0, SELF)


def l1_of(dom, va):
    """(L1 frame, index) of the entry mapping va in the boot tables."""
    table = dom.vcpus[0].core.cr3
    for level in (4, 3, 2):
        table = mm.entry_mfn(ft(dom).read_entry(table, (va >> (12 + 9 * (level - 1))) & 511))
    return table, (va >> 12) & 511


def pte_ptr(dom, va):
    table, index = l1_of(dom, va)
    return table * PAGE + index * 8


def free_page(dom):
    """A RAM frame of dom that nothing maps (just past the mapped region)."""
    return dom.pfn_to_mfn(dom.layout.pfn(dom.layout.virt_end) + 3)


# -- the start of day ---------------------------------------------------------------

def test_boot_tables_pinned_and_typed(dom):
    t = ft(dom)
    l4 = dom.vcpus[0].core.cr3
    assert t.frames[l4].type == mm.L4 and t.frames[l4].flags & mm.PINNED
    for mfn in dom.pt_frames:
        assert mm.L1 <= t.frames[mfn].type <= mm.L4 and t.frames[mfn].type_count > 0


def check_invariants(dom):
    """No frame is both a page table and mapped writable; every present
    entry names a frame the domain owns."""
    t = ft(dom)
    for mfn in range(dom.first_mfn, dom.first_mfn + dom.nr_pages):
        if t.frames[mfn].type != mm.L1 or not t.frames[mfn].type_count:
            continue
        for i in range(512):
            e = t.read_entry(mfn, i)
            if e & mm.PRESENT:
                target = mm.entry_mfn(e)
                assert t.owned(target, dom)
                if e & mm.RW:
                    assert t.frames[target].type == mm.WRITABLE


def test_boot_invariants(dom):
    check_invariants(dom)


# -- hostile attempts, each refused ------------------------------------------------------

def test_map_foreign_frame(dom, two, hypercall):
    other = two[1]
    rc, done = mmu_update(hypercall, dom, [(pte_ptr(dom, scratch(dom) + PAGE), other.first_mfn << 12 | 0x67)])
    assert (rc, done) == (-errno.EBUSY, 0)       # get_page_from_l1e: could_not_pin


def test_map_hypervisor_frame(dom, hypercall):
    rc, _ = mmu_update(hypercall, dom, [(pte_ptr(dom, scratch(dom) + PAGE), 0 << 12 | 0x67)])
    assert rc == -errno.EPERM                    # the low 1 MiB is DOMID_IO's on Xen


def test_map_frame_outside_machine(dom, hypercall):
    rc, _ = mmu_update(hypercall, dom, [(pte_ptr(dom, scratch(dom) + PAGE), (1 << 39) | 0x67)])
    assert rc == -errno.EPERM


def test_map_page_table_writable(dom, hypercall):
    l4 = dom.vcpus[0].core.cr3
    rc, _ = mmu_update(hypercall, dom, [(pte_ptr(dom, scratch(dom) + PAGE), l4 << 12 | 0x67)])
    assert rc == -errno.EBUSY                    # no writable type: could_not_pin
    rc, _ = mmu_update(hypercall, dom, [(pte_ptr(dom, scratch(dom) + PAGE), l4 << 12 | 0x65)])
    assert rc == 0                       # read-only is fine
    check_invariants(dom)


def test_write_pte_into_foreign_table(dom, two, hypercall):
    other = two[1]
    rc, _ = mmu_update(hypercall, dom, [(other.vcpus[0].core.cr3 << 12, 0)])
    assert rc == -errno.EINVAL


def test_superpage_refused(dom, hypercall):
    table = dom.vcpus[0].core.cr3
    t = ft(dom)
    for _ in (4, 3):
        table = mm.entry_mfn(t.read_entry(table, 511))     # toward the kernel's L2
    rc, _ = mmu_update(hypercall, dom, [(table << 12 | 8 * 100, dom.first_mfn << 12 | 0xE7)])
    assert rc == -errno.EINVAL


def test_update_va_mapping_reserved_range(dom, hypercall):
    rc = hypercall(dom, xen.HYPERVISOR_update_va_mapping, 0xFFFF800000000000,
                   dom.first_mfn << 12 | 0x67, 0)
    assert rc == -errno.EINVAL


def test_xen_l4_slot_refused(dom, hypercall):
    l4 = dom.vcpus[0].core.cr3
    rc, _ = mmu_update(hypercall, dom, [(l4 << 12 | 8 * 256, 0)])
    assert rc == -errno.EINVAL


def test_pin_table_with_foreign_entry(dom, two, hypercall):
    page = free_page(dom)
    ft(dom).write_entry(page, 0, two[1].first_mfn << 12 | 0x65)
    assert mmuext(hypercall, dom, xen.MMUEXT_PIN_L1_TABLE, page) == -errno.EBUSY
    assert ft(dom).frames[page].type_count == 0


def test_pin_unpin_and_unpin_unpinned(dom, hypercall):
    page = free_page(dom)
    ft(dom).write_entry(page, 0, (dom.first_mfn + 1) << 12 | 0x65)
    assert mmuext(hypercall, dom, xen.MMUEXT_PIN_L1_TABLE, page) == 0
    assert ft(dom).frames[page].type == mm.L1
    assert mmuext(hypercall, dom, xen.MMUEXT_PIN_L1_TABLE, page) == -errno.EINVAL
    assert mmuext(hypercall, dom, xen.MMUEXT_UNPIN_TABLE, page) == 0
    assert ft(dom).frames[page].type_count == 0
    assert mmuext(hypercall, dom, xen.MMUEXT_UNPIN_TABLE, page) == -errno.EINVAL


def test_retype_frame_mapped_writable(dom, hypercall):
    stack_mfn = dom.pfn_to_mfn(dom.layout.pfn(dom.layout.stack))
    assert ft(dom).frames[stack_mfn].type == mm.WRITABLE
    assert mmuext(hypercall, dom, xen.MMUEXT_PIN_L1_TABLE, stack_mfn) == -errno.EINVAL


def test_unpin_table_in_use_not_pinned(dom, hypercall):
    """A table in use only through its parent is not the guest's to unpin."""
    l1, _ = l1_of(dom, dom.layout.stack)
    assert mmuext(hypercall, dom, xen.MMUEXT_UNPIN_TABLE, l1) == -errno.EINVAL


def test_foreign_domain_refused(dom, two, hypercall):
    rc, _ = mmu_update(hypercall, dom, [(0, 0)], foreign=two[1].domid)
    assert rc == -errno.EPERM
    rc, _ = mmu_update(hypercall, dom, [(0, 0)], foreign=999)
    assert rc == -errno.ESRCH


# -- what is allowed works ------------------------------------------------------------------

def test_partial_failure_reports_done(dom, two, hypercall):
    ptr = pte_ptr(dom, scratch(dom) + PAGE)
    good = (ptr, free_page(dom) << 12 | 0x67)
    bad = (ptr, two[1].first_mfn << 12 | 0x67)
    rc, done = mmu_update(hypercall, dom, [good, bad, good])
    assert (rc, done) == (-errno.EBUSY, 1)
    check_invariants(dom)


def test_update_va_mapping_remaps(dom, hypercall):
    va = scratch(dom) + PAGE
    target = free_page(dom)
    ft(dom).mem[target * PAGE:target * PAGE + 5] = b"hello"
    assert hypercall(dom, xen.HYPERVISOR_update_va_mapping, va, target << 12 | 0x67,
                     xen.UVMF_INVLPG) == 0
    assert copy_from_guest(dom.vcpus[0], va, 5) == b"hello"
    assert ft(dom).frames[target].type == mm.WRITABLE
    assert hypercall(dom, xen.HYPERVISOR_update_va_mapping, va, 0, xen.UVMF_INVLPG) == 0
    assert ft(dom).frames[target].type_count == 0
    check_invariants(dom)


def test_preserve_ad_keeps_bits(dom, hypercall):
    ptr = pte_ptr(dom, scratch(dom) + PAGE)
    target = free_page(dom)
    rc, _ = mmu_update(hypercall, dom, [(ptr | xen.MMU_PT_UPDATE_PRESERVE_AD, target << 12 | 0x07)])
    assert rc == 0
    assert ft(dom).read_entry(ptr >> 12, (ptr & 0xFFF) // 8) & 0x60 == 0x60   # old A/D kept


def test_machphys_update(dom, two, hypercall):
    page = free_page(dom)
    rc, _ = mmu_update(hypercall, dom, [(page << 12 | xen.MMU_MACHPHYS_UPDATE, 1234)])
    assert rc == 0 and dom.machine.m2p[page] == 1234
    rc, _ = mmu_update(hypercall, dom, [(two[1].first_mfn << 12 | xen.MMU_MACHPHYS_UPDATE, 1)])
    assert rc == -errno.EINVAL


def test_copy_and_clear_page(dom, two, hypercall):
    src, dst = free_page(dom), free_page(dom) + 1
    mem = ft(dom).mem
    mem[src * PAGE:src * PAGE + 4] = b"data"
    assert mmuext(hypercall, dom, xen.MMUEXT_COPY_PAGE, dst, src) == 0
    assert bytes(mem[dst * PAGE:dst * PAGE + 4]) == b"data"
    assert mmuext(hypercall, dom, xen.MMUEXT_CLEAR_PAGE, dst) == 0
    assert bytes(mem[dst * PAGE:dst * PAGE + 4]) == b"\0\0\0\0"
    assert mmuext(hypercall, dom, xen.MMUEXT_COPY_PAGE, dst, two[1].first_mfn) == -errno.EINVAL
    assert mmuext(hypercall, dom, xen.MMUEXT_CLEAR_PAGE, dom.vcpus[0].core.cr3) == -errno.EINVAL


def test_new_baseptr_needs_a_valid_l4(dom, hypercall):
    stack_mfn = dom.pfn_to_mfn(dom.layout.pfn(dom.layout.stack))
    assert mmuext(hypercall, dom, xen.MMUEXT_NEW_BASEPTR, stack_mfn) == -errno.EINVAL


def test_unknown_mmuext_op(dom, hypercall):
    assert mmuext(hypercall, dom, 99) == -errno.ENOSYS


def test_mmuext_flushes(dom, hypercall):
    for cmd in (xen.MMUEXT_TLB_FLUSH_LOCAL, xen.MMUEXT_TLB_FLUSH_ALL, xen.MMUEXT_INVLPG_LOCAL):
        assert mmuext(hypercall, dom, cmd, scratch(dom)) == 0


def test_update_va_mapping_otherdomain(dom, two, hypercall):
    va = scratch(dom) + PAGE
    val = free_page(dom) << 12 | 0x67
    assert hypercall(dom, xen.HYPERVISOR_update_va_mapping_otherdomain, va, val, 0, two[1].domid) \
        == -errno.EPERM
    assert hypercall(dom, xen.HYPERVISOR_update_va_mapping_otherdomain, va, val, 0, SELF) == 0


def test_long_batch_continues(dom, hypercall, monkeypatch):
    """A batch longer than the per-trap budget returns through a
    continuation (count | PREEMPTED, the done count carried), as Xen's does."""
    from pyxenon.hypercalls import mmu

    monkeypatch.setattr(mmu, "BUDGET", 2)
    dom.machine.core.fast_paths = 0      # Python's budget: C takes up to 512 at once
    ptr = pte_ptr(dom, scratch(dom) + PAGE)
    val = free_page(dom) << 12 | 0x67
    va = scratch(dom)
    copy_to_guest(dom.vcpus[0], va, struct.pack("<QQ", ptr, val) * 5)
    rc = hypercall(dom, xen.HYPERVISOR_mmu_update, va, 5, va + 2048, SELF)
    assert rc == xen.HYPERVISOR_mmu_update                   # "make the call again"
    regs = dom.vcpus[0].regs()
    assert regs["rdi"] == va + 32 and regs["rsi"] == 3 | 1 << 31
    rc = hypercall(dom, xen.HYPERVISOR_mmu_update, regs["rdi"], regs["rsi"], va + 2048, SELF)
    regs = dom.vcpus[0].regs()
    assert hypercall(dom, xen.HYPERVISOR_mmu_update, regs["rdi"], regs["rsi"], va + 2048, SELF) == 0
    assert struct.unpack("<I", copy_from_guest(dom.vcpus[0], va + 2048, 4))[0] == 5


def test_xen_shared_pages_never_become_tables(dom, hypercall):
    """shared_info and grant frames are written by the hypervisor: they keep a
    writable type, so they cannot be pinned as page tables or used as a GDT."""
    for mfn in (dom.shared_info_mfn, dom.grant_table.first_mfn):
        assert mmuext(hypercall, dom, xen.MMUEXT_PIN_L1_TABLE, mfn) == -errno.EINVAL
    copy_to_guest(dom.vcpus[0], scratch(dom), struct.pack("<Q", dom.grant_table.first_mfn))
    assert hypercall(dom, xen.HYPERVISOR_set_gdt, scratch(dom), 16) == -errno.EINVAL
