/*
 * The trap path: the `syscall` of a hypercall page entry, and every
 * exception a guest raises.  Both arrive here as libunicorn hooks, never as
 * Python Unicorn hooks, so a hypercall costs one C call plus, when the
 * handler is in Python, one cffi callback.
 */
#include "core.h"
#include "perfc.h"

static const int arg_regs[6] = {
    UC_X86_REG_RAX, UC_X86_REG_RDI, UC_X86_REG_RSI,
    UC_X86_REG_RDX, UC_X86_REG_R10, UC_X86_REG_R8,
};
/* What a trap reads first: the number, two arguments, the selectors. */
static const int entry_regs[5] = {
    UC_X86_REG_RAX, UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_CS, UC_X86_REG_SS,
};

/* An event is pending, unmasked, and the guest has somewhere to take it:
 * evtchn_upcall_pending and evtchn_upcall_mask are vcpu_info's first bytes. */
int xc_upcall_ready(struct xc_machine *m, struct xc_vcpu *v)
{
    const uint8_t *info = m->mem + v->vcpu_info_ma;
    return v->event_callback && info[0] && !info[1];
}

/* The C fast path, else the Python handlers. */
static int64_t dispatch(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a)
{
    int64_t rc;
    if (xc_fast_hypercall(m, v, a, &rc))
        return rc;
    return xc_python(m, v, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* The Python handlers, counted: a slice in which Python ran ends the chain
 * of slices C runs on its own (sched.c), so Python sees what it did. */
int64_t xc_python(struct xc_machine *m, struct xc_vcpu *v, uint64_t nr, uint64_t a1,
                  uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
    struct xc_perfc *p = v->perfc;
    uint64_t t0;
    int64_t rc;
    m->py_calls++;
    if (!p)
        return xc_py_hypercall(v->handle, nr, a1, a2, a3, a4, a5);
    t0 = xc_cycles();
    rc = xc_py_hypercall(v->handle, nr, a1, a2, a3, a4, a5);
    p->calls[nr < XC_PERFC_NR ? nr : XC_PERFC_NR].python++;
    p->calls[nr < XC_PERFC_NR ? nr : XC_PERFC_NR].py_cycles += xc_cycles() - t0;
    return rc;
}

/* FNV-1a over a word's bytes: the running digest of a vcpu's hypercalls
 * (number, first two arguments, result), which two deterministic runs of
 * the same guests must share -- fast paths included, at no cost to them. */
static uint64_t digest(uint64_t h, uint64_t word)
{
    for (int i = 0; i < 8; i++, word >>= 8)
        h = (h ^ (word & 0xFF)) * 0x100000001B3UL;
    return h;
}

/*
 * What a 64-bit guest kernel's CS and SS are after a hypercall: Xen's
 * lstar_enter frame holds FLAT_KERNEL_CS64 and FLAT_KERNEL_SS whatever the
 * guest ran with, and restore_all_guest returns by sysretq, which loads
 * the same two from MSR_STAR (FLAT_RING3_CS32 + 16 and + 8, RPL 3).  The
 * descriptors are Xen's flat ring-3 ones (machine.c's GDT page), so only
 * the selectors differ from a guest's own flat 64-bit segments; Unicorn
 * keeps the descriptor it has, and a guest in 32-bit code keeps its own.
 */
#define FLAT_KERNEL_CS64 0xe033
#define FLAT_KERNEL_SS 0xe02b

static void lstar_selectors(struct xc_machine *m, struct xc_vcpu *v, uint64_t cs, uint64_t ss)
{
    uint64_t flat_cs = FLAT_KERNEL_CS64, flat_ss = FLAT_KERNEL_SS;
    if ((cs & 0xFFFF) == flat_cs && (ss & 0xFFFF) == flat_ss)
        return;
    if (!xc_code64(m, v))
        return;
    uc_reg_write(m->uc, UC_X86_REG_CS, &flat_cs);
    uc_reg_write(m->uc, UC_X86_REG_SS, &flat_ss);
}

void xc_hook_syscall(uc_engine *uc, void *data)
{
    struct xc_machine *m = data;
    struct xc_vcpu *v = m->current;
    uint64_t a[6], sel[2] = {0, 0};
    void *ptrs[8] = {&a[0], &a[1], &a[2], &sel[0], &sel[1], &a[3], &a[4], &a[5]};
    int64_t rc;
    int two;
    struct xc_observed o;

    if (!v)
        return;
    if (!v->kernel_mode) {
        /* Guest user code making a system call: its kernel handles it. */
        v->vector = XC_VECTOR_SYSCALL;
        v->stop = XC_STOP_EXCEPTION;
        uc_emu_stop(uc);
        return;
    }
    /* The hot calls take two arguments: read the other three registers
     * only when their fast path did not answer. */
    uc_reg_read_batch(uc, (int *)entry_regs, ptrs, 5);
    v->hypercalls++;
    m->work = 0;          /* a new trap: preemptible work starts over */
    xc_observe_start(m, v, &o);
    two = xc_fast_two_args(a[0]);
    if (!two || !xc_fast_hypercall(m, v, a, &rc)) {
        uc_reg_read_batch(uc, (int *)arg_regs + 3, ptrs + 5, 3);
        /* a two-argument call its fast path declined is not tried again */
        rc = two ? xc_python(m, v, a[0], a[1], a[2], a[3], a[4], a[5]) : dispatch(m, v, a);
    }
    xc_observe_end(m, v, a, rc, &o);
    uc_reg_write(uc, UC_X86_REG_RAX, &rc);
    if (a[0] != HYPERVISOR_iret)      /* do_iret loads the frame's own */
        lstar_selectors(m, v, sel[0], sel[1]);
    v->call_digest = digest(digest(digest(digest(v->call_digest, a[0]), a[1]), a[2]), (uint64_t)rc);
    if (v->stop == XC_STOP_NONE && xc_upcall_ready(m, v))
        v->stop = XC_STOP_HYPERCALL;   /* deliver the event before the guest goes on */
    if (v->stop != XC_STOP_NONE)
        uc_emu_stop(uc);
}

/* Xen's x86_64 PV bounce frame, lowest address first (hypervisor/bounce.py
 * builds the same, and every other kind). */
#define RFLAGS_IF 0x200UL
#define RFLAGS_IOPL 0x3000UL
#define CLEARED_ON_TRAP (0x100UL | 0x4000 | 0x10000 | 0x20000 | 0x40000) /* TF NT RF VM AC */

static const int frame_regs[7] = {
    UC_X86_REG_RCX, UC_X86_REG_R11, UC_X86_REG_RIP, UC_X86_REG_CS,
    UC_X86_REG_RFLAGS, UC_X86_REG_RSP, UC_X86_REG_SS,
};

#define DESC_L (1UL << 53)
#define DESC_D (1UL << 54)
#define RFLAGS_VM 0x20000UL

/*
 * v runs 64-bit code (its CS descriptor has L set, D clear).  A bounce
 * needs it: Xen's loads the kernel's 64-bit CS (x86_64/entry.S
 * create_bounce_frame), but the host cannot load a segment into the
 * engine (Unicorn writes only the selector), so a 64-bit handler entered
 * from a 32- or 16-bit segment would run truncated and fault again at
 * once, frame after frame, until the stack ran out (a misleading failsafe
 * crash).  The descriptor is read as the GDT holds it now: a guest that
 * rewrites the one its CS came from misleads only itself.
 */
int xc_code64(struct xc_machine *m, struct xc_vcpu *v)
{
    uint64_t cs = 0, rflags = 0, desc, frame;
    if (m->current == v) {
        uc_reg_read(m->uc, UC_X86_REG_CS, &cs);
        uc_reg_read(m->uc, UC_X86_REG_RFLAGS, &rflags);
    } else {
        uc_context_reg_read(v->ctx, UC_X86_REG_CS, &cs);
        uc_context_reg_read(v->ctx, UC_X86_REG_RFLAGS, &rflags);
    }
    /* virtual-8086 mode (QEMU's 32-bit iret enters it even from ring 3 in
     * long mode) has real-mode segments, whatever the GDT says; no LDT */
    if ((rflags & RFLAGS_VM) || (cs & 4))
        return 0;
    frame = xc_gdt_frame(m, v, (cs & 0xFFFF) >> PAGE_SHIFT);
    desc = ((const uint64_t *)(m->mem + (frame << PAGE_SHIFT)))[(cs >> 3) & 511];
    return (desc & (DESC_L | DESC_D)) == DESC_L;
}

/*
 * Enter v's event callback (v is running, in guest kernel mode): push
 * rcx, r11, rip, cs (RPL cleared, the saved event mask in bits 32-39),
 * rflags (IF the inverse of that mask), rsp, ss on the 16-byte aligned
 * stack, mask events, jump.  Returns 0 and changes nothing when
 * hypervisor/bounce.py must do it: guest user mode, fast paths off, or a
 * frame it cannot write (there the domain crashes, as Xen's failsafe).
 */
int xc_bounce_event(struct xc_machine *m, struct xc_vcpu *v)
{
    uint64_t r[7] = {0}, w[7], sp;   /* selectors are read as 16 bits */
    void *p[7] = {&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]};
    uint8_t *info = m->mem + v->vcpu_info_ma;
    if (!m->fast_paths || !v->kernel_mode || !xc_code64(m, v))
        return 0;
    uc_reg_read_batch(m->uc, (int *)frame_regs, p, 7);
    w[0] = r[0], w[1] = r[1], w[2] = r[2], w[5] = r[5], w[6] = r[6];
    w[3] = (r[3] & ~3UL) | (uint64_t)info[1] << 32;
    w[4] = (r[4] & ~(RFLAGS_IF | RFLAGS_IOPL)) | (info[1] ? 0 : RFLAGS_IF);
    if (v->io && v->io->arch_iopl)      /* create_bounce_frame folds in the virtual IOPL */
        w[4] |= (uint64_t)(v->iopl & 3) << 12;
    sp = (r[5] & ~0xFUL) - sizeof(w);
    if ((sp >= HYPERVISOR_VIRT_START - 64 && sp < HYPERVISOR_VIRT_END + 64) ||
        xc_copy_to_guest(m, v, sp, w, sizeof(w)))
        return 0;
    info[1] = 1;   /* evtchn_upcall_mask */
    r[4] &= ~CLEARED_ON_TRAP;
    uc_reg_write(m->uc, UC_X86_REG_RSP, &sp);
    uc_reg_write(m->uc, UC_X86_REG_RFLAGS, &r[4]);
    xc_write_rip(m->uc, v->event_callback);
    return 1;
}

/*
 * A hypercall the host makes on v's behalf (tests, the fuzzer): the same
 * path as the trap, fast path first, without the registers.
 */
int64_t xc_hypercall(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a)
{
    struct xc_observed o;
    int64_t rc;
    v->hypercalls++;
    m->work = 0;
    xc_observe_start(m, v, &o);
    rc = dispatch(m, v, a);
    xc_observe_end(m, v, a, rc, &o);
    return rc;
}

/*
 * `int n` with n below 32 reaches this hook as exception n would, but with
 * rip after the instruction (Unicorn's exception_is_int).  Xen's IDT gives
 * those vectors DPL 0 (all but 3 and 4, which the CPU checks itself), so
 * the guest's `int n` is a #GP(n << 3 | 2) that do_general_protection may
 * turn into the trap table's software interrupt -- never exception n.  The
 * two bytes before rip tell: a guest that puts `int n` bytes right before
 * an instruction raising exception n misleads only itself.
 */
static int software_int(struct xc_machine *m, struct xc_vcpu *v, uint32_t intno)
{
    uint8_t insn[2];
    uint64_t rip = 0;
    if (intno == 3 || intno == 4 || intno >= 32)
        return 0;
    uc_reg_read(m->uc, UC_X86_REG_RIP, &rip);
    return !xc_copy_from_guest(m, v, insn, rip - 2, 2) && insn[0] == 0xCD && insn[1] == intno;
}

static int emulated_in_c(struct xc_machine *m, struct xc_vcpu *v)
{
    return (m->vtsc && xc_emulate_rdtsc(m, v)) || xc_emulate_msr(m, v) || xc_emulate_cli_sti(m, v);
}

/*
 * RD/WR{FS,GS}BASE (F3 [REX] 0F AE /0-/3, a register operand) with the
 * guest's CR4.FSGSBASE set: the CPU runs them on Xen (pv_make_cr4 puts the
 * guest's bit in CR4), here the engine's CR4 never has it, so the
 * instruction's CR4 test raises #UD, answered at once as rdtsc's #GP is.  A non-canonical base (#GP(0)
 * on the CPU, which QEMU's own wr*base would not raise) and anything else
 * go to hypervisor/emulate.py's emulate_fsgsbase.
 */
static const int gpr[16] = {
    UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX,
    UC_X86_REG_RSP, UC_X86_REG_RBP, UC_X86_REG_RSI, UC_X86_REG_RDI,
    UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_R10, UC_X86_REG_R11,
    UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15,
};

/* The instruction's length (0: not one of the four), op and register. */
static int fsgsbase_decode(struct xc_machine *m, struct xc_vcpu *v, uint64_t rip,
                           int *op, int *reg, int *wide)
{
    uint8_t b[5] = {0}, *p = b + 1, rex = 0;
    uint64_t in_page = PAGE_SIZE - (rip & (PAGE_SIZE - 1));
    if (xc_copy_from_guest(m, v, b, rip, 5) &&
        (in_page >= 5 || xc_copy_from_guest(m, v, b, rip, in_page)))
        return 0;
    if ((*p & 0xF0) == 0x40)
        rex = *p++;
    if (b[0] != 0xF3 || p[0] != 0x0F || p[1] != 0xAE || p[2] >> 6 != 3)
        return 0;
    *op = p[2] >> 3 & 7;
    *reg = (p[2] & 7) | (rex & 1) << 3;
    *wide = rex >> 3 & 1;
    return *op < 4 ? (int)(p + 3 - b) : 0;
}

static int emulate_fsgsbase(struct xc_machine *m, struct xc_vcpu *v)
{
    uint64_t rip = 0, value = 0;
    int op, reg, wide, len, base;
    uc_reg_read(m->uc, UC_X86_REG_RIP, &rip);
    len = v->fsgsbase ? fsgsbase_decode(m, v, rip, &op, &reg, &wide) : 0;
    if (!len)
        return 0;
    base = op & 1 ? UC_X86_REG_GS_BASE : UC_X86_REG_FS_BASE;
    uc_reg_read(m->uc, op < 2 ? base : gpr[reg], &value);
    if (!wide)
        value &= 0xFFFFFFFFUL;
    if (op >= 2 && (uint64_t)((int64_t)value << 16 >> 16) != value)
        return 0;                       /* non-canonical: #GP(0), in Python */
    xc_clear_exception(m);              /* taken here, never delivered */
    uc_reg_write(m->uc, op < 2 ? gpr[reg] : base, &value);
    rip += len;
    xc_write_rip(m->uc, rip);   /* last: Unicorn may leave the hook here */
    return 1;
}

/* An exception the guest never sees: rdtsc's #GP with the TSC emulated, a
 * guest kernel's rdmsr/wrmsr's #GP (msr.c), RD/WR{FS,GS}BASE's #UD with the guest's CR4.FSGSBASE. */
static int answered_here(struct xc_machine *m, struct xc_vcpu *v, uint32_t intno)
{
    if (intno == 13)
        return emulated_in_c(m, v);
    return intno == 6 && emulate_fsgsbase(m, v);
}

/*
 * Any CPU exception other than a page fault (those come from the TLB fill).
 * A #GP from rdtsc with the TSC emulated is answered here (time.c), one
 * from a guest kernel's rdmsr/wrmsr the MSR policy answers too (msr.c),
 * and the guest goes on.  Unicorn leaves rip at the faulting instruction for faults and after it for
 * traps (int3, into), which is what a bounce frame needs.  Unicorn gives no
 * error code here; xc_clear_exception reads the CPU's (the selector's for
 * a faulting segment load, far transfer or iret).
 */
void xc_hook_intr(uc_engine *uc, uint32_t intno, void *data)
{
    struct xc_machine *m = data;
    struct xc_vcpu *v = m->current;
    if (v && v->stop != XC_STOP_EXCEPTION && answered_here(m, v, intno))
        return;
    if (v && v->stop != XC_STOP_EXCEPTION) {
        v->vector = intno | (software_int(m, v, intno) ? XC_VECTOR_SOFT : 0);
        v->error_code = XC_EC_ENGINE;   /* the CPU's, once the engine stopped */
        v->stop = XC_STOP_EXCEPTION;
    }
    uc_emu_stop(uc);
}

/* Make the running vcpu leave the engine with a fault (used by handlers). */
void xc_raise(struct xc_machine *m, uint32_t vector, uint32_t error_code)
{
    struct xc_vcpu *v = m->current;
    if (!v)
        return;
    v->vector = vector;
    v->error_code = error_code;
    v->stop = XC_STOP_EXCEPTION;
    uc_emu_stop(m->uc);
}

/*
 * in/out: emulated as Xen's PV emulation does (io.c); a port the guest may
 * not touch is a #GP.  Unicorn does not fault them at ring 3 and completes
 * the instruction after this hook: xc_fault_in_hook (exits.c) undoes it.
 */
static void io_fault(uc_engine *uc, struct xc_machine *m)
{
    xc_fault_in_hook(m, 13, 0);
}

uint32_t xc_hook_in(uc_engine *uc, uint32_t port, int size, void *data)
{
    struct xc_machine *m = data;
    uint64_t rax = 0;
    int ok = 0;
    uint32_t value = m->current ? xc_io_read(m, m->current, port, size, &ok) : 0;
    if (ok) {
        if (m->current->db_io)      /* emul-priv-op.c's check_guest_io_breakpoint */
            xc_db_io_check(m->current, port, size);
        return value;
    }
    uc_reg_read(uc, UC_X86_REG_RAX, &rax);
    io_fault(uc, m);
    return (uint32_t)rax;
}

void xc_hook_out(uc_engine *uc, uint32_t port, int size, uint32_t value, void *data)
{
    struct xc_machine *m = data;
    if (!m->current || !xc_io_write(m, m->current, port, size, value))
        io_fault(uc, m);
    else if (m->current->db_io)
        xc_db_io_check(m->current, port, size);
}

/* An opcode the CPU does not know: #UD for the guest (Unicorn reports it
 * here, not through the interrupt hook). */
bool xc_hook_invalid(uc_engine *uc, void *data)
{
    struct xc_machine *m = data;
    struct xc_vcpu *v = m->current;
    if (v && v->stop != XC_STOP_EXCEPTION && emulate_fsgsbase(m, v))
        return true;        /* one the engine did not decode: answered here */
    if (v) {
        v->vector = 6;
        v->error_code = 0;
        v->stop = XC_STOP_EXCEPTION;
    }
    return false;
}
