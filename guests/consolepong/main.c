/*
 * consolepong - a console frontend that answers every console event with
 * a notification of its own, as many unikernels' console drivers do (the
 * event handler kicks the backend in case output is waiting).
 *
 * Against xenconsoled this settles at once: xenconsoled signals the guest
 * only after it moved out_cons (buffer_append, tools/console/daemon/io.c),
 * so a kick with nothing in the ring gets no answer.  A backend that
 * signals after every kick livelocks such a guest: every wake is another
 * kick, and the guest never gets past its event loop.
 *
 * The guest writes one line to the ring, then waits on the console port
 * (SCHEDOP_poll) and, each time it is woken, consumes the event and
 * notifies the backend.  Once the backend has stayed quiet for QUIET_MS
 * it checks that the ring was drained and prints
 *     N wakes, then quiet; ring drained
 * and powers off.  Its lines go only to the ring and, as a console's
 * output, carry no name of their own (`pyxenon run` names the domain
 * when it runs several).  Woken more than max-wakes= times (cmdline, default 64)
 * or left with output in the ring, it prints "FAILED: ..."
 * and shuts down with SHUTDOWN_crash.
 */
#include "lib.h"
#include "cmdline.h"
#include "evtchn.h"

#define QUIET_MS 20
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

static void __attribute__((noreturn)) fail(const char *why, unsigned long n)
{
    ring_printk("FAILED: %s (%lu)\n", why, n);
    xen_shutdown(SHUTDOWN_crash);
}

/* Wake, kick, wait again: how many wakes until the backend stays quiet. */
static unsigned long ping_pong(evtchn_port_t port, unsigned long max_wakes)
{
    unsigned long wakes = 0;

    while ( !evtchn_poll(port, now_ns() + MILLISECONDS(QUIET_MS)) )
    {
        evtchn_consume(port);
        if ( ++wakes > max_wakes )
            fail("woken past max-wakes with nothing to read", wakes);
        evtchn_send(port);
    }
    return wakes;
}

void guest_main(start_info_t *si)
{
    struct xencons_interface *ring = console_ring();
    evtchn_port_t port = si->console.domU.evtchn;
    unsigned long wakes;
    long rc;

    if ( !ring )
    {
        printk("consolepong: FAILED: no console ring\n");
        xen_shutdown(SHUTDOWN_crash);
    }
    rc = events_init();
    if ( rc < 0 )
        fail("mapping shared_info", -rc);
    ring_printk("console port %u; kicking the backend on every wake\n", port);
    wakes = ping_pong(port, cmdline_num("max-wakes", 64));
    if ( READ_ONCE(ring->out_cons) != READ_ONCE(ring->out_prod) )
        fail("output left in the ring", READ_ONCE(ring->out_prod) - ring->out_cons);
    ring_printk("%lu wake%s, then quiet; ring drained\n",
                wakes, wakes == 1 ? "" : "s");
}
