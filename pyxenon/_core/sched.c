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

/* The next vcpu after v (round robin) that can run and that C can enter:
 * an upcall due in guest user mode needs hypervisor/bounce.py. */
static struct xc_vcpu *next_ready(struct xc_machine *m, struct xc_vcpu *v)
{
    struct xc_vcpu *n = v;
    do {
        n = n->next ? n->next : m->first;
        if (!n->blocked && n->domain_running)
            return xc_upcall_ready(m, n) && !n->kernel_mode ? NULL : n;
    } while (n != v);
    return NULL;
}

/* The slice that just ended needs nothing from Python: it stopped in a C
 * fast path (a block, a poll or a yield), with no fault, no Python handler
 * and no engine error. */
static int ended_in_c(struct xc_machine *m, int err, uint64_t py_calls)
{
    return !err && m->py_calls == py_calls && m->current->stop == XC_STOP_HYPERCALL;
}

/*
 * Run the current vcpu for a slice, then, while each slice ends in C and
 * no deadline is due, go on with the next vcpu that can run -- for at most
 * chain_ns -- so that domains passing events back and forth switch without
 * the Python scheduler.  Returns the last slice's engine error; the vcpu
 * it ran is m->current.
 */
int xc_run_chain(struct xc_machine *m, uint64_t timeout_us)
{
    uint64_t start = xc_system_time(m), t = start, py_calls = m->py_calls;
    int err = xc_run(m, timeout_us, 0);
    for (;;) {
        struct xc_vcpu *v = m->current, *n;
        uint64_t end = xc_system_time(m);
        v->runstate[0] += end - t;
        m->slices++;
        if (end - start >= m->chain_ns || !ended_in_c(m, err, py_calls) || xc_due(m, end) ||
            !(n = next_ready(m, v)))
            return err;
        if (xc_enter(m, n, end)) {   /* its upcall needs bounce.py: Python runs it */
            n->stop = XC_STOP_NONE;
            return 0;
        }
        t = end;
        err = xc_run(m, timeout_us, 0);
    }
}
