/*
 * gntpt - grants against page types across two domains: a frame another
 * domain maps writable must not become a page table, and a page table
 * must not be mapped writable by another domain.
 *
 * Xen 4.17 counts a grant mapping's writable reference in the granter's
 * frame type (map_grant_ref -> get_page_and_type(PGT_writable_page) for a
 * writable map, so a pin or a hook of the frame as a table then fails:
 * -EINVAL from do_mmuext_op / mod_l2_entry), and refuses the writable type
 * to a frame that is a table (GNTST_general_error).  A read-only map of a
 * table is allowed (its reader sees the entries, as Xen gives them), a
 * grant copy into one is GNTST_general_error (gnttab_copy_claim_buf), and
 * GNTMAP_contains_pte writes the grant PTE only into an L1 of the mapper's
 * own (create_grant_pte_mapping: get_page_from_mfn(gl1mfn, current), then
 * the PGT_l1_page_table check).  After an unmap the mapper's old address
 * must fault (replace_grant_pv_mapping clears the PTE, the TLB is flushed).
 *
 * Two copies: role=granter peer=2 (domain 1) and role=mapper peer=1; they
 * step through a mailbox the granter grants at ref 2.  Each side prints
 * "gntpt-ROLE: [n] ...", then "gntpt-ROLE: N/M attempts refused".
 */
#include "attempt.h"
#include "cmdline.h"
#include "gnttab.h"

#define MAILBOX_REF     2
#define P_REF           8       /* frame P: data, then the granter's L1 */
#define LIVE_L1_REF     9       /* the granter's live bootstrap L1 */
#define L4_REF          10      /* the granter's L4 */
#define DATA_REF        11      /* a plain data page */
#define MARKER          0x5a5a5a5a5a5a5a58UL    /* bit 0 clear: a not-present PTE */
#define WAIT_ROUNDS     2000000
#define GNTCOPY_dest_gref (1 << 1)
#define GNTMAP_contains_pte (1 << 4)

struct mailbox {
    volatile uint32_t g_step, m_step;
    volatile uint64_t l1_maddr;         /* an entry of the granter's live L1 */
};

static domid_t peer;
static struct mailbox *box;

static void wait_step(volatile uint32_t *step, uint32_t want)
{
    for ( unsigned long i = 0; i < WAIT_ROUNDS; i++ )
    {
        if ( __atomic_load_n(step, __ATOMIC_SEQ_CST) >= want )
            return;
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
    printk("gntpt: FAILED: the peer never reached step %u\n", want);
    xen_shutdown(SHUTDOWN_crash);
}

static void step(volatile uint32_t *mine, uint32_t n)
{
    __atomic_store_n(mine, n, __ATOMIC_SEQ_CST);
}

static void verdict(const char *what, long got, long want)
{
    if ( got == want )
        report(want ? REFUSED : ALLOWED, what, "%ld", got);
    else
        report(got == 0 ? BREACH : DIFFERENT, what, "%ld (Xen: %ld)", got, want);
}

/* ---- the granter -------------------------------------------------------- */

static void granter_while_mapped(uint8_t *p)
{
    const pte_t *l4 = (const pte_t *)start_info->pt_base;
    pte_t *l2e = entry_of(l4, GUEST_VIRT_BASE + (PT_ENTRIES - 1) * PT_SPAN(2), 2);
    long rc;

    verdict("PIN_L1 of P while the mapper maps it writable",
            mmuext_one(MMUEXT_PIN_L1_TABLE, virt_to_mfn(p)), -XEN_EINVAL);
    rc = *l2e ? -XEN_EEXIST : mmu_update1(virt_to_maddr(l2e),
                                          ((pte_t)virt_to_mfn(p) << PAGE_SHIFT) | PTE_TABLE,
                                          MMU_NORMAL_PT_UPDATE);
    verdict("P hooked into an L2 slot while the mapper maps it writable", rc, -XEN_EINVAL);
    if ( !rc )
        mmu_update1(virt_to_maddr(l2e), 0, MMU_NORMAL_PT_UPDATE);
    if ( *(volatile uint64_t *)p != MARKER )
        report(WRONG, "the mapper's write through its writable map", "P holds 0x%lx",
               *(volatile uint64_t *)p);
}

static void granter(void)
{
    const pte_t *l4 = (const pte_t *)start_info->pt_base;
    pte_t *l1e = l1e_of(l4, GUEST_VIRT_BASE);
    uint8_t *p = padding_alloc(), *data = padding_alloc();

    box = padding_alloc();
    box->l1_maddr = virt_to_maddr(l1e);
    remap_self(p, PTE_RO);          /* our own map must not hold the writable type */
    gnttab_grant(P_REF, peer, virt_to_mfn(p), 0);
    gnttab_grant(LIVE_L1_REF, peer, virt_to_mfn((void *)((unsigned long)l1e & ~(PAGE_SIZE - 1))), 0);
    gnttab_grant(L4_REF, peer, virt_to_mfn(l4), 0);
    gnttab_grant(DATA_REF, peer, virt_to_mfn(data), 0);
    gnttab_grant(MAILBOX_REF, peer, virt_to_mfn(box), 0);
    step(&box->g_step, 1);
    wait_step(&box->m_step, 1);         /* P mapped writable, written */
    granter_while_mapped(p);
    step(&box->g_step, 2);
    wait_step(&box->m_step, 2);         /* unmapped */
    verdict("PIN_L1 of P once the mapper unmapped it",
            mmuext_one(MMUEXT_PIN_L1_TABLE, virt_to_mfn(p)), 0);
    step(&box->g_step, 3);
    wait_step(&box->m_step, 3);         /* the mapper's attempts on the tables */
    verdict("UNPIN of P", mmuext_one(MMUEXT_UNPIN_TABLE, virt_to_mfn(p)), 0);
    step(&box->g_step, 4);
    wait_step(&box->m_step, 4);         /* the mapper is done */
}

/* ---- the mapper --------------------------------------------------------- */

static struct mailbox *map_mailbox(grant_handle_t *h)
{
    void *va = padding_alloc();

    for ( unsigned long i = 0; i < WAIT_ROUNDS; i++ )
    {
        if ( gnttab_map(peer, MAILBOX_REF, va, 0, h) == GNTST_okay )
            return va;
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
    printk("gntpt: FAILED: the granter's mailbox never appeared\n");
    xen_shutdown(SHUTDOWN_crash);
}

static int copy_into(grant_ref_t ref, const void *src)
{
    struct gnttab_copy op = {
        .source = { .u.gmfn = virt_to_mfn(src), .domid = DOMID_SELF },
        .dest = { .u.ref = ref, .domid = peer },
        .len = 8, .flags = GNTCOPY_dest_gref,
    };

    return gnttab_copy_one(&op);
}

/* A writable map of a table is refused; a read-only one shows its entries. */
static void map_table(const char *rw, const char *ro, grant_ref_t ref, uint8_t *va)
{
    grant_handle_t h;
    int st = gnttab_map(peer, ref, va, 0, &h);

    verdict(rw, st, GNTST_general_error);
    if ( st == GNTST_okay )
        gnttab_unmap(va, h);
    st = gnttab_map(peer, ref, va, 1, &h);
    verdict(ro, st, GNTST_okay);
    if ( st != GNTST_okay )
        return;
    verdict("  a write through that read-only map faults",
            write_faults((volatile uint64_t *)va, 0) ? -1 : 0, -1);
    gnttab_unmap(va, h);
}

/* GNTMAP_contains_pte: the grant PTE written at a machine address. */
static int map_by_pte(uint64_t pte_maddr, grant_handle_t *h)
{
    struct gnttab_map_grant_ref op = {
        .host_addr = pte_maddr, .flags = GNTMAP_host_map | GNTMAP_contains_pte,
        .ref = DATA_REF, .dom = peer,
    };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_map_grant_ref, &op, 1);

    *h = op.handle;
    return rc ? rc : op.status;
}

static void mapper_on_tables(uint8_t *va, uint8_t *mine)
{
    grant_handle_t h;
    int st;

    *(volatile uint64_t *)mine = 0xdeadUL << 12 | PTE_RW;    /* a PTE naming frame 0xdead */
    map_table("map P writable once it is the granter's L1",
              "map P read-only once it is the granter's L1", P_REF, va);
    verdict("GNTTABOP_copy into P (dest_gref) once it is an L1", copy_into(P_REF, mine),
            GNTST_general_error);
    map_table("map the granter's live L1 writable", "map the granter's live L1 read-only",
              LIVE_L1_REF, va);
    verdict("GNTTABOP_copy into the granter's live L1", copy_into(LIVE_L1_REF, mine),
            GNTST_general_error);
    map_table("map the granter's L4 writable", "map the granter's L4 read-only", L4_REF, va);
    st = map_by_pte(box->l1_maddr, &h);
    verdict("GNTMAP_contains_pte into an entry of the granter's L1", st, GNTST_general_error);
    if ( st == GNTST_okay )
        gnttab_unmap((void *)box->l1_maddr, h);
    st = map_by_pte(virt_to_maddr(mine), &h);
    verdict("GNTMAP_contains_pte into its own data page (no L1)", st, GNTST_general_error);
}

static void mapper(void)
{
    uint8_t *va = padding_alloc(), *mine = padding_alloc();
    grant_handle_t hbox, h;
    int st;

    box = map_mailbox(&hbox);
    wait_step(&box->g_step, 1);
    st = gnttab_map(peer, P_REF, va, 0, &h);
    verdict("map P writable (a data page)", st, GNTST_okay);
    if ( st == GNTST_okay )
        *(volatile uint64_t *)va = MARKER;
    step(&box->m_step, 1);
    wait_step(&box->g_step, 2);
    if ( st == GNTST_okay )
        verdict("unmap P", gnttab_unmap(va, h), GNTST_okay);
    verdict("a write at P's old address after the unmap faults",
            write_faults((volatile uint64_t *)va, 1) ? -1 : 0, -1);
    step(&box->m_step, 2);
    wait_step(&box->g_step, 3);
    mapper_on_tables(va, mine);
    step(&box->m_step, 3);
    wait_step(&box->g_step, 4);
    step(&box->m_step, 4);
    gnttab_unmap((void *)box, hbox);
}

void guest_main(start_info_t *si)
{
    char role[16];
    long rc;

    (void)si;
    if ( !cmdline_get("role", role, sizeof(role)) )
        role[0] = 0;
    peer = (domid_t)cmdline_num("peer", 0);
    attempts_init(str_eq(role, "granter") ? "gntpt-granter" : "gntpt-mapper");
    rc = gnttab_init();
    if ( rc )
    {
        printk("gntpt: FAILED: gnttab_init: %ld\n", rc);
        xen_shutdown(SHUTDOWN_crash);
    }
    if ( str_eq(role, "granter") )
        granter();
    else
        mapper();
    attempts_done();
}
