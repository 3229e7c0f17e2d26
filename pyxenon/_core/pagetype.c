/*
 * L1 page-table entries, validated in C: the hot path of mmu_update,
 * update_va_mapping and of pinning an L1.  An L1 entry names a data frame,
 * so its rules never recurse: the frame must be the domain's own, and a
 * writable mapping needs (and takes) the frame's writable type.  The upper
 * levels, whose validation recurses, stay in Python (hypervisor/mm.py);
 * both keep the same counts in the same frame table.
 */
#include <errno.h>
#include "core.h"

#define L1_DISALLOW (0x98UL | _PAGE_GNTTAB | (0x7FFUL << 52))

static uint64_t l1e_mfn(uint64_t e)
{
    return (e & PADDR_MASK) >> PAGE_SHIFT;
}

/* References for one present entry; 0 or -errno. */
static int get_l1e(struct xc_machine *m, uint16_t domid, uint64_t e)
{
    uint64_t mfn = l1e_mfn(e);
    struct page_info *pg;
    if (e & L1_DISALLOW)
        return -EINVAL;
    if (mfn >= m->nr_frames)
        return -EPERM;
    pg = &m->frames[mfn];
    if (pg->owner != domid)
        return -EINVAL;
    if (e & _PAGE_RW) {
        if (pg->type_count && pg->type != PGT_WRITABLE)
            return -EINVAL;
        pg->type = PGT_WRITABLE;
        pg->type_count++;
    }
    pg->count++;
    return 0;
}

static void put_l1e(struct xc_machine *m, uint64_t e)
{
    struct page_info *pg;
    if (!(e & _PAGE_PRESENT) || (e & _PAGE_GNTTAB) || l1e_mfn(e) >= m->nr_frames)
        return;     /* a grant mapping's references belong to its grant */
    pg = &m->frames[l1e_mfn(e)];
    if ((e & _PAGE_RW) && pg->type_count && --pg->type_count == 0)
        pg->type = PGT_NONE;
    if (pg->count)
        pg->count--;
}

/* Replace entry index of validated L1 table: 0 or -errno. */
int xc_l1_update(struct xc_machine *m, uint16_t domid, uint64_t table, uint32_t index,
                 uint64_t new, int preserve_ad)
{
    uint64_t *pte = (uint64_t *)(m->mem + (table << PAGE_SHIFT)) + (index & 511);
    uint64_t old = *pte;
    int rc;
    if ((old & _PAGE_PRESENT) && (old & _PAGE_GNTTAB))
        return -EINVAL;     /* only unmap_grant_ref removes a grant mapping */
    if (preserve_ad)
        new = (new & ~(_PAGE_ACCESSED | _PAGE_DIRTY)) | (old & (_PAGE_ACCESSED | _PAGE_DIRTY));
    if (new & _PAGE_PRESENT) {
        new |= _PAGE_USER;  /* a ring-3 PV kernel needs _PAGE_USER */
        if ((rc = get_l1e(m, domid, new)) < 0)
            return rc;
    }
    *pte = new;
    put_l1e(m, old);
    return 0;
}

/* Take the references of every present entry of an L1; all or nothing. */
int xc_l1_validate(struct xc_machine *m, uint16_t domid, uint64_t table)
{
    uint64_t *t = (uint64_t *)(m->mem + (table << PAGE_SHIFT));
    for (int i = 0; i < 512; i++) {
        int rc;
        if (!(t[i] & _PAGE_PRESENT))
            continue;
        t[i] |= _PAGE_USER;
        if ((rc = get_l1e(m, domid, t[i])) < 0) {
            while (--i >= 0)
                put_l1e(m, t[i]);
            return rc;
        }
    }
    return 0;
}

void xc_l1_devalidate(struct xc_machine *m, uint64_t table)
{
    uint64_t *t = (uint64_t *)(m->mem + (table << PAGE_SHIFT));
    for (int i = 0; i < 512; i++)
        put_l1e(m, t[i]);
}
