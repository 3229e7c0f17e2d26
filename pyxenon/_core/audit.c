/*
 * The whole-state invariant checker (hypervisor/audit.py calls it after
 * every operation in the property tests, the fuzzer and the host's debug
 * mode), and the TLB shadow it needs.
 *
 * Unicorn does not show what its TLB holds, but every entry it holds came
 * from xc_tlb_fill and lives until the next full flush: recording each
 * fill (while checking is on) and forgetting them at each flush gives a
 * superset of the engine's cached translations.
 *
 * Checked, for the domains whose frame ranges the caller names:
 *  - counts equal references: every general and type reference a frame
 *    has is held by something (a validated entry, a pin, a base pointer, a
 *    GDT slot, a partial state, an unfinished put, or one the caller lists);
 *  - a present entry of a validated table names a frame of its domain (or
 *    is a grant mapping), with the type its level needs (linear entries:
 *    read-only, a validated table of the same level);
 *  - nothing typed page table or descriptor page is reachable writable,
 *    walking each base pointer, nor cached writable in the engine's TLB;
 *  - a cached translation names a frame the running domain may reach.
 */
#include <stdlib.h>
#include <string.h>
#include "core.h"

#define SHADOW_MAX 16384

struct xc_tlb_shadow {
    uint32_t n;
    uint32_t overflow;
    struct { uint64_t va, paddr; uint32_t perms; uint16_t domid; } e[SHADOW_MAX];
};

int xc_shadow_enable(struct xc_machine *m, int on)
{
    if (on && !m->shadow) {
        m->shadow = calloc(1, sizeof(*m->shadow));
        xc_request_flush(m);   /* start from an empty TLB, so the shadow is complete */
        return m->shadow ? 0 : -1;
    }
    if (!on && m->shadow) {
        free(m->shadow);
        m->shadow = NULL;
    }
    return 0;
}

void xc_shadow_clear(struct xc_machine *m)
{
    if (m->shadow)
        m->shadow->n = m->shadow->overflow = 0;
}

void xc_shadow_record(struct xc_machine *m, uint64_t va, uint64_t paddr, uint32_t perms)
{
    struct xc_tlb_shadow *s = m->shadow;
    if (s->n == SHADOW_MAX) {
        s->overflow = 1;        /* flush, so that the shadow is complete again */
        xc_request_flush(m);
        return;
    }
    s->e[s->n].va = va;
    s->e[s->n].paddr = paddr;
    s->e[s->n].perms = perms;
    s->e[s->n].domid = m->current ? m->current->domid : OWNER_FREE;   /* whose walk filled it */
    s->n++;
}

/* -- the checker ------------------------------------------------------------------ */

enum {
    V_COUNT = 1,       /* general count differs from the references found */
    V_TYPE_COUNT,      /* type count differs */
    V_FOREIGN,         /* an entry names a frame not its domain's */
    V_BAD_TYPE,        /* an entry names a frame without the type its level needs */
    V_WRITABLE_TABLE,  /* a table or descriptor page reachable writable */
    V_TLB_WRITABLE,    /* ... or cached writable in the TLB */
    V_TLB_FOREIGN,     /* the TLB holds a frame the running domain may not reach */
    V_BAD_FLAGS,       /* an entry of a validated table has bits the rules refuse */
    V_STATE,           /* a type state that cannot happen (count without a type...) */
};

struct audit {
    struct xc_machine *m;
    const uint64_t *ranges;   /* first, count pairs: the frames checked */
    uint32_t nr_ranges;
    uint32_t *count, *type;   /* references found, per checked frame */
    uint8_t *seen;            /* walk memo: bit (level*2 + rw) per frame */
    uint64_t total;
    struct xc_violation *out;
    int max, n;
};

static int64_t slot_of(struct audit *a, uint64_t mfn)
{
    uint64_t base = 0;
    for (uint32_t r = 0; r < a->nr_ranges; r++) {
        uint64_t first = a->ranges[2 * r], n = a->ranges[2 * r + 1];
        if (mfn >= first && mfn < first + n)
            return (int64_t)(base + mfn - first);
        base += n;
    }
    return -1;
}

static void report(struct audit *a, uint32_t code, uint64_t mfn, uint64_t detail)
{
    if (a->n < a->max)
        a->out[a->n] = (struct xc_violation){code, 0, mfn, detail};
    a->n++;
}

static void hold_n(struct audit *a, uint64_t mfn, uint64_t refs, uint64_t type_refs);

static void hold(struct audit *a, uint64_t mfn, int type_ref)
{
    hold_n(a, mfn, 1, type_ref);
}

static void hold_n(struct audit *a, uint64_t mfn, uint64_t refs, uint64_t type_refs)
{
    int64_t s = slot_of(a, mfn);
    if (s < 0)
        return;
    a->count[s] += refs;
    a->type[s] += type_refs;
}

static uint64_t *table_of(struct xc_machine *m, uint64_t mfn)
{
    return (uint64_t *)(m->mem + (mfn << PAGE_SHIFT));
}

#define UPPER_ALLOWED (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY | \
                       _PAGE_AVAIL | _PAGE_AVAIL_HIGH | _PAGE_NX | PADDR_MASK)
#define L1_ALLOWED ((UPPER_ALLOWED | _PAGE_GLOBAL) & ~_PAGE_GNTTAB)

static int foreign(struct xc_machine *m, uint64_t table, uint64_t mfn)
{
    return mfn >= m->nr_frames || m->frames[mfn].owner != m->frames[table].owner;
}

static void check_grant_l1e(struct audit *a, uint64_t table, uint64_t e)
{
    struct xc_machine *m = a->m;
    uint64_t mfn = (e & PADDR_MASK) >> PAGE_SHIFT;
    if (mfn >= m->nr_frames || m->frames[mfn].owner >= OWNER_XEN || !m->frames[mfn].count) {
        report(a, V_FOREIGN, table, e);
        return;
    }
    if ((e & _PAGE_RW) && m->frames[mfn].type != PGT_WRITABLE)
        report(a, V_WRITABLE_TABLE, mfn, e);
}

static void check_l1e(struct audit *a, uint64_t table, uint64_t e)
{
    struct xc_machine *m = a->m;
    uint64_t mfn = (e & PADDR_MASK) >> PAGE_SHIFT;
    if (e & _PAGE_GNTTAB) {
        check_grant_l1e(a, table, e);   /* its references belong to the grant */
        return;
    }
    if (e & ~L1_ALLOWED)
        report(a, V_BAD_FLAGS, table, e);
    if (foreign(m, table, mfn)) {
        report(a, V_FOREIGN, table, e);
        return;
    }
    if ((e & _PAGE_RW) && m->frames[mfn].type != PGT_WRITABLE)
        report(a, V_WRITABLE_TABLE, mfn, e);
    hold(a, mfn, !!(e & _PAGE_RW));
}

/* An upper entry names the next level down, or (read-only) a validated
 * table of its own level: a linear entry. */
static int right_type(const struct page_info *pg, int level, uint64_t e)
{
    if (pg->type == level && !(e & _PAGE_RW) && (pg->flags & PGF_VALIDATED))
        return 1;
    return pg->type == level - 1 && (pg->flags & (PGF_VALIDATED | PGF_PARTIAL));
}

static void check_upper(struct audit *a, uint64_t table, int level, uint64_t e)
{
    struct xc_machine *m = a->m;
    uint64_t mfn = (e & PADDR_MASK) >> PAGE_SHIFT;
    if (e & ~UPPER_ALLOWED)
        report(a, V_BAD_FLAGS, table, e);
    if (mfn == table) {
        if (e & _PAGE_RW)
            report(a, V_WRITABLE_TABLE, table, e);
        return;
    }
    if (foreign(m, table, mfn)) {
        report(a, V_FOREIGN, table, e);
        return;
    }
    if (!right_type(&m->frames[mfn], level, e))
        report(a, V_BAD_TYPE, table, e);
    hold(a, mfn, 1);
}

static int xen_slot(int level, unsigned i)
{
    return level == PGT_L4 && i >= 256 && i <= 271;
}

/* The entries of a table that hold references: all of a validated one,
 * those below nr_validated of a partial one. */
/* PTF_partial_set: the entry where a table stopped holds a general
 * reference; the type reference is the child's own partial state. */
static void check_partial_entry(struct audit *a, const struct page_info *pg, uint64_t e)
{
    if (pg->flags & PGF_PARTIAL_SET)
        hold_n(a, (e & PADDR_MASK) >> PAGE_SHIFT, 1, 0);
}

/* How many leading entries hold references: all of a validated table,
 * those below nr_validated of a partial one. */
static unsigned holding_entries(const struct page_info *pg)
{
    if (pg->flags & PGF_VALIDATED)
        return 512;
    return (pg->flags & PGF_PARTIAL) ? pg->nr_validated : 0;
}

static void check_table(struct audit *a, uint64_t mfn)
{
    struct page_info *pg = &a->m->frames[mfn];
    const uint64_t *t = table_of(a->m, mfn);
    unsigned limit;
    if (pg->type < PGT_L1 || pg->type > PGT_L4 || !pg->type_count)
        return;
    limit = holding_entries(pg);
    for (unsigned i = 0; i < limit; i++) {
        if (!(t[i] & _PAGE_PRESENT) || xen_slot(pg->type, i))
            continue;
        if (pg->type == PGT_L1)
            check_l1e(a, mfn, t[i]);
        else
            check_upper(a, mfn, pg->type, t[i]);
    }
    if ((pg->flags & PGF_PARTIAL) && limit < 512)
        check_partial_entry(a, pg, t[limit]);
}

static void check_frame_state(struct audit *a, uint64_t mfn)
{
    struct page_info *pg = &a->m->frames[mfn];
    if (pg->flags & PGF_PINNED)
        hold(a, mfn, 1);
    if (pg->flags & PGF_PARTIAL)
        hold(a, mfn, 1);
    if ((pg->type_count && pg->type == PGT_NONE) ||
        (pg->type_count && pg->type <= PGT_L4 && !(pg->flags & (PGF_VALIDATED | PGF_PARTIAL))) ||
        ((pg->flags & PGF_PARTIAL) && pg->type_count != 1))
        report(a, V_STATE, mfn, pg->type | (uint64_t)pg->type_count << 8);
    check_table(a, mfn);
}

static void check_vcpu(struct audit *a, struct xc_vcpu *v)
{
    if (v->kernel_cr3)
        hold(a, v->kernel_cr3, 1);
    if (v->user_cr3)
        hold(a, v->user_cr3, 1);
    for (uint32_t i = 0; i < v->gdt_frames && i < GDT_GUEST_PAGES; i++)
        hold(a, v->gdt_mfn[i], 1);
    if (v->old_guest_table)
        hold(a, v->old_guest_table, !v->old_guest_partial);
}

static int first_visit(struct audit *a, uint64_t mfn, int level, int rw)
{
    int64_t s = slot_of(a, mfn);
    uint8_t bit = (uint8_t)(1u << (level * 2 - 2 + rw));
    if (s < 0 || (a->seen[s] & bit))
        return 0;
    a->seen[s] |= bit;
    return 1;
}

/* Walk the tables below mfn (a table of `level`), rw: every level above
 * allowed writes.  Each (table, level, rw) is walked once. */
static void walk(struct audit *a, uint64_t mfn, int level, int rw)
{
    struct xc_machine *m = a->m;
    const uint64_t *t;
    if (!first_visit(a, mfn, level, rw))
        return;
    t = table_of(m, mfn);
    for (unsigned i = 0; i < 512; i++) {
        uint64_t e = t[i], child = (e & PADDR_MASK) >> PAGE_SHIFT;
        int crw = rw && (e & _PAGE_RW);
        if (!(e & _PAGE_PRESENT) || xen_slot(level, i) || child >= m->nr_frames)
            continue;
        if (level > 1)
            walk(a, child, level - 1, crw);
        else if (crw && m->frames[child].type != PGT_WRITABLE)
            report(a, V_WRITABLE_TABLE, child, mfn << 12 | i << 3);
    }
}

/* Shadow entry i, for the checker's Python half: 0 with *va, *mfn and the
 * domain whose walk filled it set, or -1 (no such entry, or a flush is
 * pending: the TLB will be empty). */
int xc_shadow_entry(struct xc_machine *m, uint32_t i, uint64_t *va, uint64_t *mfn,
                    uint16_t *domid)
{
    if (!m->shadow || m->flush_pending || i >= m->shadow->n)
        return -1;
    *va = m->shadow->e[i].va;
    *mfn = m->shadow->e[i].paddr >> PAGE_SHIFT;
    *domid = m->shadow->e[i].domid;
    return 0;
}

static void check_tlb(struct audit *a)
{
    struct xc_machine *m = a->m;
    if (!m->shadow || m->flush_pending)
        return;           /* a pending flush empties the TLB before the guest runs again */
    for (uint32_t i = 0; i < m->shadow->n; i++) {
        uint64_t mfn = m->shadow->e[i].paddr >> PAGE_SHIFT;
        struct page_info *pg;
        if (mfn >= m->nr_frames)
            continue;             /* the m2p table, mapped read-only */
        pg = &m->frames[mfn];
        if ((m->shadow->e[i].perms & UC_PROT_WRITE) && pg->type != PGT_WRITABLE)
            report(a, V_TLB_WRITABLE, mfn, m->shadow->e[i].va);
        if (pg->owner == OWNER_FREE)
            report(a, V_TLB_FOREIGN, mfn, m->shadow->e[i].va);
    }
}

static void compare_counts(struct audit *a)
{
    uint64_t s = 0;
    for (uint32_t r = 0; r < a->nr_ranges; r++)
        for (uint64_t f = a->ranges[2 * r]; f < a->ranges[2 * r] + a->ranges[2 * r + 1]; f++, s++) {
            struct page_info *pg = &a->m->frames[f];
            if (a->count[s] != pg->count)
                report(a, V_COUNT, f, (uint64_t)a->count[s] << 32 | pg->count);
            if (a->type[s] != pg->type_count)
                report(a, V_TYPE_COUNT, f, (uint64_t)a->type[s] << 32 | pg->type_count);
        }
}

static void check_all(struct audit *a, const uint64_t *extra, uint64_t n_extra)
{
    struct xc_machine *m = a->m;
    for (uint32_t r = 0; r < a->nr_ranges; r++)
        for (uint64_t f = a->ranges[2 * r]; f < a->ranges[2 * r] + a->ranges[2 * r + 1]; f++)
            check_frame_state(a, f);
    for (struct xc_vcpu *v = m->first; v; v = v->next)
        check_vcpu(a, v);
    for (uint64_t i = 0; i < n_extra; i++)
        hold_n(a, extra[3 * i], extra[3 * i + 1], extra[3 * i + 2]);
    compare_counts(a);
    for (struct xc_vcpu *v = m->first; v; v = v->next) {
        walk(a, v->kernel_cr3, 4, 1);
        if (v->user_cr3)
            walk(a, v->user_cr3, 4, 1);
    }
    check_tlb(a);
}

/*
 * ranges: nr_ranges (first, count) pairs of frames to check; extra:
 * n_extra (mfn, general refs, type refs) triples the caller holds (grant
 * mappings, vcpu_info, Xen's pages).  Returns how many violations were
 * found (the first max are in out), or -1 without memory.
 */
int xc_audit(struct xc_machine *m, const uint64_t *ranges, uint32_t nr_ranges,
             const uint64_t *extra, uint64_t n_extra, struct xc_violation *out, int max)
{
    struct audit a = {m, ranges, nr_ranges, NULL, NULL, NULL, 0, out, max, 0};
    for (uint32_t r = 0; r < nr_ranges; r++)
        a.total += ranges[2 * r + 1];
    a.count = calloc(a.total + 1, sizeof(uint32_t));
    a.type = calloc(a.total + 1, sizeof(uint32_t));
    a.seen = calloc(a.total + 1, 1);
    if (a.count && a.type && a.seen)
        check_all(&a, extra, n_extra);
    else
        a.n = -1;
    free(a.count);
    free(a.type);
    free(a.seen);
    return a.n;
}
