/*
 * xs.c - XenStore client on the store ring (see xs.h).
 */
#include "xs.h"
#include "evtchn.h"
#include "mm.h"

#define XS_TIMEOUT      SECONDS(5)

unsigned int xs_watch_events;

static struct xenstore_domain_interface *ring;
static evtchn_port_t port;
static uint32_t next_req_id = 1;

long xs_init(void)
{
    if ( !start_info->store_mfn )
        return -XEN_EINVAL;
    ring = mfn_to_virt(start_info->store_mfn);
    port = start_info->store_evtchn;
    return 0;
}

static void kick(void)
{
    evtchn_send(port);
}

/* Wait for the store to move an index; 1 at the deadline. */
static int wait_store(uint64_t deadline)
{
    if ( evtchn_poll(port, deadline) )
        return 1;
    evtchn_consume(port);
    return 0;
}

static int put(const void *data, size_t len, uint64_t deadline)
{
    const char *p = data;

    while ( len )
    {
        uint32_t cons = __atomic_load_n(&ring->req_cons, __ATOMIC_SEQ_CST);
        uint32_t prod = ring->req_prod;
        size_t room = XENSTORE_RING_SIZE - (prod - cons);

        if ( !room )
        {
            kick();
            if ( wait_store(deadline) )
                return -XEN_EIO;
            continue;
        }
        for ( ; room && len; room--, len-- )
            ring->req[prod++ & (XENSTORE_RING_SIZE - 1)] = *p++;
        __atomic_store_n(&ring->req_prod, prod, __ATOMIC_SEQ_CST);
    }
    return 0;
}

/* Read len bytes of rsp[] into data (NULL: discard them). */
static int get(void *data, size_t len, uint64_t deadline)
{
    char *p = data;

    while ( len )
    {
        uint32_t prod = __atomic_load_n(&ring->rsp_prod, __ATOMIC_SEQ_CST);
        uint32_t cons = ring->rsp_cons;

        if ( prod == cons )
        {
            if ( wait_store(deadline) )
                return -XEN_EIO;
            continue;
        }
        for ( ; cons != prod && len; len-- )
        {
            char c = ring->rsp[cons++ & (XENSTORE_RING_SIZE - 1)];

            if ( p )
                *p++ = c;
        }
        __atomic_store_n(&ring->rsp_cons, cons, __ATOMIC_SEQ_CST);
        kick();                         /* there is room for more replies */
    }
    return 0;
}

long xs_errno(const char *name)
{
    static const struct { const char *name; int err; } names[] = {
        { "EINVAL", XEN_EINVAL }, { "EACCES", XEN_EACCES },
        { "EEXIST", XEN_EEXIST }, { "ENOENT", XEN_ENOENT },
        { "ENOMEM", XEN_ENOMEM }, { "ENOSPC", XEN_ENOSPC },
        { "EIO", XEN_EIO },       { "ENOSYS", XEN_ENOSYS },
        { "EBUSY", XEN_EBUSY },   { "EAGAIN", XEN_EAGAIN },
        { "E2BIG", XEN_E2BIG },   { "EPERM", XEN_EPERM },
    };
    unsigned int i;

    for ( i = 0; i < ARRAY_SIZE(names); i++ )
    {
        const char *a = name, *b = names[i].name;

        while ( *a && *a == *b )
            a++, b++;
        if ( *a == *b )
            return -names[i].err;
    }
    return -XEN_EIO;
}

/* Read one message header; returns 0 or -XEN_EIO. */
static long next_message(struct xsd_sockmsg *hdr, uint64_t deadline)
{
    return get(hdr, sizeof(*hdr), deadline);
}

long xs_request(uint32_t type, const void *payload, size_t len,
                char *reply, size_t size)
{
    static char errbuf[16];
    uint64_t deadline = now_ns() + XS_TIMEOUT;
    struct xsd_sockmsg hdr = {
        .type = type, .req_id = next_req_id++, .tx_id = 0, .len = len,
    };

    if ( !ring || len > XENSTORE_PAYLOAD_MAX )
        return -XEN_EINVAL;
    if ( put(&hdr, sizeof(hdr), deadline) || put(payload, len, deadline) )
        return -XEN_EIO;
    kick();

    for ( ;; )
    {
        struct xsd_sockmsg rsp;
        size_t keep;

        if ( next_message(&rsp, deadline) )
            return -XEN_EIO;
        if ( rsp.len > XENSTORE_PAYLOAD_MAX )
            return -XEN_EIO;
        if ( rsp.type == XS_WATCH_EVENT || rsp.req_id != hdr.req_id )
        {
            if ( rsp.type == XS_WATCH_EVENT )
                xs_watch_events++;
            if ( get(NULL, rsp.len, deadline) )
                return -XEN_EIO;
            continue;
        }
        if ( rsp.type == XS_ERROR )
        {
            keep = rsp.len < sizeof(errbuf) ? rsp.len : sizeof(errbuf) - 1;
            if ( get(errbuf, keep, deadline) || get(NULL, rsp.len - keep, deadline) )
                return -XEN_EIO;
            errbuf[keep] = '\0';
            return xs_errno(errbuf);
        }
        keep = 0;
        if ( reply && size )
        {
            keep = rsp.len < size ? rsp.len : size - 1;
            if ( get(reply, keep, deadline) )
                return -XEN_EIO;
            reply[keep] = '\0';
        }
        if ( get(NULL, rsp.len - keep, deadline) )
            return -XEN_EIO;
        return rsp.len;
    }
}

/* path\0 then each extra string, as one payload. */
static size_t pack(char *buf, size_t size, const char *path,
                   const char *const *more, unsigned int n, int nul_last)
{
    size_t len = strlen(path) + 1, i;

    if ( len > size )
        return 0;
    memcpy(buf, path, len);
    for ( i = 0; i < n; i++ )
    {
        size_t l = strlen(more[i]) + (nul_last || i + 1 < n);

        if ( len + l > size )
            return 0;
        memcpy(buf + len, more[i], l);
        len += l;
    }
    return len;
}

static char payload[1024];

/* Requests whose reply is "OK": 0 or the error. */
static long ok(long rc)
{
    return rc < 0 ? rc : 0;
}

long xs_read(const char *path, char *buf, size_t size)
{
    return xs_request(XS_READ, path, strlen(path) + 1, buf, size);
}

long xs_directory(const char *path, char *buf, size_t size)
{
    return xs_request(XS_DIRECTORY, path, strlen(path) + 1, buf, size);
}

long xs_rm(const char *path)
{
    return ok(xs_request(XS_RM, path, strlen(path) + 1, NULL, 0));
}

long xs_write(const char *path, const char *value)
{
    /* The value is not NUL-terminated on the wire. */
    size_t len = pack(payload, sizeof(payload), path, &value, 1, 0);

    if ( !len )
        return -XEN_E2BIG;
    return ok(xs_request(XS_WRITE, payload, len, NULL, 0));
}

long xs_set_perms(const char *path, const char *const *perms, unsigned int n)
{
    size_t len = pack(payload, sizeof(payload), path, perms, n, 1);

    if ( !len )
        return -XEN_E2BIG;
    return ok(xs_request(XS_SET_PERMS, payload, len, NULL, 0));
}

long xs_watch(const char *path, const char *token)
{
    size_t len = pack(payload, sizeof(payload), path, &token, 1, 1);

    if ( !len )
        return -XEN_E2BIG;
    return ok(xs_request(XS_WATCH, payload, len, NULL, 0));
}

int xs_wait_watch(unsigned int *seen, uint64_t deadline)
{
    while ( xs_watch_events == *seen )
    {
        uint32_t prod = __atomic_load_n(&ring->rsp_prod, __ATOMIC_SEQ_CST);
        struct xsd_sockmsg hdr;

        if ( prod == ring->rsp_cons )
        {
            if ( wait_store(deadline) )
                return 0;
            continue;
        }
        /* Something unsolicited: only watch events come unasked. */
        if ( next_message(&hdr, deadline) || hdr.len > XENSTORE_PAYLOAD_MAX ||
             get(NULL, hdr.len, deadline) )
            return 0;
        if ( hdr.type == XS_WATCH_EVENT )
            xs_watch_events++;
    }
    *seen = xs_watch_events;
    return 1;
}
