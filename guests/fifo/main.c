/*
 * fifo - FIFO event channels (Xen 4.17's xen/common/event_fifo.c), set up
 * and used from inside, with Xen's answers to hostile arguments.
 *
 * Before the switch (the domain is still on 2-level): init_control with
 * a vcpu that does not exist (-ENOENT), an offset that crosses the page or
 * is not 8-byte aligned, no frame, a frame that is not the guest's, and
 * the guest's own L4 page table (-EINVAL each: evtchn_fifo_init_control,
 * map_guest_page); expand_array (-EOPNOTSUPP) and set_priority (-ENOSYS:
 * 2-level has no set_priority).  An IPI port is left pending in the
 * 2-level bitmap.
 *
 * Then the control block on vcpu 0 (link_bits 17), a second one
 * (-EINVAL), the event array page (all words MASKED, as Linux's
 * init_array_page), where the 2-level pending port reappears pending
 * (setup_ports, add_page_to_event_array).  Four IPI ports at priorities
 * 9, 5, 5 and 2 are raised in another order and consumed the way Linux's
 * consume_one_event() does -- READY, HEAD, each word's LINK -- and must
 * come out by priority, FIFO within one.  A masked port pends unlinked
 * until EVTCHNOP_unmask links it.  Bad priorities and ports, page-table
 * pins of the pages Xen holds writable, and expand_array past 128 pages
 * (-ENOSPC) end it.  Upcalls stay masked: the guest reads the queues
 * itself.  "fifo: N/M attempts refused".
 */
#include "attempt.h"
#include "evtchn.h"

#define EVTCHNOP_bind_ipi           7
#define EVTCHNOP_init_control      11
#define EVTCHNOP_expand_array      12
#define EVTCHNOP_set_priority      13

#define FIFO_PENDING    (1U << 31)
#define FIFO_MASKED     (1U << 30)
#define FIFO_LINKED     (1U << 29)
#define FIFO_BUSY       (1U << 28)
#define FIFO_LINK_MASK  ((1U << 17) - 1)
#define FIFO_QUEUES     16
#define ARRAY_PAGES_MAX 128         /* EVTCHN_FIFO_NR_CHANNELS / 1024 words a page */

struct evtchn_init_control {
    uint64_t control_gfn;
    uint32_t offset, vcpu;
    uint8_t link_bits, pad[7];
};
struct evtchn_expand_array { uint64_t array_gfn; };
struct evtchn_set_priority { uint32_t port, priority; };
struct evtchn_bind_ipi { uint32_t vcpu; evtchn_port_t port; };
struct control_block {
    uint32_t ready, rsvd;
    uint32_t head[FIFO_QUEUES];
};
_Static_assert(sizeof(struct evtchn_init_control) == 24, "evtchn_init_control");
_Static_assert(sizeof(struct control_block) == 72, "evtchn_fifo_control_block");

static volatile struct control_block *cb;
static volatile uint32_t *words;
static uint32_t local_head[FIFO_QUEUES];

static long init_control(uint64_t gfn, uint32_t offset, uint32_t vcpu, uint8_t *bits)
{
    struct evtchn_init_control op = { .control_gfn = gfn, .offset = offset, .vcpu = vcpu };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_init_control, &op);

    if ( bits )
        *bits = op.link_bits;
    return rc;
}

static long expand_array(uint64_t gfn)
{
    struct evtchn_expand_array op = { .array_gfn = gfn };

    return HYPERVISOR_event_channel_op(EVTCHNOP_expand_array, &op);
}

static long set_priority(evtchn_port_t port, uint32_t priority)
{
    struct evtchn_set_priority op = { .port = port, .priority = priority };

    return HYPERVISOR_event_channel_op(EVTCHNOP_set_priority, &op);
}

static evtchn_port_t bind_ipi(void)
{
    struct evtchn_bind_ipi op = { .vcpu = 0 };

    return HYPERVISOR_event_channel_op(EVTCHNOP_bind_ipi, &op) ? 0 : op.port;
}

static long unmask(evtchn_port_t port)
{
    struct evtchn_unmask op = { .port = port };

    return HYPERVISOR_event_channel_op(EVTCHNOP_unmask, &op);
}

static void refused_with(const char *what, long rc, int err)
{
    report(refusal(rc, err), what, "%s", rcstr(rc));
}

static void allowed(const char *what, int ok, const char *fmt, unsigned long detail)
{
    char buf[80];

    snprintf(buf, sizeof(buf), fmt, detail);
    report(ok ? ALLOWED : WRONG, what, "%s", buf);
}

/* Linux's consume_one_event(): the next port of the highest-priority
 * ready queue, unlinked; 0 when no queue is ready. */
static evtchn_port_t consume_one(void)
{
    uint32_t ready = cb->ready, w, next;
    unsigned int q;
    evtchn_port_t port;

    if ( !ready )
        return 0;
    q = __builtin_ctz(ready);
    port = local_head[q] ? local_head[q] : cb->head[q];
    if ( port >= PAGE_SIZE / 4 )
        return 0;                             /* not on the one array page */
    do {                                      /* clear_linked(): take LINK, drop LINKED */
        w = words[port];
        next = w & FIFO_LINK_MASK;
    } while ( !__atomic_compare_exchange_n(&words[port], &w, w & ~(FIFO_LINKED | FIFO_LINK_MASK),
                                           0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST) );
    if ( !next )
        __atomic_fetch_and(&cb->ready, ~(1U << q), __ATOMIC_SEQ_CST);
    local_head[q] = next;
    __atomic_fetch_and(&words[port], ~FIFO_PENDING, __ATOMIC_SEQ_CST);
    return port;
}

static unsigned long other_domains_frame(void)
{
    unsigned long lowest = pfn_to_mfn(0), pfn;

    for ( pfn = 1; pfn < start_info->nr_pages; pfn++ )
        if ( pfn_to_mfn(pfn) < lowest )
            lowest = pfn_to_mfn(pfn);
    return lowest - 1;              /* below the guest's first frame: not its own (hello's, or Xen's) */
}

static void before_the_switch(unsigned long cb_mfn, unsigned long l4_mfn, evtchn_port_t ipi)
{
    refused_with("init_control for vcpu 1 (none)", init_control(cb_mfn, 0, 1, NULL), XEN_ENOENT);
    refused_with("init_control, offset crossing the page",
                 init_control(cb_mfn, PAGE_SIZE - sizeof(struct control_block) + 8, 0, NULL),
                 XEN_EINVAL);
    refused_with("init_control, offset not 8-byte aligned", init_control(cb_mfn, 4, 0, NULL),
                 XEN_EINVAL);
    refused_with("init_control on no frame", init_control(1UL << 40, 0, 0, NULL), XEN_EINVAL);
    refused_with("init_control on a frame not the guest's",
                 init_control(other_domains_frame(), 0, 0, NULL), XEN_EINVAL);
    refused_with("init_control on the guest's L4 page table", init_control(l4_mfn, 0, 0, NULL),
                 XEN_EINVAL);
    refused_with("expand_array before init_control", expand_array(cb_mfn), XEN_EOPNOTSUPP);
    refused_with("set_priority on 2-level", set_priority(ipi, 3), XEN_ENOSYS);
}

static void switch_to_fifo(unsigned long cb_mfn, unsigned long array_mfn, evtchn_port_t ipi)
{
    uint8_t bits = 0;
    long rc = init_control(cb_mfn, 0, 0, &bits);
    unsigned int i;

    allowed("init_control on vcpu 0", rc == 0 && bits == 17, "link_bits %lu", rc ? 0 : bits);
    if ( rc )
        attempts_done();
    refused_with("init_control again on vcpu 0", init_control(array_mfn, 0, 0, NULL), XEN_EINVAL);
    refused_with("expand_array on no frame", expand_array(1UL << 40), XEN_EINVAL);
    for ( i = 0; i < PAGE_SIZE / 4; i++ )
        words[i] = FIFO_MASKED;
    rc = expand_array(array_mfn);
    allowed("expand_array, first page", rc == 0, "rc %lu", rc);
    allowed("a port pending on 2-level, pending on FIFO", words[ipi] == (FIFO_PENDING | FIFO_MASKED),
            "word 0x%lx", words[ipi]);
}

static void queues_in_priority_order(void)
{
    static const uint32_t priorities[4] = { 9, 5, 5, 2 };
    /* queue 2: port 3; queue 5: ports 2 then 1 (sent in that order); queue 9: port 0 */
    static const unsigned int send_order[4] = { 0, 2, 3, 1 }, want[4] = { 3, 2, 1, 0 };
    evtchn_port_t port[4], got;
    unsigned int i, ok = 1;

    for ( i = 0; i < 4; i++ )
    {
        port[i] = bind_ipi();
        ok &= port[i] && set_priority(port[i], priorities[i]) == 0;
        __atomic_fetch_and(&words[port[i]], ~FIFO_MASKED, __ATOMIC_SEQ_CST);
    }
    shared->vcpu_info[0].evtchn_upcall_pending = 0;
    for ( i = 0; i < 4; i++ )
        ok &= evtchn_send(port[send_order[i]]) == 0;
    allowed("four ports raised: READY bits 2, 5, 9 and the upcall flag",
            ok && cb->ready == ((1U << 2) | (1U << 5) | (1U << 9)) &&
            shared->vcpu_info[0].evtchn_upcall_pending, "ready 0x%lx", cb->ready);
    for ( i = 0; i < 4; i++ )
    {
        got = consume_one();
        ok &= got == port[want[i]];
    }
    allowed("consumed by priority, FIFO within one", ok && !consume_one() && !cb->ready,
            "ready after 0x%lx", cb->ready);
}

static void masked_until_unmask(void)
{
    evtchn_port_t port = bind_ipi();
    uint32_t before;

    evtchn_send(port);
    before = words[port];
    allowed("a masked port pends unlinked", before == (FIFO_PENDING | FIFO_MASKED) && !cb->ready,
            "word 0x%lx", before);
    allowed("EVTCHNOP_unmask links it", unmask(port) == 0 && consume_one() == port,
            "word 0x%lx", words[port]);
}

static void hostile_after(unsigned long cb_mfn, unsigned long array_mfn, evtchn_port_t ipi)
{
    unsigned int pages = 1;
    long rc = 0;

    refused_with("set_priority 16", set_priority(ipi, 16), XEN_EINVAL);
    refused_with("set_priority on port 0", set_priority(0, 3), XEN_EACCES);
    refused_with("set_priority on a port past the valid ones", set_priority(1U << 16, 3),
                 XEN_EINVAL);
    refused_with("pin the control block's frame as an L1 table",
                 mmuext_one(MMUEXT_PIN_L1_TABLE, cb_mfn), XEN_EINVAL);
    refused_with("pin the event array's frame as an L1 table",
                 mmuext_one(MMUEXT_PIN_L1_TABLE, array_mfn), XEN_EINVAL);
    while ( pages < ARRAY_PAGES_MAX && rc == 0 )
        if ( (rc = expand_array(array_mfn)) == 0 )   /* Xen takes the same frame again */
            pages++;
    allowed("expand_array up to 128 pages", rc == 0 && pages == ARRAY_PAGES_MAX, "pages %lu",
            pages);
    refused_with("expand_array past 128 pages", expand_array(array_mfn), XEN_ENOSPC);
}

void guest_main(start_info_t *si)
{
    void *cb_page, *array_page;
    unsigned long l4_mfn = virt_to_mfn((void *)si->pt_base);
    evtchn_port_t ipi;

    attempts_init("fifo");
    if ( events_init() )
        attempts_done();
    cb_page = padding_alloc();
    array_page = padding_alloc();
    cb = cb_page;
    words = array_page;
    ipi = bind_ipi();
    evtchn_send(ipi);                         /* pending in the 2-level bitmap */
    before_the_switch(virt_to_mfn(cb_page), l4_mfn, ipi);
    switch_to_fifo(virt_to_mfn(cb_page), virt_to_mfn(array_page), ipi);
    queues_in_priority_order();
    masked_until_unmask();
    hostile_after(virt_to_mfn(cb_page), virt_to_mfn(array_page), ipi);
    attempts_done();
}
