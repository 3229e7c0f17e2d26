/*
 * The scheduler's questions, answered from the C vcpus in one call each
 * (hypervisor/scheduler.py asks them before every slice): who can run, and
 * is any deadline due.  The answers use only what C holds: blocking,
 * deadlines and whether the domain runs.
 */
#include "core.h"

void xc_vcpu_link(struct xc_machine *m, struct xc_vcpu *v)
{
    v->prev = m->last;
    v->next = NULL;
    if (m->last)
        m->last->next = v;
    else
        m->first = v;
    m->last = v;
}

void xc_vcpu_unlink(struct xc_machine *m, struct xc_vcpu *v)
{
    if (v->prev)
        v->prev->next = v->next;
    else
        m->first = v->next;
    if (v->next)
        v->next->prev = v->prev;
    else
        m->last = v->prev;
}

/* The handles of the vcpus that can run, in creation order; how many. */
int xc_ready(struct xc_machine *m, uint32_t *handles, int max)
{
    int n = 0;
    for (struct xc_vcpu *v = m->first; v && n < max; v = v->next)
        if (!v->blocked && v->domain_running)
            handles[n++] = v->handle;
    return n;
}

/* 1 when a timer has expired, or a running domain's block or poll timed out. */
int xc_due(struct xc_machine *m, uint64_t now)
{
    for (struct xc_vcpu *v = m->first; v; v = v->next) {
        if (v->timer_at && v->timer_at <= now)
            return 1;
        if (v->blocked && v->domain_running && v->wake_at && v->wake_at <= now)
            return 1;
    }
    return 0;
}
