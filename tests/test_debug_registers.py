"""Debug registers as Xen 4.17's set_debugreg (pv/misc-hypercalls.c) and
x86emul_read_dr keep them: reset values, masking, validation, and the
same rules for `mov %drN` in the guest kernel (#UD for -ENODEV, #GP
otherwise); the #DB they raise (do_debug) checked by the debugtrap guest,
with engine hooks only while a breakpoint is armed (hypervisor/debugtrap.py)."""
import pytest
from conformance import run_conformance_guest
from test_linux_xen_abi import emulate   # a #GP of guest kernel mode, as the engine reports it

from pyxenon.hypervisor.guestmem import copy_to_guest
from pyxenon.public import errno, xen

PAGE = 4096
CR4_DE = 1 << 3
SET, GET = xen.HYPERVISOR_set_debugreg, xen.HYPERVISOR_get_debugreg


@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"))


def get(hypercall, dom, reg):
    return hypercall(dom, GET, reg) & 0xFFFFFFFFFFFFFFFF


def test_reset_values(dom, hypercall):
    assert [get(hypercall, dom, r) for r in (0, 1, 2, 3, 6, 7)] == [0, 0, 0, 0, 0xFFFF0FF0, 0x400]
    assert get(hypercall, dom, 4) == 0xFFFF0FF0 and get(hypercall, dom, 5) == 0x400   # aliases


def test_breakpoint_addresses(dom, hypercall):
    assert hypercall(dom, SET, 0, 0x7FFFFFFFFFFF) == 0
    assert hypercall(dom, SET, 1, 0xFFFF880000000000) == 0            # above Xen's range
    assert get(hypercall, dom, 1) == 0xFFFF880000000000
    assert hypercall(dom, SET, 2, 0xFFFF87FFFFFFFFFF) == -errno.EPERM  # inside it
    assert hypercall(dom, SET, 3, 0x800000000000) == -errno.EPERM      # non-canonical


def test_dr6_and_dr7_masking(dom, hypercall):
    assert hypercall(dom, SET, 6, 0) == 0 and get(hypercall, dom, 6) == 0xFFFF0FF0
    assert hypercall(dom, SET, 6, 0x100F | 0x1000) == 0
    assert get(hypercall, dom, 6) == 0xFFFF0FFF                        # bit 12 reads 0
    assert hypercall(dom, SET, 6, 1 << 32) == -errno.EINVAL
    assert hypercall(dom, SET, 7, 0) == 0 and get(hypercall, dom, 7) == 0x400
    assert hypercall(dom, SET, 7, 0x1 | 0xD800) == 0                   # bits 11-12, 14-15 read 0
    assert get(hypercall, dom, 7) == 0x401
    assert hypercall(dom, SET, 7, 0x2000) == -errno.EPERM              # GD is Xen's
    assert hypercall(dom, SET, 7, 1 << 40) == -errno.EINVAL
    assert hypercall(dom, SET, 8, 0) == -errno.ENODEV


def test_io_breakpoints_need_cr4_de(dom, hypercall):
    io_bp0 = 0x1 | 0x2 << 16                                           # L0, R/W0 = I/O
    assert hypercall(dom, SET, 7, io_bp0) == -errno.EPERM
    dom.vcpus[0].cr4 |= CR4_DE
    assert hypercall(dom, SET, 7, io_bp0) == 0
    assert get(hypercall, dom, 7) == io_bp0 | 0x400                    # read back with dr7_emul
    assert dom.vcpus[0].debugreg[7] == 0x400 | 0x2 << 16               # the enable is emulated
    assert hypercall(dom, SET, 4, 0) == -errno.ENODEV                  # no aliases with DE
    assert hypercall(dom, GET, 5) == -errno.ENODEV


MOV_DR7_RAX, MOV_RAX_DR6, MOV_DR4_RAX = b"\x0f\x23\xf8", b"\x0f\x21\xf0", b"\x0f\x23\xe0"


def test_mov_dr_goes_through_set_debugreg(dom):
    r = emulate(dom, MOV_RAX_DR6)
    assert r["rax"] == 0xFFFF0FF0 and r["rip"] == dom.layout.stack + PAGE + 3
    assert emulate(dom, MOV_DR7_RAX, rax=0x3)["rip"] == dom.layout.stack + PAGE + 3
    assert dom.vcpus[0].debugreg[7] == 0x403
    emulate(dom, MOV_DR7_RAX, rax=0x2000)                               # GD: #GP(0)
    assert dom.crash_report and "unhandled #GP" in dom.crash_report


def test_mov_dr4_with_cr4_de_is_ud(dom):
    dom.vcpus[0].cr4 |= CR4_DE
    emulate(dom, MOV_DR4_RAX, rax=0)
    assert dom.crash_report and "unhandled #UD" in dom.crash_report


def test_debugtrap_guest_sees_xen_debug_exceptions(guests, host):
    run_conformance_guest(guests, host, "debugtrap", 16)


def test_hooks_only_while_a_breakpoint_is_armed(dom, hypercall):
    vcpu, core = dom.vcpus[0], dom.machine.core
    assert hypercall(dom, SET, 7, 0) == 0 and hypercall(dom, SET, 0, dom.layout.stack) == 0
    assert vcpu.db_armed == ((), []) and not core.code_flush_pending   # nothing armed: no hook
    assert hypercall(dom, SET, 7, 0x1) == 0                            # L0, an instruction
    assert len(vcpu.db_armed[1]) == 1 and core.code_flush_pending
    core.code_flush_pending = 0
    assert hypercall(dom, SET, 7, 0x1) == 0 and not core.code_flush_pending   # unchanged
    assert hypercall(dom, SET, 7, 0x1 | 0x1 << 16) == 0                # a write watch: + boundary
    assert len(vcpu.db_armed[1]) == 2
    assert hypercall(dom, SET, 7, 0) == 0 and vcpu.db_armed == ((), [])


def test_io_breakpoints_arm_only_with_cr4_de(dom, hypercall):
    vcpu = dom.vcpus[0]
    vcpu.cr4 |= CR4_DE
    assert hypercall(dom, SET, 3, 0x71) == 0 and hypercall(dom, SET, 7, 0x40 | 0x2 << 28 | 0x1 << 30) == 0
    assert vcpu.core.db_io == 8 and vcpu.core.db_io_port[3] == 0x70 and vcpu.core.db_io_len[3] == 2
    emulate(dom, b"\x0f\x22\xe0", rax=0)                               # mov %rax, %cr4: DE off
    assert vcpu.core.db_io == 0          # check_guest_io_breakpoint needs CR4.DE


def test_an_instruction_breakpoint_without_a_handler_crashes_there(dom, host, hypercall):
    """hello installs no trap table: the report names #DB at the breakpoint,
    before the instruction ran (a fault), with B0 in %dr6."""
    vcpu = dom.vcpus[0]
    va = dom.layout.stack + PAGE
    copy_to_guest(vcpu, va, b"\x90\x48\xff\xc0\xeb\xfe")             # nop; inc %rax; jmp .
    assert hypercall(dom, SET, 0, va + 1) == 0 and hypercall(dom, SET, 7, 0x2) == 0   # G0
    vcpu.set_regs(rip=va, rax=0)
    host.run(timeout=10)
    assert dom.crash_report and "unhandled #DB" in dom.crash_report, dom.crash_report
    assert vcpu.regs()["rip"] == va + 1 and vcpu.regs()["rax"] == 0
    assert vcpu.debugreg[6] == 0xFFFF0FF1
