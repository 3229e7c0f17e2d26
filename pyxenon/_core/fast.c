/*
 * Hypercalls answered in C, without entering Python: the ones whose answer
 * needs no state beyond the machine's own.  Every other call, and every
 * call while fast paths are off (tracing, or measuring the Python path),
 * goes to the Python handlers, which implement the same semantics.
 */
#include "core.h"

#define HYPERVISOR_xen_version 17
#define HYPERVISOR_sched_op 29
#define XENVER_version 0
#define XENVER_pagesize 7
#define SCHEDOP_yield 0

/* 1 when handled (result in *rc), 0 to take the Python path. */
int xc_fast_hypercall(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a, int64_t *rc)
{
    if (!m->fast_paths)
        return 0;
    if (a[0] == HYPERVISOR_xen_version && a[1] == XENVER_version) {
        *rc = m->xen_version;
        return 1;
    }
    if (a[0] == HYPERVISOR_xen_version && a[1] == XENVER_pagesize) {
        *rc = PAGE_SIZE;
        return 1;
    }
    if (a[0] == HYPERVISOR_sched_op && a[1] == SCHEDOP_yield) {
        v->stop = XC_STOP_HYPERCALL;   /* the scheduler runs the next vcpu */
        *rc = 0;
        return 1;
    }
    return 0;
}
