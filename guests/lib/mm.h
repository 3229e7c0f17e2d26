/*
 * mm.h - page tables and the start-of-day memory layout, for the guests
 * that manage their own memory (paging, hostile, traps).  Linked in only
 * by the guests that list lib/mm.o in the Makefile.
 *
 * Xen's start of day (xen.h, "Start-of-day memory layout"): one virtual
 * region from VIRT_BASE, mapped 1:1 onto the first pseudo-physical frames,
 * holding in order the kernel, the ramdisk, the p2m list, start_info, the
 * xenstore and console rings, the bootstrap page tables (nr_pt_frames from
 * pt_base, mapped read-only) and a one-page bootstrap stack; at least
 * 512 KiB of mapped padding follows the stack, and the region ends on a
 * 4 MiB boundary.  Everything but the page tables is mapped writable.
 */
#ifndef GUEST_MM_H
#define GUEST_MM_H

#include "lib.h"

/* ---- x86-64 page-table entries (architectural) ----------------------- */

#define _PAGE_PRESENT   0x001UL
#define _PAGE_RW        0x002UL
#define _PAGE_USER      0x004UL
#define _PAGE_PWT       0x008UL
#define _PAGE_PCD       0x010UL
#define _PAGE_ACCESSED  0x020UL
#define _PAGE_DIRTY     0x040UL
#define _PAGE_PSE       0x080UL
#define _PAGE_GLOBAL    0x100UL
#define _PAGE_NX        (1UL << 63)

#define PTE_ADDR_MASK   0x000ffffffffff000UL
#define PTE_MFN(pte)    (((pte) & PTE_ADDR_MASK) >> PAGE_SHIFT)

/*
 * A 64-bit PV kernel runs in ring 3, so its mappings carry _PAGE_USER
 * (Xen would add it anyway).  Upper levels: present, writable, user.
 */
#define PTE_RW          (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | \
                         _PAGE_ACCESSED | _PAGE_DIRTY)          /* 0x67 */
#define PTE_RO          (_PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED) /* 0x25 */
#define PTE_TABLE       (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | \
                         _PAGE_ACCESSED | _PAGE_DIRTY)          /* 0x67 */

#define PT_ENTRIES      512
/* Index of va in the table of a level (1 = L1 ... 4 = L4). */
#define PT_INDEX(va, level) \
    (((unsigned long)(va) >> (PAGE_SHIFT + 9 * ((level) - 1))) & (PT_ENTRIES - 1))
/* Bytes one entry of a level maps. */
#define PT_SPAN(level)  (1UL << (PAGE_SHIFT + 9 * ((level) - 1)))

/* At least this much mapped padding follows the bootstrap stack. */
#define SOD_PADDING     (512UL << 10)
#define SOD_ALIGN       (4UL << 20)

typedef uint64_t pte_t;

/* ---- frames and addresses ---------------------------------------------- */

/* The p2m list at start_info->mfn_list (in the start-of-day region). */
static inline unsigned long pfn_to_mfn(unsigned long pfn)
{
    return ((const unsigned long *)start_info->mfn_list)[pfn];
}

/* Xen's read-only m2p table. */
static inline unsigned long mfn_to_pfn(unsigned long mfn)
{
    return ((const unsigned long *)MACH2PHYS_VIRT_START)[mfn];
}

/* The 1:1 start-of-day mapping: pfn N at VIRT_BASE + N pages. */
static inline void *pfn_to_virt(unsigned long pfn)
{
    return (void *)(GUEST_VIRT_BASE + (pfn << PAGE_SHIFT));
}

static inline unsigned long virt_to_pfn(const void *va)
{
    return ((unsigned long)va - GUEST_VIRT_BASE) >> PAGE_SHIFT;
}

static inline unsigned long virt_to_mfn(const void *va)
{
    return pfn_to_mfn(virt_to_pfn(va));
}

/* Machine address of the byte at va (for mmu_update, update_descriptor). */
static inline uint64_t virt_to_maddr(const void *va)
{
    return ((uint64_t)virt_to_mfn(va) << PAGE_SHIFT) |
           ((unsigned long)va & (PAGE_SIZE - 1));
}

static inline void *mfn_to_virt(unsigned long mfn)
{
    return pfn_to_virt(mfn_to_pfn(mfn));
}

/* ---- the start-of-day region (mm.c) ------------------------------------- */

struct sod_layout {
    unsigned long pt_pfn;       /* first bootstrap page-table frame */
    unsigned long nr_pt;        /* start_info->nr_pt_frames */
    unsigned long stack_pfn;    /* the bootstrap stack page */
    unsigned long pad_pfn;      /* first padding frame (after the stack) */
    unsigned long pad_end_pfn;  /* end of the guaranteed 512 KiB padding */
    unsigned long end_pfn;      /* guaranteed end of the mapped region */
};

/* Compute the layout from start_info (see the comment at the top). */
void sod_layout(struct sod_layout *sod);

/*
 * Hand out free frames of the padding (mapped writable, unused by
 * anything), as their start-of-day virtual address, zeroed.  NULL when
 * the padding is used up.
 */
void *padding_alloc(void);

/*
 * Walk the live tables from the L4 at l4 (a virtual address the guest can
 * read) down to the L1 entry for va.  Returns a pointer to that entry (in
 * the 1:1 map), or NULL if an upper level is not present.  The tables must
 * lie in the 1:1 mapped region.
 */
pte_t *l1e_of(const pte_t *l4, unsigned long va);

/* The same walk stopped at a level (1 = L1 ... 4 = L4): the entry there. */
pte_t *entry_of(const pte_t *l4, unsigned long va, int level);

/* Map shared_info (machine address start_info->shared_info) at va. */
long map_shared_info(unsigned long va, shared_info_t **out);

/* "EINVAL" for -22, "OK" for 0, "?" when unknown. */
const char *xen_errname(long rc);

/* One mmuext_op on DOMID_SELF; returns the hypercall's result. */
long mmuext_one(unsigned int cmd, unsigned long arg1);

#endif /* GUEST_MM_H */
