/*
 * setup.c - runtime state shared by all guests.
 */
#include "lib.h"

/* Filled in by head.S (_start) from the %rsi Xen hands over. */
start_info_t *start_info;

void xen_shutdown(unsigned int reason)
{
    struct sched_shutdown sd = { .reason = reason };

    for ( ;; )                          /* SCHEDOP_shutdown never returns */
        HYPERVISOR_sched_op(SCHEDOP_shutdown, &sd);
}
