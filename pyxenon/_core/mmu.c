/*
 * Page-table hypercalls in C: mmu_update of L1 entries, update_va_mapping
 * on the vcpu's own tables and mmuext_op batches of TLB flushes and base
 * pointer switches (a PV Linux's context switch).  hypercalls/mmu.py has
 * the same semantics and every other case; these return 0 ("not handled")
 * before changing anything when the call is not the plain one.
 */
#include <errno.h>
#include "core.h"

#define UVMF_FLUSHTYPE_MASK 3UL
#define UVMF_LOCAL 0UL
#define UVMF_ALL (1UL << 2)
#define MMUEXT_NEW_BASEPTR 5
#define MMUEXT_TLB_FLUSH_LOCAL 6
#define MMUEXT_INVLPG_LOCAL 7
#define MMUEXT_TLB_FLUSH_ALL 10
#define MMUEXT_INVLPG_ALL 11
#define MMUEXT_NEW_USER_BASEPTR 15
#define BUDGET 512               /* records per trap, as hypercalls/mmu.py */
#define PREEMPTED (1U << 31)     /* MMU_UPDATE_PREEMPTED: a continued batch */
#define MMU_NORMAL_PT_UPDATE 0
#define MMU_PT_UPDATE_PRESERVE_AD 2

struct mmu_update {              /* public/xen.h */
    uint64_t ptr, val;
};

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

/* A flush of the vcpus in a bitmap whose address is ORed into flags (UVMF_MULTI). */
static int flushes_vcpu_bitmap(uint64_t flags)
{
    uint64_t bmap = flags & ~UVMF_FLUSHTYPE_MASK;
    return (flags & UVMF_FLUSHTYPE_MASK) && bmap != UVMF_LOCAL && bmap != UVMF_ALL;
}

/* update_va_mapping(va, val, flags): a[1], a[2], a[3]. */
int xc_fast_update_va_mapping(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a,
                              int64_t *rc)
{
    uint64_t va = a[1], table;
    if (flushes_vcpu_bitmap(a[3]))
        return 0;                /* hypercalls/mmu.py reads the bitmap */
    *rc = -EINVAL;
    if (va >= HYPERVISOR_VIRT_START && va < HYPERVISOR_VIRT_END)
        return 1;
    if (l1_slot(m, v->cr3, va, &table) || m->frames[table].owner != v->domid ||
        m->frames[table].type != PGT_L1 || !(m->frames[table].flags & PGF_VALIDATED))
        return 1;
    *rc = xc_l1_update(m, v, table, (va >> PAGE_SHIFT) & 511, a[2], 0);
    if (*rc == 0 && (a[3] & UVMF_FLUSHTYPE_MASK))
        xc_request_flush(m);
    return 1;
}

static int is_local_flush(uint32_t cmd)
{
    return cmd == MMUEXT_TLB_FLUSH_LOCAL || cmd == MMUEXT_INVLPG_LOCAL ||
           cmd == MMUEXT_TLB_FLUSH_ALL || cmd == MMUEXT_INVLPG_ALL;
}

struct base_switch {
    uint64_t mfn;
    int used;
};

/* A validated L4 of v's domain that has type references already: getting
 * one more validates nothing. */
static int referenced_l4(const struct xc_machine *m, const struct xc_vcpu *v, uint64_t mfn)
{
    const struct page_info *f = &m->frames[mfn];
    return f->owner == v->domid && f->type == PGT_L4 && (f->flags & PGF_VALIDATED) && f->type_count;
}

/* A switch new_guest_cr3 makes with no preemptible work: the new table a
 * referenced L4 (the user one may be 0), the old one keeping a reference
 * after the put (nothing is torn down). */
static int plain_switch(const struct xc_machine *m, const struct xc_vcpu *v, uint64_t mfn,
                        uint64_t old, int user)
{
    if (mfn == old)
        return 1;
    if (mfn ? mfn >= m->nr_frames || !referenced_l4(m, v, mfn) : !user)
        return 0;
    return !old || m->frames[old].type_count > 1;
}

/* The kernel and the user switch touch no table in common, so their
 * counts cannot meet. */
static int apart(const struct base_switch sw[2], const uint64_t old[2])
{
    if (!sw[0].used || !sw[1].used || sw[0].mfn == old[0] || sw[1].mfn == old[1])
        return 1;
    for (int i = 0; i < 2; i++) {
        uint64_t k = i ? old[0] : sw[0].mfn;
        if (k && (k == sw[1].mfn || k == old[1]))
            return 0;
    }
    return 1;
}

/* Every record is a local TLB flush or a plain switch, at most one of
 * each base pointer (no vcpu mask to read). */
static int plain_records(struct xc_machine *m, struct xc_vcpu *v, uint64_t ops, uint32_t count,
                         struct base_switch sw[2])
{
    const uint64_t old[2] = {v->kernel_cr3, v->user_cr3};
    struct mmuext_op op;
    sw[0].used = sw[1].used = 0;
    for (uint32_t i = 0; i < count; i++) {
        int user;
        if (xc_copy_from_guest(m, v, &op, ops + i * sizeof(op), sizeof(op)))
            return 0;
        if (is_local_flush(op.cmd))
            continue;
        user = op.cmd == MMUEXT_NEW_USER_BASEPTR;
        if ((!user && op.cmd != MMUEXT_NEW_BASEPTR) || sw[user].used ||
            !plain_switch(m, v, op.arg1, old[user], user))
            return 0;
        sw[user].mfn = op.arg1, sw[user].used = 1;
    }
    return apart(sw, old);
}

/* A batch (records, count, pdone, foreigndom in a[1]..a[4]) C may take:
 * one trap's worth, not continued, on the caller's own tables, with a
 * writable done count if any. */
static int plain_batch(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a)
{
    uint32_t domid = a[4] & 0xFFFF;
    return a[2] <= BUDGET && (domid == DOMID_SELF || domid == v->domid) && !v->old_guest_table &&
           m->work < m->work_budget &&
           (!a[3] || xc_translate(m, v, a[3], 1) >= 0);
}

/* mmuext_op(ops, count, pdone, foreigndom): a[1]..a[4]. */
int xc_fast_mmuext(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a, int64_t *rc)
{
    struct base_switch sw[2];
    uint32_t count = (uint32_t)a[2];
    if (!plain_batch(m, v, a) || !plain_records(m, v, a[1], count, sw))
        return 0;
    for (int user = 0; user < 2; user++)
        if (sw[user].used && (*rc = xc_new_baseptr(m, v, sw[user].mfn, user)))
            return 1;            /* not met: plain_records left nothing that can fail */
    if (a[3])
        xc_copy_to_guest(m, v, a[3], &count, sizeof(count));
    if (count)
        xc_request_flush(m);
    *rc = 0;
    return 1;
}

/* A request this file can do: a normal or A/D-preserving write of an entry
 * in one of the domain's own L1 tables. */
static int plain_l1(struct xc_machine *m, struct xc_vcpu *v, uint64_t ptr)
{
    uint64_t mfn = ptr >> PAGE_SHIFT, cmd = ptr & 3;
    if (cmd != MMU_NORMAL_PT_UPDATE && cmd != MMU_PT_UPDATE_PRESERVE_AD)
        return 0;
    return !(ptr & 4) && mfn < m->nr_frames && m->frames[mfn].owner == v->domid &&
           m->frames[mfn].type == PGT_L1 && (m->frames[mfn].flags & PGF_VALIDATED) &&
           m->frames[mfn].type_count;
}

#define CHUNK 64                 /* requests read from the guest at once */

/* Apply requests from reqs while they are plain L1 updates; returns how
 * many were done, and *rc < 0 if one failed (Xen stops there).  A chunk
 * that cannot be read whole is left to Python, which finds the record. */
static uint32_t l1_updates(struct xc_machine *m, struct xc_vcpu *v, uint64_t reqs,
                           uint32_t count, int64_t *rc)
{
    struct mmu_update u[CHUNK];
    uint32_t i = 0;
    *rc = 0;
    while (i < count) {
        uint32_t n = count - i < CHUNK ? count - i : CHUNK, j;
        if (xc_copy_from_guest(m, v, u, reqs + (uint64_t)i * sizeof(u[0]), n * sizeof(u[0])))
            return i;
        for (j = 0; j < n && plain_l1(m, v, u[j].ptr); j++, i++) {
            m->work += XC_ENTRY_COST;
            *rc = xc_l1_update(m, v, u[j].ptr >> PAGE_SHIFT,
                               (u[j].ptr & (PAGE_SIZE - 1)) >> 3, u[j].val,
                               (u[j].ptr & 3) == MMU_PT_UPDATE_PRESERVE_AD);
            if (*rc < 0)
                return i;
        }
        if (j < n)
            return i;
    }
    return i;
}

/*
 * mmu_update(reqs, count, pdone, foreigndom): a[1]..a[4].  The leading
 * plain L1 updates are done here; from the first other request on, the
 * batch goes to Python as Xen's continuation would carry it (the count
 * marked PREEMPTED, the done count so far in *pdone).
 */
int xc_fast_mmu_update(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a, int64_t *rc)
{
    uint32_t count = (uint32_t)a[2], done;
    if (!plain_batch(m, v, a))
        return 0;
    done = l1_updates(m, v, a[1], count, rc);
    if (done == 0 && *rc == 0 && count)
        return 0;
    if (a[3])
        xc_copy_to_guest(m, v, a[3], &done, sizeof(done));
    if (*rc == 0 && done < count)
        *rc = xc_python(m, v, HYPERVISOR_mmu_update, a[1] + done * sizeof(struct mmu_update),
                        (count - done) | PREEMPTED, a[3], a[4], 0);
    return 1;
}
