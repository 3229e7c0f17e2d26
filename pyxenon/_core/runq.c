/*
 * What the scheduler looks at, kept so that a blocked vcpu costs it
 * nothing: the vcpus that can run (Xen's credit scheduler keeps a run
 * queue, common/sched/credit.c runq_insert/runq_remove, and never looks at
 * a blocked vcpu) and the deadlines (common/timer.c keeps a heap of
 * timers, add_to_heap/remove_from_heap, and looks only at its top).
 *
 * Round robin here goes in creation order, as it always has (the order is
 * part of what a deterministic run repeats), so the run queue is a bitmap
 * over each vcpu's creation slot, with a summary bit per word: the next
 * vcpu that can run is found in a few word reads, whatever the number of
 * vcpus that cannot.  A vcpu's deadline is its timer or, blocked in a
 * running domain, the end of its block or poll: the heap's top says
 * whether one is due.
 *
 * xc_sched_update must follow every change of blocked, domain_running,
 * wake_at or timer_at (C's writers and hypervisor/vcpu.py's).
 */
#include <stdlib.h>
#include <string.h>
#include "core.h"

#define WORD 64
#define NO_HEAP_POS 0xFFFFFFFFu

static int can_run(const struct xc_vcpu *v)
{
    return !v->blocked && v->domain_running;
}

/* The deadline xc_due watches: 0 for none. */
static uint64_t deadline(const struct xc_vcpu *v)
{
    uint64_t d = v->timer_at;
    if (v->blocked && v->domain_running && v->wake_at && (!d || v->wake_at < d))
        d = v->wake_at;
    return d;
}

/* -- the run queue: a bit per creation slot --------------------------------- */

static void set_ready(struct xc_machine *m, uint32_t seq, int on)
{
    uint64_t *w = &m->ready[seq / WORD], bit = 1UL << (seq % WORD);
    uint32_t sw = seq / WORD;
    *w = on ? *w | bit : *w & ~bit;
    if (*w)
        m->ready_summary[sw / WORD] |= 1UL << (sw % WORD);
    else
        m->ready_summary[sw / WORD] &= ~(1UL << (sw % WORD));
}

/* The first set bit of bits at or after i, among n bits; -1 past the end,
 * -2 if none in i's word.  A word read is a visit of the scheduler's. */
static int64_t first_set(struct xc_machine *m, const uint64_t *bits, uint64_t n, uint64_t i)
{
    if (i >= n)
        return -1;
    m->sched_visits++;
    uint64_t word = bits[i / WORD] & (~0UL << (i % WORD));
    return word ? (int64_t)(i / WORD * WORD + (uint64_t)__builtin_ctzl(word)) : -2;
}

/* The first vcpu slot at or after seq that can run, or -1: its word, then
 * the summary for the next non-empty word. */
static int64_t ready_from(struct xc_machine *m, uint64_t seq)
{
    uint64_t words = m->slot_cap / WORD;
    int64_t r = first_set(m, m->ready, m->slot_cap, seq);
    if (r != -2)
        return r;
    for (uint64_t w = seq / WORD + 1; w < words;) {
        int64_t s = first_set(m, m->ready_summary, words, w);
        if (s == -2) {             /* nothing in this summary word: skip it */
            w = (w / WORD + 1) * WORD;
            continue;
        }
        if (s < 0)
            return -1;
        return s * WORD + __builtin_ctzl(m->ready[s]);
    }
    return -1;
}

/* The vcpu after v in creation order (round robin) that can run, or NULL;
 * v itself only if it alone can. */
struct xc_vcpu *xc_runq_next(struct xc_machine *m, struct xc_vcpu *v)
{
    int64_t s = ready_from(m, v->seq + 1);
    if (s < 0)
        s = ready_from(m, 0);
    return s < 0 ? NULL : m->slots[s];
}

/* The handles of the vcpus that can run, in creation order; how many. */
int xc_ready(struct xc_machine *m, uint32_t *handles, int max)
{
    int n = 0;
    for (int64_t s = ready_from(m, 0); s >= 0 && n < max; s = ready_from(m, (uint64_t)s + 1))
        handles[n++] = m->slots[s]->handle;
    return n;
}

/* -- the deadline heap (common/timer.c's, of vcpus) ----------------------- */

static int earlier(const struct xc_vcpu *a, const struct xc_vcpu *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_put(struct xc_machine *m, uint32_t i, struct xc_vcpu *v)
{
    m->heap[i] = v;
    v->heap_pos = i;
}

static void sift_up(struct xc_machine *m, uint32_t i)
{
    struct xc_vcpu *v = m->heap[i];
    while (i && earlier(v, m->heap[(i - 1) / 2])) {
        heap_put(m, i, m->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_put(m, i, v);
}

static void sift_down(struct xc_machine *m, uint32_t i)
{
    struct xc_vcpu *v = m->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= m->heap_len)
            break;
        if (c + 1 < m->heap_len && earlier(m->heap[c + 1], m->heap[c]))
            c++;
        if (!earlier(m->heap[c], v))
            break;
        heap_put(m, i, m->heap[c]);
        i = c;
    }
    heap_put(m, i, v);
}

static void heap_remove(struct xc_machine *m, struct xc_vcpu *v)
{
    uint32_t i = v->heap_pos;
    struct xc_vcpu *last = m->heap[--m->heap_len];
    v->heap_pos = NO_HEAP_POS;
    if (last == v)
        return;
    heap_put(m, i, last);
    sift_up(m, i);
    sift_down(m, last->heap_pos);
}

static void heap_set(struct xc_machine *m, struct xc_vcpu *v, uint64_t d)
{
    if (v->heap_pos != NO_HEAP_POS && d == v->deadline)
        return;
    if (v->heap_pos != NO_HEAP_POS)
        heap_remove(m, v);
    v->deadline = d;
    if (!d)
        return;
    heap_put(m, m->heap_len++, v);   /* room was made when v was created */
    sift_up(m, v->heap_pos);
}

/* 1 when a timer has expired, or a running domain's block or poll timed out. */
int xc_due(struct xc_machine *m, uint64_t now)
{
    m->sched_visits++;
    return m->heap_len && m->heap[0]->deadline <= now;
}

static int by_seq(const void *a, const void *b)
{
    uint32_t x = (*(struct xc_vcpu *const *)a)->seq, y = (*(struct xc_vcpu *const *)b)->seq;
    return (x > y) - (x < y);
}

/* The handles of the vcpus whose deadline is due, in creation order (the
 * order the scheduler has always fired and woken them in); how many.
 * Only the heap's due part is visited. */
int xc_due_list(struct xc_machine *m, uint64_t now, uint32_t *handles, int max)
{
    struct xc_vcpu **due = m->due;
    uint32_t n = 0, stack_top = 0, *stack = m->due_stack;
    if (m->heap_len)
        stack[stack_top++] = 0;
    while (stack_top) {
        uint32_t i = stack[--stack_top];
        if (m->heap[i]->deadline > now)
            continue;              /* nor is anything below it */
        due[n++] = m->heap[i];
        m->sched_visits++;
        for (uint32_t c = 2 * i + 1; c <= 2 * i + 2 && c < m->heap_len; c++)
            stack[stack_top++] = c;
    }
    qsort(due, n, sizeof(*due), by_seq);
    for (uint32_t i = 0; i < n && (int)i < max; i++)
        handles[i] = due[i]->handle;
    return (int)n;
}

/* The earliest deadline of a vcpu whose domain runs (0: none): the time
 * the scheduler sleeps to when nothing can run.  Paused domains' timers
 * above it are passed over; nothing below a deadline found is visited. */
uint64_t xc_next_wake(struct xc_machine *m)
{
    uint64_t best = 0;
    uint32_t stack_top = 0, *stack = m->due_stack;
    if (m->heap_len)
        stack[stack_top++] = 0;
    while (stack_top) {
        struct xc_vcpu *v = m->heap[stack[--stack_top]];
        uint32_t i = v->heap_pos;
        if (best && v->deadline >= best)
            continue;
        if (v->domain_running) {
            best = v->deadline;
            continue;
        }
        for (uint32_t c = 2 * i + 1; c <= 2 * i + 2 && c < m->heap_len; c++)
            stack[stack_top++] = c;
    }
    return best;
}

/* -- membership --------------------------------------------------------------- */

void xc_sched_update(struct xc_machine *m, struct xc_vcpu *v)
{
    set_ready(m, v->seq, can_run(v));
    heap_set(m, v, deadline(v));
}

static void *grow(void **p, uint64_t n, size_t size)
{
    void *q = realloc(*p, n * size);
    if (q)
        *p = q;
    return q;
}

/* Renumber the slots in creation order (the vcpu list's), dropping the
 * freed ones: the bitmap never grows past twice the live vcpus. */
static void compact(struct xc_machine *m)
{
    uint32_t n = 0;
    memset(m->ready, 0, m->slot_cap / WORD * 8);
    memset(m->ready_summary, 0, (m->slot_cap / WORD / WORD + 1) * 8);
    memset(m->slots, 0, m->slot_cap * sizeof(*m->slots));
    for (struct xc_vcpu *v = m->first; v; v = v->next) {
        v->seq = n;
        m->slots[n++] = v;
        set_ready(m, v->seq, can_run(v));
    }
    m->nr_slots = n;
}

/* Every per-slot array at cap slots; -1 if one could not grow (what did
 * grow is kept, and still used at the old size). */
static int grow_all(struct xc_machine *m, uint64_t cap)
{
    if (!grow((void **)&m->slots, cap, sizeof(*m->slots)) || !grow((void **)&m->ready, cap / WORD, 8))
        return -1;
    if (!grow((void **)&m->ready_summary, cap / WORD / WORD + 1, 8) ||
        !grow((void **)&m->heap, cap, sizeof(*m->heap)))
        return -1;
    if (!grow((void **)&m->due, cap, sizeof(*m->due)) ||
        !grow((void **)&m->due_stack, cap + 1, sizeof(*m->due_stack)))
        return -1;
    return 0;
}

/* Room for one more slot, by compacting a sparse table or doubling it:
 * 1 if the slots were renumbered (the new vcpu, last on the list, too). */
static int make_room(struct xc_machine *m)
{
    uint64_t cap = m->slot_cap ? 2UL * m->slot_cap : WORD;
    if (m->nr_slots < m->slot_cap)
        return 0;
    if (m->slot_cap && m->nr_live * 2 <= m->nr_slots) {
        compact(m);
        return 1;
    }
    if (grow_all(m, cap))
        return -1;
    m->slot_cap = (uint32_t)cap;
    compact(m);                    /* the new words start cleared */
    return 1;
}

/* A new vcpu, already last on the machine's list: its slot, and its place
 * as its fields say.  -1 (and nothing changed) if there is no memory. */
int xc_sched_add(struct xc_machine *m, struct xc_vcpu *v)
{
    int placed;
    v->heap_pos = NO_HEAP_POS;
    m->nr_live++;
    placed = make_room(m);
    if (placed < 0) {
        m->nr_live--;
        return -1;
    }
    if (!placed) {
        v->seq = m->nr_slots++;
        m->slots[v->seq] = v;
    }
    xc_sched_update(m, v);
    return 0;
}

void xc_sched_remove(struct xc_machine *m, struct xc_vcpu *v)
{
    set_ready(m, v->seq, 0);
    if (v->heap_pos != NO_HEAP_POS)
        heap_remove(m, v);
    m->slots[v->seq] = NULL;
    m->nr_live--;
}

void xc_sched_free(struct xc_machine *m)
{
    free(m->slots);
    free(m->ready);
    free(m->ready_summary);
    free(m->heap);
    free(m->due);
    free(m->due_stack);
}
