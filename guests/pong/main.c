/*
 * pong - the connecting side of a split-driver style connection.
 *
 * Finds its peer (peer=ping on the command line) by name in XenStore:
 * reads /local/domain/N/name for each N until one says "ping" (ping lets
 * others read its name; the policy decides who actually may), or only for
 * N = peer-domid when the command line gives it.  Watches the
 * peer's data/state until it is "ready", reads data/ring-ref,
 * data/bulletin-ref and data/port, binds the interdomain channel, maps the
 * ring read-write and the bulletin read-only, prints the bulletin and
 * unmaps it, and says hello on the ring.  Then it answers every request
 * (val -> val * 2 + 1) and signals back.  On CMD_DONE it tries to map the
 * bulletin again -- ping has revoked it, so this must fail -- reports the
 * status on the ring, unmaps the ring, signals, closes the channel.
 *
 * Lines: "pong: answered N pings", "pong: mapping revoked grant ref R:
 * ... refused"; on failure "pong: no connection to ping: ...".  Poweroff
 * either way.
 */
#include "lib.h"
#include "mm.h"
#include "cmdline.h"
#include "evtchn.h"
#include "gnttab.h"
#include "xs.h"
#include "demo_ring.h"

#define MAX_DOMID_SCAN  32

static char peer[32], path[128], value[64];
static unsigned long me, peer_id;

static void fail(const char *what, long rc)
{
    printk("pong: no connection to %s: %s: %ld %s\n", peer, what, rc,
           xen_errname(rc));
}

static long read_peer(const char *node, unsigned long *out)
{
    long rc;

    snprintf(path, sizeof(path), "/local/domain/%lu/data/%s", peer_id, node);
    rc = xs_read(path, value, sizeof(value));
    if ( rc < 0 )
        return rc;
    if ( parse_num(value) < 0 )
        return -XEN_EINVAL;
    *out = parse_num(value);
    return 0;
}

/* Scan /local/domain/N/name (only N = peer-domid when the command line
 * names it, as ping's does: beyond MAX_DOMID_SCAN domains a scan cannot
 * find the peer); 0 and peer_id set, or the last error. */
static long find_peer(uint64_t deadline)
{
    long rc, last = -XEN_ENOENT;
    unsigned long d, given = cmdline_num("peer-domid", 0);
    unsigned long first = given ? given : 1, end = given ? given : MAX_DOMID_SCAN;

    for ( ;; )
    {
        for ( d = first; d <= end; d++ )
        {
            if ( d == me )
                continue;
            snprintf(path, sizeof(path), "/local/domain/%lu/name", d);
            rc = xs_read(path, value, sizeof(value));
            if ( rc >= 0 && str_eq(value, peer) )
            {
                peer_id = d;
                return 0;
            }
            if ( rc < 0 )
                last = rc;
        }
        if ( now_ns() >= deadline )
            return last;
        sleep_ns(MILLISECONDS(20));
    }
}

void guest_main(start_info_t *si)
{
    struct demo_ring *ring;
    const char *bulletin;
    unsigned long ring_ref, bulletin_ref, rport, answered = 0, timeout;
    unsigned int seen = 0;
    evtchn_port_t port;
    grant_handle_t ring_h, bull_h;
    uint32_t last = 0;
    uint64_t deadline;
    long rc;
    int st;

    if ( !cmdline_get("peer", peer, sizeof(peer)) )
        memcpy(peer, "ping", 5);
    timeout = cmdline_num("timeout", 20);
    deadline = 0;

    if ( (rc = events_init()) || (rc = xs_init()) )
        return fail("setting up shared_info and XenStore", rc);
    if ( (rc = xs_read("domid", value, sizeof(value))) < 0 )
        return fail("reading my domid", rc);
    me = parse_num(value);
    deadline = now_ns() + SECONDS(timeout);

    rc = find_peer(now_ns() + SECONDS(cmdline_num("find-timeout", 3)));
    if ( rc )
        return fail("no domain named so is visible in XenStore", rc);
    printk("pong: I am d%lu; found %s at d%lu\n", me, peer, peer_id);

    snprintf(path, sizeof(path), "/local/domain/%lu/data/state", peer_id);
    if ( (rc = xs_watch(path, "peer-state")) < 0 )
        return fail("XS_WATCH on its state", rc);
    for ( ;; )
    {
        rc = xs_read(path, value, sizeof(value));
        if ( rc >= 0 && str_eq(value, "ready") )
            break;
        if ( !xs_wait_watch(&seen, deadline) )
            return fail("its state never became ready", rc < 0 ? rc : -XEN_EAGAIN);
    }
    if ( (rc = read_peer("ring-ref", &ring_ref)) ||
         (rc = read_peer("bulletin-ref", &bulletin_ref)) ||
         (rc = read_peer("port", &rport)) )
        return fail("reading its data/ nodes", rc);
    printk("pong: %s offers port %lu, ring ref %lu, bulletin ref %lu\n", peer,
           rport, ring_ref, bulletin_ref);

    if ( (rc = evtchn_bind_interdomain(peer_id, rport, &port)) )
        return fail("EVTCHNOP_bind_interdomain", rc);
    evtchn_consume(port);               /* Xen raises a new binding once */

    ring = padding_alloc();
    bulletin = padding_alloc();
    if ( (st = gnttab_map(peer_id, ring_ref, ring, 0, &ring_h)) )
    {
        printk("pong: mapping the ring: %d %s\n", st, gntst_name(st));
        return fail("GNTTABOP_map_grant_ref", st);
    }
    if ( (st = gnttab_map(peer_id, bulletin_ref, (void *)bulletin, 1, &bull_h)) )
    {
        printk("pong: mapping the bulletin: %d %s\n", st, gntst_name(st));
        return fail("GNTTABOP_map_grant_ref", st);
    }
    printk("pong: bound local port %u; bulletin says \"%.40s\"\n", port, bulletin);
    st = gnttab_unmap((void *)bulletin, bull_h);
    printk("pong: unmapped the bulletin: %d %s\n", st, gntst_name(st));

    ring->magic = DEMO_HELLO;
    evtchn_send(port);

    for ( ;; )
    {
        uint32_t seq;

        deadline = now_ns() + SECONDS(timeout);
        while ( (seq = ring->req_seq) == last )
        {
            if ( evtchn_poll(port, deadline) )
            {
                gnttab_unmap(ring, ring_h);
                return fail("no request in time", -XEN_EAGAIN);
            }
            evtchn_consume(port);
        }
        last = seq;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if ( ring->req_cmd == CMD_DONE )
            break;
        ring->rsp_val = ring->req_val * 2 + 1;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        ring->rsp_seq = seq;
        answered++;
        evtchn_send(port);
    }

    /* ping says it revoked the bulletin: mapping it now must fail. */
    st = gnttab_map(peer_id, bulletin_ref, (void *)bulletin, 1, &bull_h);
    printk("pong: mapping revoked grant ref %lu: %d %s: %s\n", bulletin_ref,
           st, gntst_name(st), st ? "refused" : "NOT REFUSED");
    if ( !st )
        gnttab_unmap((void *)bulletin, bull_h);
    ring->rsp_status = st;
    ring->magic = DEMO_BYE;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    ring->rsp_seq = last;
    evtchn_send(port);

    st = gnttab_unmap(ring, ring_h);
    evtchn_send(port);                  /* the ring grant is free to end */
    evtchn_close(port);
    printk("pong: answered %lu pings; unmapped the ring: %d %s\n", answered,
           st, gntst_name(st));
}
