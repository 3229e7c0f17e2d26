/*
 * gntv2 - grant tables v1 and v2 between two domains, checked against
 * Xen 4.17's common/grant_table.c from the inside.
 *
 * Two copies run: role=granter (domain `peer`'s grants come from it) and
 * role=mapper.  They talk through a mailbox page the granter grants at
 * ref 2, one of the toolstack's reserved entries, which may stay mapped
 * across version switches (gnttab_set_version keeps entries 0..7 and
 * checks only the others for pins).  Each side advances its step in the
 * mailbox and waits for the other's:
 *
 *  1 granter: v1 grant ref 8 (page A).  mapper: maps it, reads it; a map
 *    of domain 0's ref 0 is GNTST_general_error (it exists, grants nothing).
 *  2 granter: set_version 2 while ref 8 is mapped: -EBUSY, version stays 1.
 *    mapper: unmaps ref 8.
 *  3 granter: set_version 2: 0; ref 2 survives with its in-use bits moved
 *    to the status frame; get_status_frames (and one index too many:
 *    GNTST_general_error; add_to_physmap of a status index out of range:
 *    -EINVAL); v2 grants: full page (ref 9), sub-page (ref 10), transitive
 *    back to the mapper's own grant (ref 11), a forged entry naming a
 *    frame the granter does not own (ref 12).  mapper: maps ref 9, copies
 *    the sub-page (and outside it: GNTST_general_error), maps the sub-page
 *    and transitive refs (GNTST_general_error), copies through the
 *    transitive one, maps ref 12 (GNTST_bad_page), device-maps ref 9
 *    (dev_bus_addr is the frame's; unmap by a wrong address:
 *    GNTST_bad_dev_addr).
 *  4 granter: set_version 1 with ref 9 mapped: -EBUSY.  mapper: unmaps it.
 *  5 granter: set_version 1 with a reserved entry above 32 bits: -ERANGE;
 *    with its status frame still mapped: -EBUSY; then 0, ref 2 back in v1
 *    form with GTF_reading|GTF_writing.  mapper: maps a new v1 grant.
 *
 * Success: "gntv2: ROLE: all N checks passed", SHUTDOWN_poweroff; a wrong
 * answer is printed with what Xen gives, and the domain crashes.
 */
#include "lib.h"
#include "mm.h"
#include "gnttab.h"
#include "cmdline.h"

#define MAILBOX_REF   2
#define FORGED_REF    3
#define WAIT_ROUNDS   2000000

struct mailbox {
    volatile uint32_t g_step, m_step;
    volatile uint64_t page_b_maddr;     /* for the mapper's device map check */
};

static unsigned int checks, failures;
static const char *role;
static domid_t peer;

static void expect(const char *what, long got, long want)
{
    checks++;
    if ( got == want )
    {
        printk("gntv2: %s: %s: %ld OK\n", role, what, got);
        return;
    }
    failures++;
    printk("gntv2: %s: %s: got %ld, want %ld FAILED\n", role, what, got, want);
}

static void wait_step(volatile uint32_t *step, uint32_t want)
{
    for ( unsigned long i = 0; i < WAIT_ROUNDS; i++ )
    {
        if ( __atomic_load_n(step, __ATOMIC_SEQ_CST) >= want )
            return;
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
    printk("gntv2: %s: FAILED: the peer never reached step %u\n", role, want);
    xen_shutdown(SHUTDOWN_crash);
}

static long set_version(uint32_t version, uint32_t *now)
{
    struct gnttab_set_version op = { .version = version };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_set_version, &op, 1);

    *now = op.version;
    return rc;
}

static long get_version(void)
{
    struct gnttab_get_version op = { .dom = DOMID_SELF };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_get_version, &op, 1);

    return rc ? rc : (long)op.version;
}

static long status_frames(uint32_t nr, uint64_t *list)
{
    struct gnttab_get_status_frames op = {
        .nr_frames = nr, .dom = DOMID_SELF, .frame_list = list,
    };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_get_status_frames, &op, 1);

    return rc ? rc : op.status;
}

struct xen_add_to_physmap {
    domid_t domid;
    uint16_t size;
    unsigned int space;
    unsigned long idx;
    unsigned long gpfn;
};

static long add_status_frame(unsigned long idx)
{
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF, .space = 1 /* XENMAPSPACE_grant_table */,
        .idx = idx | 0x80000000UL /* XENMAPIDX_grant_table_status */, .gpfn = 0x7000,
    };

    return _hypercall2(__HYPERVISOR_memory_op, 7 /* XENMEM_add_to_physmap */, &xatp);
}

static grant_entry_v2_t *table_v2(void)
{
    return (grant_entry_v2_t *)gnttab;
}

static void grant_v2(grant_ref_t ref, domid_t domid, unsigned long mfn, uint16_t flags)
{
    grant_entry_v2_t *e = &table_v2()[ref];

    e->full_page.frame = mfn;
    e->hdr.domid = domid;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&e->hdr.flags, flags, __ATOMIC_SEQ_CST);
}

/* ---- the granter -------------------------------------------------------- */

static struct mailbox *box;
static uint8_t *page_a, *page_b;

static void granter_v1(void)
{
    uint32_t now;

    gnttab_grant(MAILBOX_REF, peer, virt_to_mfn(box), 0);
    memcpy(page_a, "v1-data", 8);
    gnttab_grant(8, peer, virt_to_mfn(page_a), 1);
    box->page_b_maddr = virt_to_maddr(page_b);
    __atomic_store_n(&box->g_step, 1, __ATOMIC_SEQ_CST);
    wait_step(&box->m_step, 1);
    expect("set_version 2 with ref 8 mapped (gnttab_set_version)", set_version(2, &now), -XEN_EBUSY);
    expect("the version written back", now, 1);
    __atomic_store_n(&box->g_step, 2, __ATOMIC_SEQ_CST);
    wait_step(&box->m_step, 2);
}

/* Map our first status frame at a padding page (the v2 -> v1 check needs it mapped). */
static grant_status_t *map_status(unsigned long *va_out)
{
    uint64_t frame = 0;
    void *va = padding_alloc();

    expect("get_status_frames 1", status_frames(1, &frame), GNTST_okay);
    expect("get_status_frames 2 (one more than populated)", status_frames(2, &frame),
           GNTST_general_error);
    expect("add_to_physmap status index 4 (beyond max_grant_frames')", add_status_frame(4),
           -XEN_EINVAL);
    *va_out = (unsigned long)va;
    if ( HYPERVISOR_update_va_mapping(*va_out, (frame << PAGE_SHIFT) | PTE_RW, UVMF_INVLPG) )
        return NULL;
    return va;
}

static void granter_v2_grants(void)
{
    grant_entry_v2_t *t = table_v2();

    memcpy(page_b, "v2-data", 8);
    for ( int i = 0; i < 50; i++ )
        page_b[100 + i] = (uint8_t)(i + 1);
    grant_v2(9, peer, virt_to_mfn(page_b), GTF_permit_access);
    t[10].sub_page.page_off = 100;
    t[10].sub_page.length = 50;
    grant_v2(10, peer, virt_to_mfn(page_b), GTF_permit_access | GTF_sub_page);
    /* ref 11: the mapper's own ref 8 (granted to us), passed back to it */
    t[11].transitive.trans_domid = peer;
    t[11].transitive.gref = 8;
    t[11].hdr.domid = peer;
    __atomic_store_n(&t[11].hdr.flags, GTF_transitive, __ATOMIC_SEQ_CST);
    /* ref 12: forged, a frame we do not own */
    grant_v2(12, peer, 0xfffffffffUL, GTF_permit_access);
}

static void granter_v2(void)
{
    uint32_t now;
    unsigned long status_va = 0;
    grant_status_t *status;

    expect("set_version 2", set_version(2, &now), 0);
    expect("get_version", get_version(), 2);
    expect("ref 2's v2 flags", table_v2()[MAILBOX_REF].hdr.flags, GTF_permit_access);
    expect("ref 2's v2 frame", (long)table_v2()[MAILBOX_REF].full_page.frame, (long)virt_to_mfn(box));
    status = map_status(&status_va);
    expect("status frame mapped", status != NULL, 1);
    if ( status )
        expect("ref 2's status (the mailbox is mapped writable)", status[MAILBOX_REF],
               GTF_reading | GTF_writing);
    granter_v2_grants();
    __atomic_store_n(&box->g_step, 3, __ATOMIC_SEQ_CST);
    wait_step(&box->m_step, 3);
    if ( status )
        expect("ref 9's status while mapped", status[9], GTF_reading | GTF_writing);
    expect("set_version 1 with ref 9 mapped", set_version(1, &now), -XEN_EBUSY);
    __atomic_store_n(&box->g_step, 4, __ATOMIC_SEQ_CST);
    wait_step(&box->m_step, 4);
    table_v2()[FORGED_REF].full_page.frame = 1UL << 33;
    grant_v2(FORGED_REF, peer, 1UL << 33, GTF_permit_access);
    expect("set_version 1 with a reserved entry above 32 bits", set_version(1, &now), -XEN_ERANGE);
    table_v2()[FORGED_REF].hdr.flags = 0;
    expect("set_version 1 with the status frame mapped", set_version(1, &now), -XEN_EBUSY);
    HYPERVISOR_update_va_mapping(status_va, 0, UVMF_INVLPG);
    expect("set_version 1", set_version(1, &now), 0);
    expect("ref 2 back in v1 form, in-use bits with it", gnttab[MAILBOX_REF].flags,
           GTF_permit_access | GTF_reading | GTF_writing);
    expect("ref 9 cleared by the switch", gnttab[9].flags, 0);
}

static void granter(void)
{
    box = padding_alloc();
    page_a = padding_alloc();
    page_b = padding_alloc();
    granter_v1();
    granter_v2();
    memcpy(page_a, "v1-again", 9);
    gnttab_grant(8, peer, virt_to_mfn(page_a), 1);
    __atomic_store_n(&box->g_step, 5, __ATOMIC_SEQ_CST);
    wait_step(&box->m_step, 5);
    for ( unsigned long i = 0; i < WAIT_ROUNDS && (gnttab[MAILBOX_REF].flags & GTF_reading); i++ )
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    expect("ref 2 idle after the mapper unmapped", gnttab[MAILBOX_REF].flags, GTF_permit_access);
}

/* ---- the mapper ----------------------------------------------------------- */

static struct mailbox *mbox;
static grant_handle_t mbox_handle;
static uint8_t *mine;

static struct mailbox *map_mailbox(void)
{
    void *va = padding_alloc();

    for ( unsigned long i = 0; i < WAIT_ROUNDS; i++ )
    {
        if ( gnttab_map(peer, MAILBOX_REF, va, 0, &mbox_handle) == GNTST_okay )
            return va;
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
    printk("gntv2: mapper: FAILED: the granter's mailbox never appeared\n");
    xen_shutdown(SHUTDOWN_crash);
}

static int copy_from(grant_ref_t ref, uint16_t offset, uint16_t len)
{
    struct gnttab_copy op = {
        .source = { .u.ref = ref, .domid = peer, .offset = offset },
        .dest = { .u.gmfn = virt_to_mfn(mine), .domid = DOMID_SELF, .offset = 0 },
        .len = len, .flags = GNTCOPY_source_gref,
    };

    memset(mine, 0, 64);
    return gnttab_copy_one(&op);
}

static void mapper_v1(void *va, uint8_t *round_trip)
{
    grant_handle_t h, h0;

    memcpy(round_trip, "round-trip", 11);
    gnttab_grant(8, peer, virt_to_mfn(round_trip), 1);     /* for the transitive grant */
    wait_step(&mbox->g_step, 1);
    expect("map ref 8 (v1)", gnttab_map(peer, 8, va, 1, &h), GNTST_okay);
    expect("ref 8's bytes", memcmp(va, "v1-data", 8), 0);
    expect("map domain 0's ref 0 (not granted to us)", gnttab_map(0, 0, padding_alloc(), 1, &h0),
           GNTST_general_error);
    __atomic_store_n(&mbox->m_step, 1, __ATOMIC_SEQ_CST);
    wait_step(&mbox->g_step, 2);
    expect("unmap ref 8", gnttab_unmap(va, h), GNTST_okay);
    __atomic_store_n(&mbox->m_step, 2, __ATOMIC_SEQ_CST);
}

static void device_map(void)
{
    struct gnttab_map_grant_ref op = {
        .flags = GNTMAP_device_map, .ref = 9, .dom = peer,
    };
    struct gnttab_unmap_grant_ref un = { 0 };

    HYPERVISOR_grant_table_op(GNTTABOP_map_grant_ref, &op, 1);
    expect("device map ref 9 (GNTMAP_device_map alone)", op.status, GNTST_okay);
    expect("its dev_bus_addr is the frame's", op.dev_bus_addr == mbox->page_b_maddr, 1);
    un.handle = op.handle;
    un.dev_bus_addr = op.dev_bus_addr + 4096;
    HYPERVISOR_grant_table_op(GNTTABOP_unmap_grant_ref, &un, 1);
    expect("unmap by another bus address", un.status, GNTST_bad_dev_addr);
    un.dev_bus_addr = op.dev_bus_addr;
    HYPERVISOR_grant_table_op(GNTTABOP_unmap_grant_ref, &un, 1);
    expect("unmap by its bus address", un.status, GNTST_okay);
}

static void mapper_v2(void *va)
{
    grant_handle_t h, h2;

    wait_step(&mbox->g_step, 3);
    expect("map ref 9 (v2 full page)", gnttab_map(peer, 9, va, 0, &h), GNTST_okay);
    expect("ref 9's bytes", memcmp(va, "v2-data", 8), 0);
    expect("copy the sub-page grant's 50 bytes", copy_from(10, 100, 50), GNTST_okay);
    expect("... which arrived", mine[0] == 1 && mine[49] == 50, 1);
    expect("copy from before the sub-page", copy_from(10, 90, 20), GNTST_general_error);
    expect("map the sub-page grant", gnttab_map(peer, 10, padding_alloc(), 1, &h2),
           GNTST_general_error);
    expect("copy through the transitive grant", copy_from(11, 0, 11), GNTST_okay);
    expect("... our own bytes, round trip", memcmp(mine, "round-trip", 11), 0);
    expect("map the transitive grant", gnttab_map(peer, 11, padding_alloc(), 1, &h2),
           GNTST_general_error);
    expect("map a forged entry (frame not the granter's)",
           gnttab_map(peer, 12, padding_alloc(), 1, &h2), GNTST_bad_page);
    device_map();
    __atomic_store_n(&mbox->m_step, 3, __ATOMIC_SEQ_CST);
    wait_step(&mbox->g_step, 4);
    expect("unmap ref 9", gnttab_unmap(va, h), GNTST_okay);
    __atomic_store_n(&mbox->m_step, 4, __ATOMIC_SEQ_CST);
}

static void mapper(void)
{
    void *va = padding_alloc();
    uint8_t *round_trip = padding_alloc();
    grant_handle_t h;

    mine = padding_alloc();
    mbox = map_mailbox();
    mapper_v1(va, round_trip);
    mapper_v2(va);
    wait_step(&mbox->g_step, 5);
    expect("map ref 8 after the switch back", gnttab_map(peer, 8, va, 1, &h), GNTST_okay);
    expect("its bytes", memcmp(va, "v1-again", 9), 0);
    expect("unmap it", gnttab_unmap(va, h), GNTST_okay);
    __atomic_store_n(&mbox->m_step, 5, __ATOMIC_SEQ_CST);
    expect("unmap the mailbox", gnttab_unmap((void *)mbox, mbox_handle), GNTST_okay);
}

void guest_main(start_info_t *si)
{
    char buf[16];
    long rc;

    (void)si;
    role = cmdline_get("role", buf, sizeof(buf)) ? buf : "?";
    peer = (domid_t)cmdline_num("peer", 0);
    rc = gnttab_init();
    if ( rc )
    {
        printk("gntv2: %s: FAILED: gnttab_init: %ld\n", role, rc);
        xen_shutdown(SHUTDOWN_crash);
    }
    if ( str_eq(role, "granter") )
        granter();
    else
        mapper();
    if ( failures )
    {
        printk("gntv2: %s: %u of %u checks FAILED\n", role, failures, checks);
        xen_shutdown(SHUTDOWN_crash);
    }
    printk("gntv2: %s: all %u checks passed\n", role, checks);
    xen_shutdown(SHUTDOWN_poweroff);
}
