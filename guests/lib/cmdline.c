/*
 * cmdline.c - key=value words of the kernel command line (see cmdline.h).
 */
#include "cmdline.h"

const char *cmdline_get(const char *key, char *buf, size_t size)
{
    const char *p = (const char *)start_info->cmd_line;
    const char *end = p + strnlen(p, sizeof(start_info->cmd_line));
    size_t klen = strlen(key);

    while ( p < end )
    {
        const char *word = p;
        size_t n;

        while ( p < end && *p != ' ' )
            p++;
        if ( (size_t)(p - word) > klen && !memcmp(word, key, klen) &&
             word[klen] == '=' )
        {
            word += klen + 1;
            n = p - word;
            if ( n >= size )
                n = size - 1;
            memcpy(buf, word, n);
            buf[n] = '\0';
            return buf;
        }
        while ( p < end && *p == ' ' )
            p++;
    }
    return NULL;
}

static long parse(const char *s, unsigned int base)
{
    long v = 0;

    if ( !*s )
        return -1;
    for ( ; *s; s++ )
    {
        unsigned int d;

        if ( *s >= '0' && *s <= '9' )
            d = *s - '0';
        else if ( base == 16 && (*s | 0x20) >= 'a' && (*s | 0x20) <= 'f' )
            d = (*s | 0x20) - 'a' + 10;
        else
            return -1;
        v = v * base + d;
    }
    return v;
}

long parse_num(const char *s)
{
    return parse(s, 10);
}

unsigned long cmdline_num(const char *key, unsigned long dflt)
{
    char buf[32];
    long v;

    if ( !cmdline_get(key, buf, sizeof(buf)) )
        return dflt;
    v = (buf[0] == '0' && (buf[1] | 0x20) == 'x') ? parse(buf + 2, 16)
                                                   : parse(buf, 10);
    return v < 0 ? dflt : (unsigned long)v;
}

int str_eq(const char *a, const char *b)
{
    while ( *a && *a == *b )
        a++, b++;
    return *a == *b;
}
