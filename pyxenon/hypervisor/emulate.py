"""Privileged instructions a ring-3 PV kernel executes, emulated as Xen
emulates them for PV guests (its emul-priv-op): control and debug
registers, the MSRs a PV guest may see, clts, wbinvd.  Anything else that
faulted stays a #GP for the guest (in/out included: no I/O privilege).
"""
from pyxenon._core import lib

from .errors import GuestFault
from .hypercall_page import hypercall_page_bytes
from .guestmem import copy_from_guest

CR0_TS = 0x8
CR4_VISIBLE = 0x6A0        # PAE PGE OSFXSR OSXMMEXCPT: what the guest reads
MSR_EFER, EFER_VALUE = 0xC0000080, 0xD01
MSR_FS_BASE, MSR_GS_BASE, MSR_SHADOW_GS_BASE = 0xC0000100, 0xC0000101, 0xC0000102
MSR_HYPERCALL_PAGE = 0x40000000  # CPUID leaf 0x40000002 names it
MASK64 = (1 << 64) - 1

_DISASM = None


def decode(vcpu, rip):
    global _DISASM
    if _DISASM is None:
        import capstone

        _DISASM = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        _DISASM.detail = True
    try:
        code = copy_from_guest(vcpu, rip, 15)
    except GuestFault:
        return None
    return next(_DISASM.disasm(code, rip, 1), None)


def effective_addresses(insn, regs):
    """The addresses insn's memory operands name (capstone's detail)."""
    import capstone.x86 as x86

    out = []
    for op in insn.operands:
        if op.type != x86.X86_OP_MEM:
            continue
        base = regs.get(reg64(insn.reg_name(op.mem.base)), 0) if op.mem.base else 0
        index = regs.get(reg64(insn.reg_name(op.mem.index)), 0) if op.mem.index else 0
        if op.mem.base == x86.X86_REG_RIP:
            base = insn.address + insn.size
        out.append((base + index * op.mem.scale + op.mem.disp) & MASK64)
    return out


def fault_address(vcpu, error_code):
    """cr2 for a #PF: Unicorn names only the page, so find the byte from the
    faulting instruction's memory operand (or rip, for a fetch)."""
    page = vcpu.core.cr2
    regs = vcpu.regs()
    if error_code & 0x10:
        return regs["rip"] if regs["rip"] >> 12 == page >> 12 else page
    insn = decode(vcpu, regs["rip"])
    if insn is None:
        return page
    for ea in effective_addresses(insn, regs) + [regs["rdi"], regs["rsi"]]:
        if ea >> 12 == page >> 12:
            return ea
    return page


def reg64(name):
    """Capstone's 64- or 32-bit GPR name -> our register name (32-bit
    writes zero-extend, as in hardware)."""
    if name.startswith("e"):
        return "r" + name[1:]
    return name[:-1] if name.startswith("r") and name.endswith("d") else name


def canonical(value):
    return value < 1 << 47 or value >= MASK64 - (1 << 47) + 1


# -- control registers ----------------------------------------------------------

def read_cr(vcpu, n):
    core, m = vcpu.core, vcpu.domain.machine.core
    values = {0: lambda: lib.xc_get_cr0(m, core),
              2: lambda: vcpu.domain.vcpu_info(vcpu.vcpu_id).arch.cr2,
              3: lambda: (core.kernel_cr3 if core.kernel_mode else core.user_cr3) << 12,
              4: lambda: CR4_VISIBLE, 8: lambda: 0}
    return values[n]() if n in values else None


def write_cr(vcpu, n, value):
    m = vcpu.domain.machine.core
    if n == 0:
        cr0 = lib.xc_get_cr0(m, vcpu.core)
        if (cr0 ^ value) & ~CR0_TS:
            return False           # only TS may change
        return lib.xc_set_cr0(m, vcpu.core, value) == 0
    if n == 3:
        return write_cr3(vcpu, (value >> 12) & ((1 << 40) - 1))
    return n == 4 and value == CR4_VISIBLE


def write_cr3(vcpu, mfn):
    """Xen's new_guest_cr3 through the emulator: a refusal is a #GP, and a
    switch preempted part-way runs the instruction again (X86EMUL_RETRY)."""
    from .errors import HypercallError
    from .mm import ERESTART

    try:
        vcpu.domain.machine.frame_table.set_base(vcpu, mfn)
    except HypercallError as e:
        return RETRY if e.errno == ERESTART else False
    return True


RETRY = "retry"     # emulated, but the instruction must run again


# -- MSRs ---------------------------------------------------------------------------

def read_msr(vcpu, index):
    regs = vcpu.regs()
    values = {MSR_FS_BASE: regs["fs_base"], MSR_GS_BASE: regs["gs_base"],
              MSR_SHADOW_GS_BASE: vcpu.gs_base_other, MSR_EFER: EFER_VALUE}
    return values.get(index)


def write_msr(vcpu, index, value):
    if index in (MSR_FS_BASE, MSR_GS_BASE, MSR_SHADOW_GS_BASE) and not canonical(value):
        return False
    if index == MSR_FS_BASE:
        vcpu.set_regs(fs_base=value)
    elif index == MSR_GS_BASE:
        vcpu.set_regs(gs_base=value)
    elif index == MSR_SHADOW_GS_BASE:
        vcpu.gs_base_other = value
    elif index == MSR_HYPERCALL_PAGE:
        return install_hypercall_page(vcpu, value)
    else:
        return index == MSR_EFER and value == EFER_VALUE
    return True


def install_hypercall_page(vcpu, gpa):
    """wrmsr 0x40000000: Xen writes the hypercall page into that frame."""
    pfn = gpa >> 12
    if gpa & 0xFFF or not 0 <= pfn < vcpu.domain.nr_pages:
        return False
    vcpu.domain.page(pfn)[:] = hypercall_page_bytes()
    lib.xc_request_flush(vcpu.domain.machine.core)
    return True


# -- the instructions ------------------------------------------------------------------

def emu_mov(vcpu, ops, regs):
    dst, src = ops
    if src.startswith(("cr", "dr")):
        value = read_cr(vcpu, int(src[2:])) if src.startswith("cr") else vcpu.debugreg[int(src[2:])]
        if value is None:
            return False
        vcpu.set_regs(**{reg64(dst): value & MASK64})
        return True
    if dst.startswith("cr"):
        return write_cr(vcpu, int(dst[2:]), regs[reg64(src)])
    if dst.startswith("dr"):
        vcpu.debugreg[int(dst[2:])] = regs[reg64(src)]
        return True
    return False


def emu_rdmsr(vcpu, ops, regs):
    value = read_msr(vcpu, regs["rcx"] & 0xFFFFFFFF)
    if value is None:
        return False
    vcpu.set_regs(rax=value & 0xFFFFFFFF, rdx=value >> 32)
    return True


def emu_wrmsr(vcpu, ops, regs):
    value = (regs["rdx"] & 0xFFFFFFFF) << 32 | (regs["rax"] & 0xFFFFFFFF)
    return write_msr(vcpu, regs["rcx"] & 0xFFFFFFFF, value)


def emu_clts(vcpu, ops, regs):
    m = vcpu.domain.machine.core
    return lib.xc_set_cr0(m, vcpu.core, lib.xc_get_cr0(m, vcpu.core) & ~CR0_TS) == 0


def emu_nop(vcpu, ops, regs):
    return True     # wbinvd/invd: nothing to do for an unprivileged guest


EMULATED = {"mov": emu_mov, "rdmsr": emu_rdmsr, "wrmsr": emu_wrmsr,
            "clts": emu_clts, "wbinvd": emu_nop, "invd": emu_nop}


def emulate_privileged(vcpu):
    """True if the faulting instruction was emulated (rip moved past it)."""
    regs = vcpu.regs()
    insn = decode(vcpu, regs["rip"])
    op = EMULATED.get(insn.mnemonic) if insn is not None else None
    if op is None:
        return False
    ops = [o.strip() for o in insn.op_str.split(",")] if insn.op_str else []
    done = op(vcpu, ops, regs)
    if done and done is not RETRY:
        vcpu.set_regs(rip=regs["rip"] + insn.size)
    return bool(done)


# -- writable page tables -------------------------------------------------------------

PFEC_PRESENT_WRITE = 0x3
PTWR_WIDTH = 8


def ptwr_value(insn, regs, old):
    """The 8-byte value a mov/xchg/cmpxchg writes, or None."""
    ops = [o.strip() for o in insn.op_str.split(",")]
    if len(ops) != 2 or not ops[0].startswith("qword ptr ["):
        return None
    src = ops[1]
    value = int(src, 0) & MASK64 if src[0].isdigit() or src.startswith("-") else regs.get(src)
    if value is None:
        return None
    if insn.mnemonic == "cmpxchg" and regs["rax"] != old:
        return old              # comparison failed: memory unchanged
    return value


def emulate_ptwr(vcpu):
    """A write to one of the guest's own L1 page tables (mapped read-only)
    becomes a checked update of that entry, as Xen's writable-pagetable
    assist does.  False: an ordinary #PF for the guest."""
    core = vcpu.core
    if core.error_code & PFEC_PRESENT_WRITE != PFEC_PRESENT_WRITE or not core.kernel_mode:
        return False
    frames = vcpu.domain.machine.frame_table
    ma = ptwr_entry(vcpu, frames)
    regs = vcpu.regs()
    insn = decode(vcpu, regs["rip"]) if ma is not None else None
    if insn is None or insn.mnemonic not in ("mov", "xchg", "cmpxchg"):
        return False
    table, index = ma >> 12, (ma & 0xFFF) // 8
    old = frames.read_entry(table, index)
    value = ptwr_value(insn, regs, old)
    if value is None:
        return False
    return apply_ptwr(vcpu, frames, table, index, value, insn, regs, old)


def ptwr_entry(vcpu, frames):
    """Machine address of the L1 entry the faulting write aims at, or None.
    Unicorn reports the page only: the entry is the instruction's operand."""
    from .mm import L1

    va = fault_address(vcpu, vcpu.core.error_code)
    ma = lib.xc_translate(vcpu.domain.machine.core, vcpu.core, va, 0)
    if ma < 0 or va & 7 or not frames.owned(ma >> 12, vcpu.domain):
        return None
    if not frames.is_table(ma >> 12, L1) or leaf_writable(vcpu, frames, va):
        return None
    return ma


def leaf_writable(vcpu, frames, va):
    """Xen's ptwr_do_page_fault assists only a write whose leaf entry is
    read-only: one through a read-only upper entry (a linear table) faults."""
    from .errors import HypercallError

    try:
        table, index = frames.l1_slot(vcpu.core.cr3, va)
    except HypercallError:
        return True
    return bool(frames.read_entry(table, index) & 0x2)


def apply_ptwr(vcpu, frames, table, index, value, insn, regs, old):
    from .errors import HypercallError

    try:
        frames.mod_entry(table, index, value, vcpu)
    except HypercallError:
        return False
    after = {"rip": regs["rip"] + insn.size}
    if insn.mnemonic in ("xchg", "cmpxchg"):
        after["rax" if insn.mnemonic == "cmpxchg" else insn.op_str.split(",")[1].strip()] = old
    vcpu.set_regs(**after)
    return True
