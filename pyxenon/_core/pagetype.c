/*
 * Page types and their references, after Xen 4.17's xen/arch/x86/mm.c
 * (_get_page_type, _put_page_type, validate_page, devalidate_page,
 * _put_final_page_type, get_page_from_l1e, mod_l1_entry), for one engine
 * and one thread: no locked or in-flight states are needed, the rest is
 * Xen's.  The rules that matter for isolation, and why:
 *
 *  - A frame's type is recorded before its contents are validated, so a
 *    nested request for the same frame as another type (a table naming
 *    itself writable, or as a lower level) fails: the frame already is of
 *    the type being validated (Xen's "validate locked" state).
 *  - The type stays when the type count reaches 0; changing it later
 *    flushes the TLB if translations made while it had the old type may
 *    still be cached (TLB-flush timestamps), so a frame that was writable
 *    is never writable through a stale translation once it is a table.
 *  - Validation of L2-L4 tables can stop part-way (PGF_PARTIAL,
 *    nr_validated) when the trap's work budget is spent, and goes on when
 *    the guest repeats the call (-ERESTART), as Xen preempts it.
 * Levels 2-4 (their entries, linear tables, the operations) are in
 * ptlevels.c.
 */
#include <errno.h>
#include "core.h"

#define COUNT_MAX 0x7FFFFFF0u
/* Everything but what Xen's base_disallow_mask leaves a guest, plus the
 * grant bit, minus Global (allowed in L1 entries): Xen's L1_DISALLOW_MASK
 * for a domain with no I/O memory, so cache attributes are refused too. */
#define BASE_ALLOWED (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY | \
                      _PAGE_AVAIL | _PAGE_AVAIL_HIGH | _PAGE_NX | PADDR_MASK)
#define L1_DISALLOW ((~BASE_ALLOWED | _PAGE_GNTTAB) & ~_PAGE_GLOBAL)
/* Flags an L1 entry may change without being validated again (Xen's
 * FASTPATH_FLAG_WHITELIST). */
#define L1_FASTPATH (_PAGE_NX | _PAGE_AVAIL_HIGH | _PAGE_AVAIL | _PAGE_GLOBAL | _PAGE_DIRTY | \
                     _PAGE_ACCESSED | _PAGE_USER)
#define IO_FRAMES 256    /* Xen gives the low 1 MiB to DOMID_IO */

static inline struct page_info *page_of(struct xc_machine *m, uint64_t mfn)
{
    return &m->frames[mfn];
}

static inline uint64_t *table_of(struct xc_machine *m, uint64_t mfn)
{
    return (uint64_t *)(m->mem + (mfn << PAGE_SHIFT));
}

static inline uint64_t entry_mfn(uint64_t e)
{
    return (e & PADDR_MASK) >> PAGE_SHIFT;
}

/* -- general references ------------------------------------------------------ */

/* 1 and a reference taken, or 0: the frame is not domid's (Xen's get_page). */
int xc_get_page(struct xc_machine *m, uint64_t mfn, uint16_t domid)
{
    struct page_info *pg;
    if (mfn >= m->nr_frames)
        return 0;
    pg = page_of(m, mfn);
    if (pg->owner != domid || pg->count >= COUNT_MAX)
        return 0;
    pg->count++;
    return 1;
}

void xc_put_page(struct xc_machine *m, uint64_t mfn)
{
    if (mfn < m->nr_frames && m->frames[mfn].count)
        m->frames[mfn].count--;
}

/* -- preemption and flushes ------------------------------------------------------ */

/* Xen's hypercall_preempt_check(), made deterministic: the trap's work so far. */
int xc_preempt_check(struct xc_machine *m)
{
    return m->work >= m->work_budget;
}

/* The frame's last type reference went: translations made until now may be
 * cached until the next flush (Xen's set_tlbflush_timestamp). */
static void stamp(struct xc_machine *m, struct page_info *pg)
{
    pg->tlbflush_stamp = m->tlbflush_clock;
}

/* A frame changes type: no translation cached while it had the old type
 * may survive (Xen's tlbflush_filter + flush_mask in _get_page_type).  The
 * flush happens before the guest's next instruction; no guest code runs
 * in between. */
static void flush_if_stale(struct xc_machine *m, struct page_info *pg)
{
    if (pg->tlbflush_stamp == m->tlbflush_clock)
        xc_request_flush(m);
}

static int is_table(int type)
{
    return type >= PGT_L1 && type <= PGT_L4;
}

/* -- validation ------------------------------------------------------------------ */

/*
 * Xen's check_descriptor (pv/descriptor-tables.c) for a 64-bit PV domain:
 * a not-present descriptor is safe; a present one has its DPL raised to the
 * guest kernel's RPL (3), written back, so a ring-0 code or data segment
 * becomes a ring-3 one; any code or data segment is then fine; a type-0
 * system descriptor is the harmless upper half of a 16-byte one.  Every
 * other system descriptor is refused -- call gates too, where Xen would
 * fix up and emulate them (a deliberate difference: pyxenon emulates no
 * gates, ARCHITECTURE.md).  1 if *desc is acceptable (possibly rewritten).
 */
int xc_check_descriptor(uint64_t *desc)
{
    uint64_t d = *desc;
    if (!(d & (1UL << 47)))
        return 1;
    d |= 3UL << 45;
    if (d & (1UL << 44)) {
        *desc = d;
        return 1;
    }
    return ((d >> 40) & 0xF) == 0;
}

/* Xen's validate_segdesc_page: each descriptor checked, and fixed in place. */
static int promote_seg_desc(struct xc_machine *m, uint64_t mfn)
{
    uint64_t *t = table_of(m, mfn);
    int rc = 0, changed = 0;
    m->work += 512 * XC_PTE_COST;
    for (int i = 0; i < 512 && !rc; i++) {
        uint64_t before = t[i];
        rc = xc_check_descriptor(&t[i]) ? 0 : -EINVAL;
        changed |= t[i] != before;
    }
    if (changed)
        xc_frame_written(m, mfn);   /* code may have been fetched from it */
    return rc;
}

static int promote(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int type,
                   int preemptible)
{
    if (type == PGT_SEG_DESC)
        return promote_seg_desc(m, mfn);
    if (type == PGT_L1)
        return xc_promote_l1(m, v, mfn);
    return xc_promote_table(m, v, mfn, type, preemptible);
}

/* Xen's validate_page: the frame holds its new type with count 1. */
static int validate(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int type,
                    int preemptible)
{
    struct page_info *pg = page_of(m, mfn);
    int rc;
    if (type == PGT_WRITABLE) {
        pg->flags |= PGF_VALIDATED;
        return 0;
    }
    rc = promote(m, v, mfn, type, preemptible);
    if (m->plant & PLANT_TYPE_AFTER_VALIDATION)
        pg->type = type, pg->type_count = 1;
    if (rc == 0) {
        pg->flags |= PGF_VALIDATED;
    } else if (rc == -EINTR) {
        pg->type_count = 0;          /* nothing was validated; the type stays */
    } else if (rc == -ERESTART || (v && v->old_guest_table == mfn)) {
        pg->count++;                 /* the partial state's own reference */
        pg->flags |= PGF_PARTIAL;
    } else {
        pg->type_count = 0;
        pg->type = PGT_NONE;
    }
    return rc;
}

/* A first type reference: the type changes (flushing stale translations)
 * and the frame is validated from scratch. */
static int first_type_ref(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int type,
                          int preemptible)
{
    struct page_info *pg = page_of(m, mfn);
    if (pg->type != type) {
        if (!(m->plant & PLANT_NO_TYPE_CHANGE_FLUSH))
            flush_if_stale(m, pg);
        pg->type = type;
        pg->flags &= ~PGF_VALIDATED;
    }
    pg->type_count = 1;
    if (pg->flags & PGF_VALIDATED)
        return 0;
    if (m->plant & PLANT_TYPE_AFTER_VALIDATION)
        pg->type = PGT_NONE, pg->type_count = 0;   /* nested checks see an untyped frame */
    pg->nr_validated = 0;
    pg->flags &= ~PGF_PARTIAL_SET;
    pg->linear = 0;
    return validate(m, v, mfn, type, preemptible);
}

/* Xen's _get_page_type: 0, or -EINVAL, -EBUSY..., or -ERESTART (partial). */
int xc_get_type(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int type, int preemptible)
{
    struct page_info *pg = page_of(m, mfn);
    int rc;
    if (pg->type_count >= COUNT_MAX)
        return -EINVAL;
    if (pg->type_count == 0)
        return first_type_ref(m, v, mfn, type, preemptible);
    if (pg->type != type)
        return -EINVAL;
    if (pg->flags & PGF_VALIDATED) {
        pg->type_count++;
        return 0;
    }
    if (!(pg->flags & PGF_PARTIAL))
        return -EINVAL;   /* being validated right now: a table naming itself */
    /* Left part-way: this caller's reference takes over the partial one. */
    pg->flags &= ~PGF_PARTIAL;
    rc = validate(m, v, mfn, type, preemptible);
    xc_put_page(m, mfn);
    return rc;
}

/* Xen's devalidate_page: drop what the table's entries hold. */
static int devalidate(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int was_partial,
                      int preemptible)
{
    struct page_info *pg = page_of(m, mfn);
    if (!was_partial) {
        pg->nr_validated = 512;
        pg->flags &= ~PGF_PARTIAL_SET;
    }
    if (pg->type == PGT_L1) {
        xc_demote_l1(m, v, mfn);
        return 0;
    }
    return xc_demote_table(m, v, mfn, pg->type, preemptible);
}

static int linear_ref(struct xc_machine *m, uint64_t mfn, int64_t ptpg)
{
    return ptpg >= 0 && m->frames[ptpg].type == m->frames[mfn].type;
}

static void drop_linear(struct xc_machine *m, uint64_t mfn, int64_t ptpg)
{
    m->frames[mfn].linear++;
    m->frames[ptpg].linear--;
}

/* Xen's _put_final_page_type: the last type reference of a table. */
static int put_final(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int was,
                     int preemptible, int64_t ptpg)
{
    struct page_info *pg = page_of(m, mfn);
    int rc = devalidate(m, v, mfn, was & PGF_PARTIAL, preemptible);
    if (linear_ref(m, mfn, ptpg) && (was & PGF_VALIDATED) && rc != -EINTR)
        drop_linear(m, mfn, ptpg);
    if (rc == 0) {
        stamp(m, pg);
        pg->type_count--;
    } else if (rc == -EINTR) {
        pg->flags |= PGF_VALIDATED;
    } else {
        pg->count++;
        pg->flags |= PGF_PARTIAL;
    }
    return rc;
}

/* The last type reference of a validated or partial table goes: its
 * entries are dropped (which may stop part-way, -ERESTART). */
static int put_last_table_ref(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int flags,
                              int64_t ptpg)
{
    struct page_info *pg = page_of(m, mfn);
    int was = pg->flags, rc;
    pg->flags &= ~(PGF_VALIDATED | PGF_PARTIAL);
    rc = put_final(m, v, mfn, was, flags & PTF_PREEMPTIBLE, ptpg);
    if (was & PGF_PARTIAL)
        xc_put_page(m, mfn);
    return rc;
}

/* Xen's _put_page_type.  ptpg is the table whose entry held the reference
 * (-1: none), which tells a linear entry's reference from others. */
int xc_put_type(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int flags, int64_t ptpg)
{
    struct page_info *pg = page_of(m, mfn);
    int linear = linear_ref(m, mfn, ptpg);
    if ((flags & PTF_PARTIAL_SET) && !(pg->flags & PGF_PARTIAL))
        return 0;
    if (pg->type_count == 0)
        return 0;     /* unbalanced: leaking is safer than underflow */
    if (pg->type_count == 1 && is_table(pg->type) && (pg->flags & (PGF_VALIDATED | PGF_PARTIAL)))
        return put_last_table_ref(m, v, mfn, flags, ptpg);
    if (pg->type_count == 1 && !linear)
        stamp(m, pg);
    pg->type_count--;
    if (linear)
        drop_linear(m, mfn, ptpg);
    return 0;
}

/* A validation that failed part-way hands its reference to old_guest_table
 * -- only if this call made it so: a put left unfinished by an earlier
 * hypercall holds its own. */
static int handed_over(const struct xc_vcpu *v, uint64_t mfn, uint64_t unfinished)
{
    return v && v->old_guest_table == mfn && unfinished != mfn;
}

/* Xen's get_page_and_type_from_mfn. */
int xc_get_page_and_type(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, uint16_t domid,
                         int type, int flags)
{
    uint64_t unfinished = v ? v->old_guest_table : 0;
    int rc;
    if (!(flags & PTF_PARTIAL_SET) && !xc_get_page(m, mfn, domid))
        return -EINVAL;
    rc = xc_get_type(m, v, mfn, type, flags & PTF_PREEMPTIBLE);
    if (rc == 0 || (flags & PTF_PARTIAL_SET))
        return rc;
    if (!handed_over(v, mfn, unfinished) &&
        !((flags & PTF_RETAIN_REF_ON_RESTART) && rc == -ERESTART))
        xc_put_page(m, mfn);
    return rc;
}

int xc_put_page_and_type(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int preemptible)
{
    int rc = xc_put_type(m, v, mfn, preemptible ? PTF_PREEMPTIBLE : 0, -1);
    if (rc == 0)
        xc_put_page(m, mfn);
    return rc;
}

/* -- L1 entries -------------------------------------------------------------------- */

/* Xen's adjust_guest_l1e for a 64-bit PV guest: its kernel runs in ring 3,
 * so every mapping is a user one; kernel pages are marked, others global. */
uint64_t xc_adjust_l1e(uint64_t e)
{
    if (!(e & _PAGE_PRESENT))
        return e;
    if (!(e & _PAGE_USER))
        e |= _PAGE_GUEST_KERNEL | _PAGE_USER;
    if (!(e & _PAGE_GUEST_KERNEL))
        e |= _PAGE_GLOBAL | _PAGE_USER;
    return e;
}

/* A frame the guest cannot map at all: Xen's I/O path refuses it. */
static int unmappable(struct xc_machine *m, uint64_t mfn)
{
    return mfn >= m->nr_frames || mfn < IO_FRAMES || m->frames[mfn].owner == OWNER_XEN;
}

/* Xen's get_page_from_l1e for a domain with no I/O memory: 0 or -errno. */
int xc_get_l1e(struct xc_machine *m, struct xc_vcpu *v, uint16_t domid, uint64_t e)
{
    uint64_t mfn = entry_mfn(e);
    if (e & L1_DISALLOW)
        return -EINVAL;
    if (unmappable(m, mfn))
        return mfn == (PADDR_MASK >> PAGE_SHIFT) ? -EINVAL : -EPERM;
    if (!xc_get_page(m, mfn, domid))
        return -EBUSY;      /* another domain's, or nobody's: could_not_pin */
    if ((e & _PAGE_RW) && xc_get_type(m, v, mfn, PGT_WRITABLE, 0)) {
        xc_put_page(m, mfn);
        return -EBUSY;
    }
    return 0;
}

/* Xen's put_page_from_l1e.  A grant mapping's references belong to its
 * grant; only unmap_grant_ref (or death) removes such an entry. */
void xc_put_l1e(struct xc_machine *m, struct xc_vcpu *v, uint64_t e)
{
    uint64_t mfn = entry_mfn(e);
    if (!(e & _PAGE_PRESENT) || (e & _PAGE_GNTTAB) || unmappable(m, mfn))
        return;
    if (e & _PAGE_RW)
        xc_put_page_and_type(m, v, mfn, 0);
    else
        xc_put_page(m, mfn);
}

static int changed(uint64_t old, uint64_t new, uint64_t fastpath)
{
    return ((old ^ new) & (PADDR_MASK | _PAGE_PRESENT | ~fastpath)) != 0;
}

static uint64_t preserve(uint64_t old, uint64_t new, int preserve_ad)
{
    return preserve_ad ? new | (old & (_PAGE_ACCESSED | _PAGE_DIRTY)) : new;
}

/* Xen's mod_l1_entry on entry index of the validated L1 table: 0 or -errno. */
int xc_l1_update(struct xc_machine *m, struct xc_vcpu *v, uint64_t table, uint32_t index,
                 uint64_t new, int preserve_ad)
{
    uint64_t *pte = table_of(m, table) + (index & 511);
    uint64_t old = *pte;
    int rc;
    if ((old & _PAGE_PRESENT) && (old & _PAGE_GNTTAB))
        return -EINVAL;     /* only unmap_grant_ref removes a grant mapping */
    if (new & _PAGE_PRESENT) {
        if (new & L1_DISALLOW)
            return -EINVAL;
        new = xc_adjust_l1e(new);
        if (!changed(old, new, L1_FASTPATH)) {
            *pte = preserve(old, new, preserve_ad);
            return 0;
        }
        if ((rc = xc_get_l1e(m, v, v->domid, new)) < 0)
            return rc;
    }
    *pte = preserve(old, new, preserve_ad);
    xc_put_l1e(m, v, old);
    return 0;
}

/* Xen's promote_l1_table: references for every present entry, or none. */
int xc_promote_l1(struct xc_machine *m, struct xc_vcpu *v, uint64_t table)
{
    uint64_t *t = table_of(m, table);
    uint16_t domid = m->frames[table].owner;
    m->work += 512 * XC_PTE_COST;
    for (int i = 0; i < 512; i++) {
        int rc;
        if (!(t[i] & _PAGE_PRESENT))
            continue;
        if ((rc = xc_get_l1e(m, v, domid, t[i])) < 0) {
            while (--i >= 0)
                xc_put_l1e(m, v, t[i]);
            return rc;
        }
        t[i] = xc_adjust_l1e(t[i]);
    }
    return 0;
}

void xc_demote_l1(struct xc_machine *m, struct xc_vcpu *v, uint64_t table)
{
    uint64_t *t = table_of(m, table);
    m->work += 512 * XC_PTE_COST;
    for (int i = 0; i < 512; i++)
        xc_put_l1e(m, v, t[i]);
}
