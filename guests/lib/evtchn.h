/*
 * evtchn.h - interdomain event channels (2-level ABI), waiting on ports
 * with SCHEDOP_poll, and the PV clock.  Linked into the guests that name
 * lib/evtchn.o (it needs lib/mm.o).
 *
 * Events stay masked for the vcpu (evtchn_upcall_mask, as at start of
 * day): nothing is delivered as an upcall.  A guest waits for a port with
 * SCHEDOP_poll and consumes it by clearing its bit in
 * shared_info->evtchn_pending itself.
 *
 * ABI from Xen's public event_channel.h and sched.h.
 */
#ifndef GUEST_EVTCHN_H
#define GUEST_EVTCHN_H

#include "lib.h"

#define EVTCHNOP_bind_interdomain   0
#define EVTCHNOP_close              3
/*      EVTCHNOP_send               4  (xen.h) */
#define EVTCHNOP_status             5
#define EVTCHNOP_alloc_unbound      6
#define EVTCHNOP_unmask             9

struct evtchn_alloc_unbound {
    domid_t dom, remote_dom;            /* IN */
    evtchn_port_t port;                 /* OUT */
};

struct evtchn_bind_interdomain {
    domid_t remote_dom;                 /* IN */
    evtchn_port_t remote_port;          /* IN */
    evtchn_port_t local_port;           /* OUT */
};

struct evtchn_close {
    evtchn_port_t port;
};

struct evtchn_unmask {
    evtchn_port_t port;
};

struct evtchn_status {
    domid_t dom;                        /* IN */
    evtchn_port_t port;                 /* IN */
    uint32_t status;                    /* OUT: EVTCHNSTAT_* */
    uint32_t vcpu;
    union {
        struct { domid_t dom; } unbound;
        struct { domid_t dom; evtchn_port_t port; } interdomain;
        uint32_t pirq, virq;
    } u;
};

_Static_assert(sizeof(struct evtchn_alloc_unbound) == 8, "evtchn_alloc_unbound");
_Static_assert(sizeof(struct evtchn_bind_interdomain) == 12,
               "evtchn_bind_interdomain");
_Static_assert(sizeof(struct evtchn_status) == 24, "evtchn_status");

/* Argument of SCHEDOP_poll (sched.h). */
struct sched_poll {
    evtchn_port_t *ports;
    unsigned int nr_ports;
    uint64_t timeout;                   /* absolute system time (ns); 0: none */
};
_Static_assert(sizeof(struct sched_poll) == 24, "sched_poll");

/* shared_info, mapped by events_init() (NULL before). */
extern shared_info_t *shared;

/* Map shared_info at a free padding page; returns the hypercall result. */
long events_init(void);

/* The hypercalls (results as returned: 0 or -XEN_Exxx). */
long evtchn_alloc_unbound(domid_t remote, evtchn_port_t *port);
long evtchn_bind_interdomain(domid_t remote, evtchn_port_t remote_port,
                             evtchn_port_t *local);
long evtchn_send(evtchn_port_t port);
long evtchn_close(evtchn_port_t port);

/* Clear port's pending bit (atomically); returns whether it was set. */
int evtchn_consume(evtchn_port_t port);

/*
 * Sleep until port is pending or system time reaches deadline (ns):
 * SCHEDOP_poll.  Does not consume the event.  Returns 0 if the port is
 * pending, 1 at the deadline.
 */
int evtchn_poll(evtchn_port_t port, uint64_t deadline);

/* System time in ns: vcpu 0's vcpu_time_info, extended with the TSC. */
uint64_t now_ns(void);

/* Sleep for ns (SCHEDOP_poll on no port, with a timeout). */
void sleep_ns(uint64_t ns);

#define MILLISECONDS(ms)    ((uint64_t)(ms) * 1000000ULL)
#define SECONDS(s)          ((uint64_t)(s) * 1000000000ULL)

#endif /* GUEST_EVTCHN_H */
