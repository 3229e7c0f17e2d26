/*
 * linearpt - page tables that name themselves (or each other), the way a
 * guest could reach its own page tables writable, and Xen's rules for the
 * entries that may do so (xen/arch/x86/mm.c, Xen 4.17):
 *
 *  - An L2 (L3, L4) entry names an L1 (L2, L3): get_page_from_l2e() (l3e,
 *    l4e) takes the next lower type with get_page_and_type_from_mfn().
 *    While a frame is being validated as level N, _get_page_type() has
 *    already given it type N with a count of 1, so an entry of it naming
 *    itself (or naming its parent, also mid-validation) as level N-1 is a
 *    type clash: -EINVAL.
 *  - Only then get_lN_linear_pagetable() may accept the entry as a
 *    "linear" one: it must be read-only, name itself or an *already
 *    validated* table of its own level, and a table that has linear
 *    entries is never the target of one, nor vice versa.  Otherwise the
 *    -EINVAL stands, and mod_lN_entry(), do_mmu_update(), the pin of
 *    do_mmuext_op() and new_guest_cr3() return it.
 *  - An L1 entry mapping a frame writable takes its writable type
 *    (get_page_from_l1e); for a table that is being validated (or its
 *    parent) that fails: "could_not_pin", -EBUSY, which no linear rule
 *    turns into success.
 *  - A read-only linear entry is accepted: the tables it shows must stay
 *    read-only through it.
 *
 * Each attempt that names a table writable then looks for the breach
 * itself: it writes a harmless non-present marker through the address that
 * would map the table (a #PF is the refusal) and reads the table back
 * through its read-only 1:1 mapping.  Last, a write to an L1 through its
 * read-only mapping, which Xen's writable page-table assist emulates.
 * "linearpt: N/M attempts refused", then poweroff.
 */
#include "attempt.h"

#define SELF        5           /* the slot a table names itself in */
#define MARK_SLOT   100         /* an unused slot the probe writes */
#define MARKER      0xa00UL     /* not present, no address: harmless */

static pte_t *l4, *l3, *l2;     /* the bootstrap tables (1:1, read-only) */
static unsigned int l4_slot, l3_slot;   /* where VIRT_BASE is in them */

static unsigned long mfn_of(const void *table)
{
    return virt_to_mfn(table);
}

static pte_t table_entry(const void *table, uint64_t flags)
{
    return ((pte_t)mfn_of(table) << PAGE_SHIFT) | flags;
}

static unsigned long va_of(unsigned int i4, unsigned int i3, unsigned int i2,
                           unsigned int i1)
{
    unsigned long va = ((unsigned long)i4 << 39) | ((unsigned long)i3 << 30) |
                       ((unsigned long)i2 << 21) | ((unsigned long)i1 << 12);

    return i4 >= 256 ? va | 0xffff000000000000UL : va;
}

/* A guest slot of t that is empty (from 1: slot 0 stays as it is). */
static unsigned int empty_slot(const pte_t *t, unsigned int limit)
{
    unsigned int i;

    for ( i = 1; i < limit; i++ )
        if ( !(t[i] & _PAGE_PRESENT) )
            return i;
    printk("linearpt: no empty slot\n");
    xen_shutdown(SHUTDOWN_crash);
    return 0;
}

/* A zeroed padding frame, its entries set by the caller, then read-only. */
static pte_t *new_table(void)
{
    pte_t *t = padding_alloc();

    if ( !t )
    {
        printk("linearpt: out of padding frames\n");
        xen_shutdown(SHUTDOWN_crash);
    }
    return t;
}

static void seal(pte_t *t)
{
    long rc = remap_self(t, PTE_RO);

    if ( rc )
        printk("linearpt: (making 0x%lx read-only failed: %s)\n", (unsigned long)t, rcstr(rc));
}

/* Write entry i of table t (an L1-L4 of ours) with mmu_update. */
static long set_entry(const pte_t *t, unsigned int i, pte_t val)
{
    return mmu_update1(virt_to_maddr(&t[i]), val, MMU_NORMAL_PT_UPDATE);
}

/* Undo a hook that should not have been accepted, and forget its TLB. */
static void unhook(const pte_t *t, unsigned int i, long rc)
{
    if ( rc == 0 )
        set_entry(t, i, 0);
    mmuext_one(MMUEXT_TLB_FLUSH_LOCAL, 0);
}

/*
 * Can va write the table t?  0: the write faulted; 1: it wrote t; 2: it
 * wrote somewhere else (still a writable mapping Xen would not give).
 */
static int writable(unsigned long va, const pte_t *t)
{
    volatile uint64_t *p = (uint64_t *)va + MARK_SLOT;
    int seen;

    if ( write_faults(p, MARKER) )
        return 0;
    seen = t[MARK_SLOT] == MARKER;
    *p = 0;
    return seen ? 1 : 2;
}

static const char *wstr(int w)
{
    return w == 0 ? "writing through it faults" :
           w == 1 ? "the table is WRITABLE through it" :
                    "that address is writable (not the table)";
}

/* Xen refuses with -err, and no writable access may exist either way. */
static enum verdict refused_unwritable(long rc, int err, int w)
{
    if ( w )
        return BREACH;
    return refusal(rc, err);
}

/* ---- self-referencing writable entries ------------------------------------ */

/*
 * After a breach: g (an L1 in use, writable at g_va) lets the guest map
 * any frame -- here its own live L2, writable, at window (g's MARK_SLOT).
 * An information line, not an attempt.
 */
static void escalate(volatile uint64_t *g_va, unsigned long window)
{
    unsigned int idx = empty_slot(l2, PT_ENTRIES);
    int w;

    g_va[MARK_SLOT] = table_entry(l2, PTE_RW);
    mmuext_one(MMUEXT_TLB_FLUSH_LOCAL, 0);
    w = !write_faults((uint64_t *)window + idx, MARKER) && l2[idx] == MARKER;
    printk("linearpt:   through it, its live L2 (mfn 0x%lx) %s\n", mfn_of(l2),
           w ? "is mapped WRITABLE too: any frame can be mapped" : "could not be mapped");
    if ( w )
        ((volatile uint64_t *)window)[idx] = 0;
    g_va[MARK_SLOT] = 0;
    mmuext_one(MMUEXT_TLB_FLUSH_LOCAL, 0);
}

/* get_page_from_l3e -> get_page_and_type_from_mfn(G, PGT_l2_page_table) ->
 * promote_l2_table -> get_page_from_l2e(G[5]) -> _get_page_type(G, l1):
 * G is an L2 with count 1: -EINVAL; get_l2_linear_pagetable: RW: no. */
static void l2_self_writable_in_l3(void)
{
    pte_t *g = new_table();
    unsigned int slot = empty_slot(l3, PT_ENTRIES);
    long rc;
    int w;

    g[SELF] = table_entry(g, PTE_TABLE);
    seal(g);
    rc = set_entry(l3, slot, table_entry(g, PTE_TABLE));
    w = writable(va_of(l4_slot, slot, SELF, SELF), g);
    report(refused_unwritable(rc, XEN_EINVAL, w),
           "an L2 whose entry 5 names itself writable, into an empty L3 slot",
           "%s, %s (Xen: -22 EINVAL)", rcstr(rc), wstr(w));
    if ( w == 1 )
        escalate((uint64_t *)va_of(l4_slot, slot, SELF, SELF),
                 va_of(l4_slot, slot, SELF, MARK_SLOT));
    unhook(l3, slot, rc);
}

/* do_mmuext_op MMUEXT_PIN_L2_TABLE -> get_page_type_preemptible(G, l2)
 * -> promote_l2_table -> get_page_from_l2e(G[5]): -EINVAL as above. */
static void pin_l2_self_writable(void)
{
    pte_t *g = new_table();
    unsigned int slot = empty_slot(l3, PT_ENTRIES);
    long rc, hook = -1;
    int w = 0;

    g[SELF] = table_entry(g, PTE_TABLE);
    seal(g);
    rc = mmuext_one(MMUEXT_PIN_L2_TABLE, mfn_of(g));
    if ( rc == 0 )          /* pinned: a validated L2 hooks in fine */
    {
        hook = set_entry(l3, slot, table_entry(g, PTE_TABLE));
        w = writable(va_of(l4_slot, slot, SELF, SELF), g);
    }
    report(refused_unwritable(rc, XEN_EINVAL, w),
           "MMUEXT_PIN_L2_TABLE of an L2 whose entry 5 names itself writable",
           "%s%s%s (Xen: -22 EINVAL)", rcstr(rc), rc ? "" : "; hooked into L3, ",
           rc ? "" : wstr(w));
    unhook(l3, slot, hook);
}

/* get_page_from_l4e -> (H, l3) -> promote_l3_table -> get_page_from_l3e(H[5])
 * -> _get_page_type(H, l2): H is an L3 with count 1: -EINVAL; not linear (RW). */
static void l3_self_writable_in_l4(void)
{
    pte_t *h = new_table();
    unsigned int slot = empty_slot(l4, 256);
    long rc;
    int w;

    h[SELF] = table_entry(h, PTE_TABLE);
    seal(h);
    rc = set_entry(l4, slot, table_entry(h, PTE_TABLE));
    w = writable(va_of(slot, SELF, SELF, SELF), h);
    report(refused_unwritable(rc, XEN_EINVAL, w),
           "an L3 whose entry 5 names itself writable, into an empty L4 slot",
           "%s, %s (Xen: -22 EINVAL)", rcstr(rc), wstr(w));
    unhook(l4, slot, rc);
}

/* L3 H -> L2 G -> H again as an L1, writable: G's validation asks for H as
 * an L1 while H is an L3 with count 1: _get_page_type -EINVAL. */
static void l2_names_parent_l3_writable(void)
{
    pte_t *h = new_table(), *g = new_table();
    unsigned int slot = empty_slot(l4, 256);
    long rc;
    int w;

    h[SELF] = table_entry(g, PTE_TABLE);
    g[SELF] = table_entry(h, PTE_TABLE);
    seal(g);
    seal(h);
    rc = set_entry(l4, slot, table_entry(h, PTE_TABLE));
    w = writable(va_of(slot, SELF, SELF, SELF), g);
    report(refused_unwritable(rc, XEN_EINVAL, w),
           "an L3 whose L2 names the L3 back writable, into an empty L4 slot",
           "%s, %s (Xen: -22 EINVAL)", rcstr(rc), wstr(w));
    unhook(l4, slot, rc);
}

/* PIN_L4 -> promote_l4_table -> get_page_from_l4e(N[5]) -> _get_page_type(N,
 * l3): N is an L4 with count 1: -EINVAL; get_l4_linear_pagetable: RW. */
static void pin_l4_self_writable(void)
{
    pte_t *n = new_table();
    long rc;

    n[SELF] = table_entry(n, PTE_TABLE);
    seal(n);
    rc = mmuext_one(MMUEXT_PIN_L4_TABLE, mfn_of(n));
    report(refusal(rc, XEN_EINVAL),
           "MMUEXT_PIN_L4_TABLE of an L4 whose entry 5 names itself writable",
           "%s (Xen: -22 EINVAL)", rcstr(rc));
    if ( rc == 0 )
        mmuext_one(MMUEXT_UNPIN_TABLE, mfn_of(n));
}

/* new_guest_cr3 -> get_page_and_type_from_mfn(N, root) -> as above: -EINVAL. */
static void new_baseptr_self_writable(void)
{
    pte_t *n = new_table();
    unsigned int slot = empty_slot(l4, 256);
    long rc;
    int w = 0;

    memcpy(n, l4, PAGE_SIZE);
    n[slot] = table_entry(n, PTE_TABLE);
    seal(n);
    rc = mmuext_one(MMUEXT_NEW_BASEPTR, mfn_of(n));
    if ( rc == 0 )
    {
        w = writable(va_of(slot, slot, slot, slot), n);
        mmuext_one(MMUEXT_NEW_BASEPTR, mfn_of(l4));
    }
    report(refused_unwritable(rc, XEN_EINVAL, w),
           "MMUEXT_NEW_BASEPTR to a copy of its L4 with a writable self-entry",
           "%s%s%s (Xen: -22 EINVAL)", rcstr(rc), rc ? "" : ", ", rc ? "" : wstr(w));
}

/* ---- L1s that map their own tables writable ---------------------------------- */

/* PIN_L1 -> _get_page_type(F, l1) -> promote_l1_table -> get_page_from_l1e(F
 * RW) -> get_page_type(F, PGT_writable_page) fails (F is an L1 with count
 * 1): could_not_pin, -EBUSY.  If pinned anyway, hook it in and look. */
static void pin_l1_self_writable(void)
{
    pte_t *f = new_table();
    unsigned int slot = empty_slot(l2, PT_ENTRIES);
    long rc, hook = -1;
    int w = 0;

    f[0] = table_entry(f, PTE_RW);
    seal(f);
    rc = mmuext_one(MMUEXT_PIN_L1_TABLE, mfn_of(f));
    if ( rc == 0 )
    {
        hook = set_entry(l2, slot, table_entry(f, PTE_TABLE));
        w = writable(va_of(l4_slot, l3_slot, slot, 0), f);
    }
    report(refused_unwritable(rc, XEN_EBUSY, w),
           "MMUEXT_PIN_L1_TABLE of an L1 whose entry 0 maps itself writable",
           "%s%s%s (Xen: -16 EBUSY)", rcstr(rc), rc ? "" : "; hooked into L2, ",
           rc ? "" : wstr(w));
    unhook(l2, slot, hook);
}

/* mod_l2_entry -> get_page_from_l2e -> (F, l1): -EBUSY as above; only an
 * -EINVAL would try get_l2_linear_pagetable. */
static void l1_self_writable_in_l2(void)
{
    pte_t *f = new_table();
    unsigned int slot = empty_slot(l2, PT_ENTRIES);
    long rc;
    int w;

    f[0] = table_entry(f, PTE_RW);
    seal(f);
    rc = set_entry(l2, slot, table_entry(f, PTE_TABLE));
    w = writable(va_of(l4_slot, l3_slot, slot, 0), f);
    report(refused_unwritable(rc, XEN_EBUSY, w),
           "an L1 whose entry 0 maps itself writable, into an empty L2 slot",
           "%s, %s (Xen: -16 EBUSY)", rcstr(rc), wstr(w));
    unhook(l2, slot, rc);
}

/* L2 G -> L1 K -> G writable: K's validation asks for G writable while G
 * is an L2 with count 1: get_page_from_l1e -EBUSY, up through G's. */
static void l1_maps_parent_l2_writable(void)
{
    pte_t *g = new_table(), *k = new_table();
    unsigned int slot = empty_slot(l3, PT_ENTRIES);
    long rc;
    int w;

    g[SELF] = table_entry(k, PTE_TABLE);
    k[0] = table_entry(g, PTE_RW);
    seal(k);
    seal(g);
    rc = set_entry(l3, slot, table_entry(g, PTE_TABLE));
    w = writable(va_of(l4_slot, slot, SELF, 0), g);
    report(refused_unwritable(rc, XEN_EBUSY, w),
           "an L2 whose L1 maps the L2 writable, into an empty L3 slot",
           "%s, %s (Xen: -16 EBUSY)", rcstr(rc), wstr(w));
    unhook(l3, slot, rc);
}

/* ---- read-only linear entries: accepted, and read-only ------------------- */

/*
 * An accepted read-only linear entry: va must read `want` and fault on a
 * write (the probe writes back what it read, in case it goes through).
 */
static void ro_linear(const char *what, long rc, unsigned long va, uint64_t want)
{
    uint64_t got = 0;
    int rfault = rc == 0 ? read_faults((uint64_t *)va, &got) : 1;
    int wfault = rc == 0 && !rfault ? write_faults((uint64_t *)va, got) : 1;
    enum verdict v = rc != 0 ? DIFFERENT : !wfault ? BREACH :
                     rfault || got != want ? DIFFERENT : REFUSED;

    report(v, what, "%s, reads %s0x%lx, %s (Xen: accepted, read-only)", rcstr(rc),
           rfault ? "nothing (#PF) " : got == want ? "" : "the wrong ",
           got, wfault ? "a write faults" : "a write went THROUGH");
}

/* get_page_from_l2e: (L2 as l1) -EINVAL, then get_l2_linear_pagetable: a
 * read-only entry naming its own table is accepted (no counts). */
static void ro_self_linear_l2(void)
{
    unsigned int slot = empty_slot(l2, PT_ENTRIES);
    long rc = set_entry(l2, slot, table_entry(l2, PTE_RO));

    ro_linear("write its L2 through a read-only linear L2 self-entry",
              rc, va_of(l4_slot, l3_slot, slot, slot), l2[0]);
    unhook(l2, slot, rc);
}

/* get_page_from_l4e: (L4 as l3) -EINVAL, then get_l4_linear_pagetable: self, read-only. */
static void ro_self_linear_l4(void)
{
    unsigned int slot = empty_slot(l4, 256);
    long rc = set_entry(l4, slot, table_entry(l4, PTE_RO));

    ro_linear("write its L4 through a read-only linear L4 self-entry",
              rc, va_of(slot, slot, slot, slot) + 8 * l4_slot, l4[l4_slot]);
    unhook(l4, slot, rc);
}

/* A pinned (validated) L2 A whose entry 0 names the bootstrap L1. */
static pte_t *pinned_l2(void)
{
    pte_t *a = new_table();
    long rc;

    a[0] = l2[0];
    seal(a);
    rc = mmuext_one(MMUEXT_PIN_L2_TABLE, mfn_of(a));
    if ( rc )
        printk("linearpt: (pinning a plain L2 failed: %s)\n", rcstr(rc));
    return a;
}

/* get_l2_linear_pagetable: read-only, names a validated L2 of the domain:
 * accepted.  The write through it faults: the L2 entry is read-only, and
 * the writable page-table assist does not apply, as the leaf entry (A's
 * entry 0) is writable (pv_ro_page_fault: "only looking for read-only
 * mappings" in guest_get_eff_kern_l1e()). */
static void ro_linear_other_l2(void)
{
    pte_t *a = pinned_l2();
    unsigned int slot = empty_slot(l2, PT_ENTRIES);
    long rc = set_entry(l2, slot, table_entry(a, PTE_RO));
    const pte_t *l1 = mfn_to_virt(PTE_MFN(l2[0]));

    ro_linear("write an L1 through a read-only linear entry naming another L2",
              rc, va_of(l4_slot, l3_slot, slot, 0), l1[0]);
    unhook(l2, slot, rc);
}

/* get_l2_linear_pagetable: "Attempt to create linear p.t. with write perms". */
static void rw_linear_other_l2(void)
{
    pte_t *a = pinned_l2();
    unsigned int slot = empty_slot(l2, PT_ENTRIES);
    long rc = set_entry(l2, slot, table_entry(a, PTE_TABLE));
    int w = rc == 0 ? writable(va_of(l4_slot, l3_slot, slot, 0), mfn_to_virt(PTE_MFN(l2[0]))) : 0;

    report(refused_unwritable(rc, XEN_EINVAL, w),
           "a writable linear L2 entry naming another (validated) L2",
           "%s%s%s (Xen: -22 EINVAL)", rcstr(rc), rc ? "" : ", ", rc ? "" : wstr(w));
    unhook(l2, slot, rc);
}

/* (Z as l1) -EINVAL: Z is still a writable page; get_l2_linear_pagetable:
 * Z is no validated L2. */
static void ro_linear_unvalidated(void)
{
    pte_t *z = new_table();        /* still mapped writable: not a table */
    unsigned int slot = empty_slot(l2, PT_ENTRIES);
    long rc;

    z[0] = l2[0];
    rc = set_entry(l2, slot, table_entry(z, PTE_RO));
    report(refusal(rc, XEN_EINVAL),
           "a read-only linear L2 entry naming a frame that is no validated L2",
           "%s (Xen: -22 EINVAL)", rcstr(rc));
    unhook(l2, slot, rc);
}

/* get_l2_linear_pagetable: inc_linear_uses(B) fails when B has linear
 * entries of its own (and inc_linear_entries(A) when A is a linear target). */
static void linear_chain(void)
{
    pte_t *a = pinned_l2(), *b = pinned_l2();
    long pre = set_entry(b, 1, table_entry(a, PTE_RO));   /* B -> A: fine */
    long rc = set_entry(a, 1, table_entry(b, PTE_RO));    /* A -> B: a chain */

    report(pre ? DIFFERENT : refusal(rc, XEN_EINVAL),
           "a read-only linear entry naming an L2 that has a linear entry itself",
           "B->A %s, then A->B %s (Xen: 0, then -22 EINVAL)", rcstr(pre), rcstr(rc));
    unhook(a, 1, rc);
    unhook(b, 1, pre);
}

/* inc_linear_entries(T) fails while T is the target of a linear entry. */
static void linear_target_gets_entry(void)
{
    pte_t *t = pinned_l2(), *d = pinned_l2(), *e = pinned_l2();
    long pre = set_entry(d, 1, table_entry(t, PTE_RO));   /* D -> T: fine */
    long rc = set_entry(t, 1, table_entry(e, PTE_RO));    /* T -> E */

    report(pre ? DIFFERENT : refusal(rc, XEN_EINVAL),
           "a linear entry in an L2 that is itself a linear target",
           "D->T %s, then T->E %s (Xen: 0, then -22 EINVAL)", rcstr(pre), rcstr(rc));
    unhook(t, 1, rc);
    unhook(d, 1, pre);
}

/* ---- Xen's writable page-table assist ------------------------------------- */

/*
 * A kernel write to one of its own L1s through a read-only mapping whose
 * *leaf* entry is read-only is emulated as an update of the entry written
 * (traps.c -> pv_ro_page_fault -> ptwr_do_page_fault, at cr2): here entry
 * 7 of a private L1, which must change while entry 0 stays.
 */
static void ptwr_updates_that_entry(void)
{
    pte_t *p = new_table(), *x = new_table();
    unsigned int slot = empty_slot(l2, PT_ENTRIES);
    pte_t want = table_entry(x, PTE_RO), old0;
    long rc;
    int f = 1;

    p[0] = table_entry(x, PTE_RW);
    p[7] = table_entry(x, PTE_RW);
    old0 = p[0];
    seal(p);
    rc = set_entry(l2, slot, table_entry(p, PTE_TABLE));
    if ( rc == 0 )
        f = write_faults(&p[7], want);
    /* Xen's adjust_guest_l1e marks a user mapping global: ignore that bit. */
    report(rc || f ? DIFFERENT : (p[7] & ~(_PAGE_DIRTY | _PAGE_GLOBAL)) == want &&
           (p[0] & ~_PAGE_GLOBAL) == (old0 & ~_PAGE_GLOBAL) ? ALLOWED : WRONG,
           "write entry 7 of its own L1 through the L1's read-only mapping",
           "%s, %s, entry 7 0x%lx, entry 0 %s (Xen: emulated, entry 7 0x%lx, entry 0 kept)",
           rcstr(rc), f ? "#PF" : "no fault", p[7],
           (p[0] & ~_PAGE_GLOBAL) == (old0 & ~_PAGE_GLOBAL) ? "kept" : "CHANGED", want);
    unhook(l2, slot, rc);
}

void guest_main(start_info_t *si)
{
    l4 = (pte_t *)si->pt_base;
    l4_slot = PT_INDEX(GUEST_VIRT_BASE, 4);
    l3_slot = PT_INDEX(GUEST_VIRT_BASE, 3);
    l3 = mfn_to_virt(PTE_MFN(l4[l4_slot]));
    l2 = mfn_to_virt(PTE_MFN(l3[l3_slot]));
    attempts_init("linearpt");
    printk("linearpt: page tables naming themselves: L4 mfn 0x%lx, L3 mfn 0x%lx, "
           "L2 mfn 0x%lx\n", mfn_of(l4), mfn_of(l3), mfn_of(l2));

    l2_self_writable_in_l3();
    pin_l2_self_writable();
    l3_self_writable_in_l4();
    l2_names_parent_l3_writable();
    pin_l4_self_writable();
    new_baseptr_self_writable();
    pin_l1_self_writable();
    l1_self_writable_in_l2();
    l1_maps_parent_l2_writable();
    ro_self_linear_l2();
    ro_self_linear_l4();
    ro_linear_other_l2();
    rw_linear_other_l2();
    ro_linear_unvalidated();
    linear_chain();
    linear_target_gets_entry();
    ptwr_updates_that_entry();
    attempts_done();
}
