/*
 * paging - build a new set of 4-level page tables, switch to them, and
 * keep running, the way a PV kernel must (Xen's xen.h, "mmu_update"):
 *
 *  1. Take free frames from the start-of-day padding (mapped writable,
 *     unused) for an L4, an L3, an L2 and the L1s, and write the tables
 *     through those writable mappings.  The new tables map every
 *     pseudo-physical frame 1:1 at VIRT_BASE (the kernel image, the whole
 *     start-of-day region and the free memory above it), with the old
 *     bootstrap tables and the new tables themselves read-only, plus one
 *     empty L1 at VIRT_BASE + 1 GiB - 2 MiB for scratch mappings.
 *  2. A frame cannot become a page table while some L1 maps it writable:
 *     make each new table's start-of-day mapping read-only
 *     (update_va_mapping with _PAGE_RW clear).
 *  3. MMUEXT_PIN_L4_TABLE the new L4 (Xen validates the whole tree), then
 *     MMUEXT_NEW_BASEPTR.  "paging: running on my own page tables" once a
 *     frame only the new tables map is reachable.
 *  4. update_va_mapping: map a free frame at a new address in the scratch
 *     L1 and check it aliases the frame's 1:1 address.
 *  5. mmu_update: a batch of four PTE writes into the scratch L1 (done
 *     must say 4), checked the same way; a second batch clears them.
 *  6. MMUEXT_UNPIN_TABLE the bootstrap L4 the domain builder pinned; as it
 *     is no longer a page table, mapping it writable must now succeed.
 *
 * Success: "paging: all steps passed", SHUTDOWN_poweroff.  A failed step
 * is reported and the guest shuts down with SHUTDOWN_crash.
 */
#include "lib.h"
#include "mm.h"

/* L1s the padding can hold next to the L4, L3, L2 and the scratch L1. */
#define MAX_L1S         120
#define MAX_TABLES      (MAX_L1S + 4)

#define SCRATCH_L2_SLOT 511
#define SCRATCH_VA      (GUEST_VIRT_BASE + SCRATCH_L2_SLOT * PT_SPAN(2))
#define BATCH           4

static pte_t *tables[MAX_TABLES];       /* the new tables, as 1:1 addresses */
static unsigned int nr_tables;

/* Report a failed step (with the hypercall's result, if it was one). */
static void fail(const char *step, long rc)
{
    if ( rc )
        printk("paging: %s failed: %ld %s\n", step, rc, xen_errname(rc));
    else
        printk("paging: %s\n", step);
    xen_shutdown(SHUTDOWN_crash);
}

static pte_t *new_table(void)
{
    pte_t *t = padding_alloc();

    if ( !t || nr_tables == MAX_TABLES )
    {
        printk("paging: out of padding frames for page tables\n");
        xen_shutdown(SHUTDOWN_crash);
    }
    tables[nr_tables++] = t;
    return t;
}

static int is_new_table(unsigned long pfn)
{
    unsigned int i;

    for ( i = 0; i < nr_tables; i++ )
        if ( virt_to_pfn(tables[i]) == pfn )
            return 1;
    return 0;
}

static pte_t table_entry(const pte_t *table)
{
    return ((pte_t)virt_to_mfn(table) << PAGE_SHIFT) | PTE_TABLE;
}

/* Write through one address, read through another. */
static int aliases(volatile uint64_t *a, volatile uint64_t *b, uint64_t value)
{
    *a = value;
    return *b == value;
}

void guest_main(start_info_t *si)
{
    struct sod_layout sod;
    unsigned long old_l4_mfn = virt_to_mfn((void *)si->pt_base);
    unsigned long nr_map = si->nr_pages, nr_l1, pfn, i, free_pfn;
    pte_t *l4, *l3, *l2, *scratch_l1, *l1s[MAX_L1S];
    struct mmu_update req[BATCH + 1];
    unsigned int done;
    long rc;

    sod_layout(&sod);
    printk("paging: %lu pages; bootstrap L4 at 0x%lx (mfn 0x%lx), %lu table "
           "frames, start-of-day region pfns 0-0x%lx, padding from pfn 0x%lx\n",
           si->nr_pages, si->pt_base, old_l4_mfn, si->nr_pt_frames,
           sod.end_pfn - 1, sod.pad_pfn);

    if ( nr_map > MAX_L1S * PT_ENTRIES )
        nr_map = MAX_L1S * PT_ENTRIES;
    if ( nr_map < sod.end_pfn + 1 + BATCH )
    {
        printk("paging: no memory above the start-of-day region\n");
        xen_shutdown(SHUTDOWN_crash);
    }
    nr_l1 = (nr_map + PT_ENTRIES - 1) / PT_ENTRIES;
    free_pfn = sod.end_pfn;             /* the first frame nothing uses */

    /* 1. Allocate and fill the tables through their writable mappings. */
    l4 = new_table();
    l3 = new_table();
    l2 = new_table();
    for ( i = 0; i < nr_l1; i++ )
        l1s[i] = new_table();
    scratch_l1 = new_table();

    for ( pfn = 0; pfn < nr_map; pfn++ )
    {
        int ro = (pfn >= sod.pt_pfn && pfn < sod.pt_pfn + sod.nr_pt) ||
                 is_new_table(pfn);

        l1s[pfn / PT_ENTRIES][pfn % PT_ENTRIES] =
            ((pte_t)pfn_to_mfn(pfn) << PAGE_SHIFT) | (ro ? PTE_RO : PTE_RW);
    }
    for ( i = 0; i < nr_l1; i++ )
        l2[PT_INDEX(GUEST_VIRT_BASE, 2) + i] = table_entry(l1s[i]);
    l2[SCRATCH_L2_SLOT] = table_entry(scratch_l1);
    l3[PT_INDEX(GUEST_VIRT_BASE, 3)] = table_entry(l2);
    l4[PT_INDEX(GUEST_VIRT_BASE, 4)] = table_entry(l3);
    printk("paging: built %u tables (L4 mfn 0x%lx, %lu L1s + a scratch L1) "
           "mapping pfns 0-0x%lx at 0x%lx\n", nr_tables, virt_to_mfn(l4),
           nr_l1, nr_map - 1, GUEST_VIRT_BASE);

    /* 2. No writable mapping of a frame that is to be a page table. */
    for ( i = 0; i < nr_tables; i++ )
    {
        rc = HYPERVISOR_update_va_mapping((unsigned long)tables[i],
                                          ((pte_t)virt_to_mfn(tables[i]) << PAGE_SHIFT) |
                                          PTE_RO, UVMF_INVLPG);
        if ( rc )
            fail("update_va_mapping (make a new table read-only)", rc);
    }
    printk("paging: %u new table frames now mapped read-only\n", nr_tables);

    /* 3. Pin the new L4 and switch to it. */
    rc = mmuext_one(MMUEXT_PIN_L4_TABLE, virt_to_mfn(l4));
    printk("paging: MMUEXT_PIN_L4_TABLE(mfn 0x%lx): %ld %s\n",
           virt_to_mfn(l4), rc, xen_errname(rc));
    if ( rc )
        fail("MMUEXT_PIN_L4_TABLE", rc);
    rc = mmuext_one(MMUEXT_NEW_BASEPTR, virt_to_mfn(l4));
    printk("paging: MMUEXT_NEW_BASEPTR(mfn 0x%lx): %ld %s\n",
           virt_to_mfn(l4), rc, xen_errname(rc));
    if ( rc )
        fail("MMUEXT_NEW_BASEPTR", rc);

    /* The last frame is mapped by the new tables only (the bootstrap
     * region ends at sod.end_pfn): reaching it proves the switch. */
    if ( !aliases(pfn_to_virt(nr_map - 1), pfn_to_virt(nr_map - 1), 0x6e6577207461626cUL) )
        fail("the last frame does not read back what was written", 0);
    printk("paging: running on my own page tables (pfn 0x%lx at 0x%lx is "
           "reachable)\n", nr_map - 1, (unsigned long)pfn_to_virt(nr_map - 1));

    /* 4. A new mapping with update_va_mapping, in the scratch L1. */
    rc = HYPERVISOR_update_va_mapping(SCRATCH_VA,
                                      ((pte_t)pfn_to_mfn(free_pfn) << PAGE_SHIFT) | PTE_RW,
                                      UVMF_INVLPG);
    printk("paging: update_va_mapping(0x%lx -> pfn 0x%lx): %ld %s\n",
           SCRATCH_VA, free_pfn, rc, xen_errname(rc));
    if ( rc )
        fail("update_va_mapping (new mapping)", rc);
    if ( !aliases((uint64_t *)SCRATCH_VA, pfn_to_virt(free_pfn), 0x5343524154434821UL) )
        fail("the new mapping does not alias its frame", 0);

    /* 5. A batch of PTE writes with mmu_update, and one clearing them all. */
    for ( i = 0; i < BATCH; i++ )
    {
        req[i].ptr = (((uint64_t)virt_to_mfn(scratch_l1) << PAGE_SHIFT) +
                      (i + 1) * sizeof(pte_t)) | MMU_NORMAL_PT_UPDATE;
        req[i].val = ((pte_t)pfn_to_mfn(free_pfn + 1 + i) << PAGE_SHIFT) | PTE_RW;
    }
    done = ~0u;
    rc = HYPERVISOR_mmu_update(req, BATCH, &done, DOMID_SELF);
    printk("paging: mmu_update batch of %u PTEs: %ld %s, done %u\n",
           BATCH, rc, xen_errname(rc), done);
    if ( rc || done != BATCH )
        fail(rc ? "mmu_update (batch)" : "mmu_update (batch) did not do every PTE", rc);
    for ( i = 0; i < BATCH; i++ )
        if ( !aliases((uint64_t *)(SCRATCH_VA + (i + 1) * PAGE_SIZE),
                      pfn_to_virt(free_pfn + 1 + i), 0x4241544348000000UL + i) )
            fail("an mmu_update mapping does not alias its frame", 0);

    for ( i = 0; i <= BATCH; i++ )
    {
        req[i].ptr = (((uint64_t)virt_to_mfn(scratch_l1) << PAGE_SHIFT) +
                      i * sizeof(pte_t)) | MMU_NORMAL_PT_UPDATE;
        req[i].val = 0;
    }
    done = ~0u;
    rc = HYPERVISOR_mmu_update(req, BATCH + 1, &done, DOMID_SELF);
    if ( !rc )
        rc = mmuext_one(MMUEXT_TLB_FLUSH_LOCAL, 0);
    printk("paging: mmu_update clearing the %u scratch PTEs: %ld %s, done %u\n",
           BATCH + 1, rc, xen_errname(rc), done);
    if ( rc || done != BATCH + 1 )
        fail(rc ? "mmu_update (clear)" : "mmu_update (clear) did not do every PTE", rc);
    for ( i = 0; i <= BATCH; i++ )
        if ( scratch_l1[i] )
            fail("a cleared scratch PTE is still set", 0);

    /* 6. Unpin the bootstrap L4: it becomes ordinary memory. */
    rc = mmuext_one(MMUEXT_UNPIN_TABLE, old_l4_mfn);
    printk("paging: MMUEXT_UNPIN_TABLE(bootstrap L4 mfn 0x%lx): %ld %s\n",
           old_l4_mfn, rc, xen_errname(rc));
    if ( rc )
        fail("MMUEXT_UNPIN_TABLE", rc);
    rc = HYPERVISOR_update_va_mapping(SCRATCH_VA,
                                      ((pte_t)old_l4_mfn << PAGE_SHIFT) | PTE_RW,
                                      UVMF_INVLPG);
    printk("paging: the old L4 mapped writable at 0x%lx: %ld %s\n",
           SCRATCH_VA, rc, xen_errname(rc));
    if ( rc )
        fail("mapping the unpinned bootstrap L4 writable", rc);
    rc = HYPERVISOR_update_va_mapping(SCRATCH_VA, 0, UVMF_INVLPG);
    if ( rc )
        fail("update_va_mapping (unmap)", rc);

    printk("paging: all steps passed\n");
    xen_shutdown(SHUTDOWN_poweroff);
}
