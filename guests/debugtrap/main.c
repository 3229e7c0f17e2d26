/*
 * debugtrap - the guest's own debug registers and #DB, as a Xen 4.17 PV
 * guest has them: reset values %dr6 = 0xffff0ff0 and %dr7 = 0x400 (Xen's
 * vcpu_initialise), set_debugreg's refusals (pv/misc-hypercalls.c), and a
 * #DB bounced to vector 1 for what the CPU (or, for I/O breakpoints, Xen's
 * I/O emulation) finds: an instruction breakpoint (a fault: rip at the
 * instruction, B0), passed once when the handler's iret sets RF; a data
 * write or read/write breakpoint (a trap: rip after the access, Bn), not
 * hit by a read when it watches writes; single step (BS, rip after the
 * instruction that follows the popf or iret that set TF, TF in the frame);
 * the MOV SS shadow deferring both a single step and a data breakpoint by
 * one instruction; an I/O breakpoint, refused (-EPERM) without CR4.DE and
 * firing after the `in` with it; a single-stepped store that hits a data
 * breakpoint raises one #DB with both BS and B1.  %dr6 accumulates (do_debug's
 * `dr6 |= hw & ~X86_DR6_DEFAULT`); the handler resets it with set_debugreg.
 *
 * One line per check, "debugtrap: [ n] what: as on Xen", then
 * "debugtrap: N/M as on Xen"; then poweroff.
 */
#include "lib.h"
#include "hypercall.h"
#include "traps.h"

#define EPERM           1
#define TF              0x100UL
#define RF              0x10000UL
#define DR6_DEFAULT     0xffff0ff0UL
#define DR6_BS          (1UL << 14)
#define CR4_DE          0x8UL
#define PHYSDEVOP_set_iopl 6

/* %dr7: Ln, then R/W and LEN of breakpoint n. */
#define DR7_L(n)            (1UL << (2 * (n)))
#define DR7_RW(n, rw)       ((unsigned long)(rw) << (16 + 4 * (n)))
#define DR7_LEN(n, len)     ((unsigned long)(len) << (18 + 4 * (n)))
#define RW_X 0
#define RW_W 1
#define RW_IO 2
#define RW_RW 3
#define LEN_1 0
#define LEN_2 1
#define LEN_4 3

volatile uint32_t watched;
volatile uint16_t ss_value;

/* The instructions under test, each at a label the checks compare with. */
extern char insn_target[], store_after[], read_after[], step_second[];
extern char movss_tf_after[], movss_db_after[], iret_tf_after[], io_after[];
extern char step_store_after[];
asm ( ".text\n"
      "insn_target: incq %rax\n\tret\n"
      "store_fn: movl $1, watched(%rip)\n"
      "store_after: nop\n\tret\n"
      "read_fn: movl watched(%rip), %eax\n"
      "read_after: nop\n\tret\n"
      "step_fn: pushfq\n\torq $0x100, (%rsp)\n\tpopfq\n\tnop\n"
      "step_second: nop\n\tret\n"
      "movss_tf_fn: movl %ss, %eax\n\tpushfq\n\torq $0x100, (%rsp)\n\tpopfq\n"
      "\tmovl %eax, %ss\n\tnop\n"
      "movss_tf_after: nop\n\tret\n"
      "movss_db_fn: movw ss_value(%rip), %ss\n\tnop\n"
      "movss_db_after: nop\n\tret\n"
      "iret_tf_fn: int3\n\tnop\n"
      "iret_tf_after: nop\n\tret\n"
      "step_store_fn: pushfq\n\torq $0x100, (%rsp)\n\tpopfq\n"
      "\tmovl $2, watched(%rip)\n"
      "step_store_after: nop\n\tret\n"
      "io_fn: inb $0x80, %al\n"
      "io_after: nop\n\tret\n" );

#define CALL(fn) asm volatile ( "call " #fn : : : "rax", "memory" )

static struct {
    int hits;
    unsigned long rip, dr6, frame_tf;
    int resume_rf;          /* return to the breakpoint with RF set */
    int bp_sets_tf;         /* #BP: return with TF set */
} db;

static long set_dr(unsigned int reg, unsigned long value)
{
    return _hypercall2(__HYPERVISOR_set_debugreg, reg, value);
}

static unsigned long get_dr(unsigned int reg)
{
    return _hypercall1(__HYPERVISOR_get_debugreg, reg);
}

static void on_trap(struct cpu_regs *regs)
{
    if ( regs->vector == X86_EXC_BP && db.bp_sets_tf )
    {
        regs->rflags |= TF;
        return;
    }
    if ( regs->vector != X86_EXC_DB )
    {
        printk("debugtrap: unexpected %s at 0x%lx\n", trap_name(regs->vector), regs->rip);
        xen_shutdown(SHUTDOWN_crash);
    }
    if ( !db.hits++ )
    {
        db.rip = regs->rip;
        db.dr6 = get_dr(6);
        db.frame_tf = regs->rflags & TF;
    }
    set_dr(6, 0);                           /* back to X86_DR6_DEFAULT */
    regs->rflags &= ~TF;
    if ( db.resume_rf && db.hits < 3 )
        regs->rflags |= RF;
    else
        set_dr(7, 0);                       /* an instruction breakpoint is a fault */
}

static unsigned int checks, as_xen;

static void check(int ok, const char *what)
{
    checks++;
    as_xen += !!ok;
    printk("debugtrap: [%2u] %s: %s (hits %d, rip 0x%lx, dr6 0x%lx)\n", checks, what,
           ok ? "as on Xen" : "NOT as on Xen", db.hits, db.rip, db.dr6);
}

static void arm(unsigned int n, unsigned long addr, unsigned long dr7)
{
    memset(&db, 0, sizeof(db));
    set_dr(n, addr);
    if ( set_dr(7, dr7) )
        printk("debugtrap: set_debugreg(7, 0x%lx) refused\n", dr7);
}

static void registers(void)
{
    check(get_dr(6) == DR6_DEFAULT && get_dr(7) == 0x400, "reset %dr6 0xffff0ff0, %dr7 0x400");
    check(set_dr(7, 0x2000) == -EPERM, "%dr7.GD refused (-EPERM)");
    check(set_dr(7, DR7_L(0) | DR7_RW(0, RW_IO)) == -EPERM,
          "an I/O breakpoint without CR4.DE refused (-EPERM)");
}

static void breakpoints(void)
{
    arm(0, (unsigned long)insn_target, DR7_L(0));
    CALL(insn_target);
    check(db.hits == 1 && db.rip == (unsigned long)insn_target && (db.dr6 & 0xf) == 1,
          "instruction breakpoint: a fault at the instruction, B0");

    arm(0, (unsigned long)insn_target, DR7_L(0));
    db.resume_rf = 1;
    CALL(insn_target);
    check(db.hits == 1 && db.rip == (unsigned long)insn_target,
          "instruction breakpoint resumed with RF: passed once");
    set_dr(7, 0);

    arm(0, (unsigned long)insn_target, 0);
    CALL(insn_target);
    check(db.hits == 0, "a breakpoint %dr7 does not enable: no #DB");

    arm(1, (unsigned long)&watched, DR7_L(1) | DR7_RW(1, RW_W) | DR7_LEN(1, LEN_4));
    CALL(store_fn);
    check(db.hits == 1 && db.rip == (unsigned long)store_after && (db.dr6 & 0xf) == 2,
          "data write breakpoint: a trap after the store, B1");

    arm(1, (unsigned long)&watched, DR7_L(1) | DR7_RW(1, RW_W) | DR7_LEN(1, LEN_4));
    CALL(read_fn);
    set_dr(7, 0);
    check(db.hits == 0, "a write breakpoint is not hit by a read");

    arm(2, (unsigned long)&watched + 2, DR7_L(2) | DR7_RW(2, RW_RW) | DR7_LEN(2, LEN_1));
    CALL(read_fn);
    check(db.hits == 1 && db.rip == (unsigned long)read_after && (db.dr6 & 0xf) == 4,
          "read/write breakpoint on a byte of the read: B2");
}

static void single_step(void)
{
    memset(&db, 0, sizeof(db));
    CALL(step_fn);
    check(db.hits == 1 && db.rip == (unsigned long)step_second && (db.dr6 & DR6_BS) &&
          db.frame_tf, "popf sets TF: #DB after the next instruction, BS, TF in the frame");

    memset(&db, 0, sizeof(db));
    db.bp_sets_tf = 1;
    CALL(iret_tf_fn);
    check(db.hits == 1 && db.rip == (unsigned long)iret_tf_after && (db.dr6 & DR6_BS),
          "iret sets TF: #DB after the first instruction back");

    memset(&db, 0, sizeof(db));
    CALL(movss_tf_fn);
    check(db.hits == 1 && db.rip == (unsigned long)movss_tf_after,
          "single step over mov %ss: deferred one instruction");

    arm(1, (unsigned long)&watched, DR7_L(1) | DR7_RW(1, RW_W) | DR7_LEN(1, LEN_4));
    CALL(step_store_fn);
    set_dr(7, 0);
    check(db.hits == 1 && db.rip == (unsigned long)step_store_after &&
          (db.dr6 & (DR6_BS | 0xf)) == (DR6_BS | 2),
          "a single-stepped store hitting a breakpoint: one #DB, BS and B1");

    asm volatile ( "movw %%ss, %0" : "=m" (ss_value) );
    arm(3, (unsigned long)&ss_value, DR7_L(3) | DR7_RW(3, RW_RW) | DR7_LEN(3, LEN_2));
    CALL(movss_db_fn);
    set_dr(7, 0);
    check(db.hits == 1 && db.rip == (unsigned long)movss_db_after && (db.dr6 & 0xf) == 8,
          "data breakpoint on mov (mem), %ss: deferred one instruction, B3");
}

static void io_breakpoint(void)
{
    uint32_t iopl = 1;
    unsigned long cr4;
    unsigned long dr7 = DR7_L(3) | DR7_RW(3, RW_IO) | DR7_LEN(3, LEN_1);

    _hypercall2(__HYPERVISOR_physdev_op, PHYSDEVOP_set_iopl, &iopl);
    asm volatile ( "mov %%cr4, %0" : "=r" (cr4) );
    asm volatile ( "mov %0, %%cr4" : : "r" (cr4 | CR4_DE) );
    arm(3, 0x80, dr7);
    check(get_dr(7) == (dr7 | 0x400), "with CR4.DE an I/O breakpoint is taken, read back");
    memset(&db, 0, sizeof(db));
    CALL(io_fn);
    set_dr(7, 0);
    check(db.hits == 1 && db.rip == (unsigned long)io_after && (db.dr6 & 0xf) == 8,
          "I/O breakpoint: a trap after the in, B3");
    asm volatile ( "mov %0, %%cr4" : : "r" (cr4) );
}

void guest_main(start_info_t *si)
{
    static const unsigned int vectors[] = { X86_EXC_DB, X86_EXC_BP, X86_EXC_GP, X86_EXC_UD };

    if ( traps_install(vectors, ARRAY_SIZE(vectors), on_trap) )
    {
        printk("debugtrap: set_trap_table failed\n");
        xen_shutdown(SHUTDOWN_crash);
    }
    registers();
    breakpoints();
    single_step();
    io_breakpoint();
    printk("debugtrap: %u/%u as on Xen\n", as_xen, checks);
    xen_shutdown(SHUTDOWN_poweroff);
}
