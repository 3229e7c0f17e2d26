/*
 * consoleecho - a console frontend that answers what is typed on it: the
 * host's input arrives in the PV console ring's in[] (xenconsoled's
 * handle_tty_read puts it there and signals the console port), and every
 * byte read goes back out through out[]:
 *     a-z                 upper-cased (so a test tells the guest's answer
 *                         from a terminal's own echo)
 *     CR or LF            "\n"
 *     other bytes < 0x20  "^X", as a terminal shows them (Ctrl-C is ^C:
 *                         the byte reached the guest, no signal was raised)
 *     anything else       as it is
 * Ctrl-D (0x04) ends it: "consoleecho: bye" and poweroff.  It prints
 * "consoleecho: ready" first, through the ring only.  It waits for input
 * without a timeout, unless tick-ms=N (cmdline) makes it wake every N ms
 * (a guest that runs on without input, as Linux does with its timers).
 *
 * As Linux's hvc_xen (domU_read_console): read in_cons..in_prod, move
 * in_cons on, then notify the backend so it can put more there; a
 * producer more than a ring ahead of in_cons is a broken backend.
 */
#include "lib.h"
#include "cmdline.h"
#include "evtchn.h"

#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))
#define barrier() asm volatile ("" ::: "memory")
#define CTRL_D 0x04

static void __attribute__((noreturn)) fail(const char *why, unsigned long n)
{
    ring_printk("consoleecho: FAILED: %s (%lu)\n", why, n);
    xen_shutdown(SHUTDOWN_crash);
}

/* One input byte's answer; returns 0 for Ctrl-D (the end). */
static int answer(char c)
{
    if ( c == CTRL_D )
        return 0;
    if ( c >= 'a' && c <= 'z' )
        ring_printk("%c", c - 'a' + 'A');
    else if ( c == '\r' || c == '\n' )
        ring_printk("\n");
    else if ( (unsigned char)c < 0x20 )
        ring_printk("^%c", c + '@');
    else
        ring_printk("%c", c);
    return 1;
}

/* SCHEDOP_poll on port, for tick_ns at most (0: no timeout, as Xen's do_poll). */
static void wait_for(evtchn_port_t port, uint64_t tick_ns)
{
    struct sched_poll poll = { .ports = &port, .nr_ports = 1,
                               .timeout = tick_ns ? now_ns() + tick_ns : 0 };

    HYPERVISOR_sched_op(SCHEDOP_poll, &poll);
}

/* Answer what in[] holds; returns 0 once Ctrl-D was read. */
static int drain_input(struct xencons_interface *ring, evtchn_port_t port)
{
    XENCONS_RING_IDX cons = READ_ONCE(ring->in_cons);
    XENCONS_RING_IDX prod = READ_ONCE(ring->in_prod);
    int going = 1;

    barrier();                          /* read in_prod before the bytes */
    if ( prod - cons > sizeof(ring->in) )
        fail("input producer past the ring", prod - cons);
    while ( going && cons != prod )
        going = answer(ring->in[XENCONS_MASK(cons++, ring->in)]);
    barrier();
    WRITE_ONCE(ring->in_cons, cons);
    evtchn_send(port);                  /* room for more input */
    return going;
}

void guest_main(start_info_t *si)
{
    struct xencons_interface *ring = console_ring();
    evtchn_port_t port = si->console.domU.evtchn;
    uint64_t tick_ns = MILLISECONDS(cmdline_num("tick-ms", 0));
    long rc;

    if ( !ring )
    {
        printk("consoleecho: FAILED: no console ring\n");
        xen_shutdown(SHUTDOWN_crash);
    }
    rc = events_init();
    if ( rc < 0 )
        fail("mapping shared_info", -rc);
    ring_printk("consoleecho: ready\n");
    for ( ;; )
    {
        /* Consume first: input arriving after the look below pends again. */
        evtchn_consume(port);
        if ( READ_ONCE(ring->in_cons) == READ_ONCE(ring->in_prod) )
        {
            wait_for(port, tick_ns);    /* until the backend signals */
            continue;
        }
        if ( !drain_input(ring, port) )
            break;
    }
    ring_printk("\nconsoleecho: bye\n");
}
