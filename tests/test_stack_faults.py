"""#SS(0) versus #GP(0) for non-canonical references (hypervisor/faults.py):
the stackfault guest checks explicit memory operands from inside; the
implicit stack operations, whose exception frame would go on the very
stack that faulted, are checked here from the host."""
import pytest
from conformance import run_conformance_guest

from pyxenon.hypervisor.guestmem import copy_to_guest

PAGE = 4096
BAD = 1 << 63


def test_stackfault_guest_sees_xen_vectors(guests, host):
    run_conformance_guest(guests, host, "stackfault", 13)


@pytest.mark.parametrize("code,vector", [
    (b"\x50", "#SS"),                    # push %rax
    (b"\x58", "#SS"),                    # pop %rax
    (b"\xe8\x00\x00\x00\x00", "#SS"),    # call .+5
    (b"\xc3", "#SS"),                    # ret
    (b"\x9c", "#SS"),                    # pushfq
    (b"\xff\x30", "#SS"),                # push (%rax), rax canonical: the stack faults
])
def test_implicit_stack_operations_fault_ss(guests, host, code, vector):
    """No handler (hello installs none): the crash report names the vector
    the guest would have been given."""
    dom = host.create(str(guests / "hello.cfg"))
    vcpu, va = dom.vcpus[0], dom.layout.stack + PAGE
    copy_to_guest(vcpu, va, code)
    vcpu.set_regs(rip=va, rsp=BAD, rax=va)
    host.run(timeout=10)
    assert dom.crash_report and f"unhandled {vector}" in dom.crash_report, dom.crash_report


def test_a_non_canonical_jump_target_stays_gp(guests, host):
    dom = host.create(str(guests / "hello.cfg"))
    vcpu, va = dom.vcpus[0], dom.layout.stack + PAGE
    copy_to_guest(vcpu, va, b"\xff\xe0")                    # jmp *%rax
    vcpu.set_regs(rip=va, rsp=dom.layout.stack + 3 * PAGE, rax=BAD)
    host.run(timeout=10)
    assert dom.crash_report and "unhandled #GP" in dom.crash_report, dom.crash_report
