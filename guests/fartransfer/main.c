/*
 * fartransfer - far transfers and segment loads through every kind of
 * selector, each of which must end in a fault for this domain or in a
 * harmless transfer, never in anything that hurts the host.
 *
 * Phase 1 uses what the hypervisor accepts: a GDT frame filled with
 * DPL-3 segments (64-, 32- and 16-bit code, conforming, execute-only,
 * read-only data, not present) and installed with set_gdt, plus Xen's
 * reserved GDT page (ring-0 code and data at 0xe008/0xe010).  Phase 2
 * uses what no PV guest can install (Xen's check_descriptor refuses or
 * fixes them up: pv/descriptor-tables.c): call gates to ring 0 and 1,
 * interrupt and trap gates, TSS and LDT descriptors, ring-0 and ring-1
 * segments.  Only a host can write those into a live GDT frame
 * (tests/test_far_transfers.py does, to stand for a page-table breach);
 * (A call gate to its own code is left out: QEMU truncates rsp to 32 bits
 * on a same-ring call through a gate, so the domain crashes; the host test
 * checks that this crashes only that domain.)  Phase 2 runs when the command line has "phase2=1", after the guest has
 * printed "fartransfer: waiting" and blocked, and the host has written the
 * descriptors and woken it.
 *
 * Each attempt prints one line: what was tried, what happened (the
 * exception delivered at the instruction, or where the transfer went and
 * at which CPL), and whether that is what a Xen PV guest sees -- for
 * phase 2, what the CPU would deliver under Xen had the descriptor got
 * there.  Phase 1 compares the error code too (the selector's, RPL bits
 * clear, or 0 where the SDM gives 0: a null selector, a limit); phase 2
 * the vector only, as Xen's hardware would have seen other stacks.  The last
 * line is "fartransfer: N/M as on Xen, never left ring 3"; then poweroff.
 */
#include "lib.h"
#include "mm.h"
#include "traps.h"
#include "cmdline.h"

#define OK      (-1)            /* expected: the transfer happens */

/* Descriptors: limit 0xfffff, 4 KiB granularity; type in bits 40-43. */
#define SEG(type, dpl, flags) \
    (0xffffUL | (0xfUL << 48) | ((uint64_t)(type) << 40) | (1UL << 44) | \
     ((uint64_t)(dpl) << 45) | (1UL << 47) | ((uint64_t)(flags) << 52) | (1UL << 55))
#define L64     0x2             /* flags nibble: L */
#define D32     0x4             /* flags nibble: D/B */
#define CODE    0xb             /* execute/read, accessed */
#define CODE_XO 0x9             /* execute only */
#define CODE_C  0xf             /* conforming, execute/read */
#define DATA    0x3             /* read/write, accessed */
#define DATA_RO 0x1             /* read only */
#define NOT_PRESENT(d) ((d) & ~(1UL << 47))

/* The GDT the guest installs (entry: selector >> 3). */
enum {
    G_NP_CODE = 1, G_CODE64, G_DATA, G_CODE32, G_CODE16, G_CONFORMING,
    G_DATA_RO, G_CODE_XO, G_NP_DATA,
    /* phase 2: planted by the host (see tests/test_far_transfers.py) */
    P_GATE_XEN = 16, P_GATE_RING0 = 18, P_RING0_CODE = 22,
    P_RING0_DATA = 23, P_INT_GATE = 24, P_TRAP_GATE = 26, P_TSS = 28, P_LDT = 30,
    P_RING0_CONFORMING = 32, P_RING1_CODE = 33, P_GATE_RING1 = 34, P_GATE_NP = 36,
    P_GATE_BAD_HIGH = 38, P_GATE_CODE32 = 40, P_TASK_GATE = 42, P_GATE_DPL0 = 43,
    P_GATE16 = 45, P_MARK = 511,
};
#define SEL(entry) ((entry) << 3 | 3)

#define XEN_CS0 0xe008          /* Xen's ring-0 code and data */
#define XEN_DS0 0xe010
#define XEN_CS32 0xe023         /* FLAT_RING3_CS32 */

enum kind { LCALL, LJMP, IRET_CS, IRET_SS, LRET, MOV_SS, MOV_DS, LSS, POP_SS, INT_N };
static const char *const kind_name[] = {
    "lcall", "ljmp", "iretq to cs", "iretq with ss", "lretq to cs", "mov ss,",
    "mov ds,", "lss", "pop ss", "int",
};

struct attempt {
    enum kind kind;
    unsigned int sel;           /* selector, or the vector for INT_N */
    int expect;                 /* vector Xen gives, or OK */
    const char *what;
    int ec;                     /* its error code (phase 1; ANY_EC: not compared) */
};

/*
 * lss with REX.W takes an m16:64 pointer on Intel (Xen's hosts here), an
 * m16:32 one on AMD, as QEMU decodes it: the selector it loads is not the
 * one Intel's would, so its error code is not compared.
 */
#define ANY_EC  (-1)
static int check_ec;            /* phase 1: the error codes are compared too */

static const struct attempt phase1[] = {
    { LJMP, 0, X86_EXC_GP, "the null selector", 0x0 },
    { LCALL, 0, X86_EXC_GP, "the null selector", 0x0 },
    { LCALL, SEL(G_NP_CODE), X86_EXC_NP, "a not-present code segment", 0x8 },
    { LCALL, SEL(G_CODE64), OK, "its own 64-bit code segment", 0x0 },
    { LJMP, SEL(G_CONFORMING), OK, "its own conforming code segment", 0x0 },
    { LCALL, SEL(G_DATA), X86_EXC_GP, "a data segment", 0x18 },
    { LJMP, SEL(G_CODE32), X86_EXC_GP, "a 32-bit code segment, 64-bit offset (limit)", 0x0 },
    { LJMP, XEN_CS32, X86_EXC_GP, "Xen's FLAT_RING3_CS32, 64-bit offset (limit)", 0x0 },
    { LJMP, SEL(G_CODE16), X86_EXC_GP, "a 16-bit code segment (limit)", 0x0 },
    { LJMP, XEN_CS0, X86_EXC_GP, "Xen's ring-0 code segment", 0xe008 },
    { LCALL, XEN_CS0 | 3, X86_EXC_GP, "Xen's ring-0 code segment, RPL 3", 0xe008 },
    { LCALL, 0xe040, X86_EXC_GP, "the TSS selector (0xe040)", 0xe040 },
    { LCALL, 0xe800, X86_EXC_GP, "the hypervisor's TSS bytes (0xe800)", 0xe800 },
    { LCALL, 0xfff8, X86_EXC_GP, "the last GDT entry (an empty page)", 0xfff8 },
    { LCALL, 0x000f, X86_EXC_GP, "an LDT selector (no LDT)", 0xc },
    { IRET_CS, XEN_CS0, X86_EXC_GP, "Xen's ring-0 code (RPL 0)", 0xe008 },
    { IRET_CS, XEN_CS0 | 3, X86_EXC_GP, "Xen's ring-0 code, RPL 3", 0xe008 },
    { IRET_CS, SEL(G_NP_CODE), X86_EXC_NP, "a not-present code segment", 0x8 },
    { IRET_CS, SEL(G_CODE64), OK, "its own 64-bit code segment", 0x0 },
    { IRET_SS, XEN_DS0, X86_EXC_GP, "Xen's ring-0 data segment", 0xe010 },
    { IRET_SS, 0, X86_EXC_GP, "the null selector", 0x0 },
    { IRET_SS, SEL(G_DATA), OK, "its own data segment", 0x0 },
    { LRET, XEN_CS0, X86_EXC_GP, "Xen's ring-0 code (RPL 0)", 0xe008 },
    { LRET, SEL(G_CODE64), OK, "its own 64-bit code segment", 0x0 },
    { MOV_SS, XEN_DS0, X86_EXC_GP, "Xen's ring-0 data (RPL 0)", 0xe010 },
    { MOV_SS, XEN_DS0 | 3, X86_EXC_GP, "Xen's ring-0 data, RPL 3", 0xe010 },
    { MOV_SS, 0, X86_EXC_GP, "the null selector", 0x0 },
    { MOV_SS, SEL(G_DATA_RO), X86_EXC_GP, "a read-only data segment", 0x38 },
    { MOV_SS, SEL(G_NP_DATA), X86_EXC_SS, "a not-present data segment", 0x48 },
    { MOV_SS, SEL(G_CODE64), X86_EXC_GP, "a code segment", 0x10 },
    { MOV_SS, SEL(G_DATA), OK, "its own data segment", 0x0 },
    { LSS, XEN_DS0, X86_EXC_GP, "Xen's ring-0 data", ANY_EC },
    { POP_SS, SEL(G_DATA), X86_EXC_UD, "(invalid in 64-bit mode)", 0x0 },
    { MOV_DS, XEN_DS0, X86_EXC_GP, "Xen's ring-0 data", 0xe010 },
    { MOV_DS, SEL(G_CODE_XO), X86_EXC_GP, "an execute-only code segment", 0x40 },
    { MOV_DS, SEL(G_NP_DATA), X86_EXC_NP, "a not-present data segment", 0x48 },
    { MOV_DS, 0xfffb, X86_EXC_GP, "the last GDT entry (an empty page)", 0xfff8 },
    { INT_N, 0x80, X86_EXC_GP, "with no trap-table entry", 0x402 },
    { INT_N, 0x20, X86_EXC_GP, "with no trap-table entry", 0x102 },
    { INT_N, 0x0d, X86_EXC_GP, "the #GP vector (Xen's IDT: DPL 0)", 0x6a },
    { INT_N, 0x0e, X86_EXC_GP, "the #PF vector (Xen's IDT: DPL 0)", 0x72 },
    { INT_N, 0x08, X86_EXC_GP, "the #DF vector (Xen's IDT: DPL 0)", 0x42 },
    { INT_N, 0x02, X86_EXC_GP, "the NMI vector (Xen's IDT: DPL 0)", 0x12 },
    { INT_N, 0x03, X86_EXC_BP, "the #BP vector, long form (DPL 3)", 0x0 },
};

static const struct attempt phase2[] = {
    { LCALL, SEL(P_GATE_XEN), X86_EXC_GP, "a call gate to Xen's ring-0 code" },
    { LJMP, SEL(P_GATE_XEN), X86_EXC_GP, "a call gate to Xen's ring-0 code" },
    { LCALL, SEL(P_GATE_RING0), X86_EXC_GP, "a call gate to a ring-0 code segment" },
    { LCALL, SEL(P_GATE_RING1), X86_EXC_GP, "a call gate to a ring-1 code segment" },
    { LCALL, SEL(P_GATE_NP), X86_EXC_NP, "a not-present call gate" },
    { LCALL, SEL(P_GATE_BAD_HIGH), X86_EXC_GP, "a call gate, upper half not type 0" },
    { LCALL, SEL(P_GATE_CODE32), X86_EXC_GP, "a call gate to a 32-bit code segment" },
    { LCALL, SEL(P_GATE_DPL0), X86_EXC_GP, "a DPL-0 call gate" },
    { LCALL, SEL(P_GATE16), X86_EXC_GP, "a 16-bit call gate" },
    { LCALL, SEL(P_TASK_GATE), X86_EXC_GP, "a task gate" },
    { LCALL, SEL(P_INT_GATE), X86_EXC_GP, "an interrupt gate" },
    { LJMP, SEL(P_TRAP_GATE), X86_EXC_GP, "a trap gate" },
    { LCALL, SEL(P_TSS), X86_EXC_GP, "a TSS descriptor" },
    { LJMP, SEL(P_TSS), X86_EXC_GP, "a TSS descriptor" },
    { LCALL, SEL(P_LDT), X86_EXC_GP, "an LDT descriptor" },
    { LCALL, SEL(P_RING0_CODE) & ~3, X86_EXC_GP, "a ring-0 code segment" },
    { LJMP, SEL(P_RING1_CODE), X86_EXC_GP, "a ring-1 code segment" },
    { LCALL, SEL(P_RING0_CONFORMING), OK, "a conforming ring-0 code segment (CPL stays)" },
    { IRET_CS, SEL(P_RING0_CODE) & ~3, X86_EXC_GP, "a ring-0 code segment" },
    { IRET_CS, SEL(P_GATE_XEN), X86_EXC_GP, "a call gate" },
    { IRET_SS, SEL(P_RING0_DATA) & ~3, X86_EXC_GP, "a ring-0 data segment" },
    { LRET, SEL(P_RING0_CODE) & ~3, X86_EXC_GP, "a ring-0 code segment" },
    { MOV_SS, SEL(P_RING0_DATA) & ~3, X86_EXC_GP, "a ring-0 data segment" },
    { MOV_SS, SEL(P_TSS), X86_EXC_GP, "a TSS descriptor" },
    { MOV_DS, SEL(P_RING0_DATA), X86_EXC_GP, "a ring-0 data segment" },
    { MOV_DS, SEL(P_INT_GATE), X86_EXC_GP, "an interrupt gate" },
};

/* ---- the transfers ----------------------------------------------------------- */

/* lcall/ljmp take an m16:64 far pointer (REX.W: the offset is 64-bit). */
struct { uint64_t offset; uint16_t sel; } __attribute__((packed)) far_ptr;  /* named in asm */
volatile uint64_t landed_cs;            /* CS where a transfer arrived (0: none) */

/*
 * Where a successful transfer arrives: far_ret for lcall (back with
 * lretq), far_back for the rest (on to probe_resume in FLAT_KERNEL_CS).
 * Both record the CS they ran with.
 */
asm ( ".text\n"
      "far_ret:\n\t"
      "mov %cs, landed_cs(%rip)\n\t"
      "lretq\n"
      "far_back:\n\t"
      "mov %cs, landed_cs(%rip)\n\t"
      "pushq $0xe033\n\t"
      "pushq probe_resume(%rip)\n\t"
      "lretq\n" );
extern char far_ret[], far_back[];

#define CLOBBERS "rax", "rcx", "rdx", "r11", "memory"

static void do_far(enum kind kind, unsigned int sel)
{
    far_ptr.sel = sel;
    far_ptr.offset = (uint64_t)(kind == LCALL ? far_ret : far_back);
    if ( kind == LCALL )
        asm volatile ( PROBE_ARM "lea far_ptr(%%rip), %%rax\n\t"
                       PROBE_INSN(".byte 0x48, 0xff, 0x18")     /* lcall *(%%rax) */
                       ::: CLOBBERS );
    else
        asm volatile ( PROBE_ARM "lea far_ptr(%%rip), %%rax\n\t"
                       PROBE_INSN(".byte 0x48, 0xff, 0x28")     /* ljmp *(%%rax) */
                       ::: CLOBBERS );
}

/* iretq with cs = sel (ss the flat one), or with ss = sel (cs the flat one). */
static void do_iret(enum kind kind, unsigned int sel)
{
    uint64_t cs = kind == IRET_CS ? sel : FLAT_KERNEL_CS;
    uint64_t ss = kind == IRET_SS ? sel : FLAT_KERNEL_SS;
    uint64_t rip = kind == IRET_CS ? (uint64_t)far_back : 0;

    asm volatile ( PROBE_ARM
                   "test %[rip], %[rip]\n\t"
                   "jnz 3f\n\t"
                   "lea 2f(%%rip), %[rip]\n"
                   "3:\tmov %%rsp, %%rax\n\t"
                   "push %[ss]\n\t"
                   "push %%rax\n\t"
                   "pushfq\n\t"
                   "push %[cs]\n\t"
                   "push %[rip]\n\t"
                   PROBE_INSN("iretq")
                   : [rip] "+r" (rip) : [cs] "r" (cs), [ss] "r" (ss) : CLOBBERS );
}

static void do_lret(unsigned int sel)
{
    asm volatile ( PROBE_ARM
                   "push %[cs]\n\t"
                   "lea far_back(%%rip), %%rax\n\t"
                   "push %%rax\n\t"
                   PROBE_INSN("lretq")
                   :: [cs] "r" ((uint64_t)sel) : CLOBBERS );
}

static void do_load(enum kind kind, unsigned int sel)
{
    far_ptr.sel = sel;
    if ( kind == MOV_SS )
        asm volatile ( PROBE_ARM PROBE_INSN("mov %%esi, %%ss") :: "S" (sel) : CLOBBERS );
    else if ( kind == MOV_DS )
        asm volatile ( PROBE_ARM PROBE_INSN("mov %%esi, %%ds") :: "S" (sel) : CLOBBERS );
    else if ( kind == LSS )
        asm volatile ( PROBE_ARM "lea far_ptr(%%rip), %%rax\n\t"
                       "mov %%rsp, (%%rax)\n\t"
                       PROBE_INSN(".byte 0x48, 0x0f, 0xb2, 0x20")   /* lss (%%rax), %%rsp: unchanged if it works */
                       ::: CLOBBERS );
    else
        asm volatile ( PROBE_ARM "push %%rsi\n\t"
                       PROBE_INSN(".byte 0x17")            /* pop %%ss */
                       :: "S" ((uint64_t)sel) : CLOBBERS );
}

#define INT_CASE(n) \
    case n: asm volatile ( PROBE_ARM PROBE_INSN("int $" #n) ::: CLOBBERS ); break;

static void do_int(unsigned int vector)
{
    switch ( vector )
    {
        INT_CASE(0x80) INT_CASE(0x20) INT_CASE(0x0d) INT_CASE(0x0e)
        INT_CASE(0x08) INT_CASE(0x02) INT_CASE(0x03)
    }
}

/* Back to the flat selectors whatever an attempt left loaded. */
static unsigned int boot_ds;

static void restore_segments(void)
{
    asm volatile ( "mov %0, %%ss\n\t"
                   "mov %1, %%ds" :: "r" (FLAT_KERNEL_SS), "r" (boot_ds) : "memory" );
    probe_insn = 0;
}

/* ---- faults ------------------------------------------------------------------ */

static void install_traps(void)
{
    static const unsigned int vectors[] = {
        X86_EXC_DE, X86_EXC_UD, X86_EXC_NP, X86_EXC_SS, X86_EXC_GP, X86_EXC_PF,
        X86_EXC_TS, X86_EXC_DF, X86_EXC_BP,
    };

    if ( traps_install(vectors, ARRAY_SIZE(vectors), probe_trap) )
    {
        printk("fartransfer: set_trap_table failed\n");
        xen_shutdown(SHUTDOWN_crash);
    }
}

/* ---- attempts ---------------------------------------------------------------- */

static unsigned int attempts, as_xen, left_ring3;

static void run(const struct attempt *a)
{
    memset(&probe_seen, 0, sizeof(probe_seen));
    landed_cs = 0;
    if ( a->kind == LCALL || a->kind == LJMP )
        do_far(a->kind, a->sel);
    else if ( a->kind == IRET_CS || a->kind == IRET_SS )
        do_iret(a->kind, a->sel);
    else if ( a->kind == LRET )
        do_lret(a->sel);
    else if ( a->kind == INT_N )
        do_int(a->sel);
    else
        do_load(a->kind, a->sel);
    restore_segments();
}

static int outcome(const struct attempt *a, char *buf, size_t size)
{
    if ( probe_seen.hits )
    {
        /* Xen reports a fault at the instruction, a trap (#BP) after it */
        int at = probe_seen.rip == (probe_seen.vector == X86_EXC_BP ? probe_seen.resume : probe_seen.insn);

        snprintf(buf, size, "%s(0x%lx)%s", trap_name(probe_seen.vector), probe_seen.error_code,
                 at ? "" : " NOT WHERE XEN REPORTS IT");
        return at && (int)probe_seen.vector == a->expect &&
               (!check_ec || a->ec == ANY_EC || probe_seen.error_code == (unsigned long)a->ec);
    }
    if ( landed_cs && (landed_cs & 3) != 3 )
        left_ring3++;
    if ( landed_cs )
        snprintf(buf, size, "arrived, cs 0x%lx (CPL %lu)", landed_cs, landed_cs & 3);
    else
        snprintf(buf, size, "completed");
    return a->expect == OK && (!landed_cs || (landed_cs & 3) == 3);
}

static void report(const struct attempt *a)
{
    char got[64];
    int ok;

    run(a);
    ok = outcome(a, got, sizeof(got));
    attempts++;
    as_xen += ok;
    printk("fartransfer: [%2u] %s 0x%x (%s): %s: %s%s\n", attempts, kind_name[a->kind],
           a->sel, a->what, got, ok ? "as on Xen" : "NOT as on Xen, expected ",
           ok ? "" : a->expect == OK ? "the transfer" : trap_name(a->expect));
}

/* ---- the GDT ----------------------------------------------------------------- */

static volatile uint64_t *gdt;

static void install_gdt(void)
{
    static const uint64_t descs[] = {
        [G_NP_CODE] = NOT_PRESENT(SEG(CODE, 3, L64)),
        [G_CODE64] = SEG(CODE, 3, L64), [G_DATA] = SEG(DATA, 3, D32),
        [G_CODE32] = SEG(CODE, 3, D32), [G_CODE16] = SEG(CODE, 3, 0) & ~(1UL << 55),
        [G_CONFORMING] = SEG(CODE_C, 3, L64), [G_DATA_RO] = SEG(DATA_RO, 3, D32),
        [G_CODE_XO] = SEG(CODE_XO, 3, L64), [G_NP_DATA] = NOT_PRESENT(SEG(DATA, 3, D32)),
    };
    unsigned long frame;
    long rc;

    gdt = padding_alloc();
    memcpy((void *)gdt, descs, sizeof(descs));
    frame = virt_to_mfn((void *)gdt);
    /* A descriptor page may not be mapped writable (Xen: PGT_seg_desc_page). */
    rc = HYPERVISOR_update_va_mapping((unsigned long)gdt,
                                      ((pte_t)frame << PAGE_SHIFT) | PTE_RO, UVMF_INVLPG);
    if ( !rc )
        rc = _hypercall2(__HYPERVISOR_set_gdt, &frame, 512);
    if ( rc )
    {
        printk("fartransfer: set_gdt failed: %ld %s\n", rc, xen_errname(rc));
        xen_shutdown(SHUTDOWN_crash);
    }
}

static void wait_for_plant(void)
{
    printk("fartransfer: waiting: gdt frame 0x%lx, far_ret 0x%lx\n",
           virt_to_mfn((void *)gdt), (unsigned long)far_ret);
    while ( !gdt[P_MARK] )
        HYPERVISOR_sched_op(SCHEDOP_block, NULL);
}

void guest_main(start_info_t *si)
{
    char arg[16];
    unsigned int i;

    asm volatile ( "mov %%ds, %0" : "=r" (boot_ds) );
    probe_who = "fartransfer";
    install_traps();
    install_gdt();
    check_ec = 1;
    for ( i = 0; i < ARRAY_SIZE(phase1); i++ )
        report(&phase1[i]);
    check_ec = 0;
    if ( cmdline_get("phase2", arg, sizeof(arg)) )
    {
        wait_for_plant();
        for ( i = 0; i < ARRAY_SIZE(phase2); i++ )
            report(&phase2[i]);
    }
    printk("fartransfer: %u/%u as on Xen, %s\n", as_xen, attempts,
           left_ring3 ? "LEFT RING 3" : "never left ring 3");
    xen_shutdown(SHUTDOWN_poweroff);
}
