/*
 * Page tables of levels 2-4 and the operations on tables, after Xen 4.17's
 * xen/arch/x86/mm.c (get_page_from_l[234]e, get_l[234]_linear_pagetable,
 * put_page_from_l[234]e, promote_l[234]_table, demote_l[234]_table,
 * mod_l[234]_entry, new_guest_cr3, put_old_guest_table, do_mmuext_op's
 * pins and do_mmu_update's plain writes).  One function serves the three
 * levels: on x86_64 they differ only in the flags added to an entry and
 * in L4's Xen slots.
 *
 * Linear page tables (a read-only entry naming a validated table of its
 * own level) are Xen's: they take a type reference only when they name
 * another table, and a table that holds linear entries may not itself be
 * used as one, nor the other way round (page_info.linear), so that a chain
 * of them cannot make devalidation unbounded.
 */
#include <errno.h>
#include "core.h"

#define BASE_ALLOWED (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY | \
                      _PAGE_AVAIL | _PAGE_AVAIL_HIGH | _PAGE_NX | PADDR_MASK)
#define UPPER_DISALLOW (~BASE_ALLOWED)   /* Xen's base_disallow_mask: no PSE, PCD, PWT, G */
/* Flags an upper entry may change without validation (FASTPATH_PDE_FLAG_WHITELIST). */
#define PDE_FASTPATH (_PAGE_NX | _PAGE_AVAIL_HIGH | _PAGE_AVAIL | _PAGE_GLOBAL | _PAGE_DIRTY | \
                      _PAGE_ACCESSED | _PAGE_USER)
#define FIRST_XEN_L4_SLOT 256
#define LAST_XEN_L4_SLOT 271

static inline uint64_t *table_of(struct xc_machine *m, uint64_t mfn)
{
    return (uint64_t *)(m->mem + (mfn << PAGE_SHIFT));
}

static inline uint64_t entry_mfn(uint64_t e)
{
    return (e & PADDR_MASK) >> PAGE_SHIFT;
}

static int guest_slot(int level, unsigned i)
{
    return level != PGT_L4 || i < FIRST_XEN_L4_SLOT || i > LAST_XEN_L4_SLOT;
}

/* Xen's adjust_guest_l[234]e for a 64-bit PV guest. */
static uint64_t adjust(uint64_t e, int level)
{
    if (!(e & _PAGE_PRESENT))
        return e;
    return e | _PAGE_USER | (level == PGT_L4 ? _PAGE_ACCESSED : 0);
}

/* -- linear tables ---------------------------------------------------------------- */

static int inc_linear_entries(struct page_info *pg)
{
    if (pg->linear < 0 || pg->linear == INT16_MAX)
        return 0;    /* the table is itself used as a linear table */
    pg->linear++;
    return 1;
}

static int inc_linear_uses(struct page_info *pg)
{
    if (pg->linear > 0 || pg->linear == INT16_MIN)
        return 0;    /* the table holds linear entries itself */
    pg->linear--;
    return 1;
}

/* A read-only entry of table `table` naming a validated table of the same
 * level: 1 (and its references taken) or 0 (Xen's get_lN_linear_pagetable). */
static int get_linear(struct xc_machine *m, uint64_t e, uint64_t table, uint16_t domid, int level)
{
    uint64_t mfn = entry_mfn(e);
    struct page_info *ptpg = &m->frames[table], *pg;
    if (e & _PAGE_RW)
        return 0;           /* write access to its own entries */
    if (mfn == table)
        return 1;           /* a table mapping itself takes no reference */
    if (ptpg->owner != domid || !xc_get_page(m, mfn, domid))
        return 0;
    pg = &m->frames[mfn];
    if (!inc_linear_entries(ptpg))
        goto put;
    if (!inc_linear_uses(pg))
        goto entries;
    if (pg->type == level && (pg->flags & PGF_VALIDATED) && pg->type_count < 0x7FFFFFF0u) {
        pg->type_count++;
        return 1;
    }
    pg->linear++;
entries:
    ptpg->linear--;
put:
    xc_put_page(m, mfn);
    return 0;
}

/* -- one entry -------------------------------------------------------------------- */

/* Xen's get_page_from_l[234]e: the next level down, or a linear table. */
static int get_entry(struct xc_machine *m, struct xc_vcpu *v, uint64_t e, int level,
                     uint64_t table, int flags)
{
    uint16_t domid = m->frames[table].owner;
    int rc;
    if (e & UPPER_DISALLOW)
        return -EINVAL;
    if (level > PGT_L2)
        flags |= PTF_PREEMPTIBLE;
    rc = xc_get_page_and_type(m, v, entry_mfn(e), domid, level - 1, flags);
    if (rc == -EINVAL && get_linear(m, e, table, domid, level))
        rc = 0;
    return rc;
}

/* Xen's put_page_from_l[234]e: 1 when the entry held nothing. */
static int put_entry(struct xc_machine *m, struct xc_vcpu *v, uint64_t e, uint64_t table,
                     int flags)
{
    uint64_t mfn = entry_mfn(e);
    int rc;
    if (!(e & _PAGE_PRESENT) || mfn == table)
        return 1;
    if (flags & PTF_DEFER) {
        v->old_guest_table = mfn;
        v->old_guest_ptpg = table;
        v->old_guest_partial = 0;
        return 0;
    }
    rc = xc_put_type(m, v, mfn, flags | PTF_PREEMPTIBLE, (int64_t)table);
    if (rc == 0)
        xc_put_page(m, mfn);
    return rc;
}

/* -- whole tables ------------------------------------------------------------------- */

static int partial_flag(const struct page_info *pg)
{
    return (pg->flags & PGF_PARTIAL_SET) ? PTF_PARTIAL_SET : 0;
}

static void stop_at(struct page_info *pg, unsigned i, int pflags)
{
    pg->nr_validated = i;
    pg->flags = (pg->flags & ~PGF_PARTIAL_SET) | (pflags & PTF_PARTIAL_SET ? PGF_PARTIAL_SET : 0);
}

/* A validation failed at entry i > 0: the entries before it are undone
 * later, preemptibly, through old_guest_table (Xen's promote_l[34]_table). */
static void fail_at(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, unsigned i, int pflags)
{
    uint64_t child = entry_mfn(table_of(m, mfn)[i]);
    if (v->old_guest_table && v->old_guest_table == child)
        pflags = PTF_PARTIAL_SET;    /* the child's partial state stands for entry i */
    stop_at(&m->frames[mfn], i, pflags);
    v->old_guest_table = mfn;
    v->old_guest_ptpg = 0;
    v->old_guest_partial = 1;
}

/* One entry of a promotion: 1 skipped, 0 done, or -errno. */
static int promote_entry(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, unsigned i,
                         int level, int pflags)
{
    uint64_t e = table_of(m, mfn)[i];
    if (!guest_slot(level, i) || !(e & _PAGE_PRESENT))
        return 1;
    return get_entry(m, v, e, level, mfn, pflags | PTF_RETAIN_REF_ON_RESTART);
}

/* What a promotion does after entry i returned rc (Xen's promote_l[34]_table):
 * stop part-way, hand the undoing to old_guest_table, or go on. */
static int promote_outcome(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, unsigned i,
                           int pflags, int rc)
{
    struct page_info *pg = &m->frames[mfn];
    if (rc == -ERESTART)
        stop_at(pg, i, PTF_PARTIAL_SET);
    else if (rc == -EINTR && i)
        stop_at(pg, i, pflags), rc = -ERESTART;
    else if (rc < 0 && rc != -EINTR && i && v)
        fail_at(m, v, mfn, i, pflags);
    return rc;
}

int xc_promote_table(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int level,
                     int preemptible)
{
    struct page_info *pg = &m->frames[mfn];
    int pflags = partial_flag(pg), rc;
    for (unsigned i = pg->nr_validated; i < 512; i++, pflags = 0) {
        m->work += XC_PTE_COST;
        if (i > pg->nr_validated && preemptible && xc_preempt_check(m))
            rc = -EINTR;
        else if ((rc = promote_entry(m, v, mfn, i, level, pflags)) > 0)
            continue;
        if ((rc = promote_outcome(m, v, mfn, i, pflags, rc)) < 0)
            return rc;
        table_of(m, mfn)[i] = adjust(table_of(m, mfn)[i], level);
    }
    return 0;
}

/* Where a demotion stopped: partial at i, or preempted before entry i. */
static int demote_outcome(struct page_info *pg, unsigned i, int pflags, int rc)
{
    if (rc == -ERESTART)
        stop_at(pg, i, PTF_PARTIAL_SET);
    else if (rc == -EINTR && i < 511)
        stop_at(pg, i + !(pflags & PTF_PARTIAL_SET), pflags), rc = -ERESTART;
    return rc > 0 ? 0 : rc;
}

/* Xen's demote_l[234]_table, from the last entry validated down to 0. */
int xc_demote_table(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int level,
                    int preemptible)
{
    struct page_info *pg = &m->frames[mfn];
    int pflags = partial_flag(pg), rc = 0;
    unsigned i = pg->nr_validated - !(pflags & PTF_PARTIAL_SET);
    if (i >= 512)
        return 0;            /* nothing was validated */
    for (;;) {
        m->work += XC_PTE_COST;
        if (guest_slot(level, i))
            rc = put_entry(m, v, table_of(m, mfn)[i], mfn, pflags);
        if (rc < 0 || i == 0)
            break;
        pflags = 0;
        i--;
        if (preemptible && xc_preempt_check(m)) {
            rc = -EINTR;
            break;
        }
    }
    return demote_outcome(pg, i, pflags, rc);
}

/* -- changing one entry -------------------------------------------------------------- */

static int changed(uint64_t old, uint64_t new)
{
    return ((old ^ new) & (PADDR_MASK | _PAGE_PRESENT | ~PDE_FASTPATH)) != 0;
}

static uint64_t preserve(uint64_t old, uint64_t new, int preserve_ad)
{
    return preserve_ad ? new | (old & (_PAGE_ACCESSED | _PAGE_DIRTY)) : new;
}

/* Xen's mod_l[234]_entry; L1 tables go to xc_l1_update. */
static int mod_upper(struct xc_machine *m, struct xc_vcpu *v, uint64_t table, unsigned index,
                     uint64_t new, int preserve_ad)
{
    int level = m->frames[table].type, rc;
    uint64_t *pe = table_of(m, table) + index, old = *pe;
    if (!guest_slot(level, index))
        return -EINVAL;
    if (new & _PAGE_PRESENT) {
        if (new & UPPER_DISALLOW)
            return -EINVAL;
        new = adjust(new, level);
        if (!changed(old, new)) {
            *pe = preserve(old, new, preserve_ad);
            return 0;
        }
        if ((rc = get_entry(m, v, new, level, table, 0)) < 0)
            return rc;
    }
    *pe = preserve(old, new, preserve_ad);
    put_entry(m, v, old, table, PTF_DEFER);
    return 0;
}

int xc_mod_entry(struct xc_machine *m, struct xc_vcpu *v, uint64_t table, uint32_t index,
                 uint64_t new, int preserve_ad)
{
    if (table >= m->nr_frames || m->frames[table].owner != v->domid ||
        !(m->frames[table].flags & PGF_VALIDATED))
        return -EINVAL;
    if (m->frames[table].type == PGT_L1)
        return xc_l1_update(m, v, table, index, new, preserve_ad);
    if (m->frames[table].type > PGT_L4)
        return -EINVAL;
    return mod_upper(m, v, table, index & 511, new, preserve_ad);
}

/*
 * mmu_update's MMU_NORMAL_PT_UPDATE on any frame of the domain (Xen's
 * do_mmu_update): a checked update of a validated page table, else a plain
 * write if the frame is or can become writable.  The write goes through
 * the hypervisor's own mapping, so code translated from the frame goes.
 */
int xc_mmu_normal_update(struct xc_machine *m, struct xc_vcpu *v, uint64_t ma, uint64_t val,
                         int preserve_ad)
{
    uint64_t mfn = ma >> PAGE_SHIFT;
    struct page_info *pg;
    if (mfn >= m->nr_frames || m->frames[mfn].owner != v->domid || (ma & 7))
        return -EINVAL;
    pg = &m->frames[mfn];
    xc_frame_written(m, mfn);
    if ((pg->flags & PGF_VALIDATED) && pg->type_count) {
        if (pg->type == PGT_WRITABLE)
            *(uint64_t *)(m->mem + ma) = val;
        else if (pg->type > PGT_L4)
            return -EINVAL;  /* a descriptor page */
        else
            return xc_mod_entry(m, v, mfn, (ma & (PAGE_SIZE - 1)) >> 3, val, preserve_ad);
        return 0;
    }
    if (xc_get_type(m, v, mfn, PGT_WRITABLE, 0))
        return -EINVAL;
    *(uint64_t *)(m->mem + ma) = val;
    xc_put_type(m, v, mfn, 0, -1);
    return 0;
}

/* -- pins, base pointers, unfinished puts ------------------------------------------------ */

/* Xen's put_old_guest_table: 0, or -ERESTART while it is not done. */
int xc_put_old_guest_table(struct xc_machine *m, struct xc_vcpu *v)
{
    uint64_t mfn = v->old_guest_table;
    int rc;
    if (!mfn)
        return 0;
    rc = xc_put_type(m, v, mfn, PTF_PREEMPTIBLE | (v->old_guest_partial ? PTF_PARTIAL_SET : 0),
                     v->old_guest_ptpg ? (int64_t)v->old_guest_ptpg : -1);
    if (rc == -ERESTART || rc == -EINTR) {
        v->old_guest_partial = rc == -ERESTART;
        return -ERESTART;
    }
    xc_put_page(m, mfn);
    v->old_guest_table = v->old_guest_ptpg = 0;
    v->old_guest_partial = 1;
    return 0;
}

/* A put that was interrupted finishes through old_guest_table. */
static int defer_put(struct xc_vcpu *v, uint64_t mfn, int rc)
{
    if (rc != -ERESTART && rc != -EINTR)
        return rc;
    v->old_guest_table = mfn;
    v->old_guest_ptpg = 0;
    v->old_guest_partial = rc == -ERESTART;
    return -ERESTART;
}

/* MMUEXT_PIN_L[1234]_TABLE. */
int xc_pin(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int level)
{
    uint64_t unfinished = v->old_guest_table;
    int rc;
    if (!xc_get_page(m, mfn, v->domid))
        return -EINVAL;
    rc = xc_get_type(m, v, mfn, level, 1);
    if (rc) {
        if (v->old_guest_table != mfn || unfinished == mfn)
            xc_put_page(m, mfn);     /* else the failed validation's undoing holds it */
        return rc == -EINTR ? -ERESTART : rc;
    }
    if (!(m->frames[mfn].flags & PGF_PINNED)) {
        m->frames[mfn].flags |= PGF_PINNED;
        return 0;
    }
    if (level == PGT_L1)
        xc_put_page_and_type(m, v, mfn, 0);
    else
        v->old_guest_table = mfn, v->old_guest_ptpg = 0, v->old_guest_partial = 0;
    return -EINVAL;          /* already pinned */
}

/* MMUEXT_UNPIN_TABLE. */
int xc_unpin(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn)
{
    int rc;
    if (!xc_get_page(m, mfn, v->domid))
        return -EINVAL;
    if (!(m->frames[mfn].flags & PGF_PINNED)) {
        xc_put_page(m, mfn);
        return -EINVAL;
    }
    m->frames[mfn].flags &= ~PGF_PINNED;
    rc = xc_put_page_and_type(m, v, mfn, 1);
    if (defer_put(v, mfn, rc) == -ERESTART)
        rc = 0;              /* done as far as the guest sees; finished later */
    xc_put_page(m, mfn);
    return rc;
}

static int new_user_baseptr(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn)
{
    uint64_t old = v->user_cr3;
    int rc;
    if (old == mfn)
        return 0;
    if (mfn && (rc = xc_get_page_and_type(m, v, mfn, v->domid, PGT_L4, PTF_PREEMPTIBLE)))
        return rc == -EINTR ? -ERESTART : rc;
    v->user_cr3 = mfn;
    return old ? defer_put(v, old, xc_put_page_and_type(m, v, old, 1)) : 0;
}

/* MMUEXT_NEW_BASEPTR / NEW_USER_BASEPTR (Xen's new_guest_cr3). */
int xc_new_baseptr(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int user)
{
    uint64_t old = v->kernel_cr3;
    int rc;
    if (user)
        return new_user_baseptr(m, v, mfn);
    if ((rc = xc_put_old_guest_table(m, v)))
        return rc;
    xc_request_flush(m);
    if (old == mfn)
        return 0;            /* also a restart after the put of the old one */
    rc = xc_get_page_and_type(m, v, mfn, v->domid, PGT_L4, PTF_PREEMPTIBLE);
    if (rc)
        return rc == -EINTR ? -ERESTART : rc;
    v->kernel_cr3 = v->cr3 = mfn;
    return old ? defer_put(v, old, xc_put_page_and_type(m, v, old, 1)) : 0;
}
