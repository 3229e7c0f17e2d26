/*
 * traps - install a trap table and take five exceptions, each handled and
 * returned from with HYPERVISOR_iret.
 *
 * The table (HYPERVISOR_set_trap_table) names a handler for #PF, #DE,
 * #GP, #BP and #UD.  Then each is raised by one instruction, in that order:
 *
 *   #PF  a read of 0x100000000: the lower canonical half, outside the
 *        start-of-day region, so not mapped (error code 0: a read of a
 *        not-present page by the guest kernel; cr2 in shared_info)
 *   #DE  div by zero
 *   #GP  hlt: the PV kernel runs in ring 3; Xen does not emulate hlt
 *   #BP  int3: a trap, reported with rip after the instruction
 *   #UD  ud2 (not followed by "xen", so not Xen's emulation prefix)
 *
 * The handler records Xen's frame and the event mask, and resumes after
 * the instruction.  Each line printed checks the frame against Xen's
 * x86_64 PV ABI (see lib/traps.h): vector, error code, rip, the cs slot
 * (kernel selector with RPL 0, saved upcall mask in bits 32-39), rflags.IF
 * (= !saved mask), rsp and ss at the fault, cr2, whether events were
 * masked on entry (trap_info flag 4, TI_SET_IF), whether iret restored the
 * mask from rflags.IF, and that rax, rcx and r11 came back intact.
 *
 * #PF and #DE run with events unmasked (every port masked, so no upcall
 * can come), so that flag 4 on #PF is seen to mask events and its absence
 * on #DE not to; #GP, #BP and #UD run masked, as the guest starts.
 *
 * Success: "traps: all 5 handled", SHUTDOWN_poweroff.  Anything else is
 * reported and the guest shuts down with SHUTDOWN_crash.
 */
#include "lib.h"
#include "mm.h"
#include "traps.h"

#define UNMAPPED_VA     0x100000000UL

#define MAGIC_RAX       0x5241585241585241UL
#define MAGIC_RCX       0x5243585243585243UL
#define MAGIC_R11       0x5231315231315231UL

/* Registers read back after the probed instruction. */
struct probe_out {
    uint64_t rax, rcx, r11, r8, rdx;
};

/*
 * Arm a probe, load rax/rcx/r11 with magic values, rdx with 0 and r8 with
 * r8val, execute insn and read the registers back.
 */
#define RUN_PROBE(insn, r8val, o)                                       \
    asm volatile ( PROBE_ARM                                            \
                   "movabs %[mrax], %%rax\n\t"                          \
                   "movabs %[mrcx], %%rcx\n\t"                          \
                   "movabs %[mr11], %%r11\n\t"                          \
                   "xor %%edx, %%edx\n\t"                               \
                   "mov %[r8v], %%r8\n\t"                               \
                   PROBE_INSN(insn)                                     \
                   "mov %%rax, %[orax]\n\t"                             \
                   "mov %%rcx, %[orcx]\n\t"                             \
                   "mov %%r11, %[or11]\n\t"                             \
                   "mov %%r8, %[or8]\n\t"                               \
                   "mov %%rdx, %[ordx]"                                 \
                   : [orax] "=m" ((o)->rax), [orcx] "=m" ((o)->rcx),    \
                     [or11] "=m" ((o)->r11), [or8] "=m" ((o)->r8),      \
                     [ordx] "=m" ((o)->rdx)                             \
                   : [mrax] "i" (MAGIC_RAX), [mrcx] "i" (MAGIC_RCX),    \
                     [mr11] "i" (MAGIC_R11), [r8v] "r" (r8val)          \
                   : "rax", "rcx", "rdx", "r8", "r11", "memory" )

struct test {
    unsigned int vector;
    uint8_t ti_flags;           /* trap_info.flags */
    int unmasked;               /* run with events unmasked */
    int is_trap;                /* Xen reports rip after the instruction */
    uint64_t error_code;        /* expected (0 where there is none) */
};

static const struct test tests[] = {
    { X86_EXC_PF, 0 | TI_FLAG_IF, 1, 0, 0 },
    { X86_EXC_DE, 0,              1, 0, 0 },
    { X86_EXC_GP, 0 | TI_FLAG_IF, 0, 0, 0 },
    { X86_EXC_BP, 3,              0, 1, 0 },
    { X86_EXC_UD, 0,              0, 0, 0 },
};

static shared_info_t *shinfo;

/* What the handler saw. */
static struct {
    int hits;
    struct cpu_regs frame;
    unsigned long insn;         /* probe_insn when it arrived */
    unsigned long cr2;
    int mask_on_entry;          /* -1: no shared_info */
} rec;

static void on_trap(struct cpu_regs *regs)
{
    if ( !probe_insn )
    {
        printk("traps: unexpected %s at rip 0x%lx (error code 0x%lx)\n",
               trap_name(regs->vector), regs->rip, regs->error_code);
        xen_shutdown(SHUTDOWN_crash);
    }
    rec.hits++;
    rec.frame = *regs;
    rec.insn = probe_insn;
    rec.cr2 = shinfo ? shinfo->vcpu_info[0].arch.cr2 : 0;
    rec.mask_on_entry = shinfo ? shinfo->vcpu_info[0].evtchn_upcall_mask : -1;

    regs->rip = probe_resume;           /* skip the faulting instruction */
    probe_insn = 0;
}

static void trigger(unsigned int vector, struct probe_out *o)
{
    switch ( vector )
    {
    case X86_EXC_PF:
        RUN_PROBE("movq (%%r8), %%r8", UNMAPPED_VA, o);
        break;
    case X86_EXC_UD:
        RUN_PROBE("ud2", 0UL, o);
        break;
    case X86_EXC_GP:
        RUN_PROBE("hlt", 0UL, o);
        break;
    case X86_EXC_BP:
        RUN_PROBE("int3", 0UL, o);
        break;
    case X86_EXC_DE:
        RUN_PROBE("divq %%r8", 0UL, o);         /* rdx:rax / 0 */
        break;
    }
}

/* ---- events: unmask without letting any upcall in ------------------------ */

static unsigned long saved_port_mask[ARRAY_SIZE(((shared_info_t *)0)->evtchn_mask)];

static void events_unmask(void)
{
    unsigned int i;

    for ( i = 0; i < ARRAY_SIZE(saved_port_mask); i++ )
    {
        saved_port_mask[i] = shinfo->evtchn_mask[i];
        shinfo->evtchn_mask[i] = ~0UL;  /* no port can raise an upcall */
    }
    asm volatile ( "" ::: "memory" );
    shinfo->vcpu_info[0].evtchn_upcall_pending = 0;
    asm volatile ( "" ::: "memory" );
    shinfo->vcpu_info[0].evtchn_upcall_mask = 0;
    asm volatile ( "" ::: "memory" );
}

static void events_mask(void)
{
    unsigned int i;

    shinfo->vcpu_info[0].evtchn_upcall_mask = 1;
    asm volatile ( "" ::: "memory" );
    for ( i = 0; i < ARRAY_SIZE(saved_port_mask); i++ )
        shinfo->evtchn_mask[i] = saved_port_mask[i];
}

/* ---- one test ------------------------------------------------------------ */

static char why[512];
static size_t why_len;

/* Append to why[], which explains a failed check. */
static void note(const char *fmt, ...)
{
    va_list ap;

    if ( why_len >= sizeof(why) - 1 )
        return;
    va_start(ap, fmt);
    why_len += vsnprintf(why + why_len, sizeof(why) - why_len, fmt, ap);
    va_end(ap);
    if ( why_len > sizeof(why) - 1 )
        why_len = sizeof(why) - 1;
}

static void mismatch(const char *what, unsigned long got, unsigned long want)
{
    note("; %s 0x%lx, expected 0x%lx", what, got, want);
}

static int run_test(const struct test *t)
{
    const char *name = trap_name(t->vector);
    struct probe_out o;
    const struct cpu_regs *f = &rec.frame;
    unsigned int before = t->unmasked ? 0 : 1, saved, want_entry;
    int mask_after = -1;

    memset(&rec, 0, sizeof(rec));
    why_len = 0;
    why[0] = '\0';

    if ( shinfo && t->unmasked )
        events_unmask();
    trigger(t->vector, &o);
    if ( shinfo )
    {
        mask_after = shinfo->vcpu_info[0].evtchn_upcall_mask;
        if ( t->unmasked )
            events_mask();
    }

    if ( rec.hits != 1 )
    {
        printk("trap %s NOT handled: the handler ran %d times\n", name, rec.hits);
        return 0;
    }

    saved = FRAME_CS_SAVED_MASK(f->cs);
    want_entry = (t->ti_flags & TI_FLAG_IF) ? 1 : before;

    if ( f->vector != t->vector )
        mismatch("entered through the stub for vector", f->vector, t->vector);
    if ( f->error_code != t->error_code )
        mismatch("error code", f->error_code, t->error_code);
    if ( f->rip != (t->is_trap ? probe_resume : rec.insn) )
        mismatch("rip", f->rip, t->is_trap ? probe_resume : rec.insn);
    if ( FRAME_CS_SELECTOR(f->cs) != (FLAT_KERNEL_CS & ~3) )
        mismatch("cs selector (RPL 0: kernel mode)", FRAME_CS_SELECTOR(f->cs),
                 FLAT_KERNEL_CS & ~3);
    if ( (f->ss & 0xffff) != FLAT_KERNEL_SS )
        mismatch("ss", f->ss & 0xffff, FLAT_KERNEL_SS);
    if ( f->rsp != probe_sp )
        mismatch("rsp", f->rsp, probe_sp);
    if ( shinfo && saved != before )
        mismatch("saved upcall mask (cs bits 32-39)", saved, before);
    if ( !!(f->rflags & X86_EFLAGS_IF) != !saved )
        mismatch("rflags.IF", !!(f->rflags & X86_EFLAGS_IF), !saved);
    if ( t->vector == X86_EXC_PF && rec.cr2 != UNMAPPED_VA )
        mismatch("cr2 (vcpu_info.arch.cr2)", rec.cr2, UNMAPPED_VA);
    if ( shinfo && rec.mask_on_entry != (int)want_entry )
        mismatch("upcall mask in the handler", rec.mask_on_entry, want_entry);
    if ( shinfo && mask_after != (int)before )
        mismatch("upcall mask after iret", mask_after, before);
    if ( o.rax != MAGIC_RAX )
        mismatch("rax after iret", o.rax, MAGIC_RAX);
    if ( o.rcx != MAGIC_RCX )
        mismatch("rcx after iret", o.rcx, MAGIC_RCX);
    if ( o.r11 != MAGIC_R11 )
        mismatch("r11 after iret", o.r11, MAGIC_R11);
    if ( t->vector == X86_EXC_PF && o.r8 != UNMAPPED_VA )
        mismatch("r8 after iret", o.r8, UNMAPPED_VA);
    if ( !shinfo )
        note("; shared_info not mapped: event mask and cr2 unchecked");

    if ( why_len )
    {
        printk("trap %s NOT handled correctly: error 0x%lx rip=0x%lx cs=0x%lx "
               "rflags=0x%lx%s\n", name, f->error_code, f->rip, f->cs,
               f->rflags, why);
        return 0;
    }

    if ( t->vector == X86_EXC_PF )
        note(" cr2=0x%lx", rec.cr2);
    printk("trap %s handled: error 0x%lx%s rip=0x%lx (%s; %lu-byte instruction "
           "skipped) cs=0x%lx rflags.IF=%d, events %s on entry, iret ok\n",
           name, f->error_code, why, f->rip,
           t->is_trap ? "after the int3" : "the faulting instruction",
           probe_resume - rec.insn, f->cs, !!(f->rflags & X86_EFLAGS_IF),
           rec.mask_on_entry ? "masked" : "unmasked");
    return 1;
}

void guest_main(start_info_t *si)
{
    struct trap_info table[ARRAY_SIZE(tests) + 1];
    unsigned long sh_va = (unsigned long)padding_alloc();
    unsigned int i, ok = 0;
    long rc;

    printk("traps: start_info %p, pt_base 0x%lx, nr_pt_frames %lu\n",
           si, si->pt_base, si->nr_pt_frames);

    rc = map_shared_info(sh_va, &shinfo);
    printk("traps: map shared_info (maddr 0x%lx) at 0x%lx: %ld %s\n",
           si->shared_info, sh_va, rc, xen_errname(rc));

    memset(table, 0, sizeof(table));    /* the last entry (address 0) ends it */
    for ( i = 0; i < ARRAY_SIZE(tests); i++ )
    {
        table[i].vector = tests[i].vector;
        table[i].flags = tests[i].ti_flags;
        table[i].cs = FLAT_KERNEL_CS;
        table[i].address = trap_entry[tests[i].vector];
    }
    trap_handler = on_trap;

    rc = HYPERVISOR_set_trap_table(table);
    printk("traps: set_trap_table(#PF #DE #GP #BP #UD): %ld %s\n",
           rc, xen_errname(rc));
    if ( rc )
    {
        printk("traps: no trap table, so no exception can be handled: "
               "0 of %u handled\n", (unsigned int)ARRAY_SIZE(tests));
        xen_shutdown(SHUTDOWN_crash);
    }

    for ( i = 0; i < ARRAY_SIZE(tests); i++ )
        ok += run_test(&tests[i]);

    if ( ok == ARRAY_SIZE(tests) )
    {
        printk("traps: all %u handled\n", ok);
        xen_shutdown(SHUTDOWN_poweroff);
    }
    printk("traps: %u of %u handled correctly\n", ok, (unsigned int)ARRAY_SIZE(tests));
    xen_shutdown(SHUTDOWN_crash);
}
