/*
 * fsgsbase - the guest-controllable CR4 bits and RD/WR{FS,GS}BASE, as a
 * Xen 4.17 PV guest has them.  A CR4 write never fails: the guest keeps
 * TSD, DE and FSGSBASE (its CPUID policy has TSC, DE and FSGSBASE) and
 * loses OSXSAVE (no XSAVE in the policy) and PGE (Xen's): pv_fixup_guest_cr4
 * in pv/domain.c.  The CPU's CR4.FSGSBASE follows the guest's (pv_make_cr4),
 * so with it clear RD/WR{FS,GS}BASE are #UD; with it set they read and
 * write the running mode's base, a 32-bit operand zero-extends, and a
 * non-canonical base is #GP(0) with the base unchanged.  The GS base
 * written is the kernel's: MSR_SHADOW_GS_BASE and set_segment_base's
 * SEGBASE_GS_USER keep the user's apart, SEGBASE_GS_KERNEL changes the
 * one rdgsbase reads.
 *
 * One line per check, "fsgsbase: [ n] what: as on Xen", then
 * "fsgsbase: N/M as on Xen"; then poweroff.
 */
#include "lib.h"
#include "hypercall.h"
#include "traps.h"

#define CR4_TSD         0x4UL
#define CR4_DE          0x8UL
#define CR4_PGE         0x80UL
#define CR4_FSGSBASE    (1UL << 16)
#define CR4_OSXSAVE     (1UL << 18)
#define MSR_FS_BASE     0xc0000100
#define MSR_GS_BASE     0xc0000101
#define MSR_SHADOW_GS_BASE 0xc0000102
#define SEGBASE_GS_USER   1
#define SEGBASE_GS_KERNEL 2
#define BAD             0x8000000000000000UL   /* non-canonical */
#define BASE_A          0x00007f0012345000UL
#define BASE_B          0xffff888000001000UL
#define BASE_USER       0x00007f00aaaa0000UL

static unsigned int checks, as_xen;

static void check(int ok, const char *what)
{
    checks++;
    as_xen += !!ok;
    printk("fsgsbase: [%2u] %s: %s\n", checks, what, ok ? "as on Xen" : "NOT as on Xen");
}

static unsigned long read_cr4(void)
{
    unsigned long cr4;
    asm volatile ( "mov %%cr4, %0" : "=r" (cr4) );
    return cr4;
}

static void write_cr4(unsigned long cr4)
{
    asm volatile ( "mov %0, %%cr4" : : "r" (cr4) : "memory" );
}

static unsigned long rdmsr(unsigned int msr)
{
    uint32_t lo, hi;
    asm volatile ( "rdmsr" : "=a" (lo), "=d" (hi) : "c" (msr) );
    return (unsigned long)hi << 32 | lo;
}

/* One instruction under a probe: the vector it raised (-1: none). */
#define PROBED(insn, ...) ({                                                  \
    memset(&probe_seen, 0, sizeof(probe_seen));                               \
    asm volatile ( PROBE_ARM PROBE_INSN(insn) : __VA_ARGS__ : : "r11", "memory" ); \
    probe_seen.hits ? (int)probe_seen.vector : -1; })

static int rdfsbase(unsigned long *v)
{
    unsigned long x = 0;
    int vec = PROBED("rdfsbase %0", "+r" (x));
    *v = x;
    return vec;
}

static int rdgsbase(unsigned long *v)
{
    unsigned long x = 0;
    int vec = PROBED("rdgsbase %0", "+r" (x));
    *v = x;
    return vec;
}

static int wrfsbase(unsigned long v)
{
    return PROBED("wrfsbase %0", "+r" (v));
}

static int wrgsbase(unsigned long v)
{
    return PROBED("wrgsbase %0", "+r" (v));
}

static void policy_and_cr4(void)
{
    uint32_t a = 7, b, c = 0, d;
    unsigned long cr4 = read_cr4(), v;

    asm volatile ( "cpuid" : "+a" (a), "=b" (b), "+c" (c), "=d" (d) );
    check(b & 1, "CPUID.7.0:EBX.FSGSBASE offered");
    check(!(cr4 & CR4_FSGSBASE) && rdfsbase(&v) == X86_EXC_UD,
          "CR4.FSGSBASE clear at start: rdfsbase is #UD");
    write_cr4(cr4 | CR4_FSGSBASE | CR4_TSD | CR4_DE | CR4_OSXSAVE | CR4_PGE);
    check(read_cr4() == (cr4 | CR4_FSGSBASE | CR4_TSD | CR4_DE),
          "CR4 write: TSD, DE, FSGSBASE kept; OSXSAVE, PGE not the guest's");
    write_cr4(cr4 | CR4_FSGSBASE);
}

static void bases(void)
{
    unsigned long fs = 0, gs = 0, user = rdmsr(MSR_SHADOW_GS_BASE);

    check(wrfsbase(BASE_A) == -1 && rdfsbase(&fs) == -1 && fs == BASE_A &&
          rdmsr(MSR_FS_BASE) == BASE_A, "wrfsbase/rdfsbase, MSR_FS_BASE agrees");
    check(wrgsbase(BASE_B) == -1 && rdgsbase(&gs) == -1 && gs == BASE_B &&
          rdmsr(MSR_GS_BASE) == BASE_B && rdmsr(MSR_SHADOW_GS_BASE) == user,
          "wrgsbase/rdgsbase: the kernel's GS base, the user's untouched");
    check(wrfsbase(BAD) == X86_EXC_GP && probe_seen.error_code == 0 &&
          probe_seen.rip == probe_seen.insn && rdfsbase(&fs) == -1 && fs == BASE_A,
          "wrfsbase non-canonical: #GP(0), base unchanged");
    check(wrgsbase(BAD) == X86_EXC_GP && probe_seen.error_code == 0 &&
          rdgsbase(&gs) == -1 && gs == BASE_B, "wrgsbase non-canonical: #GP(0), base unchanged");
}

static void operand_size(void)
{
    unsigned long v = 0xffffffff00000000UL | 0x5000;
    uint32_t low = 0;

    memset(&probe_seen, 0, sizeof(probe_seen));
    asm volatile ( PROBE_ARM PROBE_INSN("wrfsbase %k0") : "+r" (v) : : "r11", "memory" );
    check(!probe_seen.hits && rdmsr(MSR_FS_BASE) == 0x5000, "wrfsbase %e..: zero-extended");
    asm volatile ( PROBE_ARM PROBE_INSN("rdgsbase %k0") : "+r" (low) : : "r11", "memory" );
    check(!probe_seen.hits && low == (uint32_t)BASE_B, "rdgsbase %e..: the low 32 bits");
}

static void other_mode(void)
{
    unsigned long gs = 0;
    long rc = _hypercall2(__HYPERVISOR_set_segment_base, SEGBASE_GS_USER, BASE_USER);

    check(!rc && rdmsr(MSR_SHADOW_GS_BASE) == BASE_USER && rdgsbase(&gs) == -1 && gs == BASE_B,
          "set_segment_base(GS_USER): the shadow base, not rdgsbase's");
    rc = _hypercall2(__HYPERVISOR_set_segment_base, SEGBASE_GS_KERNEL, BASE_A);
    check(!rc && rdgsbase(&gs) == -1 && gs == BASE_A && rdmsr(MSR_SHADOW_GS_BASE) == BASE_USER,
          "set_segment_base(GS_KERNEL): what rdgsbase reads");
    wrgsbase(BASE_B);
    write_cr4(read_cr4() & ~CR4_FSGSBASE);
    check(rdgsbase(&gs) == X86_EXC_UD && wrgsbase(0) == X86_EXC_UD &&
          rdmsr(MSR_GS_BASE) == BASE_B, "CR4.FSGSBASE cleared again: #UD");
}

void guest_main(start_info_t *si)
{
    static const unsigned int vectors[] = { X86_EXC_UD, X86_EXC_GP, X86_EXC_PF };

    probe_who = "fsgsbase";
    if ( traps_install(vectors, ARRAY_SIZE(vectors), probe_trap) )
    {
        printk("fsgsbase: set_trap_table failed\n");
        xen_shutdown(SHUTDOWN_crash);
    }
    policy_and_cr4();
    bases();
    operand_size();
    other_mode();
    printk("fsgsbase: %u/%u as on Xen\n", as_xen, checks);
    xen_shutdown(SHUTDOWN_poweroff);
}
