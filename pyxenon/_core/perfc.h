/*
 * Hypercall statistics and the trace buffer: what a hypercall trap counts
 * and records, as Xen's perfc (PERFCOUNTER_ARRAY(hypercalls, ...) in
 * xen/include/xen/perfc_defn.h) and xentrace's per-CPU trace buffers
 * (xen/common/trace.c: __trace_var into t_buf, a consumer index the
 * reader advances, records lost counted) do.  Inline, because the trap
 * pays for it on every call: with statistics on and no trace, a call
 * costs two increments, and one call in XC_SAMPLE+1 reads the TSC twice
 * (the time of fast-path calls is sampled; Python calls are all timed).
 *
 * Python owns both structures: a domain's xc_perfc (hypervisor/perfc.py),
 * shared by its vcpus through xc_vcpu.perfc (NULL: not counted), and the
 * machine's xc_tbuf (toolstack/xenperf.py; xc_machine.tbuf, NULL: no trace).
 */
#ifndef PYXENON_PERFC_H
#define PYXENON_PERFC_H

#include "core.h"

#define EVTCHNOP_send_ 4

static inline uint64_t xc_cycles(void)
{
    return __builtin_ia32_rdtsc();
}

/* One trap being observed: taken at its start, finished at its end. */
struct xc_observed {
    uint64_t t0;          /* TSC at the start; 0: not timed */
    uint64_t py_calls;    /* m->py_calls at the start: did it go to Python? */
};

static inline void xc_observe_start(struct xc_machine *m, struct xc_vcpu *v,
                                    struct xc_observed *o)
{
    struct xc_perfc *p = v->perfc;
    o->py_calls = m->py_calls;
    o->t0 = (m->tbuf || (p && !(++p->tick & XC_SAMPLE))) ? xc_cycles() : 0;
}

/* Xen's __trace_var: a full buffer loses the record and counts it, so the
 * trap never waits for the reader and the buffer never grows. */
static inline void xc_trace_put(struct xc_tbuf *t, struct xc_vcpu *v, const uint64_t *a,
                                int64_t rc, uint64_t t0, uint64_t cycles, int py)
{
    struct xc_trec *r;
    if (t->prod - t->cons >= t->size) {
        t->lost++;
        return;
    }
    r = &t->recs[t->prod & (t->size - 1)];
    r->tsc = t0;
    r->nr = a[0], r->a1 = a[1], r->a2 = a[2], r->a3 = a[3];
    r->rc = rc;
    r->cycles = cycles > UINT32_MAX ? UINT32_MAX : (uint32_t)cycles;
    r->domid = v->domid, r->vcpu_id = v->vcpu_id;
    r->python = (uint32_t)py;
    t->prod++;
}

static inline void xc_observe_end(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a,
                                  int64_t rc, const struct xc_observed *o)
{
    struct xc_perfc *p = v->perfc;
    int py = m->py_calls != o->py_calls;
    uint64_t cycles = o->t0 ? xc_cycles() - o->t0 : 0;
    if (p) {
        struct xc_perfc_call *c = &p->calls[a[0] < XC_PERFC_NR ? a[0] : XC_PERFC_NR];
        c->calls++;
        if (o->t0 && !py)
            c->fast_timed++, c->fast_cycles += cycles;
        if (a[0] == HYPERVISOR_event_channel_op && a[1] == EVTCHNOP_send_ && rc == 0)
            p->events_sent++;
    }
    if (m->tbuf)
        xc_trace_put(m->tbuf, v, a, rc, o->t0, cycles, py);
}

#endif
