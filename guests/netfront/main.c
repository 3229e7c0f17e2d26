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

static void post_rx(uint16_t id)
{
    struct rx_req *r = &rx->ring[rx_pvt & 255].req;

    r->id = id;
    r->gref = REF_RXBUF + id;
    mb();
    rx->req_prod = ++rx_pvt;
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

/* The next frame received (its payload in text, sender in from); 0, or 1 at deadline. */
static int receive(char *text, size_t size, unsigned char *from, uint64_t deadline)
{
    struct rx_rsp *r;
    unsigned char *frame;

    for ( ;; )
    {
        rx->rsp_event = rx_cons + 1;
        mb();
        if ( rx->rsp_prod != rx_cons )
            break;
        if ( evtchn_poll(port, deadline) )
            return 1;
        evtchn_consume(port);
    }
    mb();
    r = &rx->ring[rx_cons & 255].rsp;
    rx_cons++;
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

static long connect(unsigned long me)
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
    tx = padding_alloc();
    rx = padding_alloc();
    txbuf = padding_alloc();
    memset(tx, 0, PAGE_SIZE);
    memset(rx, 0, PAGE_SIZE);
    tx->req_event = tx->rsp_event = rx->req_event = rx->rsp_event = 1;
    gnttab_grant(REF_TX, 0, virt_to_mfn(tx), 0);
    gnttab_grant(REF_RX, 0, virt_to_mfn(rx), 0);
    gnttab_grant(REF_TXBUF, 0, virt_to_mfn(txbuf), 1);
    for ( i = 0; i < NR_RX; i++ )
    {
        rxbuf[i] = padding_alloc();
        gnttab_grant(REF_RXBUF + i, 0, virt_to_mfn(rxbuf[i]), 0);
        post_rx(i);
    }
    if ( (rc = evtchn_alloc_unbound(0, &port)) )
        return rc;
    if ( (rc = fe_write("tx-ring-ref", REF_TX)) || (rc = fe_write("rx-ring-ref", REF_RX)) ||
         (rc = fe_write("event-channel", port)) || (rc = fe_write("request-rx-copy", 1)) ||
         (rc = fe_write("feature-rx-notify", 1)) || (rc = fe_write("state", 4)) )
        return rc;
    if ( wait_backend(4) )
        return -XEN_EIO;
    printk("netfront: connected to %s as %s\n", be, value);
    return 0;
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
    if ( (rc = connect(parse_num(value))) )
        goto out;
    if ( !memcmp(mode, "pong", 5) )
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
