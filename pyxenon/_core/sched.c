/*
 * The vcpu list, and the chain of slices C runs on its own.  The
 * scheduler's questions (who can run, is any deadline due) are answered
 * from the run queue and the deadline heap (runq.c), which use only what
 * C holds: blocking, deadlines and whether the domain runs.
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

/* The next vcpu after v (round robin) that can run and that C can enter:
 * an upcall due in guest user mode needs hypervisor/bounce.py. */
static struct xc_vcpu *next_ready(struct xc_machine *m, struct xc_vcpu *v)
{
    struct xc_vcpu *n = xc_runq_next(m, v);
    return n && xc_upcall_ready(m, n) && !n->kernel_mode ? NULL : n;
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
