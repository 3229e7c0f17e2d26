"""memory_op, vm_assist, multicall, and the writable-pagetable assist."""
import struct

import pytest

from pyxenon.hypervisor import traps
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.hypervisor.mm import WRITABLE
from pyxenon.public import errno, memory, xen

PAGE = 4096
SELF = 0x7FF0


@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"))


def scratch(dom, n=1):
    return dom.layout.stack + n * PAGE


def put(dom, va, data):
    copy_to_guest(dom.vcpus[0], va, data)


def get(dom, va, n):
    return copy_from_guest(dom.vcpus[0], va, n)


def mem(hypercall, dom, cmd, arg):
    return hypercall(dom, xen.HYPERVISOR_memory_op, cmd, arg)


def test_reservations(dom, hypercall):
    put(dom, scratch(dom), struct.pack("<H", SELF))
    assert mem(hypercall, dom, memory.XENMEM_current_reservation, scratch(dom)) == dom.nr_pages
    assert mem(hypercall, dom, memory.XENMEM_maximum_reservation, scratch(dom)) == dom.nr_pages
    put(dom, scratch(dom), struct.pack("<H", 999))
    assert mem(hypercall, dom, memory.XENMEM_current_reservation, scratch(dom)) == -errno.ESRCH
    assert mem(hypercall, dom, memory.XENMEM_maximum_ram_page, 0) == dom.machine.nr_frames - 1
    put(dom, scratch(dom), struct.pack("<H", 0))                 # domain 0 exists: XSM refuses
    assert mem(hypercall, dom, memory.XENMEM_current_reservation, scratch(dom)) == -errno.EPERM


def test_maximum_gpfn_is_the_guests_own_max_pfn(dom, hypercall):
    """domain_get_maximum_gpfn for PV: shared_info's arch.max_pfn less one."""
    put(dom, scratch(dom), struct.pack("<H", SELF))
    assert mem(hypercall, dom, memory.XENMEM_maximum_gpfn, scratch(dom)) == dom.nr_pages - 1
    dom.shared_info.arch.max_pfn = 0                             # none set
    assert mem(hypercall, dom, memory.XENMEM_maximum_gpfn, scratch(dom)) == 0
    dom.shared_info.arch.max_pfn = 0x1234
    assert mem(hypercall, dom, memory.XENMEM_maximum_gpfn, scratch(dom)) == 0x1233
    put(dom, scratch(dom), struct.pack("<H", 999))
    assert mem(hypercall, dom, memory.XENMEM_maximum_gpfn, scratch(dom)) == -errno.ESRCH


def test_memory_map(dom, hypercall):
    va = scratch(dom)
    put(dom, va, struct.pack("<IxxxxQ", 4, va + 64))
    assert mem(hypercall, dom, memory.XENMEM_memory_map, va) == 0
    assert struct.unpack("<I", get(dom, va, 4))[0] == 1
    addr, size, kind = struct.unpack("<QQI", get(dom, va + 64, 20))
    assert (addr, size, kind) == (0, dom.nr_pages * PAGE, memory.E820_RAM)
    put(dom, va, struct.pack("<IxxxxQ", 0, va + 64))      # no room: none written (arch_memory_op)
    assert mem(hypercall, dom, memory.XENMEM_memory_map, va) == 0
    assert struct.unpack("<I", get(dom, va, 4))[0] == 0


def test_machphys_mapping(dom, hypercall):
    assert mem(hypercall, dom, memory.XENMEM_machphys_mapping, scratch(dom)) == 0
    start, end, max_mfn = struct.unpack("<3Q", get(dom, scratch(dom), 24))
    assert start == 0xFFFF800000000000 and end - start == dom.machine.nr_frames * 8
    assert max_mfn == dom.machine.nr_frames - 1


def test_machphys_mfn_list(dom, hypercall):
    va = scratch(dom)
    put(dom, va, struct.pack("<IxxxxQI", 2, va + 64, 0))
    assert mem(hypercall, dom, memory.XENMEM_machphys_mfn_list, va) == 0
    chunks = -(-dom.machine.nr_frames * 8 // (2 << 20))
    assert struct.unpack("<I", get(dom, va + 16, 4))[0] == min(2, chunks)
    assert struct.unpack("<Q", get(dom, va + 64, 8))[0] == dom.machine.nr_frames


def test_add_to_physmap_shared_info(dom, hypercall):
    va = scratch(dom)
    put(dom, va, struct.pack("<HHIQQ", SELF, 0, memory.XENMAPSPACE_shared_info, 0, 77))
    assert mem(hypercall, dom, memory.XENMEM_add_to_physmap, va) == 0
    assert dom.machine.m2p[dom.shared_info_mfn] == 77
    put(dom, va, struct.pack("<HHIQQ", SELF, 0, memory.XENMAPSPACE_gmfn, 0, 77))
    assert mem(hypercall, dom, memory.XENMEM_add_to_physmap, va) == -errno.EINVAL


def test_unsupported_memory_op(dom, hypercall):
    assert mem(hypercall, dom, memory.XENMEM_exchange, scratch(dom)) == -errno.ENOSYS


def test_vm_assist(dom, hypercall):
    assert hypercall(dom, xen.HYPERVISOR_vm_assist, xen.VMASST_CMD_enable,
                     xen.VMASST_TYPE_m2p_strict) == 0
    assert dom.vm_assist >> xen.VMASST_TYPE_m2p_strict & 1
    assert hypercall(dom, xen.HYPERVISOR_vm_assist, xen.VMASST_CMD_disable,
                     xen.VMASST_TYPE_m2p_strict) == 0
    # PV64_VM_ASSIST_MASK keeps the 32-bit assists Linux still asks for
    for kind in (xen.VMASST_TYPE_4gb_segments, xen.VMASST_TYPE_pae_extended_cr3):
        assert hypercall(dom, xen.HYPERVISOR_vm_assist, xen.VMASST_CMD_enable, kind) == 0
    assert hypercall(dom, xen.HYPERVISOR_vm_assist, xen.VMASST_CMD_enable, 6) == -errno.EINVAL
    assert hypercall(dom, xen.HYPERVISOR_vm_assist, 7, xen.VMASST_TYPE_m2p_strict) == -errno.ENOSYS


def test_multicall_writes_each_result(dom, hypercall):
    va = scratch(dom)
    calls = [(xen.HYPERVISOR_xen_version, [0]), (63, [0]), (xen.HYPERVISOR_multicall, [0, 0]),
             (xen.HYPERVISOR_xen_version, [7])]
    put(dom, va, b"".join(struct.pack("<QQ6Q", op, 0, *(args + [0] * (6 - len(args))))
                          for op, args in calls))
    assert hypercall(dom, xen.HYPERVISOR_multicall, va, len(calls)) == 0
    results = [struct.unpack("<q", get(dom, va + 64 * i + 8, 8))[0] for i in range(4)]
    assert results == [4 << 16 | 17, -errno.ENOSYS, -errno.EINVAL, 4096]


def test_multicall_unreadable_list(dom, hypercall):
    assert hypercall(dom, xen.HYPERVISOR_multicall, 0x1000, 1) == -errno.EFAULT


# -- writable page tables -----------------------------------------------------------------

def l1_entry_va(dom, va):
    """The virtual address (in the start-of-day map) of the L1 entry for va."""
    t = dom.machine.frame_table
    table = dom.vcpus[0].core.cr3
    for level in (4, 3, 2):
        table = t.read_entry(table, (va >> (12 + 9 * (level - 1))) & 511) >> 12 & ((1 << 40) - 1)
    pfn = dom.machine.m2p[table]
    return dom.layout.virt_base + pfn * PAGE + ((va >> 12) & 511) * 8


def write_fault(dom, target_va, code):
    """Run one instruction (code) that writes an L1 entry at target_va."""
    vcpu = dom.vcpus[0]
    put(dom, scratch(dom), code)
    vcpu.set_regs(rip=scratch(dom), rdi=target_va)
    vcpu.core.vector, vcpu.core.error_code, vcpu.core.cr2 = 14, 0x7, target_va
    traps.on_exception(vcpu)


def test_ptwr_mov_updates_entry_through_checks(dom):
    va = scratch(dom, 2)
    entry_va = l1_entry_va(dom, va)
    target = dom.pfn_to_mfn(dom.layout.pfn(dom.layout.virt_end) + 2)
    dom.vcpus[0].set_regs(rax=target << 12 | 0x67)
    write_fault(dom, entry_va, b"\x48\x89\x07")          # mov [rdi], rax
    assert dom.shutdown_reason is None
    assert dom.vcpus[0].regs()["rip"] == scratch(dom) + 3
    assert dom.machine.frame_table.frames[target].type == WRITABLE


def test_ptwr_refuses_foreign_frame(guests, host, dom):
    other = host.create(str(guests / "hello.cfg"), overrides=['name="b"'])
    entry_va = l1_entry_va(dom, scratch(dom, 2))
    dom.vcpus[0].set_regs(rax=other.first_mfn << 12 | 0x67)
    write_fault(dom, entry_va, b"\x48\x89\x07")
    assert dom.shutdown_reason == "crash"                # a plain #PF, no handler


def entry_of(dom, va):
    t = dom.machine.frame_table
    return t.read_entry(*t.l1_slot(dom.vcpus[0].core.cr3, va))


@pytest.mark.parametrize("code, offset, regs, want", [
    (b"\xf0\x80\x27\xfd", 0, {}, lambda e: e & ~2),                  # lock andb $0xfd: wrprotect
    (b"\x3e\x80\x0f\x20", 0, {}, lambda e: e | 0x20),                 # ds orb $0x20 (Accessed)
    (b"\xf0\x48\x0f\xab\x07", 0, {"rax": 1}, lambda e: e | 2),       # lock bts [rdi], rax: RW
    (b"\x66\x31\x07", 0, {"rax": 0}, lambda e: e),                   # xor word: no change, ZF
    (b"\x89\x07", 4, {"rax": 0x80000000}, lambda e: e & 0xFFFFFFFF | 0x80000000 << 32),  # NX
])
def test_ptwr_any_width_and_read_modify_write(dom, code, offset, regs, want):
    """ptwr_emulated_update: naturally aligned writes of any width within the
    entry, merged into it, and the read-modify-write forms Linux uses."""
    va = scratch(dom, 2)
    entry_va = l1_entry_va(dom, va)
    before = entry_of(dom, va)
    dom.vcpus[0].set_regs(**regs)
    write_fault(dom, entry_va + offset, code)
    assert dom.shutdown_reason is None
    assert dom.vcpus[0].regs()["rip"] == scratch(dom) + len(code)
    assert entry_of(dom, va) == want(before)


def test_ptwr_bts_sets_carry_from_the_old_bit(dom):
    va = scratch(dom, 2)
    dom.vcpus[0].set_regs(rax=1, rflags=0x202)          # bit 1 (RW) is already set
    write_fault(dom, l1_entry_va(dom, va), b"\xf0\x48\x0f\xab\x07")
    assert dom.vcpus[0].regs()["rflags"] & 1


def test_sharing_counts_and_ops_as_xen_without_mem_sharing(dom, hypercall):
    assert mem(hypercall, dom, memory.XENMEM_get_sharing_freed_pages, 0) == 0
    assert mem(hypercall, dom, memory.XENMEM_get_sharing_shared_pages, 0) == 0
    assert mem(hypercall, dom, memory.XENMEM_sharing_op, 0) == -errno.ENOSYS
    assert mem(hypercall, dom, memory.XENMEM_paging_op, 0) == -errno.ENOSYS
