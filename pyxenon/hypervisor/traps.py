"""Guest exceptions, the Python half: the PV CPUID path and crash reports.

The C core catches every exception (the TLB fill for page faults, the
interrupt hook for the rest) and stops the engine; this module decides what
the guest sees.  A guest without a handler for the fault is crashed with a
report, as Xen's domain_crash() would; the host itself never faults.
"""
from pyxenon._core import ffi, lib

from . import debugtrap, emulate, faults
from .bounce import bounce
from .errors import GuestFault
from .guestmem import copy_from_guest
from .states import RUNNING

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


ERRCODE_VECTORS = {8, 10, 11, 12, 13, 14, 17}   # exceptions that push an error code
TI_DPL, TI_IF = 3, 4                            # trap_info flags: DPL, mask events
SYSCALL = 256                                   # XC_VECTOR_SYSCALL in core.h
CALLBACKTYPE_event, CALLBACKTYPE_syscall = 0, 2
CALLBACKF_mask_events = 1


def on_exception(vcpu):
    """The engine stopped with a guest exception pending on vcpu."""
    core = vcpu.core
    vector, error_code = core.vector, core.error_code
    core.stop = 0
    if core.fault_rip:
        vcpu.set_regs(rip=core.fault_rip)
    vector = faults.vector_of(vcpu, vector)
    special = SPECIAL.get(vector)
    if special is not None and special(vcpu):
        return
    deliver(vcpu, vector, error_code)


def deliver(vcpu, vector, error_code):
    """Bounce the exception to the guest's handler, or crash the domain."""
    if vector >= 32:                    # int n (n below 32: flagged XC_VECTOR_SOFT)
        return software_interrupt(vcpu, vector & 0xFF)
    flags, _cs, address = vcpu.trap_table.get(vector, (0, 0, 0))
    if not address:
        return vcpu.domain.crash(crash_report(vcpu, vector, error_code))
    if vector == 14:
        vcpu.domain.vcpu_info(vcpu.vcpu_id).arch.cr2 = emulate.fault_address(vcpu, error_code)
        if vcpu.core.kernel_mode:
            error_code &= ~4      # Xen hides PFEC_user from a ring-3 guest kernel
    code = error_code if vector in ERRCODE_VECTORS else None
    vcpu.domain.perfc.bounced[vector] += 1
    return bounce(vcpu, address, code, mask_events=bool(flags & TI_IF))


def software_interrupt(vcpu, vector):
    """int n: allowed when the trap table's DPL for n is at least 1 (guest
    kernel) or 3 (guest user); otherwise #GP(n << 3 | 2), as Xen's
    do_general_protection and permit_softint decide."""
    flags, _cs, address = vcpu.trap_table.get(vector, (0, 0, 0))
    if address and (flags & TI_DPL) >= (1 if vcpu.core.kernel_mode else 3):
        return bounce(vcpu, address, None, mask_events=bool(flags & TI_IF))
    vcpu.set_regs(rip=vcpu.regs()["rip"] - 2)      # report at the `int n` itself
    return deliver(vcpu, 13, vector << 3 | 2)


def syscall_from_user(vcpu):
    """A guest user `syscall`: into the guest kernel's syscall callback with
    rcx/r11 as the instruction leaves them; #UD when none is registered."""
    regs = vcpu.regs()
    vcpu.set_regs(rcx=regs["rip"], r11=regs["rflags"])
    address, flags = vcpu.callbacks.get(CALLBACKTYPE_syscall, (0, 0))
    if not address:
        vcpu.set_regs(rip=regs["rip"] - 2)
        deliver(vcpu, 6, 0)
        return True
    bounce(vcpu, address, None, mask_events=bool(flags & CALLBACKF_mask_events))
    return True


def deliver_nmi(vcpu):
    """entry.S's process_nmi on the way back to the guest: a pending NMI,
    unless one is being handled, bounces through trap_ctxt[TRAP_nmi] (the
    NMI callback, or the trap table's vector 2) with no error code, and
    masks NMIs until the guest's iret (set_guest_nmi_trapbounce).  With no
    handler there the NMI is dropped, as null_trap_bounce drops it."""
    if not vcpu.nmi_pending or vcpu.nmi_masked:
        return
    vcpu.nmi_pending = False
    flags, _cs, address = vcpu.trap_table.get(2, (0, 0, 0))
    if address and bounce(vcpu, address, None, mask_events=bool(flags & TI_IF)):
        vcpu.nmi_masked = True


def test_all_events(vcpu):
    """What entry.S's test_all_events delivers on the way back to the
    guest: a pending NMI first, then events (which an NMI handler entered
    with events masked does not see)."""
    deliver_nmi(vcpu)
    if vcpu.domain.state == RUNNING:
        deliver_upcall(vcpu)


def deliver_upcall(vcpu):
    """Enter the guest's event callback if an event is pending and unmasked
    (events are masked on entry, as Xen's event callback does)."""
    info = vcpu.domain.vcpu_info(vcpu.vcpu_id)
    address, _flags = vcpu.callbacks.get(CALLBACKTYPE_event, (0, 0))
    if address and info.evtchn_upcall_pending and not info.evtchn_upcall_mask:
        bounce(vcpu, address, None, mask_events=True)


def privileged(vcpu):
    """#GP(0): maybe an instruction Xen emulates (only with error code 0:
    do_general_protection passes a selector's on as is; in guest user mode
    only cli/sti), or one its emulator turns into a #UD (mov to or from %dr4
    with CR4.DE)."""
    if vcpu.core.error_code != 0:
        return False
    table = emulate.EMULATED if vcpu.core.kernel_mode else emulate.USER_EMULATED
    try:
        return emulate.emulate_privileged(vcpu, table)
    except emulate.InvalidOpcode:
        deliver(vcpu, 6, 0)
        return True


def on_engine_error(vcpu, err):
    """Unicorn itself gave up on this guest's code: crash only this domain."""
    reason = ffi.string(lib.xc_strerror(err)).decode()
    vcpu.domain.crash(crash_report(vcpu, None, 0, reason))


# -- the PV CPUID path ----------------------------------------------------------


def cpuid(vcpu, leaf, subleaf):
    """(eax, ebx, ecx, edx) from the one PV CPUID policy (`_core/cpuid.c`),
    which plain cpuid also answers from."""
    out = ffi.new("uint32_t[4]")
    lib.xc_cpuid(vcpu.domain.machine.core, leaf, subleaf, out)
    return tuple(out)


def emulate_forced(vcpu):
    """ud2;'xen';cpuid: Xen's emulated CPUID, every leaf from the policy.
    False if not that prefix."""
    regs = vcpu.regs()
    try:
        code = copy_from_guest(vcpu, regs["rip"], 7)
    except GuestFault:
        return False
    if code[:5] != FORCED_EMULATION or code[5:] != CPUID:
        return False
    if vcpu.core.cpuid_faulting and not vcpu.core.kernel_mode:
        # pv_emulate_forced_invalid_op: #GP in place of #UD, at the cpuid
        vcpu.set_regs(rip=regs["rip"] + len(FORCED_EMULATION))
        deliver(vcpu, 13, 0)
        return True
    eax, ebx, ecx, edx = cpuid(vcpu, regs["rax"] & 0xFFFFFFFF, regs["rcx"] & 0xFFFFFFFF)
    vcpu.set_regs(rip=regs["rip"] + 7, rax=eax, rbx=ebx, rcx=ecx, rdx=edx)
    return True


def invalid_opcode(vcpu):
    """#UD: Xen's forced emulation prefix, or RD/WR{FS,GS}BASE with the
    guest's CR4.FSGSBASE set (emulate.emulate_fsgsbase)."""
    if emulate_forced(vcpu):
        return True
    done = emulate.emulate_fsgsbase(vcpu)
    if done == emulate.GP:
        deliver(vcpu, 13, 0)
        return True
    return done


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


SPECIAL = {SYSCALL: syscall_from_user, 1: debugtrap.on_debug, 6: invalid_opcode, 13: privileged,
           14: emulate.emulate_ptwr}
