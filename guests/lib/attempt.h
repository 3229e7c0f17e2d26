/*
 * attempt.h - bookkeeping for the self-checking hostile guests (linearpt,
 * staletlb, hvwrite): one console line per attempt, a count, and probes
 * for memory accesses that must page-fault.  Needs lib/mm.o and the trap
 * objects (lib/entry.o, lib/traps.o).
 *
 * An attempt's line is
 *
 *     NAME: [ n] what was tried: what came back: verdict
 *
 * with the verdict one of "refused as Xen does" (counted), "NOT REFUSED"
 * (a breach) or "refused, but not as Xen does"; for the few operations Xen
 * allows, "allowed as Xen does" (counted) or "NOT AS XEN DOES".  The
 * what-came-back part names Xen 4.17's answer.  attempts_done() prints "NAME: N/M attempts
 * refused" and powers off.
 */
#ifndef GUEST_ATTEMPT_H
#define GUEST_ATTEMPT_H

#include "lib.h"
#include "mm.h"

enum verdict { REFUSED, BREACH, DIFFERENT, ALLOWED, WRONG };

/* Map shared_info (for cr2) and install the #PF handler the probes need. */
void attempts_init(const char *name);

/* One attempt's line; REFUSED and ALLOWED count it. */
void report(enum verdict v, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "NAME: N/M attempts refused", then SHUTDOWN_poweroff. */
void attempts_done(void) __attribute__((noreturn));

/* A quadword write (read) that may fault: 1 if a #PF came at that very
 * instruction (the access did not happen), 0 if it went through. */
int write_faults(volatile uint64_t *va, uint64_t val);
int read_faults(volatile const uint64_t *va, uint64_t *out);

/* "0 OK", "-22 EINVAL": a hypercall result as printed in the lines. */
const char *rcstr(long rc);

/* The verdict for a hypercall that Xen refuses with -err. */
static inline enum verdict refusal(long rc, int err)
{
    return rc == -err ? REFUSED : rc == 0 ? BREACH : DIFFERENT;
}

/* One mmu_update request (MMU_NORMAL_PT_UPDATE unless cmd says otherwise). */
long mmu_update1(uint64_t ptr, uint64_t val, unsigned int cmd);

/* update_va_mapping of a 1:1 start-of-day page to its own frame with flags. */
long remap_self(const void *va, uint64_t flags);

#endif /* GUEST_ATTEMPT_H */
