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

/*
 * incs=N: N read-modify-write instructions on one word (incq, addq, lock
 * xaddq), each counted once: a slice that ends while one of them is in
 * flight must neither lose nor repeat it.  The loop is two blocks, the
 * first the longer, so most slices end between them.  msr=1 reads
 * MSR_FS_BASE before every INCS_PER_MSR of them: the trap answers it
 * inside the engine and moves rip there, which once made Unicorn keep a
 * stale rip at the next slice's end (the second block ran again from the
 * first's start).
 */
#define INCS_PER_MSR 20000UL
#define MSR_FS_BASE  0xC0000100U

static void count_batch(volatile unsigned long *word, unsigned long left, unsigned long msr)
{
    unsigned long one = 1;

    if ( msr )
        asm volatile ( "rdmsr" :: "c" (MSR_FS_BASE) : "rax", "rdx" );
    asm volatile ( "1: incq (%2); .rept 16; imul %%rdx, %%rdx; .endr; jmp 2f;"
                   "2: addq $1, 8(%2); lock xaddq %1, 16(%2);"
                   "mov $1, %1; dec %0; jnz 1b"
                   : "+r" (left), "+r" (one) : "r" (word) : "rdx", "cc", "memory" );
}

static void count_incs(volatile unsigned long *word, unsigned long n, unsigned long msr)
{
    word[0] = word[1] = word[2] = 0;
    for ( unsigned long done = 0; done < n; done += INCS_PER_MSR )
        count_batch(word, n - done < INCS_PER_MSR ? n - done : INCS_PER_MSR, msr);
    if ( word[0] != n || word[1] != n || word[2] != n )
    {
        printk("memwalk: %lu incs counted as %lu, %lu, %lu\n", n, word[0], word[1], word[2]);
        fail("a read-modify-write ran twice or not at all", -XEN_EINVAL);
    }
    word[0] = word[1] = word[2] = 0;      /* the passes' region starts zeroed */
}

void guest_main(start_info_t *si)
{
    unsigned long mib = cmdline_num("mib", 8), stride = cmdline_num("stride", 64);
    unsigned long passes = cmdline_num("passes", 0);

    if ( mib < 2 || mib > MAX_MIB || mib % 2 || stride < 8 || stride % 8 )
        fail("bad mib= or stride=", -XEN_EINVAL);
    map_region(mib);
    count_incs((volatile unsigned long *)REGION_VA + 8, cmdline_num("incs", 0), cmdline_num("msr", 0));
    rmw_passes((volatile unsigned long *)REGION_VA, mib << 20, stride, passes);
    check((const unsigned long *)REGION_VA, mib << 20, stride, passes);
    xen_shutdown(SHUTDOWN_poweroff);
}
