/*
 * The end of a time slice.  Unicorn's own emu_start timeout starts a thread
 * per call (about a millisecond each here), so one watchdog thread per
 * machine does it instead: it wakes every few hundred microseconds and
 * stops the engine when the running slice is past its deadline.  Each run
 * has a generation number, so a late wake-up never stops the next run.
 * After PARK_TICKS ticks in which no run started (a host whose domains all wait)
 * it parks on a condition variable, and the next arm wakes it: an idle host
 * costs no wake-ups, a busy one no system call per run.
 */
#include <pthread.h>
#include <time.h>
#include "core.h"

#define TICK_NS 200000L
#define PARK_TICKS 50          /* 10 ms idle */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000UL + (uint64_t)ts.tv_nsec;
}

static int armed(struct xc_machine *m)
{
    return __atomic_load_n(&m->deadline_ns, __ATOMIC_SEQ_CST) != 0;
}

static int quitting(struct xc_machine *m)
{
    return __atomic_load_n(&m->watchdog_quit, __ATOMIC_SEQ_CST);
}

/* Wait until a run is armed or the machine goes.  parked is set before
 * deadline_ns is read (both seq_cst), and arm stores the deadline before
 * it reads parked, so one of the two always sees the other's store. */
static void park(struct xc_machine *m)
{
    pthread_mutex_lock(&m->watchdog_lock);
    __atomic_store_n(&m->watchdog_parked, 1, __ATOMIC_SEQ_CST);
    while (!armed(m) && !quitting(m))
        pthread_cond_wait(&m->watchdog_wake, &m->watchdog_lock);
    __atomic_store_n(&m->watchdog_parked, 0, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&m->watchdog_lock);
}

static void wake(struct xc_machine *m)
{
    pthread_mutex_lock(&m->watchdog_lock);
    pthread_cond_signal(&m->watchdog_wake);
    pthread_mutex_unlock(&m->watchdog_lock);
}

/*
 * End the run of generation gen if it is past its deadline -- at the start
 * of the next translated block, never mid-instruction.  An asynchronous
 * uc_emu_stop is noticed by the exit check Unicorn places after every
 * memory access, and Unicorn then restarts the instruction in flight: a
 * read-modify-write whose store had happened (incq, lock xadd ...) ran
 * twice.  So the watchdog only asks, and the block hook, which Unicorn calls
 * before a block's own exit check, stops the engine there.
 */
static void check_deadline(struct xc_machine *m)
{
    uint64_t gen = __atomic_load_n(&m->run_gen, __ATOMIC_ACQUIRE);
    uint64_t deadline = __atomic_load_n(&m->deadline_ns, __ATOMIC_ACQUIRE);
    if (deadline && now_ns() >= deadline &&
        __atomic_compare_exchange_n(&m->stopped_gen, &(uint64_t){gen - 1}, gen, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        if (xc_exits_at_blocks(m))
            uc_emu_stop(m->uc);   /* lands at a block start (exits.c) */
        else
            __atomic_store_n(&m->preempt_gen, gen, __ATOMIC_RELEASE);
    }
}

/* End the current run at the next block boundary (the engine's own thread,
 * inside an instruction, where uc_emu_stop would restart it). */
void xc_end_run_at_block(struct xc_machine *m)
{
    if (xc_exits_at_blocks(m)) {
        uc_emu_stop(m->uc);
        return;
    }
    __atomic_store_n(&m->preempt_gen, __atomic_load_n(&m->run_gen, __ATOMIC_RELAXED),
                     __ATOMIC_RELEASE);
}

/* UC_HOOK_BLOCK: a counted run's budget of blocks is spent, or the watchdog
 * (or xc_end_run_at_block) asked to end this run. */
void xc_hook_block(uc_engine *uc, uint64_t address, uint32_t size, void *data)
{
    struct xc_machine *m = data;
    uint64_t gen = __atomic_load_n(&m->preempt_gen, __ATOMIC_ACQUIRE);
    (void)address;
    (void)size;
    if (m->block_budget && --m->block_budget == 0)
        uc_emu_stop(uc);
    else if (gen && gen == __atomic_load_n(&m->run_gen, __ATOMIC_RELAXED))   /* runs count from 1 */
        uc_emu_stop(uc);
}

/* Idle means no run started since the last tick and none is running: a
 * busy host's runs are often far shorter than a tick, so being disarmed
 * at the moment of a tick says nothing. */
static void *watch(void *data)
{
    struct xc_machine *m = data;
    struct timespec tick = {0, TICK_NS};
    uint64_t seen = 0;
    int idle = 0;
    while (!quitting(m)) {
        uint64_t gen = __atomic_load_n(&m->run_gen, __ATOMIC_ACQUIRE);
        idle = armed(m) || gen != seen ? 0 : idle + 1;
        seen = gen;
        if (idle > PARK_TICKS) {
            park(m);
            idle = 0;
            continue;
        }
        check_deadline(m);
        nanosleep(&tick, NULL);
    }
    return NULL;
}

int xc_watchdog_start(struct xc_machine *m)
{
    if (pthread_mutex_init(&m->watchdog_lock, NULL) || pthread_cond_init(&m->watchdog_wake, NULL))
        return -1;
    return pthread_create(&m->watchdog, NULL, watch, m) ? -1 : 0;
}

void xc_watchdog_stop(struct xc_machine *m)
{
    __atomic_store_n(&m->watchdog_quit, 1, __ATOMIC_SEQ_CST);
    wake(m);
    pthread_join(m->watchdog, NULL);
}

/* A new run: its deadline (0: none) under a new generation. */
void xc_watchdog_arm(struct xc_machine *m, uint64_t timeout_us)
{
    uint64_t gen = __atomic_load_n(&m->run_gen, __ATOMIC_ACQUIRE) + 1;
    __atomic_store_n(&m->deadline_ns, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&m->stopped_gen, gen - 1, __ATOMIC_RELEASE);
    __atomic_store_n(&m->run_gen, gen, __ATOMIC_RELEASE);
    if (!timeout_us)
        return;
    __atomic_store_n(&m->deadline_ns, now_ns() + timeout_us * 1000, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&m->watchdog_parked, __ATOMIC_SEQ_CST))
        wake(m);
}

void xc_watchdog_disarm(struct xc_machine *m)
{
    __atomic_store_n(&m->deadline_ns, 0, __ATOMIC_RELEASE);
}
