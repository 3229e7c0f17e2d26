/*
 * The end of a time slice.  Unicorn's own emu_start timeout starts a thread
 * per call (about a millisecond each here), so one watchdog thread per
 * machine does it instead: it wakes every few hundred microseconds and
 * stops the engine when the running slice is past its deadline.  Each run
 * has a generation number, so a late wake-up never stops the next run.
 */
#include <pthread.h>
#include <time.h>
#include "core.h"

#define TICK_NS 200000L

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000UL + (uint64_t)ts.tv_nsec;
}

static void *watch(void *data)
{
    struct xc_machine *m = data;
    struct timespec tick = {0, TICK_NS};
    while (!__atomic_load_n(&m->watchdog_quit, __ATOMIC_ACQUIRE)) {
        uint64_t gen = __atomic_load_n(&m->run_gen, __ATOMIC_ACQUIRE);
        uint64_t deadline = __atomic_load_n(&m->deadline_ns, __ATOMIC_ACQUIRE);
        if (deadline && now_ns() >= deadline &&
            __atomic_compare_exchange_n(&m->stopped_gen, &(uint64_t){gen - 1}, gen, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) &&
            __atomic_load_n(&m->run_gen, __ATOMIC_ACQUIRE) == gen)
            uc_emu_stop(m->uc);
        nanosleep(&tick, NULL);
    }
    return NULL;
}

int xc_watchdog_start(struct xc_machine *m)
{
    return pthread_create(&m->watchdog, NULL, watch, m) ? -1 : 0;
}

void xc_watchdog_stop(struct xc_machine *m)
{
    __atomic_store_n(&m->watchdog_quit, 1, __ATOMIC_RELEASE);
    pthread_join(m->watchdog, NULL);
}

/* A new run: its deadline (0: none) under a new generation. */
void xc_watchdog_arm(struct xc_machine *m, uint64_t timeout_us)
{
    uint64_t gen = __atomic_load_n(&m->run_gen, __ATOMIC_ACQUIRE) + 1;
    __atomic_store_n(&m->deadline_ns, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&m->stopped_gen, gen - 1, __ATOMIC_RELEASE);
    __atomic_store_n(&m->run_gen, gen, __ATOMIC_RELEASE);
    if (timeout_us)
        __atomic_store_n(&m->deadline_ns, now_ns() + timeout_us * 1000, __ATOMIC_RELEASE);
}

void xc_watchdog_disarm(struct xc_machine *m)
{
    __atomic_store_n(&m->deadline_ns, 0, __ATOMIC_RELEASE);
}
