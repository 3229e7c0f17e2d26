"""How a hypercall returns, as Xen 4.17's: an iret inside a multicall ends
the batch (pv_do_multicall_call's mc_exit, do_multicall), a call that
leaves guest kernel mode preempts it (mc_preempt), and the guest kernel
resumes with FLAT_KERNEL_CS64/FLAT_KERNEL_SS (lstar_enter's frame, sysretq;
the hcreturn guest)."""
import struct

import pytest
from conformance import run_conformance_guest

from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import arch_x86, xen

PAGE = 4096
ENTRY = struct.Struct("<QQ6Q")
UNTOUCHED = 0x5A5A5A5A5A5A5A5A


@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"))


def iret_frame(dom, rax, rip):
    """An iret_context at the guest's rsp: back to rip in kernel mode
    (cs with RPL 0: do_iret takes RPL 3 as a return to user mode)."""
    vcpu = dom.vcpus[0]
    regs = vcpu.regs()
    frame = struct.pack("<9Q", rax, 0, 0, 0, rip, arch_x86.FLAT_KERNEL_CS64 & ~3, 0x200,
                        regs["rsp"] + 0x100, arch_x86.FLAT_KERNEL_SS64)
    copy_to_guest(vcpu, regs["rsp"], frame)


def test_iret_ends_a_multicall_with_its_result(dom, hypercall):
    vcpu = dom.vcpus[0]
    va = dom.layout.stack + 2 * PAGE     # above the stack at rsp
    rip = dom.layout.stack + 3 * PAGE
    iret_frame(dom, 0x1234, rip)
    calls = [ENTRY.pack(xen.HYPERVISOR_iret, UNTOUCHED, 0, 0, 0, 0, 0, 0),
             ENTRY.pack(xen.HYPERVISOR_xen_version, UNTOUCHED, 0, 0, 0, 0, 0, 0)]
    copy_to_guest(vcpu, va, b"".join(calls))
    assert hypercall(dom, xen.HYPERVISOR_multicall, va, 2) == 0x1234
    results = [struct.unpack("<Q", copy_from_guest(vcpu, va + i * ENTRY.size + 8, 8))[0]
               for i in range(2)]
    assert results == [0x1234, UNTOUCHED]          # the xen_version never ran
    assert vcpu.regs()["rip"] == rip


def test_a_call_that_leaves_kernel_mode_preempts_the_batch(dom, hypercall, monkeypatch):
    """pv_do_multicall_call's mc_preempt: the vcpu is no longer in guest
    kernel mode after an entry, so do_multicall stops and continues the
    entries after it (a continuation of multicall), never running them now."""
    import pyxenon.hypercalls as hc
    from pyxenon.hypervisor.bounce import toggle_guest_mode

    vcpu = dom.vcpus[0]
    vcpu.core.user_cr3 = vcpu.core.kernel_cr3
    ran = []

    def to_user(v, *_):
        ran.append("to_user")
        toggle_guest_mode(v)
        return 7

    table = list(hc.TABLE)
    table[xen.HYPERVISOR_xenoprof_op] = to_user
    monkeypatch.setattr(hc, "TABLE", table)
    va = dom.layout.stack + 2 * PAGE
    calls = [ENTRY.pack(xen.HYPERVISOR_xenoprof_op, UNTOUCHED, 0, 0, 0, 0, 0, 0),
             ENTRY.pack(xen.HYPERVISOR_xen_version, UNTOUCHED, 0, 0, 0, 0, 0, 0),
             ENTRY.pack(xen.HYPERVISOR_xen_version, UNTOUCHED, 0, 0, 0, 0, 0, 0)]
    copy_to_guest(vcpu, va, b"".join(calls))
    assert hypercall(dom, xen.HYPERVISOR_multicall, va, 3) == xen.HYPERVISOR_multicall
    regs = vcpu.regs()
    assert (regs["rdi"], regs["rsi"]) == (va + ENTRY.size, 2)     # the rest, continued
    results = [struct.unpack("<Q", copy_from_guest(vcpu, va + i * ENTRY.size + 8, 8))[0]
               for i in range(3)]
    assert ran == ["to_user"] and results == [7, UNTOUCHED, UNTOUCHED]


def test_hcreturn_guest_sees_xen_returns(guests, host):
    run_conformance_guest(guests, host, "hcreturn", 6)