/*
 * string.c - the few string helpers the guests (and gcc) need.
 *
 * memcpy/memset use rep movsb/stosb so the compiler cannot turn their
 * bodies back into calls to themselves.
 */
#include "lib.h"

void *memcpy(void *dst, const void *src, size_t n)
{
    void *d = dst;

    asm volatile ("rep movsb"
                  : "+D" (d), "+S" (src), "+c" (n)
                  :
                  : "memory");
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    void *d = dst;

    asm volatile ("rep stosb"
                  : "+D" (d), "+c" (n)
                  : "a" (c)
                  : "memory");
    return dst;
}

size_t strnlen(const char *s, size_t max)
{
    size_t n = 0;

    while ( n < max && s[n] )
        n++;
    return n;
}

size_t strlen(const char *s)
{
    return strnlen(s, (size_t)-1);
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;

    for ( ; n; n--, x++, y++ )
        if ( *x != *y )
            return *x - *y;
    return 0;
}
