/*
 * cmdline.h - "key=value" words of start_info->cmd_line (the cfg's
 * extra/cmdline).  Linked into the guests that name lib/cmdline.o.
 */
#ifndef GUEST_CMDLINE_H
#define GUEST_CMDLINE_H

#include "lib.h"

/*
 * Copy the value of key (up to the next space) into buf, NUL-terminated.
 * Returns buf, or NULL if the command line has no "key=".
 */
const char *cmdline_get(const char *key, char *buf, size_t size);

/* The value of key as a decimal (or 0x hex) number; dflt if absent or bad. */
unsigned long cmdline_num(const char *key, unsigned long dflt);

/* Decimal string -> number; -1 if s is not one (used for XenStore values). */
long parse_num(const char *s);

/* strcmp for NUL-terminated strings. */
int str_eq(const char *a, const char *b);

#endif /* GUEST_CMDLINE_H */
