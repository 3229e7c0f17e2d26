/*
 * demo_ring.h - the page ping grants to pong: one request slot and one
 * response slot, each with a sequence number, signalled both ways over
 * one interdomain event channel.  Shared by guests/ping and guests/pong.
 *
 * XenStore, under ping's home (owner ping, read for pong only):
 *   data/ring-ref      grant ref of this page (read-write, for pong)
 *   data/bulletin-ref  grant ref of a read-only page holding a greeting
 *   data/port          ping's unbound event channel port, offered to pong
 *   data/state         "ready" once the above are written
 */
#ifndef GUEST_DEMO_RING_H
#define GUEST_DEMO_RING_H

#include <stdint.h>

#define DEMO_HELLO      0x676e6f70U     /* "pong": pong has mapped the page */
#define DEMO_BYE        0x65796221U     /* pong is about to unmap it */

#define CMD_PING        1               /* answer val * 2 + 1 */
#define CMD_DONE        2               /* ping has revoked the bulletin: try
                                           to map it, report, and unmap */

struct demo_ring {
    volatile uint32_t magic;            /* written by pong */
    volatile uint32_t req_seq;          /* ping: request number (1, 2, ...) */
    volatile uint32_t req_cmd;
    volatile uint32_t pad;
    volatile uint64_t req_val;
    volatile uint32_t rsp_seq;          /* pong: the request answered */
    volatile int32_t rsp_status;        /* CMD_DONE: the revoked map's status */
    volatile uint64_t rsp_val;
};

#define DEMO_BULLETIN   "hello from ping, read-only"

#endif /* GUEST_DEMO_RING_H */
