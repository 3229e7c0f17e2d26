"""Far transfers through any descriptor a guest could get into its GDT.

A guest that breached its page tables could write call gates or ring-0
segments into a live GDT frame; an lcall through such a gate once made
QEMU abort the whole host (get_rsp_from_tss: cpu_abort, no TSS).  Here the
host writes those descriptors itself, to stand for the breach, and every
attempt must end in a fault for that domain or a crash of that domain
only, while a well-behaved domain beside it finishes as usual.
"""
import ctypes
import re
import struct

import pytest
from conformance import assert_as_on_xen

from pyxenon._core import ffi, lib
from pyxenon.hypervisor import descriptors
from pyxenon.hypervisor.guestmem import copy_to_guest
from pyxenon.public import xen

PAGE = 4096
XEN_CS0, XEN_CS32 = 0xE008, 0xE023


def segment(type_, dpl, flags, present=1):
    """A flat code/data descriptor: type bits, DPL, the L/D nibble."""
    return (0xFFFF | 0xF << 48 | type_ << 40 | 1 << 44 | dpl << 45 | present << 47
            | flags << 52 | 1 << 55)


def system(type_, dpl, sel, offset, present=1):
    """A 16-byte system descriptor (gate form: selector and offset), as two words."""
    low = (offset & 0xFFFF | sel << 16 | type_ << 40 | dpl << 45 | present << 47
           | (offset >> 16 & 0xFFFF) << 48)
    return [low, offset >> 32 & 0xFFFFFFFF]


CODE, CODE_C, DATA, L64, D32 = 0xB, 0xF, 0x3, 0x2, 0x4
CALL_GATE, CALL_GATE16, TASK_GATE, INT_GATE, TRAP_GATE, TSS, LDT = 0xC, 0x4, 0x5, 0xE, 0xF, 0x9, 0x2


def planted(far_ret):
    """GDT entry -> descriptor(s) for the guest's phase 2 (guests/fartransfer)."""
    own64, code32, ring0, ring1 = 0x13, 0x23, 22 << 3, 33 << 3
    return {
        16: system(CALL_GATE, 3, XEN_CS0, far_ret),
        18: system(CALL_GATE, 3, ring0, far_ret),
        22: [segment(CODE, 0, L64)], 23: [segment(DATA, 0, D32)],
        24: system(INT_GATE, 3, 0xE033, far_ret),
        26: system(TRAP_GATE, 3, 0xE033, far_ret),
        28: system(TSS, 3, 0, 0x67),
        30: system(LDT, 3, 0, 0xFFF),
        32: [segment(CODE_C, 0, L64)], 33: [segment(CODE, 1, L64)],
        34: system(CALL_GATE, 3, ring1, far_ret),
        36: system(CALL_GATE, 3, own64, far_ret, present=0),
        38: [system(CALL_GATE, 3, own64, far_ret)[0], segment(CODE, 3, L64)],
        40: system(CALL_GATE, 3, code32, far_ret),
        42: system(TASK_GATE, 3, 28 << 3, 0)[:1],
        43: system(CALL_GATE, 0, own64, far_ret),
        45: system(CALL_GATE16, 3, own64, far_ret)[:1],
        511: [1],                          # the guest's go-ahead (not present)
    }


def plant(dom, frame, far_ret):
    table = dom.machine.frame_table
    for index, words in planted(far_ret).items():
        for i, word in enumerate(words):
            table.write_entry(frame, index + i, word)
    # what set_gdt would refuse: only a breach could get it there
    assert not descriptors.page_ok(dom.machine.frame_table.mem[frame * PAGE:(frame + 1) * PAGE])


def test_fartransfer_guest_survives_planted_descriptors(guests, host):
    dom = host.create(str(guests / "fartransfer.cfg"), overrides=['cmdline="phase2=1"'])
    hello = host.create(str(guests / "hello.cfg"))
    assert host.run(timeout=60) == "blocked"          # fartransfer waits for us
    assert hello.shutdown_reason == "poweroff" and hello.crash_report is None
    assert "Hello from pyxenon hello guest" in hello.dmesg_text
    waiting = re.search(r"waiting: gdt frame (0x[0-9a-f]+), far_ret (0x[0-9a-f]+)",
                        dom.dmesg_text)
    frame, far_ret = int(waiting[1], 16), int(waiting[2], 16)
    assert frame == dom.vcpus[0].gdt_frames[0]
    plant(dom, frame, far_ret)
    dom.vcpus[0].wake()
    assert host.run(timeout=60) == "idle"
    assert_as_on_xen(dom, "fartransfer", 70, ", never left ring 3")


def test_phase_one_alone_beside_hello(guests, host):
    dom = host.create(str(guests / "fartransfer.cfg"))
    hello = host.create(str(guests / "hello.cfg"))
    assert host.run(timeout=60) == "idle"
    assert dom.shutdown_reason == hello.shutdown_reason == "poweroff"
    assert "fartransfer: 44/44 as on Xen, never left ring 3" in dom.dmesg_text


# -- single instructions, run from the host -------------------------------------------

@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"))


def scratch(dom):
    return dom.layout.stack + PAGE


def own_gdt(dom):
    """Give vcpu 0 a GDT of one (empty) frame; its mfn."""
    vcpu, mfn = dom.vcpus[0], dom.pfn_to_mfn(dom.layout.pfn(dom.layout.virt_end) + 5)
    copy_to_guest(vcpu, scratch(dom), struct.pack("<Q", mfn))
    assert vcpu.hypercall(xen.HYPERVISOR_set_gdt, scratch(dom), 512) == 0
    return mfn


def run_code(host, dom, code, far_offset, sel, fmt="<QH"):
    """Run code at the scratch page with rax -> a far pointer (offset, sel)."""
    vcpu, va = dom.vcpus[0], scratch(dom)
    copy_to_guest(vcpu, va + 0x100, code)
    copy_to_guest(vcpu, va + 0x800, struct.pack(fmt, far_offset, sel))
    vcpu.set_regs(rip=va + 0x100, rsp=va + 2 * PAGE, rax=va + 0x800)
    return host.run(timeout=10)


LCALL64, LJMP32 = b"\x48\xff\x18", b"\xff\x28"


@pytest.mark.parametrize("target", [XEN_CS0, 0x20])
def test_call_gate_to_ring0_is_gp_not_abort(guests, host, dom, target):
    """The host abort itself: a gate to an inner ring needs the TSS's stack,
    whose first push faults (#GP: non-canonical) while still in ring 3."""
    mfn = own_gdt(dom)
    for i, word in enumerate(system(CALL_GATE, 3, target, scratch(dom)) + [segment(CODE, 0, L64)]):
        dom.machine.frame_table.write_entry(mfn, 2 + i, word)
    hello = host.create(str(guests / "hello.cfg"))
    assert run_code(host, dom, LCALL64, 0, 0x13) == "idle"
    assert "unhandled #GP" in dom.crash_report and "lcall" in dom.crash_report
    assert "cs=e033" in dom.crash_report
    assert hello.shutdown_reason == "poweroff"


def test_same_ring_call_gate_crashes_only_that_domain(guests, host, dom):
    """Xen emulates such a gate (pv/emul-gate-op.c); QEMU's same-ring call
    through a 64-bit gate truncates rsp to 32 bits (SET_ESP with the SS
    descriptor's mask), so the call's target faults on its stack: no
    emulation here, but the crash stays in this domain."""
    mfn = own_gdt(dom)
    table = dom.machine.frame_table
    table.write_entry(mfn, 3, segment(CODE, 3, L64))
    for i, word in enumerate(system(CALL_GATE, 3, 0x1B, scratch(dom) + 0x200)):
        table.write_entry(mfn, 4 + i, word)
    copy_to_guest(dom.vcpus[0], scratch(dom) + 0x200, b"\x48\xcb")     # lretq
    hello = host.create(str(guests / "hello.cfg"))
    assert run_code(host, dom, LCALL64, 0, 0x23) == "idle"
    assert dom.shutdown_reason == "crash" and "rsp=0000000080" in dom.crash_report
    assert hello.shutdown_reason == "poweroff"


def test_tss_bytes_are_no_descriptors(host):
    """The TSS sits in Xen's GDT page, which guests read (selectors 0xe800+)."""
    page = bytes(host.machine.frame_table.mem[0:PAGE])
    words = struct.unpack_from("<13Q", page, 0x800)
    assert all(not w & 1 << 47 for w in words)
    assert struct.unpack_from("<Q", page, 0x804)[0] == 1 << 63      # rsp0: non-canonical


@pytest.mark.parametrize("code, sel, fmt", [
    (LJMP32, XEN_CS32, "<IH"),      # into compat mode at an unmapped low address
    (LCALL64, XEN_CS32, "<QH"),     # QEMU skips the limit check here
])
def test_fault_in_compat_mode_crashes_only_that_domain(guests, host, dom, hypercall, code, sel,
                                                       fmt):
    """A fault in a 32-bit segment cannot be bounced (the host cannot load
    CS): the handler ran truncated and faulted again, frame after frame,
    until the failsafe crash; now the first fault says why."""
    table = struct.pack("<BBHxxxxQ", 14, 0, 0xE033, scratch(dom) + 0x400)
    table += struct.pack("<BBHxxxxQ", 13, 0, 0xE033, scratch(dom) + 0x400) + bytes(16)
    copy_to_guest(dom.vcpus[0], scratch(dom) + 0xC00, table)
    assert hypercall(dom, xen.HYPERVISOR_set_trap_table, scratch(dom) + 0xC00) == 0
    hello = host.create(str(guests / "hello.cfg"))
    assert run_code(host, dom, code, 0x1000, sel, fmt) == "idle"
    assert "from 32-bit, 16-bit or virtual-8086 code" in dom.crash_report
    assert hello.shutdown_reason == "poweroff"


def map_low(dom, pages):
    """Map VA 0.. to fresh frames, host-side, the way a guest could with
    mmu_update (the walk needs no page types); returns their mfns."""
    table, vcpu = dom.machine.frame_table, dom.vcpus[0]
    base = dom.layout.pfn(dom.layout.virt_end) + 6
    l3, l2, l1, *data = [dom.pfn_to_mfn(base + i) for i in range(3 + pages)]
    for upper, index, lower in [(vcpu.core.cr3, 0, l3), (l3, 0, l2), (l2, 0, l1)]:
        table.write_entry(upper, index, lower << 12 | 0x67)
    for i, mfn in enumerate(data):
        table.write_entry(l1, i, mfn << 12 | 0x67)
    return data


def test_virtual_8086_mode_crashes_only_that_domain(guests, host, dom, hypercall):
    """QEMU's 32-bit iret enters virtual-8086 mode from ring 3 in long mode
    (helper_ret_protected, return_to_vm86: no CPL check) when the stack is
    below 4 GiB.  It stays in ring 3 but is no PV guest's mode, and
    nothing could bounce out of it: the slice's end crashes the domain."""
    stack, code = map_low(dom, 2)
    frame = struct.pack("<9I", 0x1100, 0, 0x20202, 0x800, 0, 0, 0, 0, 0)  # eip cs eflags(VM) ...
    dom.machine.mem[stack * PAGE + 0x800:stack * PAGE + 0x824] = frame
    dom.machine.mem[code * PAGE + 0x100:code * PAGE + 0x102] = b"\x0f\x0b"    # ud2
    entries = b"".join(struct.pack("<BBHxxxxQ", v, 0, 0xE033, scratch(dom) + 0x400)
                       for v in (6, 13, 14))
    copy_to_guest(dom.vcpus[0], scratch(dom) + 0xC00, entries + bytes(16))
    assert hypercall(dom, xen.HYPERVISOR_set_trap_table, scratch(dom) + 0xC00) == 0
    copy_to_guest(dom.vcpus[0], scratch(dom) + 0x400, b"\xeb\xfe")            # jmp .
    hello = host.create(str(guests / "hello.cfg"))
    copy_to_guest(dom.vcpus[0], scratch(dom) + 0x100, b"\xcf")                 # iretl
    dom.vcpus[0].set_regs(rip=scratch(dom) + 0x100, rsp=0x800)
    assert host.run(timeout=10) == "idle"
    assert "entered virtual-8086 mode" in dom.crash_report
    assert "rflags=00020202" in dom.crash_report
    assert hello.shutdown_reason == "poweroff"


def test_leaving_ring3_crashes_the_domain(host, dom):
    """The backstop: whatever path got a vcpu out of ring 3, its domain
    crashes before any other vcpu runs.  No such path is known, so the
    test moves CS's selector to RPL 0 through libunicorn itself."""
    uc = ctypes.CDLL(lib_path())
    vcpu = dom.vcpus[0]
    copy_to_guest(vcpu, scratch(dom), b"\x90\x90\xeb\xfe")           # nop; nop; jmp .
    vcpu.set_regs(rip=scratch(dom))
    lib.xc_enter(host.machine.core, vcpu.core, 0)    # current: the slice keeps its state
    handle = ctypes.c_void_p(int(ffi.cast("uintptr_t", host.machine.core.uc)))
    UC_X86_REG_CS = 11
    assert uc.uc_reg_write(handle, UC_X86_REG_CS, ctypes.byref(ctypes.c_uint16(XEN_CS0))) == 0
    assert host.run(timeout=10) == "idle"
    assert "the vcpu left ring 3 or entered virtual-8086 mode" in dom.crash_report


def lib_path():
    import pathlib

    import unicorn

    return str(pathlib.Path(unicorn.__file__).parent / "lib" / "libunicorn.so.2")
