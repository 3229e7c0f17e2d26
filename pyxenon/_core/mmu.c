/*
 * Page-table hypercalls in C: update_va_mapping on the vcpu's own tables
 * and mmuext_op batches made only of TLB flushes.  hypercalls/mmu.py has
 * the same semantics and every other case; these return 0 ("not handled")
 * before changing anything when the call is not the plain one.
 */
#include <errno.h>
#include "core.h"

#define DOMID_SELF 0x7FF0
#define UVMF_FLUSHTYPE_MASK 3UL
#define MMUEXT_TLB_FLUSH_LOCAL 6
#define MMUEXT_INVLPG_LOCAL 7
#define MMUEXT_TLB_FLUSH_ALL 10
#define MMUEXT_INVLPG_ALL 11
#define MMUEXT_BUDGET 512        /* records per trap, as hypercalls/mmu.py */

struct mmuext_op {               /* public/xen.h */
    uint32_t cmd, pad;
    uint64_t arg1, arg2;
};

/* The L1 table holding the entry that maps va under top-level table cr3;
 * -1 when a level is absent or a superpage (Xen's -EINVAL). */
static int l1_slot(struct xc_machine *m, uint64_t cr3, uint64_t va, uint64_t *table)
{
    uint64_t mfn = cr3;
    for (int level = 3; level >= 1; level--) {
        uint64_t e;
        if (mfn >= m->nr_frames)
            return -1;
        e = ((uint64_t *)(m->mem + (mfn << PAGE_SHIFT)))[(va >> (PAGE_SHIFT + 9 * level)) & 511];
        if (!(e & _PAGE_PRESENT) || (e & _PAGE_PSE))
            return -1;
        mfn = (e & PADDR_MASK) >> PAGE_SHIFT;
    }
    *table = mfn;
    return mfn < m->nr_frames ? 0 : -1;
}

/* update_va_mapping(va, val, flags): a[1], a[2], a[3]. */
int xc_fast_update_va_mapping(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a,
                              int64_t *rc)
{
    uint64_t va = a[1], table;
    *rc = -EINVAL;
    if (va >= HYPERVISOR_VIRT_START && va < HYPERVISOR_VIRT_END)
        return 1;
    if (l1_slot(m, v->cr3, va, &table) || m->frames[table].type != PGT_L1)
        return 1;
    *rc = xc_l1_update(m, v->domid, table, (va >> PAGE_SHIFT) & 511, a[2], 0);
    if (*rc == 0 && (a[3] & UVMF_FLUSHTYPE_MASK))
        xc_request_flush(m);
    return 1;
}

static int is_local_flush(uint32_t cmd)
{
    return cmd == MMUEXT_TLB_FLUSH_LOCAL || cmd == MMUEXT_INVLPG_LOCAL ||
           cmd == MMUEXT_TLB_FLUSH_ALL || cmd == MMUEXT_INVLPG_ALL;
}

/* Every record of the batch is a TLB flush (no vcpu mask to read). */
static int only_flushes(struct xc_machine *m, struct xc_vcpu *v, uint64_t ops, uint32_t count)
{
    struct mmuext_op op;
    for (uint32_t i = 0; i < count; i++)
        if (xc_copy_from_guest(m, v, &op, ops + i * sizeof(op), sizeof(op)) ||
            !is_local_flush(op.cmd))
            return 0;
    return 1;
}

/* mmuext_op(ops, count, pdone, foreigndom): a[1]..a[4]. */
int xc_fast_mmuext_flush(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a, int64_t *rc)
{
    uint32_t count = (uint32_t)a[2], domid = a[4] & 0xFFFF;
    if (a[2] > MMUEXT_BUDGET || (domid != DOMID_SELF && domid != v->domid) ||
        !only_flushes(m, v, a[1], count))
        return 0;
    if (a[3] && xc_copy_to_guest(m, v, a[3], &count, sizeof(count)))
        return 0;
    if (count)
        xc_request_flush(m);
    *rc = 0;
    return 1;
}
