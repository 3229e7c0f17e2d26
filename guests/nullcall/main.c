/*
 * nullcall - the benchmark guest.  Its command line picks the work:
 *   loops=N   N xen_version(XENVER_version) hypercalls (the null hypercall)
 *   spin=N    N rounds of a fixed 5-instruction ALU loop (straight-line code)
 *   touch=R   R rounds of reading one byte from every page of the mapped
 *             start-of-day padding, with a TLB flush after each round
 *   mmu=N     N mmu_update batches of 32 entries remapping padding pages
 *   yield=N   N SCHEDOP_yield calls (each gives the CPU to the next domain)
 *   gntcopy=N N GNTTABOP_copy calls, each a page from grant gntref=R
 *             (default 0) of domain gntdom=D (default 1) into a padding
 *             page of its own
 *   idle=1    block (SCHEDOP_block) until an event comes, which none does:
 *             an idle domain beside others' work (the scheduler must pass
 *             it by at no cost); it powers off only if woken
 * then powers off.
 */
#include "lib.h"

#define MMUEXT_TLB_FLUSH_LOCAL_ 6
#define DOMID_SELF_ 0x7ff0
#define BATCH 32

static unsigned long param(const char *cmdline, const char *key)
{
    size_t len = strlen(key);
    unsigned long n = 0;
    const char *p = cmdline;

    for ( ; *p; p++ )
        if ( !memcmp(p, key, len) && p[len] == '=' )
            break;
    for ( p += *p ? len + 1 : 0; *p >= '0' && *p <= '9'; p++ )
        n = n * 10 + (*p - '0');
    return n;
}

/* The exact bytes the benchmark's raw-Unicorn baseline runs too. */
static void spin(unsigned long n)
{
    if ( n )
        asm volatile ( "1: add %%rbx, %%rax; xor %%rax, %%rbx; rol $7, %%rax;"
                       "dec %%rcx; jnz 1b"
                       : "+c" (n) : "a" (1UL), "b" (2UL) : "cc" );
}

/* The padding after the boot stack: mapped, writable, unused. */
static unsigned long pad_start(start_info_t *si)
{
    return si->pt_base + (si->nr_pt_frames + 2) * 4096;
}

static unsigned long pad_end(start_info_t *si)
{
    return (pad_start(si) + (512 << 10) + (4 << 20) - 1) & ~((4UL << 20) - 1);
}

static void touch(start_info_t *si, unsigned long rounds)
{
    struct { uint32_t cmd; uint32_t pad; uint64_t arg1, arg2; } flush = { MMUEXT_TLB_FLUSH_LOCAL_ };
    volatile unsigned char sink;

    while ( rounds-- )
    {
        for ( unsigned long va = pad_start(si); va < pad_end(si); va += 4096 )
            sink = *(volatile unsigned char *)va;
        _hypercall4(__HYPERVISOR_mmuext_op, &flush, 1, NULL, DOMID_SELF_);
    }
    (void)sink;
}

/* Remap BATCH padding pages onto themselves: full validation, no net change. */
static void mmu(start_info_t *si, unsigned long n)
{
    static struct { uint64_t ptr, val; } req[BATCH];
    unsigned long *l1 = (unsigned long *)(si->pt_base + (si->nr_pt_frames - 1) * 4096);
    unsigned long l1_mfn = ((unsigned long *)si->mfn_list)[(si->pt_base - 0xffffffff80000000UL) / 4096
                                                          + si->nr_pt_frames - 1];
    unsigned int first = ((pad_start(si) >> 12) & 511);

    for ( int i = 0; i < BATCH; i++ )
    {
        req[i].ptr = (l1_mfn << 12) + (first + i) * 8;
        req[i].val = l1[first + i];
    }
    while ( n-- )
        _hypercall4(__HYPERVISOR_mmu_update, req, BATCH, NULL, DOMID_SELF_);
}

/* struct gnttab_copy (public/grant_table.h), the x86_64 layout. */
struct copy_ptr { uint64_t ref_or_gmfn; uint16_t domid, offset; uint32_t pad; };
struct copy_op { struct copy_ptr source, dest; uint16_t len, flags; int16_t status; uint16_t pad; };

#define GNTTABOP_copy_ 5
#define GNTCOPY_source_gref_ 1

static void gntcopy(start_info_t *si, unsigned long n, unsigned long from, unsigned long ref)
{
    unsigned long pfn = (pad_start(si) - 0xffffffff80000000UL) / 4096;
    static struct copy_op op;

    op.source = (struct copy_ptr){ .ref_or_gmfn = ref, .domid = (uint16_t)from };
    op.dest = (struct copy_ptr){ .ref_or_gmfn = ((unsigned long *)si->mfn_list)[pfn],
                                 .domid = DOMID_SELF_ };
    op.len = 4096;
    op.flags = GNTCOPY_source_gref_;
    while ( n-- )
        if ( _hypercall3(__HYPERVISOR_grant_table_op, GNTTABOP_copy_, &op, 1) || op.status )
            xen_shutdown(SHUTDOWN_crash);
}

void guest_main(start_info_t *si)
{
    const char *cmdline = (const char *)si->cmd_line;
    unsigned long n = param(cmdline, "loops");

    while ( n-- )
        HYPERVISOR_xen_version(XENVER_version, NULL);
    spin(param(cmdline, "spin"));
    touch(si, param(cmdline, "touch"));
    mmu(si, param(cmdline, "mmu"));
    for ( n = param(cmdline, "yield"); n; n-- )
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    gntcopy(si, param(cmdline, "gntcopy"), param(cmdline, "gntdom") ?: 1, param(cmdline, "gntref"));
    if ( param(cmdline, "idle") )
        HYPERVISOR_sched_op(SCHEDOP_block, NULL);
    xen_shutdown(SHUTDOWN_poweroff);
}
