/*
 * hostile - try to break out of the domain's memory and privilege, one
 * way after another, and report how each attempt was refused.
 *
 * Each attempt prints one line: what was tried, what came back, and
 * whether that is the refusal Xen gives (the expected errors are Xen's:
 * xen/arch/x86/mm.c, pv/descriptor-tables.c, pv/traps.c).  An attempt
 * that succeeds is undone where possible and reported as a violation.
 * The last line is "hostile: N/M attempts refused", N counting only the
 * expected refusals; the guest powers off either way.
 *
 * Frames used: mfn 0 (never a guest's: Xen gives the low 1 MiB to DOMID_IO,
 * hence EPERM), a frame the domain does not own (above its own, checked
 * against its p2m: another domain's or a free one is get_page_from_l1e's
 * could_not_pin, EBUSY; none at all is I/O memory, EPERM), its own bootstrap page tables, and
 * fresh frames from the start-of-day padding.
 *
 * Three attempts are plain memory accesses that must page-fault; they need
 * the #PF handler installed with set_trap_table first, and count as
 * refused only if the #PF arrived at the faulting instruction.
 */
#include "lib.h"
#include "mm.h"
#include "traps.h"

#define XEN_RESERVED_VA     (HYPERVISOR_VIRT_START + 0x1000)
#define XEN_DIRECTMAP_VA    0xffff830000000000UL   /* Xen's private 1:1 map */

/* Xen's own ring-0 code selector: GDT entry FIRST_RESERVED_GDT_ENTRY + 1. */
#define XEN_HYPERVISOR_CS   (((FIRST_RESERVED_GDT_ENTRY + 1) << 3) | 0)

/* Descriptors (8 bytes, native format). */
#define DESC_DPL(d)         (((d) >> 45) & 3)
/* 64-bit code segment, DPL 0 (like Linux's __KERNEL_CS). */
#define DESC_RING0_CODE64   0x00af9b000000ffffUL
/* Call gate (type 0xC), DPL 3, to sel:off. */
#define DESC_CALL_GATE(sel, off) \
    ((((uint64_t)(off) & 0xffff0000UL) << 32) | (0xecUL << 40) | \
     ((uint64_t)(sel) << 16) | ((off) & 0xffff))
/* Interrupt gate (type 0xE), DPL 3, to sel:off: a system descriptor. */
#define DESC_INT_GATE(sel, off) \
    ((((uint64_t)(off) & 0xffff0000UL) << 32) | (0xeeUL << 40) | \
     ((uint64_t)(sel) << 16) | ((off) & 0xffff))

static unsigned int attempts, refused;
static shared_info_t *shinfo;
static int have_traps;

/* The scratch page: a padding page whose mapping the attempts aim at. */
static void *scratch;
static pte_t *scratch_pte;          /* its L1 entry, read-only to us */
static uint64_t scratch_pte_ma;     /* ... and that entry's machine address */
static pte_t scratch_orig;

static unsigned long own_l4_mfn, own_l1_mfn, foreign_mfn;

/* ---- reporting ----------------------------------------------------------- */

static const char *errs(int e1, int e2)
{
    static char buf[40];

    if ( e2 )
        snprintf(buf, sizeof(buf), "%s or %s", xen_errname(-e1), xen_errname(-e2));
    else
        snprintf(buf, sizeof(buf), "%s", xen_errname(-e1));
    return buf;
}

/* A hypercall that must fail with -e1 (or -e2, if non-zero). */
static int expect(const char *what, long rc, int e1, int e2)
{
    int ok = rc == -e1 || (e2 && rc == -e2);

    attempts++;
    refused += ok;
    if ( ok )
        printk("hostile: [%2u] %s: %ld %s: refused as expected\n",
               attempts, what, rc, xen_errname(rc));
    else if ( rc == 0 )
        printk("hostile: [%2u] %s: 0: NOT REFUSED (expected %s)\n",
               attempts, what, errs(e1, e2));
    else
        printk("hostile: [%2u] %s: %ld %s: refused, but not as Xen does "
               "(expected %s)\n", attempts, what, rc, xen_errname(rc), errs(e1, e2));
    return ok;
}

static void restore_scratch(long rc)
{
    if ( rc == 0 )
        HYPERVISOR_update_va_mapping((unsigned long)scratch, scratch_orig, UVMF_INVLPG);
}

/* ---- page-faulting probes -------------------------------------------------- */

static struct {
    int hits;
    unsigned long vector, error_code, rip, insn, cr2;
} pf;

static void on_trap(struct cpu_regs *regs)
{
    if ( !probe_insn )
    {
        printk("hostile: unexpected %s at rip 0x%lx (error code 0x%lx)\n",
               trap_name(regs->vector), regs->rip, regs->error_code);
        xen_shutdown(SHUTDOWN_crash);
    }
    pf.hits++;
    pf.vector = regs->vector;
    pf.error_code = regs->error_code;
    pf.rip = regs->rip;
    pf.insn = probe_insn;
    pf.cr2 = shinfo ? shinfo->vcpu_info[0].arch.cr2 : 0;
    regs->rip = probe_resume;
    probe_insn = 0;
}

#define PROBE_WRITE(addr, val)                                          \
    asm volatile ( PROBE_ARM PROBE_INSN("movq %%rsi, (%%rdx)")          \
                   :: "d" (addr), "S" (val) : "r11", "memory" )
#define PROBE_READ(addr, out)                                           \
    asm volatile ( PROBE_ARM PROBE_INSN("movq (%%rdx), %%rsi")          \
                   : "+S" (out) : "d" (addr) : "r11", "memory" )

static void expect_fault(const char *what, unsigned long addr)
{
    attempts++;
    if ( !have_traps )
    {
        printk("hostile: [%2u] %s: skipped: no #PF handler (set_trap_table "
               "failed), so not counted as refused\n", attempts, what);
        return;
    }
    if ( pf.hits == 1 && pf.vector == X86_EXC_PF && pf.rip == pf.insn )
    {
        refused++;
        printk("hostile: [%2u] %s: #PF error 0x%lx cr2=0x%lx%s: refused as "
               "expected\n", attempts, what, pf.error_code, pf.cr2,
               shinfo && pf.cr2 != addr ? " (cr2 is not the address!)" : "");
    }
    else if ( pf.hits == 0 )
        printk("hostile: [%2u] %s: no fault: NOT REFUSED (expected #PF)\n",
               attempts, what);
    else
        printk("hostile: [%2u] %s: %s at rip 0x%lx (the access was at 0x%lx): "
               "refused, but not as Xen does (expected #PF there)\n",
               attempts, what, trap_name(pf.vector), pf.rip, pf.insn);
}

static void fault_attempts(void)
{
    unsigned long l4 = start_info->pt_base, v = 0;
    volatile unsigned long *m2p_own =
        (unsigned long *)MACH2PHYS_VIRT_START + virt_to_mfn(scratch);

    memset(&pf, 0, sizeof(pf));
    if ( have_traps )                   /* slot 0 is empty: write 0 over 0 */
        PROBE_WRITE(l4, 0UL);
    expect_fault("write to its own L4 page table through its read-only mapping",
                 l4);

    memset(&pf, 0, sizeof(pf));
    v = *m2p_own;                       /* an entry of ours, readable */
    if ( have_traps )                   /* write back what is there */
        PROBE_WRITE(m2p_own, v);
    expect_fault("write to Xen's read-only m2p table", (unsigned long)m2p_own);

    memset(&pf, 0, sizeof(pf));
    v = 0;
    if ( have_traps )
        PROBE_READ(XEN_DIRECTMAP_VA, v);
    expect_fault("read Xen's private memory (directmap at 0xffff830000000000)",
                 XEN_DIRECTMAP_VA);
    (void)v;
}

/* ---- set-up ------------------------------------------------------------------ */

static int owns(unsigned long mfn)
{
    unsigned long pfn;

    for ( pfn = 0; pfn < start_info->nr_pages; pfn++ )
        if ( pfn_to_mfn(pfn) == mfn )
            return 1;
    return 0;
}

static void setup(start_info_t *si)
{
    struct trap_info table[2];
    unsigned long sh_va = (unsigned long)padding_alloc();
    long rc;

    rc = map_shared_info(sh_va, &shinfo);
    printk("hostile: map shared_info at 0x%lx: %ld %s\n", sh_va, rc, xen_errname(rc));

    memset(table, 0, sizeof(table));
    table[0].vector = X86_EXC_PF;
    table[0].flags = 0 | TI_FLAG_IF;
    table[0].cs = FLAT_KERNEL_CS;
    table[0].address = trap_entry[X86_EXC_PF];
    trap_handler = on_trap;
    rc = HYPERVISOR_set_trap_table(table);
    have_traps = rc == 0;
    printk("hostile: set_trap_table(#PF): %ld %s\n", rc, xen_errname(rc));

    scratch = padding_alloc();
    scratch_pte = l1e_of((const pte_t *)si->pt_base, (unsigned long)scratch);
    scratch_pte_ma = virt_to_maddr(scratch_pte);
    scratch_orig = *scratch_pte;
    own_l4_mfn = virt_to_mfn((void *)si->pt_base);
    own_l1_mfn = scratch_pte_ma >> PAGE_SHIFT;

    foreign_mfn = pfn_to_mfn(0) + si->nr_pages + 100;
    while ( owns(foreign_mfn) )
        foreign_mfn++;

    printk("hostile: own L4 mfn 0x%lx, scratch page 0x%lx (L1 mfn 0x%lx), "
           "a frame not ours: mfn 0x%lx\n", own_l4_mfn, (unsigned long)scratch,
           own_l1_mfn, foreign_mfn);
}

/* ---- the attempts --------------------------------------------------------------- */

static void mapping_attempts(void)
{
    unsigned long va = (unsigned long)scratch;
    long rc;

    rc = HYPERVISOR_update_va_mapping(va, (0UL << PAGE_SHIFT) | PTE_RW, UVMF_INVLPG);
    expect("map mfn 0 (Xen's / I/O memory) with update_va_mapping", rc,
           XEN_EPERM, XEN_EINVAL);
    restore_scratch(rc);

    rc = HYPERVISOR_update_va_mapping(va, ((pte_t)foreign_mfn << PAGE_SHIFT) | PTE_RW,
                                      UVMF_INVLPG);
    expect("map a frame it does not own with update_va_mapping", rc,
           XEN_EBUSY, XEN_EPERM);
    restore_scratch(rc);

    rc = HYPERVISOR_update_va_mapping(va, ((pte_t)own_l4_mfn << PAGE_SHIFT) | PTE_RW,
                                      UVMF_INVLPG);
    expect("map its own L4 page table writable with update_va_mapping", rc,
           XEN_EBUSY, 0);
    restore_scratch(rc);

    rc = HYPERVISOR_update_va_mapping(XEN_RESERVED_VA,
                                      ((pte_t)virt_to_mfn(scratch) << PAGE_SHIFT) | PTE_RO,
                                      UVMF_INVLPG);
    expect("update_va_mapping at 0xffff800000001000 (Xen's reserved range)", rc,
           XEN_EINVAL, 0);
}

static long mmu_update_one(uint64_t ptr, uint64_t val, unsigned int foreigndom)
{
    struct mmu_update req = { .ptr = ptr | MMU_NORMAL_PT_UPDATE, .val = val };
    unsigned int done = 0;

    return HYPERVISOR_mmu_update(&req, 1, &done, foreigndom);
}

static void mmu_update_attempts(void)
{
    long rc;

    rc = mmu_update_one(scratch_pte_ma, ((pte_t)foreign_mfn << PAGE_SHIFT) | PTE_RW,
                        DOMID_SELF);
    expect("mmu_update: a PTE naming a frame it does not own", rc,
           XEN_EBUSY, XEN_EPERM);
    restore_scratch(rc);

    rc = mmu_update_one(scratch_pte_ma, (0UL << PAGE_SHIFT) | PTE_RW, DOMID_SELF);
    expect("mmu_update: a PTE naming mfn 0 (Xen's / I/O memory)", rc,
           XEN_EPERM, XEN_EINVAL);
    restore_scratch(rc);

    rc = mmu_update_one(scratch_pte_ma, ((pte_t)own_l1_mfn << PAGE_SHIFT) | PTE_RW,
                        DOMID_SELF);
    expect("mmu_update: a PTE mapping its own L1 page table writable", rc,
           XEN_EBUSY, 0);
    restore_scratch(rc);

    rc = mmu_update_one(0 * PAGE_SIZE + 8, 0, DOMID_SELF);
    expect("mmu_update: a PTE pointer inside mfn 0 (not its page table)", rc,
           XEN_EINVAL, 0);

    rc = mmu_update_one(scratch_pte_ma, scratch_orig, 0);
    expect("mmu_update on behalf of domain 0 (foreigndom 0)", rc,
           XEN_EPERM, XEN_ESRCH);
}

static void pin_attempts(void)
{
    pte_t *bad_l1 = padding_alloc(), *writable = padding_alloc();
    unsigned long bad_mfn = virt_to_mfn(bad_l1), wr_mfn = virt_to_mfn(writable);
    long rc;

    /* An L1 with an entry naming someone else's frame, no longer mapped
     * writable by us, so only its contents can make the pin fail. */
    bad_l1[0] = ((pte_t)foreign_mfn << PAGE_SHIFT) | PTE_RW;
    rc = HYPERVISOR_update_va_mapping((unsigned long)bad_l1,
                                      ((pte_t)bad_mfn << PAGE_SHIFT) | PTE_RO,
                                      UVMF_INVLPG);
    if ( rc )
        printk("hostile: (making the bad L1 read-only failed: %ld %s)\n",
               rc, xen_errname(rc));
    rc = mmuext_one(MMUEXT_PIN_L1_TABLE, bad_mfn);
    expect("pin as L1 a table naming a frame it does not own", rc,
           XEN_EBUSY, XEN_EPERM);
    if ( rc == 0 )
        mmuext_one(MMUEXT_UNPIN_TABLE, bad_mfn);

    rc = mmuext_one(MMUEXT_PIN_L1_TABLE, wr_mfn);
    expect("pin as L1 a frame that is still mapped writable", rc, XEN_EINVAL, 0);
    if ( rc == 0 )
        mmuext_one(MMUEXT_UNPIN_TABLE, wr_mfn);

    rc = mmuext_one(MMUEXT_UNPIN_TABLE, wr_mfn);
    expect("unpin a frame that is not pinned", rc, XEN_EINVAL, 0);

    rc = mmuext_one(MMUEXT_NEW_BASEPTR, foreign_mfn);
    expect("MMUEXT_NEW_BASEPTR to a frame it does not own", rc, XEN_EINVAL, 0);
}

static void descriptor_attempts(void)
{
    volatile uint64_t *gdt = padding_alloc();  /* a fresh frame of ours */
    uint64_t ma = virt_to_maddr((void *)gdt);
    long rc;

    /*
     * Xen's check_descriptor() does not refuse a code or data segment: it
     * raises its DPL to the guest kernel's (3 for a 64-bit PV guest).  So
     * the refusal is either -EINVAL or a stored descriptor with DPL 3.
     */
    rc = HYPERVISOR_update_descriptor(ma, DESC_RING0_CODE64);
    attempts++;
    if ( rc == -XEN_EINVAL )
    {
        refused++;
        printk("hostile: [%2u] install a ring-0 code segment with update_descriptor: "
               "%ld %s: refused as expected\n", attempts, rc, xen_errname(rc));
    }
    else if ( rc == 0 && *gdt == (DESC_RING0_CODE64 | (3UL << 45)) )
    {
        refused++;
        printk("hostile: [%2u] install a ring-0 code segment with update_descriptor: "
               "0, stored with DPL 3 (0x%lx): ring 0 refused as Xen does\n",
               attempts, *gdt);
    }
    else if ( rc == 0 )
        printk("hostile: [%2u] install a ring-0 code segment with update_descriptor: "
               "0, stored 0x%lx (DPL %lu): NOT REFUSED (expected EINVAL or DPL "
               "raised to 3)\n", attempts, *gdt, DESC_DPL(*gdt));
    else
        printk("hostile: [%2u] install a ring-0 code segment with update_descriptor: "
               "%ld %s: refused, but not as Xen does (expected EINVAL or DPL "
               "raised to 3)\n", attempts, rc, xen_errname(rc));
    *gdt = 0;

    rc = HYPERVISOR_update_descriptor(ma, DESC_CALL_GATE(XEN_HYPERVISOR_CS, 0x1000));
    expect("install a call gate into Xen's ring-0 code (selector 0xe008)", rc,
           XEN_EINVAL, 0);
    gdt[0] = 0;

    rc = HYPERVISOR_update_descriptor(ma, DESC_INT_GATE(FLAT_KERNEL_CS, 0x1000));
    expect("install an interrupt gate (a system descriptor)", rc, XEN_EINVAL, 0);
    gdt[0] = 0;

    /* A not-present descriptor passes every content check: only the
     * target frame can make these fail.  Slot 0 of the L4 is empty. */
    rc = HYPERVISOR_update_descriptor((uint64_t)own_l4_mfn << PAGE_SHIFT, 0);
    expect("update_descriptor into its own L4 page table", rc, XEN_EINVAL, 0);

    rc = HYPERVISOR_update_descriptor((uint64_t)foreign_mfn << PAGE_SHIFT, 0);
    expect("update_descriptor into a frame it does not own", rc, XEN_EINVAL, 0);
}

void guest_main(start_info_t *si)
{
    printk("hostile: trying to get out of domain memory and privilege\n");
    setup(si);

    mapping_attempts();
    mmu_update_attempts();
    pin_attempts();
    descriptor_attempts();
    fault_attempts();

    printk("hostile: %u/%u attempts refused\n", refused, attempts);
    xen_shutdown(SHUTDOWN_poweroff);
}
