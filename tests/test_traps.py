"""Trap virtualization: the trap table, Xen's x86_64 bounce frame, iret,
callbacks, descriptors and the privileged instructions Xen emulates."""
import struct

import pytest

from pyxenon.hypervisor import traps
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import arch_x86, callback, errno, xen

PAGE = 4096
HANDLER = 0xFFFFFFFF80001000     # any mapped address will do as a handler


@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"))


@pytest.fixture
def vcpu(dom):
    return dom.vcpus[0]


def scratch(dom, n=1):
    return dom.layout.stack + n * PAGE


def put(vcpu, va, data):
    copy_to_guest(vcpu, va, data)


def set_traps(hypercall, dom, entries):
    va = scratch(dom, 3)
    raw = b"".join(struct.pack("<BBHxxxxQ", v, f, 0xE033, a) for v, f, a in entries)
    put(dom.vcpus[0], va, raw + bytes(16))
    return hypercall(dom, xen.HYPERVISOR_set_trap_table, va)


def raise_exception(vcpu, vector, error_code=0, cr2=0):
    vcpu.core.vector, vcpu.core.error_code, vcpu.core.cr2 = vector, error_code, cr2
    vcpu.core.stop = 2
    traps.on_exception(vcpu)


def frame(vcpu, words):
    return struct.unpack(f"<{words}Q", copy_from_guest(vcpu, vcpu.regs()["rsp"], 8 * words))


def test_gp_bounces_with_error_code(dom, vcpu, hypercall):
    assert set_traps(hypercall, dom, [(13, 0, HANDLER)]) == 0
    vcpu.set_regs(rsp=scratch(dom, 2) + 0x808, rcx=0x11, r11=0x22, rip=0x1234)
    raise_exception(vcpu, 13, error_code=0x18)
    regs = vcpu.regs()
    assert regs["rip"] == HANDLER and regs["rsp"] % 8 == 0
    rcx, r11, err, rip, cs, rflags, rsp, ss = frame(vcpu, 8)
    assert (rcx, r11, err, rip) == (0x11, 0x22, 0x18, 0x1234)
    assert cs & 0xFFFF == 0xE030                  # RPL cleared: came from kernel mode
    assert cs >> 32 == 1                          # saved event mask (masked at boot)
    assert not rflags & 0x200                     # virtual IF = !mask
    assert rsp == scratch(dom, 2) + 0x808 and ss == 0xE02B
    assert regs["rsp"] == ((scratch(dom, 2) + 0x808) & ~0xF) - 64


def test_bp_has_no_error_code_and_if_flag_masks(dom, vcpu, hypercall):
    set_traps(hypercall, dom, [(3, 3 | 4, HANDLER)])
    dom.vcpu_info(0).evtchn_upcall_mask = 0
    vcpu.set_regs(rsp=scratch(dom, 2), rip=0x5555)
    raise_exception(vcpu, 3)
    rcx, r11, rip, cs, rflags, rsp, ss = frame(vcpu, 7)
    assert rip == 0x5555 and rflags & 0x200 and cs >> 32 == 0
    assert dom.vcpu_info(0).evtchn_upcall_mask == 1      # TI flag bit 2


def test_page_fault_stores_cr2(dom, vcpu, hypercall):
    set_traps(hypercall, dom, [(14, 0, HANDLER)])
    vcpu.set_regs(rsp=scratch(dom, 2))
    raise_exception(vcpu, 14, error_code=6, cr2=0xDEAD000)
    assert dom.vcpu_info(0).arch.cr2 == 0xDEAD000
    assert frame(vcpu, 3)[2] == 2          # PFEC_user hidden from the ring-3 kernel


def test_no_handler_crashes_with_report(dom, vcpu):
    raise_exception(vcpu, 0)
    assert dom.shutdown_reason == "crash" and "#DE" in dom.crash_report


def test_unwritable_stack_is_failsafe_crash(dom, vcpu, hypercall):
    set_traps(hypercall, dom, [(13, 0, HANDLER)])
    vcpu.set_regs(rsp=0x1000)                     # nothing mapped there
    raise_exception(vcpu, 13)
    assert dom.shutdown_reason == "crash" and "failsafe" in dom.crash_report


def test_trap_table_rejects_non_canonical(dom, hypercall):
    assert set_traps(hypercall, dom, [(13, 0, 0x8000000000000000)]) == -errno.EINVAL


def test_null_trap_table_clears(dom, vcpu, hypercall):
    set_traps(hypercall, dom, [(13, 0, HANDLER)])
    assert hypercall(dom, xen.HYPERVISOR_set_trap_table, 0) == 0
    assert vcpu.trap_table == {}


def test_software_interrupt_needs_dpl_from_user(dom, vcpu, hypercall):
    set_traps(hypercall, dom, [(0x80, 0, HANDLER), (13, 0, HANDLER + 16)])
    vcpu.core.kernel_mode = 0                     # pretend: guest user mode
    vcpu.core.user_cr3 = vcpu.core.kernel_cr3
    vcpu.kernel_sp = scratch(dom, 2)
    vcpu.set_regs(rip=0x4002)
    raise_exception(vcpu, 0x80)
    regs = vcpu.regs()
    assert regs["rip"] == HANDLER + 16            # #GP instead
    err, rip, cs = frame(vcpu, 5)[2:5]
    assert err == 0x80 << 3 | 2 and rip == 0x4000 and cs & 3 == 3
    assert vcpu.core.kernel_mode == 1


@pytest.mark.parametrize("dpl, delivered", [(0, False), (1, True), (3, True)])
def test_software_interrupt_from_kernel_needs_dpl_1(dom, vcpu, hypercall, dpl, delivered):
    """permit_softint: the guest kernel may raise a vector whose DPL is at least 1."""
    set_traps(hypercall, dom, [(0x80, dpl, HANDLER), (13, 0, HANDLER + 16)])
    vcpu.set_regs(rip=0x4002, rsp=scratch(dom, 2))
    raise_exception(vcpu, 0x80)
    assert vcpu.regs()["rip"] == (HANDLER if delivered else HANDLER + 16)


def test_user_mode_bounce_uses_kernel_stack(dom, vcpu, hypercall):
    set_traps(hypercall, dom, [(6, 0, HANDLER)])
    hypercall(dom, xen.HYPERVISOR_stack_switch, 0xE02B, scratch(dom, 2) + 0x100)
    vcpu.core.kernel_mode = 0
    vcpu.core.user_cr3 = vcpu.core.kernel_cr3
    vcpu.set_regs(rsp=0x7000, gs_base=0x1111)
    vcpu.gs_base_other = 0x2222
    raise_exception(vcpu, 6)
    regs = vcpu.regs()
    assert vcpu.core.kernel_mode == 1
    assert regs["rsp"] == scratch(dom, 2) + 0x100 - 56
    assert regs["gs_base"] == 0x2222 and vcpu.gs_base_other == 0x1111


def iret_frame(vcpu, va, rip, cs, rflags, rsp, flags=0, rax=7, r11=8, rcx=9):
    put(vcpu, va, struct.pack("<9Q", rax, r11, rcx, flags, rip, cs, rflags, rsp, 0xE02B))
    vcpu.set_regs(rsp=va)


def test_iret_to_kernel(dom, vcpu, hypercall):
    iret_frame(vcpu, scratch(dom, 2), rip=0xABC, cs=0xE030, rflags=0x200, rsp=0x9990)
    assert hypercall(dom, xen.HYPERVISOR_iret) == 7
    regs = vcpu.regs()
    assert (regs["rip"], regs["rsp"], regs["rcx"], regs["r11"]) == (0xABC, 0x9990, 9, 8)
    assert dom.vcpu_info(0).evtchn_upcall_mask == 0 and vcpu.core.kernel_mode == 1


def test_iret_clears_iopl_and_vm(dom, vcpu, hypercall):
    """pv/iret.c do_iret: a guest's frame never sets IOPL or virtual-8086 mode."""
    iret_frame(vcpu, scratch(dom, 2), rip=0xABC, cs=0xE030, rflags=0x23202, rsp=0x9990)
    hypercall(dom, xen.HYPERVISOR_iret)
    assert vcpu.regs()["rflags"] & (0x20000 | 0x3000) == 0


def test_iret_in_syscall_keeps_rcx_r11(dom, vcpu, hypercall):
    vcpu.set_regs(rcx=1, r11=2)
    iret_frame(vcpu, scratch(dom, 2), rip=0xABC, cs=0xE030, rflags=0, rsp=0x9990,
               flags=arch_x86.VGCF_in_syscall)
    hypercall(dom, xen.HYPERVISOR_iret)
    regs = vcpu.regs()
    assert (regs["rcx"], regs["r11"]) == (1, 2)
    assert dom.vcpu_info(0).evtchn_upcall_mask == 1


def test_iret_to_user_needs_user_table(dom, vcpu, hypercall):
    iret_frame(vcpu, scratch(dom, 2), rip=0x400000, cs=0xE033, rflags=0x200, rsp=0x9990)
    hypercall(dom, xen.HYPERVISOR_iret)
    assert dom.shutdown_reason == "crash"


def test_iret_to_user_switches_mode(dom, vcpu, hypercall):
    l4 = vcpu.core.kernel_cr3
    vcpu.core.user_cr3 = l4
    iret_frame(vcpu, scratch(dom, 2), rip=0x400000, cs=0xE033, rflags=0x200, rsp=0x9990)
    hypercall(dom, xen.HYPERVISOR_iret)
    assert vcpu.core.kernel_mode == 0 and vcpu.core.cr3 == l4


def test_syscall_from_user_goes_to_callback(dom, vcpu, hypercall):
    hypercall(dom, xen.HYPERVISOR_set_callbacks, 0x10, 0x20, HANDLER)
    hypercall(dom, xen.HYPERVISOR_stack_switch, 0xE02B, scratch(dom, 2))
    vcpu.core.kernel_mode = 0
    vcpu.core.user_cr3 = vcpu.core.kernel_cr3
    vcpu.set_regs(rip=0x400010, rflags=0x246)
    raise_exception(vcpu, traps.SYSCALL)
    rcx, r11, rip = frame(vcpu, 3)
    assert vcpu.regs()["rip"] == HANDLER and rcx == rip == 0x400010 and r11 == 0x246


def test_callback_op(dom, vcpu, hypercall):
    va = scratch(dom)
    put(vcpu, va, struct.pack("<HHxxxxQ", callback.CALLBACKTYPE_event,
                              callback.CALLBACKF_mask_events, HANDLER))
    assert hypercall(dom, xen.HYPERVISOR_callback_op, callback.CALLBACKOP_register, va) == 0
    assert vcpu.callbacks[callback.CALLBACKTYPE_event] == (HANDLER, 1)
    put(vcpu, va, struct.pack("<HHxxxxQ", 99, 0, HANDLER))
    assert hypercall(dom, xen.HYPERVISOR_callback_op, callback.CALLBACKOP_register, va) == -errno.EINVAL
    put(vcpu, va, struct.pack("<HH", callback.CALLBACKTYPE_event, 0))
    assert hypercall(dom, xen.HYPERVISOR_callback_op, callback.CALLBACKOP_unregister, va) == -errno.EINVAL
    put(vcpu, va, struct.pack("<HH", callback.CALLBACKTYPE_nmi, 0))
    assert hypercall(dom, xen.HYPERVISOR_callback_op, callback.CALLBACKOP_unregister, va) == 0
    assert hypercall(dom, xen.HYPERVISOR_callback_op, 9, va) == -errno.ENOSYS


def test_fpu_taskswitch_sets_ts(dom, vcpu, hypercall):
    from pyxenon._core import lib

    hypercall(dom, xen.HYPERVISOR_fpu_taskswitch, 1)
    assert lib.xc_get_cr0(dom.machine.core, vcpu.core) & 8
    hypercall(dom, xen.HYPERVISOR_fpu_taskswitch, 0)
    assert not lib.xc_get_cr0(dom.machine.core, vcpu.core) & 8


def test_debugregs(dom, hypercall):
    assert hypercall(dom, xen.HYPERVISOR_set_debugreg, 0, 0x1000) == 0
    assert hypercall(dom, xen.HYPERVISOR_get_debugreg, 0) == 0x1000
    assert hypercall(dom, xen.HYPERVISOR_set_debugreg, 1, 0xFFFF800000000000) == -errno.EPERM
    assert hypercall(dom, xen.HYPERVISOR_set_debugreg, 9, 0) == -errno.ENODEV   # set_debugreg
    assert hypercall(dom, xen.HYPERVISOR_get_debugreg, 8) == -errno.ENODEV


def test_segment_bases(dom, vcpu, hypercall):
    assert hypercall(dom, xen.HYPERVISOR_set_segment_base, arch_x86.SEGBASE_FS, 0x1234) == 0
    assert vcpu.regs()["fs_base"] == 0x1234
    hypercall(dom, xen.HYPERVISOR_set_segment_base, arch_x86.SEGBASE_GS_KERNEL, 0x5000)
    hypercall(dom, xen.HYPERVISOR_set_segment_base, arch_x86.SEGBASE_GS_USER, 0x6000)
    assert vcpu.regs()["gs_base"] == 0x5000 and vcpu.gs_base_other == 0x6000
    assert hypercall(dom, xen.HYPERVISOR_set_segment_base, 0, 1 << 63) == -errno.EINVAL
    assert hypercall(dom, xen.HYPERVISOR_set_segment_base, 9, 0) == -errno.EINVAL


# -- descriptors ----------------------------------------------------------------------

RING3_CODE = 0x00AFFB000000FFFF      # present, DPL 3, 64-bit code
RING0_CODE = 0x00AF9B000000FFFF      # the same at DPL 0
CALL_GATE = 0x0000EC0000000000       # present system descriptor, type 0xC


def free_frame(dom):
    return dom.pfn_to_mfn(dom.layout.pfn(dom.layout.virt_end) + 5)


@pytest.mark.parametrize("desc, rc, stored", [
    (RING3_CODE, 0, RING3_CODE), (RING0_CODE, 0, RING3_CODE),   # check_descriptor raises DPL
    (RING0_CODE & ~(1 << 47), 0, RING0_CODE & ~(1 << 47)),      # not present: left alone
    (CALL_GATE, -errno.EINVAL, 0), (0, 0, 0)])
def test_update_descriptor(dom, hypercall, desc, rc, stored):
    mfn = free_frame(dom)
    assert hypercall(dom, xen.HYPERVISOR_update_descriptor, mfn << 12 | 8, desc) == rc
    assert dom.machine.frame_table.read_entry(mfn, 1) == stored


def test_update_descriptor_foreign_or_misaligned(dom, hypercall):
    assert hypercall(dom, xen.HYPERVISOR_update_descriptor, 0 << 12, RING3_CODE) == -errno.EINVAL
    assert hypercall(dom, xen.HYPERVISOR_update_descriptor, free_frame(dom) << 12 | 4, 0) == -errno.EINVAL


def test_set_gdt(dom, vcpu, hypercall):
    mfn = free_frame(dom)
    hypercall(dom, xen.HYPERVISOR_update_descriptor, mfn << 12 | 8, RING3_CODE)
    put(vcpu, scratch(dom), struct.pack("<Q", mfn))
    assert hypercall(dom, xen.HYPERVISOR_set_gdt, scratch(dom), 16) == 0
    assert vcpu.core.gdt_mfn[0] == mfn and vcpu.core.gdt_frames == 1
    assert dom.machine.frame_table.frames[mfn].type == 5      # seg_desc
    # ...so it can no longer be mapped writable
    assert hypercall(dom, xen.HYPERVISOR_update_descriptor, mfn << 12 | 16, CALL_GATE) == -errno.EINVAL
    assert hypercall(dom, xen.HYPERVISOR_set_gdt, scratch(dom), 0) == 0
    assert dom.machine.frame_table.frames[mfn].type_count == 0


def test_set_gdt_raises_dpl_in_place(dom, vcpu, hypercall):
    """validate_segdesc_page: the page's ring-0 descriptors become ring 3."""
    mfn = free_frame(dom)
    dom.machine.frame_table.write_entry(mfn, 3, RING0_CODE)
    put(vcpu, scratch(dom), struct.pack("<Q", mfn))
    assert hypercall(dom, xen.HYPERVISOR_set_gdt, scratch(dom), 16) == 0
    assert dom.machine.frame_table.read_entry(mfn, 3) == RING3_CODE


def test_set_gdt_refuses_bad_pages(dom, vcpu, hypercall):
    mfn = free_frame(dom)
    dom.machine.frame_table.write_entry(mfn, 3, CALL_GATE)
    put(vcpu, scratch(dom), struct.pack("<Q", mfn))
    assert hypercall(dom, xen.HYPERVISOR_set_gdt, scratch(dom), 16) == -errno.EINVAL
    stack = dom.pfn_to_mfn(dom.layout.pfn(dom.layout.stack))      # mapped writable
    put(vcpu, scratch(dom), struct.pack("<Q", stack))
    assert hypercall(dom, xen.HYPERVISOR_set_gdt, scratch(dom), 16) == -errno.EINVAL
    assert hypercall(dom, xen.HYPERVISOR_set_gdt, scratch(dom), 8192) == -errno.EINVAL


# -- privileged instructions ---------------------------------------------------------------

def run_insn(dom, vcpu, code, **regs):
    va = scratch(dom)
    put(vcpu, va, code)
    vcpu.set_regs(rip=va, rsp=scratch(dom, 2), **regs)
    raise_exception(vcpu, 13)
    return va


def test_mov_from_cr3(dom, vcpu):
    va = run_insn(dom, vcpu, b"\x0f\x20\xd8")          # mov rax, cr3
    regs = vcpu.regs()
    assert regs["rip"] == va + 3 and regs["rax"] == vcpu.core.kernel_cr3 << 12


def test_wrmsr_fs_base_and_rdmsr(dom, vcpu):
    run_insn(dom, vcpu, b"\x0f\x30", rcx=0xC0000100, rax=0x5000, rdx=0)   # wrmsr
    assert vcpu.regs()["fs_base"] == 0x5000
    run_insn(dom, vcpu, b"\x0f\x32", rcx=0xC0000100)                       # rdmsr
    assert vcpu.regs()["rax"] == 0x5000


def test_unknown_msr_and_io_are_gp(dom, vcpu, hypercall):
    set_traps(hypercall, dom, [(13, 0, HANDLER)])
    run_insn(dom, vcpu, b"\x0f\x32", rcx=0x123)        # rdmsr of an MSR a PV guest can't see
    assert vcpu.regs()["rip"] == HANDLER


def test_clts_and_wbinvd(dom, vcpu, hypercall):
    from pyxenon._core import lib

    hypercall(dom, xen.HYPERVISOR_fpu_taskswitch, 1)
    va = run_insn(dom, vcpu, b"\x0f\x06")              # clts
    assert vcpu.regs()["rip"] == va + 2
    assert not lib.xc_get_cr0(dom.machine.core, vcpu.core) & 8
    va = run_insn(dom, vcpu, b"\x0f\x09")              # wbinvd
    assert vcpu.regs()["rip"] == va + 2


def test_lgdt_is_gp(dom, vcpu):
    run_insn(dom, vcpu, b"\x0f\x01\x10")               # lgdt [rax]
    assert dom.shutdown_reason == "crash" and "lgdt" in dom.crash_report


def test_hypercall_page_msr(dom, vcpu):
    pfn = dom.layout.pfn(dom.layout.virt_end) + 6
    mfn = dom.pfn_to_mfn(pfn)          # a PV domain names the frame by its mfn
    run_insn(dom, vcpu, b"\x0f\x30", rcx=0x40000000, rax=(mfn << 12) & 0xFFFFFFFF, rdx=mfn >> 20)
    page = bytes(dom.page(pfn))
    assert page[17 * 32:17 * 32 + 8] == b"\xb8\x11\x00\x00\x00\x0f\x05\xc3"


@pytest.mark.parametrize("which", ["l4", "offset", "not-the-domains"])
def test_hypercall_page_msr_refused_as_xen(dom, vcpu, which):
    """guest_wrmsr_xen: an offset in the page, a frame not the domain's, or
    one that cannot take the writable type (its L4) is #GP, nothing written."""
    l4 = vcpu.core.kernel_cr3
    value = {"l4": l4 << 12, "offset": (dom.pfn_to_mfn(0) << 12) | 8,
             "not-the-domains": (dom.pfn_to_mfn(0) - 1) << 12}[which]
    before = bytes(dom.machine.mem[l4 * 4096:(l4 + 1) * 4096])
    run_insn(dom, vcpu, b"\x0f\x30", rcx=0x40000000, rax=value & 0xFFFFFFFF, rdx=value >> 32)
    assert dom.shutdown_reason == "crash" and "wrmsr" in dom.crash_report
    assert bytes(dom.machine.mem[l4 * 4096:(l4 + 1) * 4096]) == before


def test_nmi_op_sets_the_nmi_callback(dom, hypercall):
    """do_nmi_op: register_guest_nmi_callback, as CALLBACKTYPE_nmi: the
    trap table's NMI entry (trap_ctxt[TRAP_nmi]), events masked on entry."""
    vcpu = dom.vcpus[0]
    va = dom.layout.stack + 4096
    copy_to_guest(vcpu, va, struct.pack("<QQ", 0xFFFFFFFF80001000, 0))
    assert hypercall(dom, xen.HYPERVISOR_nmi_op, 0, va) == 0
    assert vcpu.trap_table[2] == (4, 0xE033, 0xFFFFFFFF80001000)     # TI_SET_IF, FLAT_KERNEL_CS
    assert hypercall(dom, xen.HYPERVISOR_nmi_op, 1, 0) == 0 and 2 not in vcpu.trap_table
    copy_to_guest(vcpu, va, struct.pack("<QQ", 1 << 63, 0))
    assert hypercall(dom, xen.HYPERVISOR_nmi_op, 0, va) == -errno.EINVAL   # non-canonical
    assert hypercall(dom, xen.HYPERVISOR_nmi_op, 0, 0x10) == -errno.EFAULT
    assert hypercall(dom, xen.HYPERVISOR_nmi_op, 2, va) == -errno.ENOSYS
