"""CPUID faulting as Xen 4.17 offers it to a PV domU on an Intel host:
MSR_INTEL_PLATFORM_INFO advertises it (bit 31), MSR_INTEL_MISC_FEATURES_ENABLES
bit 0 turns it on (guest_rdmsr/guest_wrmsr, msr.c), after which cpuid in
guest user mode is a #GP(0) -- plain (x86_emulate's cpuid case) or forced
(pv_emulate_forced_invalid_op) -- and the guest kernel's still answers."""
import re

import pytest
from test_linux_xen_abi import emulate   # a #GP of guest kernel mode, as the engine reports it

from pyxenon.hypervisor.bounce import toggle_guest_mode
from pyxenon.hypervisor.guestmem import copy_to_guest

PAGE = 4096
RDMSR, WRMSR, CPUID, HLT = b"\x0f\x32", b"\x0f\x30", b"\x0f\xa2", b"\xf4"
FORCED_CPUID = b"\x0f\x0bxen" + CPUID
PLATFORM_INFO, MISC_FEATURES_ENABLES = 0xCE, 0x140


@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"))


def scratch(dom, n=1):
    return dom.layout.stack + n * PAGE


def run(host, dom, code, user=False):
    """Run code (then hlt, a #GP in either mode) in the engine: the crash
    report's vector and rip."""
    vcpu, va = dom.vcpus[0], scratch(dom)
    copy_to_guest(vcpu, va, code + HLT)
    if user:      # guest user mode on the kernel's own tables (every PV page is U)
        dom.machine.frame_table.set_base(vcpu, vcpu.core.kernel_cr3, user=True)
        toggle_guest_mode(vcpu)
    vcpu.set_regs(rip=va, rsp=scratch(dom, 3), rax=0, rcx=0)
    host.run(timeout=10)
    report = dom.crash_report
    assert report, "the snippet should end in a #GP"
    return "#GP" in report, int(re.search(r"rip=([0-9a-f]{16})", report).group(1), 16) - va


def enable_faulting(dom, value=1):
    return emulate(dom, WRMSR, rcx=MISC_FEATURES_ENABLES, rax=value, rdx=0)


def test_platform_info_offers_faulting_and_the_msr_turns_it_on(dom):
    r = emulate(dom, RDMSR, rcx=PLATFORM_INFO)
    assert r["rdx"] << 32 | r["rax"] == 1 << 31
    assert emulate(dom, RDMSR, rcx=MISC_FEATURES_ENABLES)["rax"] == 0
    assert enable_faulting(dom)["rip"] == scratch(dom) + 2
    assert emulate(dom, RDMSR, rcx=MISC_FEATURES_ENABLES)["rax"] == 1


def test_reserved_misc_features_bits_are_gp(dom):
    enable_faulting(dom, value=2)
    assert dom.shutdown_reason == "crash" and "wrmsr" in dom.crash_report


def test_kernel_cpuid_still_answers_with_faulting_on(host, dom):
    enable_faulting(dom)
    assert run(host, dom, CPUID) == (True, len(CPUID))          # the #GP is the hlt's


def test_user_cpuid_without_faulting_answers(host, dom):
    assert run(host, dom, CPUID, user=True) == (True, len(CPUID))


def test_user_cpuid_with_faulting_is_gp_at_the_cpuid(host, dom):
    enable_faulting(dom)
    assert run(host, dom, CPUID, user=True) == (True, 0)


def test_user_forced_cpuid_with_faulting_is_gp_at_the_cpuid(host, dom):
    enable_faulting(dom)
    assert run(host, dom, FORCED_CPUID, user=True) == (True, 5)
