"""Privileged instructions a ring-3 PV kernel executes, emulated as Xen
emulates them for PV guests (its emul-priv-op): control and debug
registers, the MSRs a PV guest may see, clts, wbinvd.  Anything else that
faulted stays a #GP for the guest (in/out are answered in C, `_core/io.c`).
"""
from pyxenon._core import ffi, lib
from pyxenon.public import errno

from . import debugreg, debugtrap
from .errors import GuestFault, HypercallError
from .hypercall_page import hypercall_page_bytes
from .guestmem import copy_from_guest
from .mm import PAGE, WRITABLE

CR0_TS = 0x8
X86_CR4_TSD, X86_CR4_DE, X86_CR4_FSGSBASE, X86_CR4_OSXSAVE = 0x4, 0x8, 1 << 16, 1 << 18
# pv_fixup_guest_cr4 (pv/domain.c): the guest chooses PV_CR4_GUEST_MASK's
# bits its CPUID policy has (_core/cpuid.c: TSC, DE and FSGSBASE, not
# XSAVE), and sees Xen's PAE, MCE, OSFXSR and OSXMMEXCPT.
CR4_GUEST_MASK = X86_CR4_TSD | X86_CR4_DE | X86_CR4_FSGSBASE | X86_CR4_OSXSAVE
CR4_XEN_VISIBLE = 0x20 | 0x40 | 0x200 | 0x400
# (leaf, register, bit) of the feature each guest bit needs: basic.tsc,
# basic.de, feat.fsgsbase, basic.xsave.
CR4_POLICY = {X86_CR4_TSD: (1, 3, 4), X86_CR4_DE: (1, 3, 2),
              X86_CR4_FSGSBASE: (7, 1, 0), X86_CR4_OSXSAVE: (1, 2, 26)}
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
              4: lambda: vcpu.cr4, 8: lambda: 0}
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
    if n == 4:
        set_guest_cr4(vcpu, value)
        return True
    return False


def set_guest_cr4(vcpu, value):
    """A write of the guest's CR4 (write_cr, or VCPUOP_initialise's ctrlreg[4])."""
    vcpu.cr4 = fixup_guest_cr4(vcpu.domain.machine.core, value)
    vcpu.core.fsgsbase = 1 if vcpu.cr4 & X86_CR4_FSGSBASE else 0   # traps.c answers them
    debugtrap.rearm(vcpu)      # CR4.DE arms or disarms I/O breakpoints


def fixup_guest_cr4(machine_core, value):
    """Xen's pv_fixup_guest_cr4: a write of CR4 never fails; the guest keeps
    its bits the policy offers ("discard attempts to set guest controllable
    bits outside of the policy"), the rest are Xen's."""
    out = ffi.new("uint32_t[4]")
    for bit, (leaf, reg, feature) in CR4_POLICY.items():
        lib.xc_cpuid(machine_core, leaf, 0, out)
        if not out[reg] >> feature & 1:
            value &= ~bit
    return value & CR4_GUEST_MASK | CR4_XEN_VISIBLE


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
# The policy is C's (_core/msr.c), which answers a guest kernel's rdmsr and
# wrmsr at its #GP; these are the same answers for an instruction decoded
# here (prefixed forms, fast paths off), and the hypercall page.

def read_msr(vcpu, index):
    value = ffi.new("uint64_t *")
    if not lib.xc_msr_read(vcpu.domain.machine.core, vcpu.core, index, value):
        return None
    return value[0]


def write_msr(vcpu, index, value):
    answer = lib.xc_msr_write(vcpu.domain.machine.core, vcpu.core, index, value)
    if answer == lib.XC_MSR_PYTHON:
        return install_hypercall_page(vcpu, value)
    return answer == lib.XC_MSR_DONE


def count_msr(vcpu, write):
    perfc = vcpu.core.perfc
    if perfc != ffi.NULL:
        perfc.msr_python[write] += 1


def install_hypercall_page(vcpu, value):
    """wrmsr 0x40000000 (traps.c guest_wrmsr_xen): Xen writes the hypercall
    page into the frame value names -- a PV domain's gfn is its mfn -- with
    the writable type held meanwhile (get_page_type(PGT_writable_page)), so
    never into a page table or descriptor page; an offset in the page, a
    frame not the domain's or one of another type is #GP."""
    mfn, frames = value >> 12, vcpu.domain.machine.frame_table
    if value & 0xFFF:
        return False
    try:
        frames.get_page_and_type(mfn, vcpu, WRITABLE)
    except HypercallError:
        return False
    frames.mem[mfn * PAGE:(mfn + 1) * PAGE] = hypercall_page_bytes()
    frames.put_page_and_type(mfn, vcpu)
    lib.xc_request_flush(vcpu.domain.machine.core)
    return True


# -- the instructions ------------------------------------------------------------------

class InvalidOpcode(Exception):
    """The emulated instruction raises #UD (x86_emulate's TRAP_invalid_op)."""


def debug_register(op, *args):
    """x86emul_read_dr/x86emul_write_dr: (True, the value read); -ENODEV is
    #UD, any other refusal (False, None): #GP(0)."""
    try:
        return True, op(*args)
    except HypercallError as e:
        if e.errno == errno.ENODEV:
            raise InvalidOpcode() from None
        return False, None


def emu_mov(vcpu, ops, regs):
    dst, src = ops
    if src.startswith("cr"):
        value = read_cr(vcpu, int(src[2:]))
        if value is None:
            return False
        vcpu.set_regs(**{reg64(dst): value & MASK64})
        return True
    if src.startswith("dr"):
        ok, value = debug_register(debugreg.read_debugreg, vcpu, int(src[2:]))
        if ok:
            vcpu.set_regs(**{reg64(dst): value & MASK64})
        return ok
    if dst.startswith("cr"):
        return write_cr(vcpu, int(dst[2:]), regs[reg64(src)])
    if dst.startswith("dr"):
        return debug_register(debugreg.set_debugreg, vcpu, int(dst[2:]), regs[reg64(src)])[0]
    return False


def emu_rdmsr(vcpu, ops, regs):
    count_msr(vcpu, 0)
    value = read_msr(vcpu, regs["rcx"] & 0xFFFFFFFF)
    if value is None:
        return False
    vcpu.set_regs(rax=value & 0xFFFFFFFF, rdx=value >> 32)
    return True


def emu_wrmsr(vcpu, ops, regs):
    count_msr(vcpu, 1)
    value = (regs["rdx"] & 0xFFFFFFFF) << 32 | (regs["rax"] & 0xFFFFFFFF)
    return write_msr(vcpu, regs["rcx"] & 0xFFFFFFFF, value)


def emu_clts(vcpu, ops, regs):
    m = vcpu.domain.machine.core
    return lib.xc_set_cr0(m, vcpu.core, lib.xc_get_cr0(m, vcpu.core) & ~CR0_TS) == 0


def emu_nop(vcpu, ops, regs):
    return True     # wbinvd/invd: nothing to do for an unprivileged guest


def iopl_ok(vcpu):
    """Xen's iopl_ok: a guest kernel is at virtual CPL 1 (0 with the
    architectural IOPL assist), guest user at 3; _core/io.c's rule too."""
    core = vcpu.core
    cpl = (0 if core.io.arch_iopl else 1) if core.kernel_mode else 3
    return cpl <= core.iopl


def emu_cli_sti(vcpu, ops, regs):
    """cli/sti with enough virtual IOPL are skipped, the event mask left
    alone, as Xen's priv_op_validate does ("too dangerous" to honour)."""
    return iopl_ok(vcpu)


EMULATED = {"mov": emu_mov, "rdmsr": emu_rdmsr, "wrmsr": emu_wrmsr,
            "clts": emu_clts, "wbinvd": emu_nop, "invd": emu_nop,
            "cli": emu_cli_sti, "sti": emu_cli_sti}
# Guest user mode: x86_emulate refuses the rest outside ring 0 (mode_ring0,
# with pv's read_segment giving user SS DPL 3); cli/sti go by mode_iopl.
USER_EMULATED = {"cli": emu_cli_sti, "sti": emu_cli_sti}


def emulate_privileged(vcpu, table=None):
    """True if the faulting instruction was emulated (rip moved past it)."""
    regs = vcpu.regs()
    insn = decode(vcpu, regs["rip"])
    op = (table or EMULATED).get(insn.mnemonic) if insn is not None else None
    if op is None:
        return False
    ops = [o.strip() for o in insn.op_str.split(",")] if insn.op_str else []
    done = op(vcpu, ops, regs)
    if done and done is not RETRY:
        vcpu.set_regs(rip=regs["rip"] + insn.size)
    return bool(done)


# -- RD/WR{FS,GS}BASE ----------------------------------------------------------------

FSGSBASE = {"rdfsbase": ("fs_base", False), "rdgsbase": ("gs_base", False),
            "wrfsbase": ("fs_base", True), "wrgsbase": ("gs_base", True)}
GP = "#GP"          # the emulated instruction raises #GP(0)


def emulate_fsgsbase(vcpu):
    """RD/WR{FS,GS}BASE as the CPU runs them for a PV guest on Xen, whose
    CR4.FSGSBASE follows the guest's (pv_make_cr4): with it clear a #UD
    (False here), with it set the base read or written, a non-canonical
    one being #GP(0).  The engine has no FSGSBASE: _core/traps.c answers
    the plain cases in the trap, this the rest (and the host's own calls).
    A 32-bit operand zero-extends.  The base is the running mode's, which
    toggle_guest_mode swaps with the other mode's (gs_base_other)."""
    regs = vcpu.regs()
    insn = decode(vcpu, regs["rip"])
    op = FSGSBASE.get(insn.mnemonic) if insn is not None else None
    if op is None or not vcpu.cr4 & X86_CR4_FSGSBASE:
        return False
    base, write = op
    reg = insn.op_str.strip()
    mask = MASK64 if reg.startswith("r") and not reg.endswith("d") else 0xFFFFFFFF
    if write and not canonical(regs[reg64(reg)] & mask):
        return GP
    target, value = (base, regs[reg64(reg)]) if write else (reg64(reg), regs[base])
    vcpu.set_regs(**{target: value & mask, "rip": regs["rip"] + insn.size})
    return True


# -- writable page tables -------------------------------------------------------------

PFEC_PRESENT_WRITE = 0x3
WIDTHS = {"byte": 1, "word": 2, "dword": 4, "qword": 8}
CF, PF, ZF, SF, OF = 1, 1 << 2, 1 << 6, 1 << 7, 1 << 11
ARITH_FLAGS = CF | PF | 1 << 4 | ZF | SF | OF


def _subregisters():
    names = {}
    for r in "abcd":
        names.update({f"{r}l": f"r{r}x", f"{r}x": f"r{r}x", f"e{r}x": f"r{r}x"})
    for r in ("si", "di", "bp", "sp"):
        names.update({f"{r}l": f"r{r}", r: f"r{r}", f"e{r}": f"r{r}"})
    for n in range(8, 16):
        names.update({f"r{n}b": f"r{n}", f"r{n}w": f"r{n}", f"r{n}d": f"r{n}"})
    return names


SUBREGS = _subregisters()
HIGH8 = {"ah": "rax", "bh": "rbx", "ch": "rcx", "dh": "rdx"}


def source_value(src, regs, width):
    """An immediate or a register of the instruction, at the operand width."""
    if src[0].isdigit() or src.startswith("-"):
        value = int(src, 0)
    elif src in HIGH8:
        value = regs[HIGH8[src]] >> 8
    else:
        value = regs.get(SUBREGS.get(src, src))
    return None if value is None else value & ((1 << 8 * width) - 1)


def result_flags(value, width):
    """ZF, SF and PF of a result, as the CPU sets them."""
    top = 1 << (8 * width - 1)
    parity = bin(value & 0xFF).count("1") % 2 == 0
    return (ZF if value == 0 else 0) | (SF if value & top else 0) | (PF if parity else 0)


def cmp_flags(a, b, width):
    mask = (1 << 8 * width) - 1
    r = (a - b) & mask
    overflow = ((a ^ b) & (a ^ r)) >> (8 * width - 1) & 1
    return result_flags(r, width) | (CF if a < b else 0) | (OF if overflow else 0)


def op_logic(fn):
    """and/or/xor: CF and OF cleared, ZF SF PF from the result."""
    def op(old, src, width, regs, dst_reg):
        new = fn(old, src)
        return new, {}, (ARITH_FLAGS, result_flags(new, width))
    return op


def op_bit(set_bit):
    """bts/btr within the operand: CF is the bit's old value."""
    def op(old, src, width, regs, dst_reg):
        if src >= 8 * width:
            return None          # a bit-string offset past the entry: not emulated
        bit = 1 << src
        new = old | bit if set_bit else old & ~bit
        return new, {}, (CF, CF if old & bit else 0)
    return op


def op_mov(old, src, width, regs, dst_reg):
    return src, {}, (0, 0)


def set_register(regs, name, value, width):
    """A register write at width: 32-bit writes zero-extend, 8/16-bit merge."""
    if width >= 4:
        return {name: value}
    mask = (1 << 8 * width) - 1
    return {name: regs[name] & ~mask | value}


def op_xchg(old, src, width, regs, dst_reg):
    return src, set_register(regs, dst_reg, old, width), (0, 0)


def op_cmpxchg(old, src, width, regs, dst_reg):
    """Memory changes only if the accumulator matches; else it gets the old value."""
    acc = regs["rax"] & ((1 << 8 * width) - 1)
    after = {} if acc == old else set_register(regs, "rax", old, width)
    return (src if acc == old else old), after, (ARITH_FLAGS, cmp_flags(acc, old, width))


PTWR_OPS = {"mov": op_mov, "xchg": op_xchg, "cmpxchg": op_cmpxchg,
            "and": op_logic(lambda a, b: a & b), "or": op_logic(lambda a, b: a | b),
            "xor": op_logic(lambda a, b: a ^ b), "bts": op_bit(True), "btr": op_bit(False)}


def ptwr_decode(insn):
    """(op, width, source) of a write to memory the ptwr assist can emulate."""
    op = PTWR_OPS.get(insn.mnemonic.removeprefix("lock "))
    ops = [o.strip() for o in insn.op_str.split(",")]
    if op is None or len(ops) != 2 or "[" not in ops[0]:
        return None
    width = WIDTHS.get(ops[0].split()[0])
    return (op, width, ops[1]) if width else None


def emulate_ptwr(vcpu):
    """A write to one of the guest's own L1 page tables (mapped read-only)
    becomes a checked update of that entry, as Xen's writable-pagetable
    assist does (ptwr_emulated_update): any naturally aligned width within
    the entry, mov, xchg, cmpxchg and the read-modify-write forms (fork's
    ptep_set_wrprotect is a byte-wide `lock andb`), merged into the whole
    entry, the flags set as the CPU would.  False: an ordinary #PF."""
    core = vcpu.core
    if core.error_code & PFEC_PRESENT_WRITE != PFEC_PRESENT_WRITE or not core.kernel_mode:
        return False
    frames = vcpu.domain.machine.frame_table
    regs = vcpu.regs()
    insn = decode(vcpu, regs["rip"])
    decoded = ptwr_decode(insn) if insn is not None else None
    ma = ptwr_entry(vcpu, frames, decoded[1]) if decoded else None
    if ma is None:
        return False
    return ptwr_update(vcpu, frames, ma, decoded, insn, regs)


def ptwr_update(vcpu, frames, ma, decoded, insn, regs):
    op, width, src = decoded
    table, index, shift = ma >> 12, (ma & 0xFFF) // 8, 8 * (ma & 7)
    mask = (1 << 8 * width) - 1
    old = frames.read_entry(table, index)
    value = source_value(src, regs, width)
    out = op(old >> shift & mask, value, width, regs, SUBREGS.get(src, src)) \
        if value is not None else None
    if out is None:
        return False
    part, after, (flag_mask, flags) = out
    new = old & ~(mask << shift) | part << shift
    if new != old and not mod_entry_ok(vcpu, frames, table, index, new):
        return False
    after = {k: v for k, v in after.items() if k in regs}
    after["rip"] = regs["rip"] + insn.size
    after["rflags"] = regs["rflags"] & ~flag_mask | flags
    vcpu.set_regs(**after)
    return True


def mod_entry_ok(vcpu, frames, table, index, value):
    from .errors import HypercallError

    try:
        frames.mod_entry(table, index, value, vcpu)
    except HypercallError:
        return False
    return True


def ptwr_entry(vcpu, frames, width):
    """Machine address the faulting write of width bytes aims at, inside an
    L1 entry, or None.  Unicorn reports the page only: the address is the
    instruction's operand; Xen allows only naturally aligned writes."""
    from .mm import L1

    va = fault_address(vcpu, vcpu.core.error_code)
    ma = lib.xc_translate(vcpu.domain.machine.core, vcpu.core, va, 0)
    if ma < 0 or va & (width - 1) or not frames.owned(ma >> 12, vcpu.domain):
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
