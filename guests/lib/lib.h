/*
 * lib.h - the toy guests' shared runtime.
 */
#ifndef GUEST_LIB_H
#define GUEST_LIB_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "xen.h"
#include "hypercall.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Set by head.S from %rsi before guest_main() runs. */
extern start_info_t *start_info;

/* Every guest provides this; returning from it powers the domain off. */
void guest_main(start_info_t *si);

/* Console output (console.c). */
void console_io_write(const char *buf, size_t len);  /* HYPERVISOR_console_io */
void ring_write(const char *buf, size_t len);        /* PV console ring */
struct xencons_interface *console_ring(void);       /* NULL: no ring (dom0) */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void printk(const char *fmt, ...)                    /* to console_io */
    __attribute__((format(printf, 1, 2)));
void ring_printk(const char *fmt, ...)               /* to the console ring */
    __attribute__((format(printf, 1, 2)));

/* SCHEDOP_shutdown; does not return. */
void xen_shutdown(unsigned int reason) __attribute__((noreturn));

/* string.c */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int memcmp(const void *a, const void *b, size_t n);

#endif /* GUEST_LIB_H */
