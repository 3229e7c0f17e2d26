"""Which exception a fault is, where the engine cannot tell: Unicorn
reports every non-canonical data access as a #GP (_core/mm.c), but the CPU
raises #SS(0) when the reference goes through SS, and Xen passes the
hardware's vector on to the guest (do_trap, traps.c).

A reference goes through SS when it is an implicit stack operation (push,
pop, call, ret, enter, leave, iret) or names rsp or rbp as its base.  In
64-bit mode the ES, CS, SS and DS override prefixes are ignored (Xen's
x86_decode: "ignored in 64-bit mode"), so only FS and GS overrides take
a reference off SS.
"""
from .emulate import MASK64, canonical, decode, reg64

SS_BASES = frozenset(("rsp", "rbp"))
STACK_OPS = frozenset((
    "push", "pushfq", "pop", "popfq", "call", "ret", "retf", "retfq", "lcall",
    "enter", "leave", "iret", "iretd", "iretq"))


def memory_operands(insn, regs):
    """(effective address, through SS) for each of insn's memory operands."""
    import capstone.x86 as x86

    out = []
    for op in insn.operands:
        if op.type != x86.X86_OP_MEM:
            continue
        base = reg64(insn.reg_name(op.mem.base)) if op.mem.base else ""
        index = regs.get(reg64(insn.reg_name(op.mem.index)), 0) if op.mem.index else 0
        address = insn.address + insn.size if base == "rip" else regs.get(base, 0)
        ea = (address + index * op.mem.scale + op.mem.disp) & MASK64
        off_ss = op.mem.segment in (x86.X86_REG_FS, x86.X86_REG_GS)
        out.append((ea, base in SS_BASES and not off_ss))
    return out


def stack_segment_fault(vcpu):
    """Whether the non-canonical access at rip went through SS: the
    non-canonical memory operand's segment, else the stack itself."""
    regs = vcpu.regs()
    insn = decode(vcpu, regs["rip"])
    if insn is None:
        return False
    for ea, through_ss in memory_operands(insn, regs):
        if not canonical(ea):
            return through_ss
    return insn.mnemonic in STACK_OPS and stack_at_edge(regs["rsp"])


def stack_at_edge(rsp):
    """The guest's stack is (next to) non-canonical.  Otherwise the push
    that faulted is on the inner ring's stack of a gate, whose TSS entry is
    non-canonical on purpose (_core/machine.c): not a reference of the
    guest's through SS."""
    return not all(canonical((rsp + d) & MASK64) for d in (-64, 0, 63))


def vector_of(vcpu, vector):
    """The vector the guest gets for the exception the engine noted."""
    noncanonical, vcpu.core.noncanonical = vcpu.core.noncanonical, 0
    if vector == 13 and noncanonical and stack_segment_fault(vcpu):
        return 12
    return vector
