/*
 * console.c - console output for the toy guests.
 *
 * Two ways out:
 *  - console_io_write(): the HYPERVISOR_console_io hypercall (Xen's own
 *    console, the emergency/debug path);
 *  - ring_write(): the PV console ring page named in start_info, with an
 *    event channel kick to the backend, as a real frontend does it.
 */
#include "lib.h"

#define barrier() asm volatile ("" ::: "memory")
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

void console_io_write(const char *buf, size_t len)
{
    HYPERVISOR_console_io(CONSOLEIO_write, len, buf);
}

/*
 * start_info gives the ring as a machine frame.  The read-only M2P table
 * turns it into a pseudo-physical frame, and the start-of-day mapping puts
 * pfn N at GUEST_VIRT_BASE + N * PAGE_SIZE.
 */
struct xencons_interface *console_ring(void)
{
    const unsigned long *m2p = (const unsigned long *)MACH2PHYS_VIRT_START;
    unsigned long mfn, pfn;

    if ( !start_info || (start_info->flags & SIF_INITDOMAIN) )
        return NULL;
    mfn = start_info->console.domU.mfn;
    if ( !mfn )
        return NULL;
    pfn = m2p[mfn];
    return (struct xencons_interface *)(GUEST_VIRT_BASE + (pfn << PAGE_SHIFT));
}

static void console_notify(void)
{
    struct evtchn_send send = { .port = start_info->console.domU.evtchn };

    HYPERVISOR_event_channel_op(EVTCHNOP_send, &send);
}

void ring_write(const char *buf, size_t len)
{
    struct xencons_interface *r = console_ring();

    if ( !r )
    {
        console_io_write(buf, len);     /* no ring: fall back */
        return;
    }

    while ( len )
    {
        XENCONS_RING_IDX cons = READ_ONCE(r->out_cons);
        XENCONS_RING_IDX prod = r->out_prod;
        XENCONS_RING_IDX used = prod - cons;

        barrier();                      /* read out_cons before filling */
        if ( used >= sizeof(r->out) )
        {
            /* Full: kick the backend and let it run. */
            console_notify();
            HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
            continue;
        }

        for ( ; used < sizeof(r->out) && len; used++, len-- )
            r->out[XENCONS_MASK(prod++, r->out)] = *buf++;

        barrier();                      /* x86: stores stay in order */
        WRITE_ONCE(r->out_prod, prod);
        console_notify();
    }
}

/* ---- Formatting ------------------------------------------------------- */

struct outbuf {
    char *buf;
    size_t size;
    size_t len;
};

static void put(struct outbuf *o, char c)
{
    if ( o->len + 1 < o->size )
        o->buf[o->len] = c;
    o->len++;
}

static void put_str(struct outbuf *o, const char *s, int prec, int width)
{
    size_t n = strnlen(s, prec < 0 ? (size_t)-1 : (size_t)prec);

    for ( ; width > (int)n; width-- )
        put(o, ' ');
    while ( n-- )
        put(o, *s++);
}

static void put_num(struct outbuf *o, unsigned long v, unsigned int base,
                    int neg, int width, int zero)
{
    char tmp[24];
    int n = 0;

    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while ( v );

    width -= n + neg;
    if ( neg && zero )
        put(o, '-');
    for ( ; width > 0; width-- )
        put(o, zero ? '0' : ' ');
    if ( neg && !zero )
        put(o, '-');
    while ( n )
        put(o, tmp[--n]);
}

/*
 * Supports %s %c %d %i %u %x %p %%, the 'l'/'z' length modifiers, a '0'
 * flag, a field width and, for %s, a precision (".N" or ".*").
 */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct outbuf o = { buf, size, 0 };

    for ( ; *fmt; fmt++ )
    {
        int zero = 0, width = 0, prec = -1, lng = 0;
        unsigned long u;
        long s;

        if ( *fmt != '%' )
        {
            put(&o, *fmt);
            continue;
        }
        fmt++;

        if ( *fmt == '0' )
        {
            zero = 1;
            fmt++;
        }
        while ( *fmt >= '0' && *fmt <= '9' )
            width = width * 10 + (*fmt++ - '0');
        if ( *fmt == '.' )
        {
            fmt++;
            if ( *fmt == '*' )
            {
                prec = va_arg(ap, int);
                fmt++;
            }
            else
                for ( prec = 0; *fmt >= '0' && *fmt <= '9'; fmt++ )
                    prec = prec * 10 + (*fmt - '0');
        }
        while ( *fmt == 'l' || *fmt == 'z' )
        {
            lng = 1;
            fmt++;
        }

        switch ( *fmt )
        {
        case 'd':
        case 'i':
            s = lng ? va_arg(ap, long) : va_arg(ap, int);
            put_num(&o, s < 0 ? -(unsigned long)s : (unsigned long)s, 10,
                    s < 0, width, zero);
            break;
        case 'u':
        case 'x':
            u = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
            put_num(&o, u, *fmt == 'u' ? 10 : 16, 0, width, zero);
            break;
        case 'p':
            put(&o, '0');
            put(&o, 'x');
            put_num(&o, (unsigned long)va_arg(ap, void *), 16, 0, 16, 1);
            break;
        case 'c':
            put(&o, (char)va_arg(ap, int));
            break;
        case 's':
        {
            const char *str = va_arg(ap, const char *);

            put_str(&o, str ? str : "(null)", prec, width);
            break;
        }
        case '%':
            put(&o, '%');
            break;
        case '\0':
            fmt--;                      /* lone '%' at the end */
            break;
        default:                        /* unknown: print it verbatim */
            put(&o, '%');
            put(&o, *fmt);
            break;
        }
    }

    if ( size )
        buf[o.len < size ? o.len : size - 1] = '\0';
    return o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

static char printk_buf[512];

static size_t format(const char *fmt, va_list ap)
{
    size_t n = vsnprintf(printk_buf, sizeof(printk_buf), fmt, ap);

    return n < sizeof(printk_buf) ? n : sizeof(printk_buf) - 1;
}

void printk(const char *fmt, ...)
{
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    n = format(fmt, ap);
    va_end(ap);
    console_io_write(printk_buf, n);
}

void ring_printk(const char *fmt, ...)
{
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    n = format(fmt, ap);
    va_end(ap);
    ring_write(printk_buf, n);
}
