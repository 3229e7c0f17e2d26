"""The guest-controllable CR4 bits (pv_fixup_guest_cr4, pv/domain.c) and
RD/WR{FS,GS}BASE with the guest's CR4.FSGSBASE (pv_make_cr4 puts it in
the CPU), checked by the fsgsbase guest; the emulation's edges here."""
import pytest
from conformance import run_conformance_guest
from test_linux_xen_abi import emulate, scratch

from pyxenon.hypervisor import emulate as emul

CR4_FSGSBASE = 1 << 16
WRGSBASE_RAX, RDFSBASE_RCX = b"\xf3\x48\x0f\xae\xd8", b"\xf3\x48\x0f\xae\xc1"


@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"))


def test_fsgsbase_guest_sees_xen_answers(guests, host):
    """The policy offers FSGSBASE, as Xen's PV default (cpuid.c)."""
    run_conformance_guest(guests, host, "fsgsbase", 12)


def ud(dom, code, **regs):
    return emulate(dom, code, vector=6, **regs)      # #UD, as the engine reports it


def test_without_cr4_fsgsbase_the_ud_stands(dom):
    ud(dom, WRGSBASE_RAX, rax=0x1000)
    assert dom.crash_report and "unhandled #UD" in dom.crash_report


def test_with_it_the_base_changes_and_a_bad_one_is_gp(dom):
    dom.vcpus[0].cr4 |= CR4_FSGSBASE
    r = ud(dom, WRGSBASE_RAX, rax=0x1000)
    assert r["gs_base"] == 0x1000 and r["rip"] == scratch(dom) + 5
    r = ud(dom, RDFSBASE_RCX, rcx=5)
    assert r["rcx"] == r["fs_base"] and r["rip"] == scratch(dom) + 5
    ud(dom, WRGSBASE_RAX, rax=1 << 63)
    assert dom.crash_report and "unhandled #GP" in dom.crash_report
    assert dom.vcpus[0].regs()["gs_base"] == 0x1000


def test_cr4_bits_follow_the_policy(dom):
    """A bit the policy does not offer (OSXSAVE: no XSAVE; FSGSBASE when
    it is taken out) is discarded."""
    core = dom.machine.core
    core.offer_fsgsbase = 0
    assert emul.fixup_guest_cr4(core, CR4_FSGSBASE | 1 << 18 | 0x8) == 0x660 | 0x8
    core.offer_fsgsbase = 1
    assert emul.fixup_guest_cr4(core, CR4_FSGSBASE | 1 << 18 | 0x8) == 0x660 | CR4_FSGSBASE | 0x8
    emulate(dom, b"\x0f\x22\xe0", rax=CR4_FSGSBASE)          # mov %rax, %cr4
    assert dom.vcpus[0].cr4 & CR4_FSGSBASE


def test_only_what_faults_reaches_python(guests, host, monkeypatch):
    """With CR4.FSGSBASE the C trap answers RD/WR{FS,GS}BASE at once (Linux
    uses them on every context switch); Python sees only the #UDs with it
    clear (3 in the guest) and the non-canonical writes (2)."""
    seen = []
    real = emul.emulate_fsgsbase
    monkeypatch.setattr(emul, "emulate_fsgsbase", lambda v: seen.append(1) or real(v))
    run_conformance_guest(guests, host, "fsgsbase", 12)
    assert len(seen) == 5
