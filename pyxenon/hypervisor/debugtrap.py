"""The guest's #DB from its own debug registers, as Xen 4.17 gives it to a
PV guest.

On Xen the CPU holds the guest's %dr0-3 and %dr7 while it runs
(activate_debugregs, arch/x86/traps.c), so its breakpoints fire in guest
context; do_debug folds the CPU's %dr6 into the vcpu's (`dr6 |= hw &
~X86_DR6_DEFAULT`) and bounces vector 1 (pv_inject_hw_exception).  I/O
breakpoints are Xen's own: its I/O emulation matches them
(check_guest_io_breakpoint, only with CR4.DE) and raises the #DB after the
instruction (pv_emulate_privileged_op: `dr6 |= bpmatch`).

Unicorn never fires a debug register, so each armed breakpoint is an
engine hook (`_core/debug.c`, the host debugger's mechanism), added only
while it is armed: a vcpu without one runs exactly the code it ran
before.  Single step is the engine's own: QEMU raises #DB after an
instruction begun with TF set, TF set by popf or iret included, none
after a MOV SS (its shadow defers it by one instruction).

A data breakpoint watches the machine bytes its linear address maps to
when it is armed (the hooks see machine addresses): another mapping of
the same bytes hits too, and a remapping is seen at the next write of
%dr0-3/%dr7.
"""
from pyxenon._core import ffi, lib

X86_CR4_DE = 1 << 3
DR_STEP = 1 << 14                    # BS
DR_ENABLE_SIZE, DR_CONTROL_SHIFT, DR_CONTROL_SIZE = 2, 16, 4
RW_EXECUTE, RW_WRITE, RW_IO, RW_READWRITE = 0, 1, 2, 3
LEN_BYTES = (1, 2, 8, 4)             # DR_LEN_1, _2, _8 (long mode), _4
RF = 1 << 16
IO = "io"
GUEST_KIND = {RW_EXECUTE: lib.XC_DBG_GUEST_X, RW_WRITE: lib.XC_DBG_GUEST_W,
              RW_READWRITE: lib.XC_DBG_GUEST_RW}


def armed(vcpu):
    """(R/W, bp, start, bytes) of each breakpoint %dr7 enables (L or G);
    an I/O one only with CR4.DE (check_guest_io_breakpoint)."""
    dr7 = vcpu.debugreg[7] | vcpu.dr7_emul
    out = []
    for bp in range(4):
        if not dr7 >> (bp * DR_ENABLE_SIZE) & 3:
            continue
        control = dr7 >> (DR_CONTROL_SHIFT + bp * DR_CONTROL_SIZE)
        rw, size = control & 3, LEN_BYTES[control >> 2 & 3]
        if rw == RW_IO and not vcpu.cr4 & X86_CR4_DE:
            continue
        start = vcpu.debugreg[bp] if rw == RW_EXECUTE else vcpu.debugreg[bp] & ~(size - 1)
        out.append((rw, bp, start, size))
    return tuple(out)


def rearm(vcpu):
    """Make the engine's hooks what %dr7 arms now; a change drops
    translated code (debug.c), so a run in progress ends after this trap."""
    want = armed(vcpu)
    if want == vcpu.db_armed[0]:
        return
    disarm(vcpu)
    core, machine = vcpu.core, vcpu.domain.machine
    points, io = [], 0
    for rw, bp, start, size in want:
        if rw == RW_IO:
            core.db_io_port[bp], core.db_io_len[bp] = start, size
            io |= 1 << bp
            continue
        point = insert(vcpu, GUEST_KIND[rw], bp, start, size)
        if point is not None:
            points.append(point)
    if any(rw != RW_EXECUTE for rw, *_ in want):
        points.append(lib.xc_dbg_insert_guest(machine.core, core, lib.XC_DBG_GUEST_BOUNDARY,
                                              0, 0, 0, 0))
    core.db_io = io
    vcpu.db_armed = (want, [p for p in points if p != ffi.NULL])
    if machine.in_engine:
        vcpu.stop()


def insert(vcpu, kind, bp, start, size):
    """One guest breakpoint's hook; None when its bytes are not mapped now."""
    m = vcpu.domain.machine.core
    if kind == lib.XC_DBG_GUEST_X:
        return lib.xc_dbg_insert_guest(m, vcpu.core, kind, bp, start, 0, 0)
    ma = lib.xc_dbg_translate(m, vcpu.core, start, 0)
    if ma < 0:
        return None
    return lib.xc_dbg_insert_guest(m, vcpu.core, kind, bp, start, ma, size)


def disarm(vcpu):
    """Drop every hook of vcpu's breakpoints (also when it goes)."""
    _want, points = vcpu.db_armed
    for point in points:
        lib.xc_dbg_remove(vcpu.domain.machine.core, point)
    vcpu.db_armed = ((), [])
    if vcpu.core != ffi.NULL:
        vcpu.core.db_io = vcpu.core.db_pending = 0


def on_debug(vcpu):
    """#DB (vector 1), before it is bounced: do_debug's %dr6, with B0-B3
    from the hooks, BS when the engine's single step raised it."""
    core = vcpu.core
    status = core.db_status & 0xF
    if not core.db_hooked:
        status |= DR_STEP        # a data hit of the stepped instruction joins it
    core.db_status = core.db_hooked = core.db_pending = 0
    vcpu.debugreg[6] |= status
    return False                 # deliver it (traps.deliver)


def resume_flag(vcpu, rip, rflags):
    """An iret with RF set passes an instruction breakpoint at its return
    address once, as the CPU does; RF itself never reaches the engine."""
    if rflags & RF and any(rw == RW_EXECUTE and start == rip
                           for rw, _bp, start, _n in vcpu.db_armed[0]):
        vcpu.core.db_skip_pc, vcpu.core.db_skip = rip, 1
    return rflags & ~RF
