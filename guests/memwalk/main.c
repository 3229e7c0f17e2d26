/*
 * memwalk - the memory-path benchmark guest.  It maps mib=M MiB of its own
 * free frames (default 8) at a fresh virtual region, with L1 tables it
 * builds in the start-of-day padding, then makes passes=N read-modify-write
 * passes over the region at stride=S bytes (rmw.h), checks every word of
 * it, and powers off.
 * Exit through crash (with a console line) if the mapping is refused.
 */
#include "lib.h"
#include "mm.h"
#include "cmdline.h"
#include "rmw.h"

#define REGION_VA   (GUEST_VIRT_BASE + (512UL << 20))   /* an empty slot of the kernel's L2 */
#define MAX_MIB     64

static void fail(const char *what, long rc)
{
    printk("memwalk: %s: %s\n", what, xen_errname(rc));
    xen_shutdown(SHUTDOWN_crash);
}

/* Fill an L1 page (still writable) with 512 frames from pfn, then make it
 * read-only in the 1:1 map so Xen lets it become a page table. */
static unsigned long build_l1(pte_t *l1, unsigned long pfn)
{
    long rc;

    for ( int i = 0; i < PT_ENTRIES; i++ )
        l1[i] = ((pte_t)pfn_to_mfn(pfn + i) << PAGE_SHIFT) | PTE_RW;
    rc = HYPERVISOR_update_va_mapping((unsigned long)l1,
                                      ((pte_t)virt_to_mfn(l1) << PAGE_SHIFT) | PTE_RO,
                                      UVMF_INVLPG);
    if ( rc )
        fail("remap an L1 read-only", rc);
    return virt_to_mfn(l1);
}

/* The kernel's L2 entry for va, as a machine address for mmu_update. */
static uint64_t l2e_maddr(unsigned long va)
{
    const pte_t *l4 = (const pte_t *)start_info->pt_base;
    const pte_t *l3 = mfn_to_virt(PTE_MFN(l4[PT_INDEX(va, 4)]));
    pte_t l3e = l3[PT_INDEX(va, 3)];

    return (PTE_MFN(l3e) << PAGE_SHIFT) + PT_INDEX(va, 2) * sizeof(pte_t);
}

static void map_region(unsigned long mib)
{
    struct sod_layout sod;
    unsigned long pfn;

    sod_layout(&sod);
    pfn = sod.end_pfn;            /* the frames past the mapped region are free */
    if ( pfn + mib * 256 > start_info->nr_pages )
        fail("not enough memory for the region", -XEN_ENOMEM);
    for ( unsigned long t = 0; t < mib / 2; t++ )
    {
        pte_t *l1 = padding_alloc();
        struct mmu_update req;
        long rc;

        if ( !l1 )
            fail("padding exhausted", -XEN_ENOMEM);
        req.ptr = l2e_maddr(REGION_VA + t * PT_SPAN(2));
        req.val = ((pte_t)build_l1(l1, pfn + t * PT_ENTRIES) << PAGE_SHIFT) | PTE_TABLE;
        rc = HYPERVISOR_mmu_update(&req, 1, NULL, DOMID_SELF);
        if ( rc )
            fail("hook an L1 into the L2", rc);
    }
}

/* Every word the passes touched holds passes, every other word 0 (the
 * frames came zeroed): the translations the engine used were right. */
static void check(const unsigned long *base, unsigned long bytes, unsigned long stride,
                  unsigned long passes)
{
    for ( unsigned long i = 0; i < bytes / sizeof(*base); i++ )
        if ( base[i] != ((i * sizeof(*base)) % stride ? 0 : passes) )
            fail("a word of the region is wrong", -XEN_EINVAL);
}

void guest_main(start_info_t *si)
{
    unsigned long mib = cmdline_num("mib", 8), stride = cmdline_num("stride", 64);
    unsigned long passes = cmdline_num("passes", 0);

    if ( mib < 2 || mib > MAX_MIB || mib % 2 || stride < 8 || stride % 8 )
        fail("bad mib= or stride=", -XEN_EINVAL);
    map_region(mib);
    rmw_passes((volatile unsigned long *)REGION_VA, mib << 20, stride, passes);
    check((const unsigned long *)REGION_VA, mib << 20, stride, passes);
    xen_shutdown(SHUTDOWN_poweroff);
}
