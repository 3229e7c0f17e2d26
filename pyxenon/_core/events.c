/*
 * Event channels in C: EVTCHNOP_send on an interdomain channel and a
 * SCHEDOP_poll of one port (the two calls a ping-pong of split drivers
 * makes per message), and EVTCHNOP_unmask.  hypervisor/events.py and
 * hypercalls/sched_op.py implement the same semantics and handle every
 * other case: these return 0 ("not handled") before changing anything
 * whenever the case is not the plain one.  They know the 2-level ABI
 * only: a domain on FIFO event channels (xc_vcpu.evtchn_fifo, set by
 * hypervisor/events.py set_port_ops) is always Python's.
 */
#include <errno.h>
#include "core.h"

/* Xen's 2-level ABI on x86_64 (xen.h): where the bitmaps and a vcpu's
 * selector and pending flag live. */
#define SHARED_PENDING 2048      /* shared_info.evtchn_pending[64] */
#define SHARED_MASK 2560         /* shared_info.evtchn_mask[64] */
#define INFO_PENDING_SEL 8       /* vcpu_info.evtchn_pending_sel */

struct sched_poll {              /* public/sched.h */
    uint64_t ports;              /* guest address of evtchn_port_t[nr_ports] */
    uint32_t nr_ports;
    uint32_t pad;
    uint64_t timeout;            /* absolute system time; 0 = none */
};

static uint64_t *bitmap(struct xc_machine *m, uint64_t shared_ma, int which, uint32_t port)
{
    return (uint64_t *)(m->mem + shared_ma + which) + port / 64;
}

/* An event on port ends v's block (if unmasked) or its poll of port. */
static int wakes_on(const struct xc_vcpu *v, uint32_t port, int masked)
{
    if (!v->blocked || !v->domain_running)
        return 0;
    return v->poll_port == port || (!masked && v->poll_port == 0);
}

static void wake(struct xc_vcpu *v)
{
    v->blocked = 0;
    v->poll_port = 0;
    v->wake_at = 0;
}

/* Raise the upcall for a pending, unmasked port: the selector bit and
 * evtchn_upcall_pending of the vcpu the port notifies. */
static void mark_upcall(struct xc_machine *m, const struct xc_vcpu *v, uint32_t port)
{
    uint8_t *info = m->mem + v->vcpu_info_ma;
    *(uint64_t *)(info + INFO_PENDING_SEL) |= 1UL << (port / 64);
    info[0] = 1;   /* evtchn_upcall_pending */
}

/* Xen's evtchn_set_pending for the remote end of a link. */
static void set_pending(struct xc_machine *m, const struct xc_link *l)
{
    uint64_t bit = 1UL << (l->peer_port % 64);
    uint64_t *pending = bitmap(m, l->peer_shared_ma, SHARED_PENDING, l->peer_port);
    int masked = !!(*bitmap(m, l->peer_shared_ma, SHARED_MASK, l->peer_port) & bit);
    if (*pending & bit)
        return;
    *pending |= bit;
    if (!masked)
        mark_upcall(m, l->peer, l->peer_port);
    if (wakes_on(l->peer, l->peer_port, masked))
        wake(l->peer);
}

/* EVTCHNOP_send: arg is the guest address of struct evtchn_send { port }. */
int xc_fast_evtchn_send(struct xc_machine *m, struct xc_vcpu *v, uint64_t arg, int64_t *rc)
{
    uint32_t port;
    const struct xc_link *l;
    if (xc_copy_from_guest(m, v, &port, arg, sizeof(port)) || port >= v->nr_links)
        return 0;
    l = &v->links[port];
    if (!l->peer || l->peer->evtchn_fifo ||
        (l->peer->blocked && l->peer->poll_port == XC_POLL_SET))
        return 0;
    set_pending(m, l);
    *rc = 0;
    return 1;
}

/* SCHEDOP_poll of one port: return at once if it is pending, else block
 * until it is or until the timeout; the scheduler runs someone else. */
int xc_fast_poll(struct xc_machine *m, struct xc_vcpu *v, uint64_t arg, int64_t *rc)
{
    struct sched_poll poll;
    uint32_t port;
    if (v->evtchn_fifo || xc_copy_from_guest(m, v, &poll, arg, sizeof(poll)) || poll.nr_ports != 1 ||
        xc_copy_from_guest(m, v, &port, poll.ports, sizeof(port)) ||
        port == 0 || port >= v->nr_links)
        return 0;
    *rc = 0;
    if (*bitmap(m, v->shared_ma, SHARED_PENDING, port) & (1UL << (port % 64)))
        return 1;
    v->blocked = 1;
    v->poll_port = port;
    v->wake_at = poll.timeout;
    v->stop = XC_STOP_HYPERCALL;
    return 1;
}

/* EVTCHNOP_unmask (struct evtchn_unmask { port } at arg), for a domain of
 * one vcpu: clear the mask; a port pending meanwhile raises the upcall. */
int xc_fast_evtchn_unmask(struct xc_machine *m, struct xc_vcpu *v, uint64_t arg, int64_t *rc)
{
    uint32_t port;
    if (!v->max_ports || v->evtchn_fifo || xc_copy_from_guest(m, v, &port, arg, sizeof(port)))
        return 0;
    *rc = 0;
    if (port == 0 || port >= v->max_ports) {
        *rc = -EINVAL;
        return 1;
    }
    *bitmap(m, v->shared_ma, SHARED_MASK, port) &= ~(1UL << (port % 64));
    if (*bitmap(m, v->shared_ma, SHARED_PENDING, port) & (1UL << (port % 64)))
        mark_upcall(m, v, port);
    return 1;
}
