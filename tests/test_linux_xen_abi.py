"""What Debian's Linux needs from Xen, answered as Xen 4.17 answers a
64-bit PV domU: the CPUID policy, port I/O under the virtual IOPL,
physdev_op, the MSRs and CR4 of emul-priv-op, cli/sti, xenpmu_op and
VCPUOP_down.  (get_features, vm_assist and descriptors: test_hypercalls,
test_memory_op, test_traps.)"""
import re
import struct

import pytest

from pyxenon.hypervisor import traps
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import errno, physdev as ph, vcpu as vc, xen

PAGE = 4096
HLT = b"\xf4"         # a #GP for a PV kernel: ends a snippet with a report of the registers


@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"))


def scratch(dom, n=1):
    return dom.layout.stack + n * PAGE


def run(host, dom, code, **regs):
    """Run code (then hlt) in the engine from guest kernel mode; the
    registers the crash report shows."""
    vcpu, va = dom.vcpus[0], scratch(dom)
    copy_to_guest(vcpu, va, code + HLT)
    vcpu.set_regs(rip=va, rsp=scratch(dom, 3), **regs)
    host.run(timeout=10)
    assert dom.crash_report, "the snippet should end at its hlt"
    return {k: int(v, 16) for k, v in re.findall(r"(\w+)=([0-9a-f]{8,16})", dom.crash_report)}


def iopl(dom, level):
    vcpu = dom.vcpus[0]
    copy_to_guest(vcpu, scratch(dom, 2), struct.pack("<I", level))
    return vcpu.hypercall(xen.HYPERVISOR_physdev_op, ph.PHYSDEVOP_set_iopl, scratch(dom, 2))


# -- CPUID: one policy, plain and forced ----------------------------------------------

CPUID = b"\x0f\xa2"
PSE, PGE, MTRR, PSE36 = 1 << 3, 1 << 13, 1 << 12, 1 << 17      # leaf 1 edx
HYPERVISOR, XSAVE = 1 << 31, 1 << 26                            # leaf 1 ecx
PAGE1GB = 1 << 26                                               # leaf 0x80000001 edx


def test_plain_cpuid_answers_the_pv_policy(host, dom):
    """Linux builds 2 MiB direct-map entries (which Xen refuses) if it sees
    PSE; the raw engine CPU has PSE, PGE, MTRR, XSAVE."""
    r = run(host, dom, CPUID, rax=1, rcx=0)
    assert not r["rdx"] & (PSE | PGE | MTRR | PSE36)
    assert r["rcx"] & HYPERVISOR and not r["rcx"] & XSAVE
    assert r["rbx"] >> 24 == 0                       # APIC id 0
    assert (r["rax"], r["rbx"], r["rcx"], r["rdx"]) == traps.cpuid(dom.vcpus[0], 1, 0)


def test_plain_cpuid_extended_and_xen_leaves(host, dom):
    r = run(host, dom, CPUID, rax=0x80000001, rcx=0)
    assert not r["rdx"] & PAGE1GB and r["rdx"] & 1 << 29     # no 1 GiB pages; long mode
    assert traps.cpuid(dom.vcpus[0], 0x40000000, 0) == (0x40000005, 0x566E6558, 0x65584D4D, 0x4D4D566E)
    assert traps.cpuid(dom.vcpus[0], 0x40000001, 0)[0] == 4 << 16 | 17
    assert traps.cpuid(dom.vcpus[0], 0x40000002, 0) == (1, 0x40000000, 1, 0)
    assert traps.cpuid(dom.vcpus[0], 0x12345678, 0) == (0, 0, 0, 0)


def test_forced_cpuid_answers_every_leaf_from_the_policy(dom):
    vcpu = dom.vcpus[0]
    va = scratch(dom)
    copy_to_guest(vcpu, va, b"\x0f\x0bxen\x0f\xa2")
    vcpu.set_regs(rip=va, rax=7, rcx=0)
    assert traps.emulate_forced(vcpu)
    r = vcpu.regs()
    assert r["rip"] == va + 7
    assert (r["rax"], r["rbx"], r["rcx"], r["rdx"]) == traps.cpuid(vcpu, 7, 0)
    assert r["rbx"] & 1                 # FSGSBASE, as Xen's PV default (cpuid.c)


# -- port I/O: guest_io_okay, guest_io_read/write ----------------------------------------

IN_AL_42 = b"\xe4\x42"            # in al, 0x42 (the PIT, Linux's TSC calibration)
OUT_DX_EAX, IN_EAX_DX = b"\xef", b"\xed"


def test_io_without_iopl_is_gp(host, dom):
    r = run(host, dom, IN_AL_42, rax=0x1234)
    assert "in al, 0x42" in dom.crash_report and r["rax"] == 0x1234


@pytest.mark.parametrize("insn", [IN_AL_42, b"\xe6\x80"], ids=["in", "out"])
def test_io_fault_is_exact_when_more_of_its_block_follows(guests, host, insn):
    """Unicorn completes a hooked in/out and runs on to the end of its
    block; the #GP must still leave every later register and store undone
    (exits.c, xc_fault_in_hook)."""
    later = b"\x48\x89\x1f" + b"\x48\xff\xc1" + b"\x48\x89\x4f\x08"  # mov [rdi],rbx; inc rcx; mov [rdi+8],rcx
    dom = host.create(str(guests / "hello.cfg"), overrides=['on_crash="preserve"'])
    target = scratch(dom, 2)
    copy_to_guest(dom.vcpus[0], target, bytes(16))
    r = run(host, dom, insn + later, rax=0x1234, rbx=0x5678, rcx=7, rdi=target)
    assert "in al, 0x42" in dom.crash_report or "out 0x80, al" in dom.crash_report, dom.crash_report
    assert (r["rax"], r["rcx"], r["rip"]) == (0x1234, 7, scratch(dom))
    assert copy_from_guest(dom.vcpus[0], target, 16) == bytes(16)


def test_io_with_iopl_reads_all_ones(host, dom):
    assert iopl(dom, 1) == 0             # Linux's xen_start_kernel asks for 1
    r = run(host, dom, IN_AL_42 + b"\x66" + IN_EAX_DX, rax=0x1234, rdx=0x61)
    assert r["rip"] == scratch(dom) + 4 and r["rax"] & 0xFFFF == 0xFFFF     # at the hlt


def test_io_cf8_and_rtc_index_are_latched(host, dom):
    """A dword at 0xcf8 is the domain's CONFIG_ADDRESS; 0x70 its CMOS index."""
    assert iopl(dom, 1) == 0
    code = (OUT_DX_EAX + b"\x31\xc0" + IN_EAX_DX               # out dx,eax; xor eax,eax; in eax,dx
            + b"\x89\xc3" + b"\xb0\x8f\xe6\x70" + b"\x31\xc0\xe4\x70" + b"\x89\xc1"
            + b"\x31\xc0\xe4\x71")                             # ...; in al,0x71
    r = run(host, dom, code, rax=0x80001234, rdx=0xCF8)
    assert r["rbx"] == 0x80001234         # cf8 read back
    assert r["rcx"] & 0xFF == 0x8F        # the RTC index read back
    assert r["rax"] & 0xFF == 0xFF        # RTC data: the domain owns no ports


def test_iopl_3_refused_above(dom, hypercall):
    assert iopl(dom, 4) == -errno.EINVAL
    assert iopl(dom, 3) == 0 and dom.vcpus[0].core.iopl == 3


def test_io_bitmap_grants_single_ports(host, dom):
    vcpu = dom.vcpus[0]
    bitmap = scratch(dom, 2) + 64
    copy_to_guest(vcpu, bitmap, b"\xff" * 8 + b"\xfb" + b"\xff" * 7)   # port 0x42 allowed
    copy_to_guest(vcpu, scratch(dom, 2), struct.pack("<QI", bitmap, 0x80))
    assert vcpu.hypercall(xen.HYPERVISOR_physdev_op, ph.PHYSDEVOP_set_iobitmap,
                          scratch(dom, 2)) == 0
    r = run(host, dom, IN_AL_42 + b"\xe4\x43", rax=0)
    assert r["rax"] & 0xFF == 0xFF and "in al, 0x43" in dom.crash_report


def test_set_iobitmap_refuses_xen_addresses(dom, hypercall):
    copy_to_guest(dom.vcpus[0], scratch(dom, 2), struct.pack("<QI", 0xFFFF830000000000, 8))
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, ph.PHYSDEVOP_set_iobitmap,
                     scratch(dom, 2)) == -errno.EINVAL
    copy_to_guest(dom.vcpus[0], scratch(dom, 2), struct.pack("<QI", scratch(dom), 65537))
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, ph.PHYSDEVOP_set_iobitmap,
                     scratch(dom, 2)) == -errno.EINVAL


# -- physdev_op for a domU without devices -------------------------------------------

def physdev(hypercall, dom, cmd, data):
    copy_to_guest(dom.vcpus[0], scratch(dom, 2), data)
    rc = hypercall(dom, xen.HYPERVISOR_physdev_op, cmd, scratch(dom, 2))
    return rc, copy_from_guest(dom.vcpus[0], scratch(dom, 2), len(data))


def test_irq_status_query_and_eoi(dom, hypercall):
    rc, out = physdev(hypercall, dom, ph.PHYSDEVOP_irq_status_query, struct.pack("<iI", 9, 0))
    assert rc == 0 and struct.unpack("<iI", out)[1] == 1        # XENIRQSTAT_needs_eoi
    assert physdev(hypercall, dom, ph.PHYSDEVOP_irq_status_query,
                   struct.pack("<iI", 4096, 0))[0] == -errno.EINVAL
    assert physdev(hypercall, dom, ph.PHYSDEVOP_eoi, struct.pack("<I", 9))[0] == -errno.EINVAL


def test_pirq_eoi_gmfn_once(dom, hypercall):
    mfn = dom.pfn_to_mfn(dom.layout.pfn(dom.layout.virt_end) + 5)
    assert physdev(hypercall, dom, ph.PHYSDEVOP_pirq_eoi_gmfn_v2, struct.pack("<Q", 1))[0] \
        == -errno.EINVAL                                       # not the domain's frame
    assert physdev(hypercall, dom, ph.PHYSDEVOP_pirq_eoi_gmfn_v2, struct.pack("<Q", mfn))[0] == 0
    assert physdev(hypercall, dom, ph.PHYSDEVOP_pirq_eoi_gmfn_v1, struct.pack("<Q", mfn))[0] \
        == -errno.EBUSY


@pytest.mark.parametrize("cmd, rc", [
    (ph.PHYSDEVOP_apic_read, -errno.EPERM), (ph.PHYSDEVOP_map_pirq, -errno.EPERM),
    (ph.PHYSDEVOP_alloc_irq_vector, -errno.EPERM), (ph.PHYSDEVOP_IRQ_UNMASK_NOTIFY, 0),
    (ph.PHYSDEVOP_pci_device_add, -errno.EPERM), (999, -errno.ENOSYS)])
def test_privileged_and_unknown_physdev_ops(dom, hypercall, cmd, rc):
    assert physdev(hypercall, dom, cmd, bytes(40))[0] == rc


def test_physdev_bad_pointer_is_efault(dom, hypercall):
    assert hypercall(dom, xen.HYPERVISOR_physdev_op, ph.PHYSDEVOP_set_iopl, 8) == -errno.EFAULT


# -- privileged instructions: MSRs, CR4, cli/sti --------------------------------------

def emulate(dom, code, vector=13, **regs):
    """code raised vector (#GP(0) unless told) in the guest kernel, as the
    engine reports it; the registers after the exception path."""
    vcpu, va = dom.vcpus[0], scratch(dom)
    copy_to_guest(vcpu, va, code)
    vcpu.set_regs(rip=va, rsp=scratch(dom, 3), **regs)
    vcpu.core.vector, vcpu.core.error_code, vcpu.core.stop = vector, 0, 2
    traps.on_exception(vcpu)
    return vcpu.regs()


RDMSR, WRMSR = b"\x0f\x32", b"\x0f\x30"


@pytest.mark.parametrize("msr, value", [
    (0x8B, 0), (0x277, 0x050100070406), (0x179, 0x1000C02), (0x17A, 0),
    (0xCE, 1 << 31), (0x1B, 0xFEE00900), (0x3A, 1), (0x401, 0), (0x400, (1 << 64) - 1),
    (0xC1, 0), (0x1A0, 0x801801)])
def test_rdmsr_as_xen_answers(dom, msr, value):
    r = emulate(dom, RDMSR, rcx=msr)
    assert r["rip"] == scratch(dom) + 2 and r["rdx"] << 32 | r["rax"] == value


@pytest.mark.parametrize("msr", [0x10A, 0x48, 0x4D0, 0x800, 0x123])
def test_rdmsr_xen_refuses_is_gp(dom, msr):
    """ARCH_CAPABILITIES, SPEC_CTRL (not in the policy), MCG_EXT_CTL, x2APIC."""
    emulate(dom, RDMSR, rcx=msr)
    assert dom.shutdown_reason == "crash" and "rdmsr" in dom.crash_report


def test_wrmsr_pmu_and_mce_dropped(dom):
    assert emulate(dom, WRMSR, rcx=0x186, rax=5, rdx=0)["rip"] == scratch(dom) + 2
    assert emulate(dom, WRMSR, rcx=0x17A, rax=0, rdx=0)["rip"] == scratch(dom) + 2


MOV_CR4_RAX, MOV_RAX_CR4 = b"\x0f\x22\xe0", b"\x0f\x20\xe0"


def test_cr4_writes_keep_the_guest_bits(dom):
    """pv_fixup_guest_cr4: TSD, DE and FSGSBASE are the guest's (its policy
    has them); PGE, PSE and OSXSAVE (no XSAVE in the policy) are not."""
    assert emulate(dom, MOV_RAX_CR4)["rax"] == 0x660
    r = emulate(dom, MOV_CR4_RAX, rax=0x6A0 | 0x8 | 0x10 | 1 << 18)
    assert r["rip"] == scratch(dom) + 3 and dom.vcpus[0].cr4 == 0x668
    assert emulate(dom, MOV_RAX_CR4)["rax"] == 0x668
    emulate(dom, MOV_CR4_RAX, rax=0x4 | 1 << 16)
    assert dom.vcpus[0].cr4 == 0x660 | 0x4 | 1 << 16  # FSGSBASE: in the default policy
    dom.machine.core.offer_fsgsbase = 0
    emulate(dom, MOV_CR4_RAX, rax=0x4 | 1 << 16)
    assert dom.vcpus[0].cr4 == 0x660 | 0x4            # a policy without it: discarded


def test_cli_sti_need_iopl(dom):
    assert iopl(dom, 1) == 0
    assert emulate(dom, b"\xfa")["rip"] == scratch(dom) + 1
    assert dom.vcpus[0].domain.vcpu_info(0).evtchn_upcall_mask == 1    # left alone
    assert iopl(dom, 0) == 0
    emulate(dom, b"\xfb")
    assert dom.shutdown_reason == "crash" and "sti" in dom.crash_report


def test_cli_sti_in_the_engine_are_answered_in_c(host, dom, monkeypatch):
    """The #GP of cli/sti is answered in the trap (io.c, a PV Linux runs
    thousands): skipped with vIOPL 1 and nothing reaches Python's decoder
    (the mask rule is test_cli_sti_need_iopl's); with vIOPL 0 the #GP stands."""
    from pyxenon.hypervisor import emulate as emul
    decoded = []
    real = emul.decode
    monkeypatch.setattr(emul, "decode", lambda v, rip: decoded.append(rip) or real(v, rip))
    assert iopl(dom, 1) == 0
    r = run(host, dom, b"\xfa\xfb\xfa\x48\xc7\xc3\x07\x00\x00\x00")     # cli sti cli; mov $7, rbx
    assert r["rbx"] == 7 and r["rip"] == scratch(dom) + 10       # at the hlt
    assert decoded == [scratch(dom) + 10]                        # only the hlt's #GP


def test_cli_without_iopl_in_the_engine_is_the_guests_gp(host, dom):
    assert iopl(dom, 0) == 0
    run_to_fault = run(host, dom, b"\xfa")
    assert run_to_fault["rip"] == scratch(dom) and "cli" in dom.crash_report


def test_iret_carries_iopl_with_architectural_iopl(dom, hypercall):
    vcpu = dom.vcpus[0]
    assert hypercall(dom, xen.HYPERVISOR_vm_assist, xen.VMASST_CMD_enable,
                     xen.VMASST_TYPE_architectural_iopl) == 0
    sp = scratch(dom, 2)
    frame = struct.pack("<9Q", 0, 0, 0, 0, scratch(dom), 0xE030, 0x3202, sp + 0x100, 0xE02B)
    copy_to_guest(vcpu, sp, frame)
    vcpu.set_regs(rsp=sp)
    hypercall(dom, xen.HYPERVISOR_iret)
    assert vcpu.core.iopl == 3


# -- xenpmu_op, VCPUOP_down -----------------------------------------------------------

def test_xenpmu_op_without_vpmu(dom, hypercall):
    assert hypercall(dom, xen.HYPERVISOR_xenpmu_op, 5, scratch(dom)) == -errno.EOPNOTSUPP
    assert hypercall(dom, xen.HYPERVISOR_xenpmu_op, 0, 0) == -errno.EOPNOTSUPP


def test_vcpu_down_of_the_last_vcpu_powers_off(dom, hypercall):
    assert hypercall(dom, xen.HYPERVISOR_vcpu_op, vc.VCPUOP_down, 0, 0) == 0
    assert dom.shutdown_reason == "poweroff"


def test_user_mode_cli_sti_under_the_virtual_iopl(dom):
    """Xen's emulator in guest user mode (CPL 3): cli/sti are skipped when
    the virtual IOPL is 3 (mode_iopl), else #GP; nothing else is emulated."""
    from pyxenon.hypervisor.bounce import toggle_guest_mode

    vcpu = dom.vcpus[0]
    dom.machine.frame_table.set_base(vcpu, vcpu.core.kernel_cr3, user=True)
    toggle_guest_mode(vcpu)
    assert iopl(dom, 3) == 0
    assert emulate(dom, b"\xfa")["rip"] == scratch(dom) + 1
    assert emulate(dom, b"\xfb")["rip"] == scratch(dom) + 1
    assert dom.crash_report is None
    emulate(dom, RDMSR, rcx=0xCE)                      # not at CPL 3
    assert dom.shutdown_reason == "crash" and "rdmsr" in dom.crash_report


def test_user_mode_cli_below_iopl_3_is_gp(dom):
    from pyxenon.hypervisor.bounce import toggle_guest_mode

    vcpu = dom.vcpus[0]
    dom.machine.frame_table.set_base(vcpu, vcpu.core.kernel_cr3, user=True)
    toggle_guest_mode(vcpu)
    assert iopl(dom, 1) == 0                           # enough for the kernel, not for user
    emulate(dom, b"\xfa")
    assert dom.shutdown_reason == "crash" and "cli" in dom.crash_report


@pytest.mark.parametrize("level, user, allowed", [
    (1, False, True), (0, False, False), (3, True, True), (1, True, False)])
def test_string_io_under_the_virtual_iopl(host, dom, level, user, allowed):
    """outsb/insb go by iopl_ok as in/out do (guest_io_okay): a kernel at
    virtual CPL 1, user at 3; refused, the #GP is at the outsb."""
    from pyxenon.hypervisor.bounce import toggle_guest_mode

    vcpu = dom.vcpus[0]
    assert iopl(dom, level) == 0
    if user:
        dom.machine.frame_table.set_base(vcpu, vcpu.core.kernel_cr3, user=True)
        toggle_guest_mode(vcpu)
    code = b"\x66\xba\x80\x00\x6e\x66\xba\x61\x00\x6c"   # dx=0x80; outsb; dx=0x61; insb
    r = run(host, dom, code, rdi=scratch(dom, 2), rsi=scratch(dom, 2))
    assert r["rip"] - scratch(dom) == (len(code) if allowed else 4)
    assert r["rdi"] - scratch(dom, 2) == (1 if allowed else 0)


@pytest.mark.parametrize("assist, bits", [(True, 0x2000), (False, 0)])
def test_bounce_frames_carry_the_virtual_iopl(dom, hypercall, assist, bits):
    """create_bounce_frame folds the virtual IOPL into the frame's rflags
    only with VMASST_TYPE_architectural_iopl."""
    vcpu = dom.vcpus[0]
    if assist:
        assert hypercall(dom, xen.HYPERVISOR_vm_assist, xen.VMASST_CMD_enable,
                         xen.VMASST_TYPE_architectural_iopl) == 0
    assert iopl(dom, 2) == 0
    vcpu.trap_table[6] = (0, 0xE033, scratch(dom))
    vcpu.set_regs(rip=scratch(dom), rsp=scratch(dom, 3))
    traps.deliver(vcpu, 6, 0)
    sp = vcpu.regs()["rsp"]
    rflags = struct.unpack("<Q", copy_from_guest(vcpu, sp + 32, 8))[0]
    assert rflags & 0x3000 == bits


@pytest.mark.parametrize("fast_paths", [True, False])
def test_event_bounce_carries_the_virtual_iopl_in_c_and_python(guests, fast_paths):
    """The event upcall's frame (C's xc_bounce_event, or bounce.py with the
    fast paths off) has the virtual IOPL folded in, as create_bounce_frame."""
    from pyxenon.hypercalls.traps import register_callback
    from pyxenon.toolstack.host import Host

    with Host(fast_paths=fast_paths) as host:
        dom = host.create(str(guests / "hello.cfg"))
        vcpu = dom.vcpus[0]
        assert vcpu.hypercall(xen.HYPERVISOR_vm_assist, xen.VMASST_CMD_enable,
                              xen.VMASST_TYPE_architectural_iopl) == 0
        assert iopl(dom, 2) == 0
        handler = scratch(dom, 2)
        copy_to_guest(vcpu, handler, b"\x48\x8b\x44\x24\x20" + HLT)   # rax = the frame's rflags
        copy_to_guest(vcpu, scratch(dom), b"\x90" + HLT)
        register_callback(vcpu, 0, handler, 0)                      # CALLBACKTYPE_event
        vcpu.set_regs(rip=scratch(dom), rsp=scratch(dom, 3))
        info = dom.vcpu_info(0)
        info.evtchn_upcall_pending, info.evtchn_upcall_mask = 1, 0
        host.run(timeout=10)
        r = {k: int(v, 16) for k, v in re.findall(r"(\w+)=([0-9a-f]{8,16})", dom.crash_report)}
        assert r["rip"] == handler + 5 and r["rax"] & 0x3200 == 0x2200      # IOPL 2, IF
