/*
 * evtchn.c - event channel helpers and the PV clock (see evtchn.h).
 */
#include "evtchn.h"
#include "mm.h"

shared_info_t *shared;

long events_init(void)
{
    void *va = padding_alloc();

    if ( !va )
        return -XEN_ENOMEM;
    return map_shared_info((unsigned long)va, &shared);
}

long evtchn_alloc_unbound(domid_t remote, evtchn_port_t *port)
{
    struct evtchn_alloc_unbound op = { .dom = DOMID_SELF, .remote_dom = remote };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, &op);

    *port = rc ? 0 : op.port;
    return rc;
}

long evtchn_bind_interdomain(domid_t remote, evtchn_port_t remote_port,
                             evtchn_port_t *local)
{
    struct evtchn_bind_interdomain op = {
        .remote_dom = remote, .remote_port = remote_port,
    };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_interdomain, &op);

    *local = rc ? 0 : op.local_port;
    return rc;
}

long evtchn_send(evtchn_port_t port)
{
    struct evtchn_send op = { .port = port };

    return HYPERVISOR_event_channel_op(EVTCHNOP_send, &op);
}

long evtchn_close(evtchn_port_t port)
{
    struct evtchn_close op = { .port = port };

    return HYPERVISOR_event_channel_op(EVTCHNOP_close, &op);
}

int evtchn_consume(evtchn_port_t port)
{
    unsigned long *word = &shared->evtchn_pending[port / 64];
    unsigned long bit = 1UL << (port % 64);

    return !!(__atomic_fetch_and(word, ~bit, __ATOMIC_SEQ_CST) & bit);
}

static int is_pending(evtchn_port_t port)
{
    return !!(__atomic_load_n(&shared->evtchn_pending[port / 64],
                              __ATOMIC_SEQ_CST) & (1UL << (port % 64)));
}

int evtchn_poll(evtchn_port_t port, uint64_t deadline)
{
    struct sched_poll poll = { .ports = &port, .nr_ports = 1, .timeout = deadline };

    while ( !is_pending(port) )
    {
        if ( now_ns() >= deadline )
            return 1;
        HYPERVISOR_sched_op(SCHEDOP_poll, &poll);
    }
    return 0;
}

void sleep_ns(uint64_t ns)
{
    uint64_t deadline = now_ns() + ns;
    struct sched_poll poll = { .ports = NULL, .nr_ports = 0, .timeout = deadline };

    while ( now_ns() < deadline )
        HYPERVISOR_sched_op(SCHEDOP_poll, &poll);
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;

    asm volatile ( "rdtsc" : "=a" (lo), "=d" (hi) );
    return ((uint64_t)hi << 32) | lo;
}

/* Xen's pvclock: ns = ((tsc_delta << shift) * mul) >> 32, shift may be < 0. */
uint64_t now_ns(void)
{
    volatile struct vcpu_time_info *t = &shared->vcpu_info[0].time;
    uint32_t version;
    uint64_t delta, sys;
    uint32_t mul;
    int8_t shift;

    do {
        version = t->version;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        delta = rdtsc() - t->tsc_timestamp;
        sys = t->system_time;
        mul = t->tsc_to_system_mul;
        shift = t->tsc_shift;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    } while ( (version & 1) || version != t->version );

    if ( (int64_t)delta < 0 )
        delta = 0;
    if ( shift < 0 )
        delta >>= -shift;
    else
        delta <<= shift;
    return sys + (uint64_t)(((unsigned __int128)delta * mul) >> 32);
}
