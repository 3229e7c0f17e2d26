/*
 * netfront - a toy PV network frontend (io/netif.h, x86_64 ABI).
 *
 * It connects vif 0 as Linux's xen-netfront does (tx and rx rings granted
 * to dom0, one event channel, request-rx-copy and feature-rx-notify, then
 * Connected), posts 16 granted rx pages, and then:
 *
 *   mode=ping count=N: sends N broadcast frames (ethertype 0x88b5, "ping
 *     I", each in two tx slots chained by NETTXF_more_data) and waits up to
 *     a second for each "pong I" (three tries each); then a "quit" frame.  Prints
 *     "netfront: R of N replies".
 *   mode=pong: answers each "ping I" with "pong I" to its sender's MAC,
 *     until "quit" or 10 s without frames.  Prints "netfront: answered N".
 *   mode=attack: a runt frame and a frame in a page never granted (each
 *     must be answered NETIF_RSP_ERROR), then a slot crossing its page,
 *     which must stop the vif ("refused ... (no answer)").
 *   mode=intrude peer=D: an intruder's attempts on the backend, each
 *     reported "refused ..." or "ACCEPTED ...": XenStore writes to domain
 *     D's vif and to its own backend's nodes, and a read of D's backend;
 *     connects with forged ring grant refs and event channels (the
 *     backend must go to Closing; the frontend then closes and starts
 *     again); once connected, rx requests naming a page never granted and
 *     a read-only one (answered NETIF_RSP_ERROR; "ping I" frames to a
 *     mode=pong D make the traffic), then a tx producer index a ring ahead
 *     (the vif stops); it reconnects on fresh rings, gets a pong again, and
 *     ends with an rx producer index a ring ahead (D's next pong stops it).
 */
#include "lib.h"
#include "mm.h"
#include "cmdline.h"
#include "evtchn.h"
#include "gnttab.h"
#include "xs.h"

#define NETTXF_more_data   (1U << 2)
#define NR_RX              16
#define ETHERTYPE          0x88b5

struct tx_req { uint32_t gref; uint16_t offset, flags, id, size; };
struct tx_rsp { uint16_t id; int16_t status; };
struct rx_req { uint16_t id, pad; uint32_t gref; };
struct rx_rsp { uint16_t id, offset, flags; int16_t status; };
union tx_entry { struct tx_req req; struct tx_rsp rsp; };
union rx_entry { struct rx_req req; struct rx_rsp rsp; };
struct tx_sring { uint32_t req_prod, req_event, rsp_prod, rsp_event; uint8_t pad[48];
                  union tx_entry ring[256]; };
struct rx_sring { uint32_t req_prod, req_event, rsp_prod, rsp_event; uint8_t pad[48];
                  union rx_entry ring[256]; };
_Static_assert(sizeof(union tx_entry) == 12, "netif_tx_sring_entry");
_Static_assert(sizeof(struct tx_sring) <= 4096 && sizeof(struct rx_sring) <= 4096, "rings");

#define REF_TX      (GNTTAB_NR_RESERVED_ENTRIES + 0)
#define REF_RX      (GNTTAB_NR_RESERVED_ENTRIES + 1)
#define REF_TXBUF   (GNTTAB_NR_RESERVED_ENTRIES + 2)
#define REF_NONE    (GNTTAB_NR_RESERVED_ENTRIES + 3)
#define REF_RXBUF   (GNTTAB_NR_RESERVED_ENTRIES + 4)   /* 16 of them */
#define REF_OTHER   (GNTTAB_NR_RESERVED_ENTRIES + 20)  /* granted to domain 77 */
#define REF_HUGE    0xFFFFFFF0u

#define mb() __asm__ __volatile__("mfence" ::: "memory")

static struct tx_sring *tx;
static struct rx_sring *rx;
static uint32_t tx_pvt, tx_cons, rx_pvt, rx_cons;
static unsigned char *txbuf, *rxbuf[NR_RX], mac[6];
static evtchn_port_t port;
static char fe[64], be[96], path[160], value[64];
static unsigned long failures;

static long be_state(void)
{
    snprintf(path, sizeof(path), "%s/state", be);
    return xs_read(path, value, sizeof(value)) < 0 ? -1 : parse_num(value);
}

static int wait_backend(long state)
{
    uint64_t deadline = now_ns() + SECONDS(5);

    while ( be_state() != state )
    {
        if ( now_ns() > deadline )
            return -1;
        sleep_ns(MILLISECONDS(1));
    }
    return 0;
}

static long fe_write(const char *key, unsigned long v)
{
    snprintf(path, sizeof(path), "%s/%s", fe, key);
    snprintf(value, sizeof(value), "%lu", v);
    return xs_write(path, value);
}

static int hexval(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

static void post_rx_ref(uint16_t id, uint32_t gref)
{
    struct rx_req *r = &rx->ring[rx_pvt & 255].req;

    r->id = id;
    r->gref = gref;
    mb();
    rx->req_prod = ++rx_pvt;
}

static void post_rx(uint16_t id)
{
    post_rx_ref(id, REF_RXBUF + id);
}

/* One frame of len bytes from txbuf, in one slot or two (split at 14). */
static int send_frame(uint32_t gref, uint16_t offset, unsigned int len, int split)
{
    struct tx_req *r = &tx->ring[tx_pvt & 255].req;
    uint64_t deadline = now_ns() + SECONDS(1);

    *r = (struct tx_req){ gref, offset, split ? NETTXF_more_data : 0, (uint16_t)tx_pvt,
                          (uint16_t)len };
    if ( split )
    {
        tx_pvt++;
        r = &tx->ring[tx_pvt & 255].req;
        *r = (struct tx_req){ gref, (uint16_t)(offset + 14), 0, (uint16_t)tx_pvt,
                              (uint16_t)(len - 14) };
    }
    mb();
    tx->req_prod = ++tx_pvt;
    tx->rsp_event = tx_cons + 1;
    mb();
    evtchn_send(port);
    while ( tx->rsp_prod != tx_pvt )
    {
        if ( evtchn_poll(port, deadline) )
            return 1;                          /* no answer */
        evtchn_consume(port);
    }
    tx_cons = tx_pvt;
    mb();
    return tx->ring[(tx_pvt - 1) & 255].rsp.status;
}

static void build(const unsigned char *dst, const char *text)
{
    unsigned int n = strlen(text);

    memcpy(txbuf, dst, 6);
    memcpy(txbuf + 6, mac, 6);
    txbuf[12] = ETHERTYPE >> 8;
    txbuf[13] = ETHERTYPE & 0xff;
    memset(txbuf + 14, 0, 46);
    memcpy(txbuf + 14, text, n + 1);
}

/* The next rx response (consumed), or NULL at deadline. */
static struct rx_rsp *next_rx(uint64_t deadline)
{
    for ( ;; )
    {
        rx->rsp_event = rx_cons + 1;
        mb();
        if ( rx->rsp_prod != rx_cons )
            break;
        if ( evtchn_poll(port, deadline) )
            return NULL;
        evtchn_consume(port);
    }
    mb();
    return &rx->ring[rx_cons++ & 255].rsp;
}

/* The next frame received (its payload in text, sender in from); 0, or 1 at deadline. */
static int receive(char *text, size_t size, unsigned char *from, uint64_t deadline)
{
    struct rx_rsp *r = next_rx(deadline);
    unsigned char *frame;

    if ( !r )
        return 1;
    frame = rxbuf[r->id % NR_RX] + r->offset;
    if ( r->status > 14 )
    {
        memcpy(from, frame + 6, 6);
        memcpy(text, frame + 14, size - 1 < (size_t)r->status - 14 ? size - 1 : (size_t)r->status - 14);
        text[size - 1] = 0;
    }
    else
        text[0] = 0;
    post_rx(r->id % NR_RX);
    evtchn_send(port);
    return 0;
}

static const unsigned char broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static void ping(unsigned long count)
{
    char text[32], want[32];
    unsigned char from[6];
    unsigned long i, replies = 0;

    for ( i = 0; i < count; i++ )
    {
        unsigned int try, got = 0;

        /* up to 3 tries: the peer's vif may join the bridge after us */
        for ( try = 0; try < 3 && !got; try++ )
        {
            uint64_t deadline = now_ns() + SECONDS(1);

            snprintf(text, sizeof(text), "ping %lu", i);
            build(broadcast, text);
            if ( send_frame(REF_TXBUF, 0, 60, 1) != 0 )
                failures++;
            snprintf(want, sizeof(want), "pong %lu", i);
            while ( !got && !receive(text, sizeof(text), from, deadline) )
                got = !memcmp(text, want, strlen(want) + 1);
        }
        replies += got;
    }
    build(broadcast, "quit");
    send_frame(REF_TXBUF, 0, 60, 0);
    printk("netfront: %lu of %lu replies\n", replies, count);
}

static void pong(void)
{
    char text[32];
    unsigned char from[6];
    unsigned long answered = 0;

    while ( !receive(text, sizeof(text), from, now_ns() + SECONDS(10)) )
    {
        if ( !memcmp(text, "quit", 5) )
            break;
        if ( memcmp(text, "ping ", 5) )
            continue;
        text[1] = 'o';
        build(from, text);
        if ( send_frame(REF_TXBUF, 0, 60, 0) == 0 )
            answered++;
    }
    printk("netfront: answered %lu\n", answered);
}

static void expect(const char *what, int status, int want)
{
    printk("netfront: %s %s (status %d)\n", status == want ? "refused" : "ACCEPTED", what,
           status);
    failures += status != want;
}

static void attack(void)
{
    build(broadcast, "runt");
    expect("runt frame", send_frame(REF_TXBUF, 0, 10, 0), -1);
    expect("frame in a page never granted", send_frame(REF_NONE, 0, 60, 0), -1);
    if ( send_frame(REF_TXBUF, 4000, 200, 0) == 1 )
        printk("netfront: refused slot crossing its page (no answer)\n");
    else
    {
        printk("netfront: ACCEPTED slot crossing its page\n");
        failures++;
    }
}

/* Fresh rings (indices at 0), 16 rx pages posted; forged: the first two
 * rx requests name a page never granted and a read-only one instead. */
static void reset_rings(int forged)
{
    unsigned int i;

    memset(tx, 0, PAGE_SIZE);
    memset(rx, 0, PAGE_SIZE);
    tx_pvt = tx_cons = rx_pvt = rx_cons = 0;
    tx->req_event = tx->rsp_event = rx->req_event = rx->rsp_event = 1;
    if ( forged )
    {
        post_rx_ref(NR_RX, REF_NONE);
        post_rx_ref(NR_RX + 1, REF_TXBUF);
    }
    for ( i = 0; i < NR_RX; i++ )
        post_rx(i);
}

static void grant_rings(void)
{
    unsigned int i;

    tx = padding_alloc();
    rx = padding_alloc();
    txbuf = padding_alloc();
    gnttab_grant(REF_TX, 0, virt_to_mfn(tx), 0);
    gnttab_grant(REF_RX, 0, virt_to_mfn(rx), 0);
    gnttab_grant(REF_TXBUF, 0, virt_to_mfn(txbuf), 1);
    for ( i = 0; i < NR_RX; i++ )
    {
        rxbuf[i] = padding_alloc();
        gnttab_grant(REF_RXBUF + i, 0, virt_to_mfn(rxbuf[i]), 0);
    }
    gnttab_grant(REF_OTHER, 77, virt_to_mfn(rxbuf[0]), 0);
}

/* The frontend's keys and Connected (talk_to_netback). */
static long offer(uint32_t tx_ref, uint32_t rx_ref, evtchn_port_t p)
{
    long rc;

    if ( (rc = fe_write("tx-ring-ref", tx_ref)) || (rc = fe_write("rx-ring-ref", rx_ref)) ||
         (rc = fe_write("event-channel", p)) || (rc = fe_write("request-rx-copy", 1)) ||
         (rc = fe_write("feature-rx-notify", 1)) || (rc = fe_write("state", 4)) )
        return rc;
    return 0;
}

/* The backend directory, the MAC, InitWait, the rings and the port. */
static long prepare(unsigned long me, int forged)
{
    unsigned int i;
    long rc;

    snprintf(fe, sizeof(fe), "/local/domain/%lu/device/vif/0", me);
    snprintf(path, sizeof(path), "%s/backend", fe);
    if ( (rc = xs_read(path, be, sizeof(be))) < 0 )
        return rc;
    snprintf(path, sizeof(path), "%s/mac", fe);
    if ( (rc = xs_read(path, value, sizeof(value))) < 17 )
        return rc < 0 ? rc : -XEN_EINVAL;
    for ( i = 0; i < 6; i++ )
        mac[i] = hexval(value[3 * i]) << 4 | hexval(value[3 * i + 1]);
    if ( wait_backend(2) )
        return -XEN_EIO;
    grant_rings();
    reset_rings(forged);
    return evtchn_alloc_unbound(0, &port);
}

static long connect(void)
{
    long rc;

    if ( (rc = offer(REF_TX, REF_RX, port)) )
        return rc;
    if ( wait_backend(4) )
        return -XEN_EIO;
    printk("netfront: connected to %s\n", be);
    return 0;
}

/* -- mode=intrude ---------------------------------------------------------- */

static void xs_refused(const char *what, long rc)
{
    expect(what, rc == -XEN_EACCES ? -1 : (int)rc, -1);
}

/* Another domain's device and our own backend's nodes are not ours. */
static void intrude_xenstore(unsigned long me, unsigned long peer)
{
    char p[128];

    snprintf(p, sizeof(p), "/local/domain/%lu/device/vif/0/state", peer);
    xs_refused("write to another domain's vif", xs_write(p, "5"));
    snprintf(p, sizeof(p), "/local/domain/%lu/device/vif/0/tx-ring-ref", peer);
    xs_refused("ring-ref written into another domain's vif", xs_write(p, "8"));
    snprintf(p, sizeof(p), "/local/domain/0/backend/vif/%lu/0/mac", peer);
    xs_refused("read of another domain's backend", xs_read(p, value, sizeof(value)));
    snprintf(p, sizeof(p), "/local/domain/0/backend/vif/%lu/0/state", me);
    xs_refused("write to its own backend's state", xs_write(p, "4"));
}

/* Closed, then Initialising: the backend back at InitWait (0) or not. */
static int restart(void)
{
    if ( fe_write("state", 6) || wait_backend(6) || fe_write("state", 1) )
        return -1;
    return wait_backend(2);
}

static void forged_connect(const char *what, uint32_t tx_ref, uint32_t rx_ref, evtchn_port_t p)
{
    int closing = !offer(tx_ref, rx_ref, p) && !wait_backend(5);

    printk("netfront: %s %s (backend %s)\n", closing ? "refused" : "ACCEPTED", what,
           closing ? "closing" : "connected");
    failures += !closing;
    if ( restart() )
    {
        printk("netfront: FAIL restart after %s\n", what);
        failures++;
    }
}

/* The next rx response's status, its slot posted again (1: none by deadline). */
static int rx_status(uint64_t deadline)
{
    struct rx_rsp *r = next_rx(deadline);
    int status;

    if ( !r )
        return 1;
    status = r->status;
    post_rx(r->id % NR_RX);
    evtchn_send(port);
    return status;
}

/* "ping I" to everyone; the status of the rx response its pong fills. */
static int ping_status(unsigned long i)
{
    char text[16];

    snprintf(text, sizeof(text), "ping %lu", i);
    build(broadcast, text);
    if ( send_frame(REF_TXBUF, 0, 60, 0) != 0 )
        return 0;
    return rx_status(now_ns() + SECONDS(2));
}

static void pong_again(const char *when, unsigned long i)
{
    int status = ping_status(i);

    printk("netfront: %s pong %s (status %d)\n", status > 14 ? "PASS" : "FAIL", when, status);
    failures += status <= 14;
}

/* The vif stopped: no answer to a forged index, nor to a frame after it. */
static void ring_ahead(const char *what, int rx_side)
{
    uint32_t answered = tx->rsp_prod;
    int quiet;

    if ( rx_side )
    {
        rx->req_prod = rx_pvt + 1000;
        quiet = ping_status(99) == 1;
    }
    else
    {
        tx->req_prod = tx_pvt + 1000;
        mb();
        evtchn_send(port);
        sleep_ns(SECONDS(1));
        quiet = tx->rsp_prod == answered;
        tx->req_prod = tx_pvt;
        quiet = quiet && send_frame(REF_TXBUF, 0, 60, 0) == 1;
    }
    printk("netfront: %s %s (no answer)\n", quiet ? "refused" : "ACCEPTED", what);
    failures += !quiet;
}

static void intrude(unsigned long me, unsigned long peer)
{
    evtchn_port_t store = start_info->store_evtchn;

    intrude_xenstore(me, peer);
    forged_connect("tx-ring-ref never granted", REF_NONE, REF_RX, port);
    forged_connect("rx-ring-ref granted to another domain", REF_TX, REF_OTHER, port);
    forged_connect("tx-ring-ref granted read-only", REF_TXBUF, REF_RX, port);
    forged_connect("rx-ring-ref out of the table", REF_TX, REF_HUGE, port);
    forged_connect("event-channel bound to the store", REF_TX, REF_RX, store);
    forged_connect("event-channel out of range", REF_TX, REF_RX, 100000);
    if ( connect() )
    {
        printk("netfront: FAIL connect after forged ones\n");
        failures++;
        return;
    }
    expect("rx into a page never granted", ping_status(0), -1);
    expect("rx into a read-only grant", ping_status(1), -1);
    pong_again("after forged rx requests", 2);
    ring_ahead("tx producer index a ring ahead", 0);
    reset_rings(0);
    /* the backend closed our port when it disconnected: a new one, as netfront */
    if ( restart() || evtchn_alloc_unbound(0, &port) || connect() )
    {
        printk("netfront: FAIL reconnect after the vif stopped\n");
        failures++;
        return;
    }
    pong_again("after reconnecting", 3);
    ring_ahead("rx producer index a ring ahead", 1);
}

void guest_main(start_info_t *si)
{
    char mode[16];
    long rc;

    (void)si;
    if ( !cmdline_get("mode", mode, sizeof(mode)) )
        memcpy(mode, "ping", 5);
    if ( (rc = events_init()) || (rc = xs_init()) || (rc = gnttab_init()) )
        goto out;
    if ( (rc = xs_read("domid", value, sizeof(value))) < 0 )
        goto out;
    if ( (rc = prepare(parse_num(value), !memcmp(mode, "intrude", 8))) )
        goto out;
    if ( !memcmp(mode, "intrude", 8) )
        intrude(parse_num(value), cmdline_num("peer", 0));
    else if ( (rc = connect()) )
        goto out;
    else if ( !memcmp(mode, "pong", 5) )
        pong();
    else if ( !memcmp(mode, "attack", 7) )
        attack();
    else
        ping(cmdline_num("count", 10));
    printk("netfront: done, %lu failures\n", failures);
    return;
out:
    printk("netfront: FAIL setup: %ld %s\n", rc, xen_errname(rc));
}
