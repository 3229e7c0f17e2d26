/*
 * Hypercalls answered in C, without entering Python: the hot ones, from the
 * machine's own state and the copies Python keeps in C (docs/ARCHITECTURE.md,
 * "What C knows").  Every other case, and every call while fast paths are
 * off (tracing, or measuring the Python path), goes to the Python handlers,
 * which implement the same semantics (tests/test_fast_paths.py).
 */
#include "core.h"

#define XENVER_version 0
#define XENVER_pagesize 7
#define SCHEDOP_yield 0
#define SCHEDOP_poll 3
#define EVTCHNOP_send 4
#define EVTCHNOP_unmask 9

static int fast_xen_version(struct xc_machine *m, uint64_t cmd, int64_t *rc)
{
    if (cmd == XENVER_version)
        *rc = m->xen_version;
    else if (cmd == XENVER_pagesize)
        *rc = PAGE_SIZE;
    else
        return 0;
    return 1;
}

static int fast_sched_op(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a, int64_t *rc)
{
    if (a[1] == SCHEDOP_poll)
        return xc_fast_poll(m, v, a[2], rc);
    if (a[1] != SCHEDOP_yield)
        return 0;
    v->stop = XC_STOP_HYPERCALL;   /* the scheduler runs the next vcpu */
    *rc = 0;
    return 1;
}

static int fast_event_channel_op(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a,
                                 int64_t *rc)
{
    if (a[1] == EVTCHNOP_send)
        return xc_fast_evtchn_send(m, v, a[2], rc);
    if (a[1] == EVTCHNOP_unmask)
        return xc_fast_evtchn_unmask(m, v, a[2], rc);
    return 0;
}

/* set_timer_op: an absolute system time (ns); 0 cancels; a past time fires
 * at the scheduler's next look. */
static int fast_set_timer_op(struct xc_machine *m, struct xc_vcpu *v, uint64_t timeout,
                             int64_t *rc)
{
    v->timer_at = timeout;
    xc_sched_update(m, v);
    *rc = 0;
    return 1;
}

struct multicall_entry {         /* public/xen.h */
    uint64_t op, result, args[6];
};

/* Entry i at va, if C may run it: within the trap's budget (entry 0 always
 * is), readable, its result writable, not a nested multicall nor a sched_op
 * (which may block or yield). */
static int fast_entry(struct xc_machine *m, struct xc_vcpu *v, uint32_t i, uint64_t va,
                      struct multicall_entry *e)
{
    if (i && m->work >= m->work_budget)
        return 0;
    m->work += XC_ENTRY_COST;
    return !xc_copy_from_guest(m, v, e, va, sizeof(*e)) && e->op != HYPERVISOR_multicall &&
           e->op != HYPERVISOR_sched_op && xc_translate(m, v, va + 8, 1) >= 0;
}

/*
 * multicall(call_list, nr_calls): the entries a fast path answers are done
 * here, each result written back; from the first other entry on, the rest
 * of the list goes to Python's multicall, which goes on from that entry as
 * Xen's continuation does.  Nothing that blocks or yields runs here.  A
 * list longer than the trap's budget goes to Python too, which continues it.
 */
static int fast_multicall(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a, int64_t *rc)
{
    uint32_t nr = (uint32_t)a[2], i;
    uint64_t va = a[1];
    for (i = 0; i < nr; i++, va += sizeof(struct multicall_entry)) {
        struct multicall_entry e;
        int64_t result;
        if (!fast_entry(m, v, i, va, &e) ||
            !xc_fast_hypercall(m, v, (uint64_t[6]){e.op, e.args[0], e.args[1], e.args[2],
                                                    e.args[3], e.args[4]}, &result))
            break;
        xc_copy_to_guest(m, v, va + 8, &result, sizeof(result));
        if (!v->domain_running)      /* as Python's: a stopped domain's list ends */
            nr = i + 1;
    }
    if (i == 0)
        return 0;
    *rc = i == nr ? 0 : xc_python(m, v, HYPERVISOR_multicall, va, nr - i, 0, 0, 0);
    return 1;
}

/* Hypercalls whose fast paths read no argument past the second. */
int xc_fast_two_args(uint64_t nr)
{
    return nr == HYPERVISOR_xen_version || nr == HYPERVISOR_sched_op ||
           nr == HYPERVISOR_event_channel_op || nr == HYPERVISOR_set_timer_op ||
           nr == HYPERVISOR_multicall;
}

/* 1 when handled (result in *rc), 0 to take the Python path. */
int xc_fast_hypercall(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a, int64_t *rc)
{
    if (!m->fast_paths)
        return 0;
    switch (a[0]) {
    case HYPERVISOR_xen_version:
        return fast_xen_version(m, a[1], rc);
    case HYPERVISOR_sched_op:
        return fast_sched_op(m, v, a, rc);
    case HYPERVISOR_event_channel_op:
        return fast_event_channel_op(m, v, a, rc);
    case HYPERVISOR_set_timer_op:
        return fast_set_timer_op(m, v, a[1], rc);
    case HYPERVISOR_update_va_mapping:
        return xc_fast_update_va_mapping(m, v, a, rc);
    case HYPERVISOR_mmuext_op:
        return xc_fast_mmuext(m, v, a, rc);
    case HYPERVISOR_mmu_update:
        return xc_fast_mmu_update(m, v, a, rc);
    case HYPERVISOR_multicall:
        return fast_multicall(m, v, a, rc);
    }
    return 0;
}
