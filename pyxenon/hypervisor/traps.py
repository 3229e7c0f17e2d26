"""Guest exceptions, the Python half: the PV CPUID path and crash reports.

The C core catches every exception (the TLB fill for page faults, the
interrupt hook for the rest) and stops the engine; this module decides what
the guest sees.  A guest without a handler for the fault is crashed with a
report, as Xen's domain_crash() would; the host itself never faults.
"""
from pyxenon._core import ffi, lib
from pyxenon.public import arch_x86

from .errors import GuestFault
from .guestmem import copy_from_guest

# ud2; .ascii "xen": the prefix that asks Xen to emulate the next instruction.
FORCED_EMULATION = b"\x0f\x0bxen"
CPUID = b"\x0f\xa2"

EXCEPTION_NAMES = {
    0: "#DE divide error", 1: "#DB debug", 2: "NMI", 3: "#BP breakpoint",
    4: "#OF overflow", 5: "#BR bound range", 6: "#UD invalid opcode",
    7: "#NM device not available", 8: "#DF double fault", 10: "#TS invalid TSS",
    11: "#NP segment not present", 12: "#SS stack fault",
    13: "#GP general protection fault", 14: "#PF page fault",
    16: "#MF x87 floating point", 17: "#AC alignment check",
    18: "#MC machine check", 19: "#XM SIMD floating point",
}

XEN_VERSION = (4, 17)
XEN_CPUID_MAX_LEAF = 0x40000005
MACHINE_ADDRESS_BITS = 52


def on_exception(vcpu):
    """The engine stopped with a guest exception pending on vcpu."""
    core = vcpu.core
    vector = core.vector
    core.stop = 0
    if vector == 6 and emulate_forced(vcpu):
        return
    vcpu.domain.crash(crash_report(vcpu, vector, core.error_code))


def on_engine_error(vcpu, err):
    """Unicorn itself gave up on this guest's code: crash only this domain."""
    reason = ffi.string(lib.xc_strerror(err)).decode()
    vcpu.domain.crash(crash_report(vcpu, None, 0, reason))


# -- the PV CPUID path ----------------------------------------------------------


def xen_leaf(leaf):
    """Xen's own CPUID leaves at 0x40000000, as a PV guest sees them."""
    base = leaf - arch_x86.XEN_CPUID_FIRST_LEAF
    if base == 0:
        return (XEN_CPUID_MAX_LEAF, arch_x86.XEN_CPUID_SIGNATURE_EBX,
                arch_x86.XEN_CPUID_SIGNATURE_ECX, arch_x86.XEN_CPUID_SIGNATURE_EDX)
    if base == 1:
        return (XEN_VERSION[0] << 16 | XEN_VERSION[1], 0, 0, 0)
    if base == 2:  # one hypercall page, installed through MSR 0x40000000
        return (1, 0x40000000, 0, 0)
    if base == 5:
        return (0, MACHINE_ADDRESS_BITS, 0, 0)
    return (0, 0, 0, 0)


def emulate_forced(vcpu):
    """ud2;'xen';cpuid: answer Xen's leaves here; any other leaf is left
    to the CPU by resuming at the cpuid itself.  False if not that prefix."""
    regs = vcpu.regs()
    try:
        code = copy_from_guest(vcpu, regs["rip"], 7)
    except GuestFault:
        return False
    if code[:5] != FORCED_EMULATION or code[5:] != CPUID:
        return False
    leaf = regs["rax"] & 0xFFFFFFFF
    if leaf >> 8 != arch_x86.XEN_CPUID_FIRST_LEAF >> 8:
        vcpu.set_regs(rip=regs["rip"] + 5)
        return True
    eax, ebx, ecx, edx = xen_leaf(leaf)
    vcpu.set_regs(rip=regs["rip"] + 7, rax=eax, rbx=ebx, rcx=ecx, rdx=edx)
    return True


# -- crash reports --------------------------------------------------------------


def disassemble(vcpu, rip):
    """The instruction at rip as text, or why it cannot be read."""
    code = b""
    for size in (15, (-rip) & 0xFFF or 15):
        try:
            code = copy_from_guest(vcpu, rip, size)
            break
        except GuestFault:
            continue
    if not code:
        return "<instruction not readable>"
    import capstone  # only needed when something went wrong

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    for insn in md.disasm(code, rip):
        return f"{insn.mnemonic} {insn.op_str}".strip() + f"    ({insn.bytes.hex(' ')})"
    return f"<undecodable: {code[:8].hex(' ')}>"


def format_registers(regs):
    names = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
    lines = []
    for i in range(0, len(names), 4):
        lines.append("  " + "  ".join(f"{n:>3}={regs[n]:016x}" for n in names[i:i + 4]))
    lines.append(f"  rip={regs['rip']:016x}  rflags={regs['rflags']:08x}  "
                 f"cs={regs['cs']:04x}  ss={regs['ss']:04x}")
    return lines


def crash_report(vcpu, vector, error_code, reason=None):
    """The text Xen would print on domain_crash: what, where, the registers."""
    regs = vcpu.regs()
    dom = vcpu.domain
    if reason is None:
        name = EXCEPTION_NAMES.get(vector, f"vector {vector}")
        reason = f"unhandled {name}, error code {error_code:#x}"
        if vector == 14:
            reason += f", cr2={vcpu.core.cr2:#x}"
    lines = [f"domain {dom.name} (d{dom.domid}) vcpu {vcpu.vcpu_id} crashed: {reason}",
             f"  faulting instruction at {regs['rip']:#018x}: {disassemble(vcpu, regs['rip'])}"]
    return "\n".join(lines + format_registers(regs))

