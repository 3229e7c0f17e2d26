/*
 * blkfront - a toy PV block frontend (io/blkif.h, x86_64 ABI), and the
 * attacks a hostile one makes on the backend.
 *
 * It connects vbd vdev=N (default 51712, xvda) as Linux's xen-blkfront
 * does: wait for the backend's InitWait, grant dom0 a ring page, offer an
 * unbound port to dom0, write ring-ref, event-channel, protocol and go to
 * Initialised; at the backend's Connected read sectors and info.
 *
 * check (the default): write 16 sectors in two segments, flush, read them
 * back (direct and, if the backend offers it, through an indirect page),
 * discard a page and read zeros.  Lines "blkfront: PASS what" or
 * "blkfront: FAIL what ...", then "blkfront: done".
 *
 * attack: each of the requests a hostile frontend can send, expecting the
 * backend's error (BLKIF_RSP_ERROR, or EOPNOTSUPP for an unknown op):
 * "blkfront: refused NAME (status S)" or "blkfront: ACCEPTED NAME"; then a
 * good read ("blkfront: PASS read after attacks"), then a req_prod a ring
 * ahead, which must halt the ring: "blkfront: refused ring index (no answer)".
 * readonly=1: the disk is read-only; the attack is a write and a flush.
 */
#include "lib.h"
#include "mm.h"
#include "cmdline.h"
#include "evtchn.h"
#include "gnttab.h"
#include "xs.h"

#define BLKIF_OP_READ            0
#define BLKIF_OP_WRITE           1
#define BLKIF_OP_FLUSH_DISKCACHE 3
#define BLKIF_OP_DISCARD         5
#define BLKIF_OP_INDIRECT        6
#define BLKIF_RSP_OKAY           0

struct blkif_request_segment { uint32_t gref; uint8_t first_sect, last_sect; };
struct blkif_request {
    uint8_t operation, nr_segments;
    uint16_t handle;
    uint64_t id, sector_number;
    struct blkif_request_segment seg[11];
};
struct blkif_request_indirect {
    uint8_t operation, indirect_op;
    uint16_t nr_segments;
    uint64_t id, sector_number;
    uint16_t handle;
    uint32_t indirect_grefs[8];
};
struct blkif_request_discard {
    uint8_t operation, flag;
    uint16_t handle;
    uint64_t id, sector_number, nr_sectors;
};
struct blkif_response { uint64_t id; uint8_t operation; int16_t status; };
union blkif_entry {
    struct blkif_request req;
    struct blkif_request_indirect ind;
    struct blkif_request_discard dis;
    struct blkif_response rsp;
};
struct blkif_sring {
    uint32_t req_prod, req_event, rsp_prod, rsp_event;
    uint8_t pad[48];
    union blkif_entry ring[32];
};
_Static_assert(sizeof(struct blkif_request) == 112, "blkif_request");
_Static_assert(__builtin_offsetof(struct blkif_request_indirect, indirect_grefs) == 28,
               "blkif_request_indirect");
_Static_assert(sizeof(union blkif_entry) == 112, "blkif_sring_entry");
_Static_assert(__builtin_offsetof(struct blkif_sring, ring) == 64, "blkif_sring");

#define REF_RING     (GNTTAB_NR_RESERVED_ENTRIES + 0)
#define REF_BUF0     (GNTTAB_NR_RESERVED_ENTRIES + 1)
#define REF_BUF1     (GNTTAB_NR_RESERVED_ENTRIES + 2)
#define REF_IND      (GNTTAB_NR_RESERVED_ENTRIES + 3)
#define REF_RO       (GNTTAB_NR_RESERVED_ENTRIES + 4)   /* granted read-only */
#define REF_OTHER    (GNTTAB_NR_RESERVED_ENTRIES + 5)   /* granted to domain 77 */
#define REF_NONE     (GNTTAB_NR_RESERVED_ENTRIES + 6)   /* never granted */

static struct blkif_sring *sring;
static uint32_t req_prod_pvt, rsp_cons;
static evtchn_port_t port;
static char fe[96], be[128], path[192], value[64];
static unsigned char *buf[2], *ind_page, *ro_page;
static unsigned long sectors, failures;

#define mb() __asm__ __volatile__("mfence" ::: "memory")

static long be_number(const char *key)
{
    snprintf(path, sizeof(path), "%s/%s", be, key);
    if ( xs_read(path, value, sizeof(value)) < 0 )
        return -1;
    return parse_num(value);
}

static long fe_write(const char *key, unsigned long v, const char *text)
{
    snprintf(path, sizeof(path), "%s/%s", fe, key);
    if ( !text )
    {
        snprintf(value, sizeof(value), "%lu", v);
        text = value;
    }
    return xs_write(path, text);
}

/* Wait (polling XenStore) for the backend's state; 0, or -1 after 5 s. */
static int wait_backend(long state)
{
    uint64_t deadline = now_ns() + SECONDS(5);

    while ( be_number("state") != state )
    {
        if ( now_ns() > deadline )
            return -1;
        sleep_ns(MILLISECONDS(1));
    }
    return 0;
}

static union blkif_entry *next_slot(void)
{
    union blkif_entry *e = &sring->ring[req_prod_pvt & 31];

    memset(e, 0, sizeof(*e));
    return e;
}

static void push(void)
{
    mb();
    sring->req_prod = ++req_prod_pvt;
    mb();
    evtchn_send(port);
}

/* The status of the next response, or 1 if none comes in 2 s. */
static int response(void)
{
    uint64_t deadline = now_ns() + SECONDS(2);
    int status;

    for ( ;; )
    {
        sring->rsp_event = rsp_cons + 1;
        mb();
        if ( sring->rsp_prod != rsp_cons )
            break;
        if ( evtchn_poll(port, deadline) )
            return 1;
        evtchn_consume(port);
    }
    mb();
    status = sring->ring[rsp_cons & 31].rsp.status;
    rsp_cons++;
    return status;
}

static int rw(uint8_t op, uint64_t sector, unsigned int nseg,
              const grant_ref_t *refs, uint8_t first, uint8_t last)
{
    struct blkif_request *r = &next_slot()->req;
    unsigned int i;

    r->operation = op;
    r->nr_segments = nseg;
    r->id = req_prod_pvt + 1000;
    r->sector_number = sector;
    for ( i = 0; i < nseg && i < 11; i++ )
    {
        r->seg[i].gref = refs[i];
        r->seg[i].first_sect = first;
        r->seg[i].last_sect = last;
    }
    push();
    return response();
}

static int indirect(uint8_t op, uint64_t sector, unsigned int nseg)
{
    struct blkif_request_indirect *r = &next_slot()->ind;
    struct blkif_request_segment *segs = (void *)ind_page;

    segs[0] = (struct blkif_request_segment){ REF_BUF0, 0, 7 };
    segs[1] = (struct blkif_request_segment){ REF_BUF1, 0, 7 };
    r->operation = BLKIF_OP_INDIRECT;
    r->indirect_op = op;
    r->nr_segments = nseg;
    r->id = 7;
    r->sector_number = sector;
    r->indirect_grefs[0] = REF_IND;
    push();
    return response();
}

static int discard(uint64_t sector, uint64_t count)
{
    struct blkif_request_discard *r = &next_slot()->dis;

    r->operation = BLKIF_OP_DISCARD;
    r->id = 9;
    r->sector_number = sector;
    r->nr_sectors = count;
    push();
    return response();
}

static void result(const char *what, int ok)
{
    printk("blkfront: %s %s\n", ok ? "PASS" : "FAIL", what);
    failures += !ok;
}

static void fill(unsigned char seed)
{
    unsigned int i;

    for ( i = 0; i < PAGE_SIZE; i++ )
    {
        buf[0][i] = (unsigned char)(seed + i * 7);
        buf[1][i] = (unsigned char)(seed + i * 13 + 1);
    }
}

static int matches(unsigned char seed)
{
    unsigned int i;

    for ( i = 0; i < PAGE_SIZE; i++ )
        if ( buf[0][i] != (unsigned char)(seed + i * 7) ||
             buf[1][i] != (unsigned char)(seed + i * 13 + 1) )
            return 0;
    return 1;
}

static const grant_ref_t both[] = { REF_BUF0, REF_BUF1 };

static void check(unsigned long seed)
{
    unsigned int i, zero = 1;

    fill(seed);
    result("write 16 sectors", rw(BLKIF_OP_WRITE, 0, 2, both, 0, 7) == BLKIF_RSP_OKAY);
    result("flush", rw(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, both, 0, 0) == BLKIF_RSP_OKAY);
    memset(buf[0], 0, PAGE_SIZE);
    memset(buf[1], 0, PAGE_SIZE);
    result("read 16 sectors", rw(BLKIF_OP_READ, 0, 2, both, 0, 7) == BLKIF_RSP_OKAY);
    result("data read back", matches(seed));
    if ( be_number("feature-max-indirect-segments") > 0 )
    {
        memset(buf[0], 0, PAGE_SIZE);
        memset(buf[1], 0, PAGE_SIZE);
        result("indirect read", indirect(BLKIF_OP_READ, 0, 2) == BLKIF_RSP_OKAY);
        result("indirect data", matches(seed));
    }
    if ( be_number("feature-discard") == 1 )
    {
        result("discard", discard(8, 8) == BLKIF_RSP_OKAY);
        rw(BLKIF_OP_READ, 8, 1, both, 0, 7);
        for ( i = 0; i < PAGE_SIZE; i++ )
            zero &= buf[0][i] == 0;
        result("discarded sectors read zero", zero);
        fill(seed);
        rw(BLKIF_OP_WRITE, 0, 2, both, 0, 7);     /* leave the pattern whole */
        rw(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, both, 0, 0);
    }
}

static void refused(const char *what, int status, int want)
{
    if ( status == want )
        printk("blkfront: refused %s (status %d)\n", what, status);
    else
    {
        printk("blkfront: ACCEPTED %s (status %d)\n", what, status);
        failures++;
    }
}

static void attack(int readonly)
{
    static const grant_ref_t ro[] = { REF_RO }, other[] = { REF_OTHER },
                             none[] = { REF_NONE }, huge[] = { 0xFFFFFFFFu };

    if ( readonly )
    {
        refused("write to a read-only disk", rw(BLKIF_OP_WRITE, 0, 1, both, 0, 7), -1);
        refused("flush of a read-only disk",
                rw(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, both, 0, 0), -1);
        refused("discard on a read-only disk", discard(0, 8), -1);
        result("read of a read-only disk", rw(BLKIF_OP_READ, 0, 1, both, 0, 7) == 0);
        return;
    }
    /* the backend's nodes are dom0's: a frontend cannot grow its disk or make it writable */
    snprintf(path, sizeof(path), "%s/sectors", be);
    refused("write to its backend's sectors", xs_write(path, "999999999") == -XEN_EACCES ? -1 : 0, -1);
    snprintf(path, sizeof(path), "%s/mode", be);
    refused("write to its backend's mode", xs_write(path, "w") == -XEN_EACCES ? -1 : 0, -1);
    refused("12 segments", rw(BLKIF_OP_READ, 0, 12, both, 0, 7), -1);
    refused("255 segments", rw(BLKIF_OP_WRITE, 0, 255, both, 0, 7), -1);
    refused("no segments", rw(BLKIF_OP_READ, 0, 0, both, 0, 7), -1);
    refused("4000 indirect segments", indirect(BLKIF_OP_READ, 0, 4000), -1);
    refused("indirect flush", indirect(BLKIF_OP_FLUSH_DISKCACHE, 0, 2), -1);
    refused("last_sect past the page", rw(BLKIF_OP_READ, 0, 1, both, 0, 8), -1);
    refused("last_sect before first_sect", rw(BLKIF_OP_READ, 0, 1, both, 5, 2), -1);
    refused("sectors past the end", rw(BLKIF_OP_READ, sectors - 4, 1, both, 0, 7), -1);
    refused("sector wrapping 2^64", rw(BLKIF_OP_WRITE, ~0ULL - 3, 1, both, 0, 7), -1);
    refused("discard past the end", discard(sectors - 1, 8), -1);
    refused("grant ref never granted", rw(BLKIF_OP_READ, 0, 1, none, 0, 7), -1);
    refused("grant ref out of the table", rw(BLKIF_OP_READ, 0, 1, huge, 0, 7), -1);
    refused("grant ref granted to another domain", rw(BLKIF_OP_WRITE, 0, 1, other, 0, 7), -1);
    refused("read into a read-only grant", rw(BLKIF_OP_READ, 0, 1, ro, 0, 7), -1);
    refused("unknown operation", rw(99, 0, 1, both, 0, 7), -2);
    result("read after attacks", rw(BLKIF_OP_READ, 0, 2, both, 0, 7) == 0);
    /* Last: a producer index a whole ring ahead of the responses. */
    sring->req_prod = req_prod_pvt + 40;
    mb();
    evtchn_send(port);
    if ( response() == 1 )
        printk("blkfront: refused ring index (no answer)\n");
    else
    {
        printk("blkfront: ACCEPTED ring index\n");
        failures++;
    }
}

static long connect(unsigned long me, unsigned long devid)
{
    long rc;

    snprintf(fe, sizeof(fe), "/local/domain/%lu/device/vbd/%lu", me, devid);
    snprintf(path, sizeof(path), "%s/backend", fe);
    if ( (rc = xs_read(path, be, sizeof(be))) < 0 )
        return rc;
    if ( wait_backend(2) )
        return -XEN_EIO;
    sring = padding_alloc();
    memset(sring, 0, PAGE_SIZE);
    sring->req_event = sring->rsp_event = 1;
    gnttab_grant(REF_RING, 0, virt_to_mfn(sring), 0);
    if ( (rc = evtchn_alloc_unbound(0, &port)) )
        return rc;
    if ( (rc = fe_write("ring-ref", REF_RING, NULL)) ||
         (rc = fe_write("event-channel", port, NULL)) ||
         (rc = fe_write("protocol", 0, "x86_64-abi")) ||
         (rc = fe_write("feature-persistent", 1, NULL)) ||
         (rc = fe_write("state", 3, NULL)) )
        return rc;
    if ( wait_backend(4) )
        return -XEN_EIO;
    sectors = be_number("sectors");
    printk("blkfront: connected to %s: %lu sectors of %ld bytes, info %ld\n",
           be, sectors, be_number("sector-size"), be_number("info"));
    return fe_write("state", 4, NULL);
}

static void grant_buffers(void)
{
    buf[0] = padding_alloc();
    buf[1] = padding_alloc();
    ind_page = padding_alloc();
    ro_page = padding_alloc();
    gnttab_grant(REF_BUF0, 0, virt_to_mfn(buf[0]), 0);
    gnttab_grant(REF_BUF1, 0, virt_to_mfn(buf[1]), 0);
    gnttab_grant(REF_IND, 0, virt_to_mfn(ind_page), 1);
    gnttab_grant(REF_RO, 0, virt_to_mfn(ro_page), 1);
    gnttab_grant(REF_OTHER, 77, virt_to_mfn(ro_page), 0);
}

void guest_main(start_info_t *si)
{
    char mode[16];
    unsigned long me;
    long rc;

    (void)si;
    if ( !cmdline_get("mode", mode, sizeof(mode)) )
        memcpy(mode, "check", 6);
    if ( (rc = events_init()) || (rc = xs_init()) || (rc = gnttab_init()) )
        goto out;
    if ( (rc = xs_read("domid", value, sizeof(value))) < 0 )
        goto out;
    me = parse_num(value);
    grant_buffers();
    if ( (rc = connect(me, cmdline_num("vdev", 51712))) )
        goto out;
    if ( !memcmp(mode, "attack", 7) )
        attack(cmdline_num("readonly", 0));
    else
        check(cmdline_num("seed", 1));
    printk("blkfront: done, %lu failures\n", failures);
    return;
out:
    printk("blkfront: FAIL setup: %ld %s\n", rc, xen_errname(rc));
}
