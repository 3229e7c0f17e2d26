/*
 * xs.h - a XenStore client on the domain's store ring (start_info
 * store_mfn / store_evtchn), speaking io/xs_wire.h.  Linked into the
 * guests that name lib/xs.o (it needs lib/mm.o and lib/evtchn.o, and
 * events_init() must have run).
 *
 * One request at a time: write the xsd_sockmsg header and payload to
 * req[], kick the store port, read messages from rsp[] until the reply
 * with our req_id; watch events that arrive meanwhile are counted
 * (xs_watch_events) and dropped.
 *
 * Results: >= 0 on success (a length for reads), or -XEN_Exxx when the
 * reply is XS_ERROR (its errno name mapped back: "EACCES" -> -XEN_EACCES),
 * or -XEN_EIO when the store does not answer within 5 seconds.
 */
#ifndef GUEST_XS_H
#define GUEST_XS_H

#include "lib.h"

/* Message types (xs_wire.h, enum xsd_sockmsg_type). */
#define XS_DIRECTORY            1
#define XS_READ                 2
#define XS_GET_PERMS            3
#define XS_WATCH                4
#define XS_UNWATCH              5
#define XS_INTRODUCE            8
#define XS_GET_DOMAIN_PATH      10
#define XS_WRITE                11
#define XS_MKDIR                12
#define XS_RM                   13
#define XS_SET_PERMS            14
#define XS_WATCH_EVENT          15
#define XS_ERROR                16

struct xsd_sockmsg {
    uint32_t type;                      /* XS_* */
    uint32_t req_id;                    /* echoed in the reply */
    uint32_t tx_id;                     /* 0: no transaction */
    uint32_t len;                       /* payload bytes that follow */
};

#define XENSTORE_RING_SIZE      1024
#define XENSTORE_PAYLOAD_MAX    4096

struct xenstore_domain_interface {
    char req[XENSTORE_RING_SIZE];       /* guest -> xenstored */
    char rsp[XENSTORE_RING_SIZE];       /* replies and watch events */
    uint32_t req_cons, req_prod;
    uint32_t rsp_cons, rsp_prod;
    uint32_t server_features;
    uint32_t connection;
    uint32_t error;
};
_Static_assert(__builtin_offsetof(struct xenstore_domain_interface, req_cons) == 2048,
               "xenstore_domain_interface");

/* Find the ring (via the m2p).  Returns 0 or -XEN_EINVAL. */
long xs_init(void);

/* Watch events seen so far (XS_WATCH_EVENT messages). */
extern unsigned int xs_watch_events;

/*
 * One request: payload of len bytes; the reply's payload (at most size-1
 * bytes kept, NUL-terminated) goes to reply if not NULL.  Returns the reply
 * length or -XEN_Exxx.
 */
long xs_request(uint32_t type, const void *payload, size_t len,
                char *reply, size_t size);

/* Reads return the value's length; the others 0 (all: or -XEN_Exxx). */
long xs_read(const char *path, char *buf, size_t size);
long xs_write(const char *path, const char *value);
long xs_rm(const char *path);
long xs_directory(const char *path, char *buf, size_t size); /* NUL-separated */
/* perms: e.g. { "n1", "r2" } -- the owner first, with everyone's default. */
long xs_set_perms(const char *path, const char *const *perms, unsigned int n);
long xs_watch(const char *path, const char *token);

/*
 * Wait until a watch event arrives after the call (or one arrived since
 * the count *seen), or until deadline (system time, ns).  Returns 1 for an
 * event, 0 at the deadline.
 */
int xs_wait_watch(unsigned int *seen, uint64_t deadline);

/* "EACCES" -> -XEN_EACCES; unknown names -> -XEN_EIO. */
long xs_errno(const char *name);

#endif /* GUEST_XS_H */
