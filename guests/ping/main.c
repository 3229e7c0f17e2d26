/*
 * ping - the granting side of a split-driver style connection.
 *
 * Offers an unbound event channel port and two grants to its peer (pong,
 * whose domid the toolstack gives on the command line: peer-domid=N, as
 * libxl writes a frontend's backend-id), publishes them under its own
 * XenStore home, readable by the peer only, and waits for the peer to
 * connect.  Then it sends rounds=N requests over the shared page (see
 * lib/demo_ring.h), each signalled over the channel and answered the same
 * way, and times them with the PV clock.
 *
 * At the end it revokes the read-only "bulletin" grant (the peer has
 * unmapped it: GTF_reading clear) and tells the peer, which must then fail
 * to map it again; it ends the ring grant only once the peer's mapping is
 * gone (GTF_reading/GTF_writing clear), as Xen's grant protocol requires.
 *
 * Lines: "ping: N round trips in T us, R per second" on success, then
 * "ping: done"; on any failure "ping: no connection to pong: ..." (refused
 * by the policy, or the peer never came), then poweroff either way.
 */
#include "lib.h"
#include "mm.h"
#include "cmdline.h"
#include "evtchn.h"
#include "gnttab.h"
#include "xs.h"
#include "demo_ring.h"

#define RING_REF        (GNTTAB_NR_RESERVED_ENTRIES + 0)
#define BULLETIN_REF    (GNTTAB_NR_RESERVED_ENTRIES + 1)

static char peer[32], path[128], value[32];
static unsigned long me, peer_id;

static void fail(const char *what, long rc)
{
    printk("ping: no connection to %s: %s: %ld %s\n", peer, what, rc,
           xen_errname(rc));
}

static long publish(const char *node, unsigned long v)
{
    char owner[16], reader[16];
    const char *perms[] = { owner, reader };
    long rc;

    snprintf(path, sizeof(path), "/local/domain/%lu/data/%s", me, node);
    snprintf(value, sizeof(value), "%lu", v);
    snprintf(owner, sizeof(owner), "n%lu", me);      /* others: none */
    snprintf(reader, sizeof(reader), "r%lu", peer_id); /* the peer: read */
    rc = xs_write(path, node[0] == 's' ? "ready" : value);
    if ( !rc )
        rc = xs_set_perms(path, perms, 2);
    if ( rc )
        printk("ping: publishing %s: %ld %s\n", path, rc, xen_errname(rc));
    return rc;
}

/* Let anyone Xen's permissions allow read our name (the MSM still decides). */
static long show_name(void)
{
    char owner[16];
    const char *perms[] = { owner };

    snprintf(path, sizeof(path), "/local/domain/%lu/name", me);
    snprintf(owner, sizeof(owner), "r%lu", me);
    return xs_set_perms(path, perms, 1);
}

/* Wait until cond() holds, consuming events on port; 0, or 1 at deadline. */
#define WAIT_FOR(cond, port, deadline)                                  \
({                                                                      \
    int timed_out_ = 0;                                                 \
    while ( !(cond) )                                                   \
    {                                                                   \
        if ( evtchn_poll(port, deadline) ) { timed_out_ = 1; break; }   \
        evtchn_consume(port);                                           \
    }                                                                   \
    timed_out_;                                                         \
})

void guest_main(start_info_t *si)
{
    struct demo_ring *ring;
    char *bulletin;
    evtchn_port_t port;
    unsigned long rounds, i, timeout;
    uint64_t t0, t1, us;
    long rc;

    if ( !cmdline_get("peer", peer, sizeof(peer)) )
        memcpy(peer, "pong", 5);
    peer_id = cmdline_num("peer-domid", 0);
    rounds = cmdline_num("rounds", 1000);
    timeout = cmdline_num("timeout", 20);

    if ( (rc = events_init()) || (rc = xs_init()) )
        return fail("setting up shared_info and XenStore", rc);
    if ( (rc = xs_read("domid", value, sizeof(value))) < 0 )
        return fail("reading my domid", rc);
    me = parse_num(value);
    if ( !peer_id )
        return fail("no peer-domid= on the command line", -XEN_EINVAL);
    printk("ping: I am d%lu; offering a channel and a ring to %s (d%lu)\n",
           me, peer, peer_id);

    if ( (rc = gnttab_init()) )
        return fail("GNTTABOP_setup_table", rc);
    rc = evtchn_alloc_unbound(peer_id, &port);
    if ( rc )
        return fail("EVTCHNOP_alloc_unbound", rc);

    ring = padding_alloc();
    bulletin = padding_alloc();
    memcpy(bulletin, DEMO_BULLETIN, sizeof(DEMO_BULLETIN));
    gnttab_grant(RING_REF, peer_id, virt_to_mfn(ring), 0);
    gnttab_grant(BULLETIN_REF, peer_id, virt_to_mfn(bulletin), 1);

    if ( (rc = show_name()) || (rc = publish("ring-ref", RING_REF)) ||
         (rc = publish("bulletin-ref", BULLETIN_REF)) ||
         (rc = publish("port", port)) || (rc = publish("state", 0)) )
        return fail("publishing in XenStore", rc);
    printk("ping: offered port %u, grant refs %u (ring) and %u (bulletin, "
           "read-only) under /local/domain/%lu/data\n", port, RING_REF,
           BULLETIN_REF, me);

    /* The peer binds, maps, reads the bulletin, unmaps it and says hello. */
    if ( WAIT_FOR(ring->magic == DEMO_HELLO, port, now_ns() + SECONDS(timeout)) )
        return fail("it did not connect in time", -XEN_EAGAIN);
    printk("ping: %s connected (ring grant flags 0x%x)\n", peer,
           gnttab[RING_REF].flags);

    t0 = now_ns();
    for ( i = 1; i <= rounds; i++ )
    {
        ring->req_val = i;
        ring->req_cmd = CMD_PING;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        ring->req_seq = i;
        evtchn_send(port);
        if ( WAIT_FOR(ring->rsp_seq == i, port, now_ns() + SECONDS(5)) )
            return fail("no answer to a ping", -XEN_EAGAIN);
        if ( ring->rsp_val != i * 2 + 1 )
        {
            printk("ping: wrong answer to request %lu: %lu\n", i,
                   (unsigned long)ring->rsp_val);
            return fail("wrong answer", -XEN_EIO);
        }
    }
    t1 = now_ns();
    us = (t1 - t0) / 1000;
    printk("ping: %lu round trips in %lu us, %lu per second\n", rounds, us,
           us ? rounds * 1000000UL / us : 0);

    /* Revoke the bulletin: the peer unmapped it, so no in-use bits. */
    rc = gnttab_end(BULLETIN_REF);
    printk("ping: revoked grant ref %u (bulletin): %ld %s\n", BULLETIN_REF,
           rc, xen_errname(rc));

    ring->req_cmd = CMD_DONE;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    ring->req_seq = rounds + 1;
    evtchn_send(port);
    if ( WAIT_FOR(ring->rsp_seq == rounds + 1, port, now_ns() + SECONDS(5)) )
        return fail("no answer to done", -XEN_EAGAIN);
    printk("ping: %s mapping the revoked grant got %d %s\n", peer,
           (int)ring->rsp_status, gntst_name(ring->rsp_status));

    /* End the ring grant only once the peer's mapping is gone. */
    if ( WAIT_FOR(!(gnttab[RING_REF].flags & (GTF_reading | GTF_writing)),
                  port, now_ns() + SECONDS(5)) )
        return fail("it kept the ring mapped", -XEN_EBUSY);
    rc = gnttab_end(RING_REF);
    printk("ping: %s unmapped the ring; ended grant ref %u: %ld %s\n", peer,
           RING_REF, rc, xen_errname(rc));
    evtchn_close(port);
    printk("ping: done\n");
}
