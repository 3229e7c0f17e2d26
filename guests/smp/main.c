/*
 * smp - a domain's secondary vcpus, brought up as Linux brings them up,
 * and the contexts Xen refuses.
 *
 * vcpu 0 gives vcpu 1 a vcpu_guest_context (VCPUOP_initialise: its own
 * stack, the boot L4 as cr3, no GDT frames, flat selectors) and brings
 * it up (VCPUOP_up); the two then pass IPIs (EVTCHNOP_bind_ipi ports, one
 * bound to each vcpu) back and forth, each waiting in SCHEDOP_poll on its
 * own port -- half the rounds with the port masked, as Linux's spinlock
 * kick polls a masked port.  Before that, with vcpu 1 still down, vcpu 0
 * checks where events land: an IPI port's and a rebound (EVTCHNOP_bind_vcpu)
 * loopback port's event marks the vcpu_info of the vcpu the port is bound
 * to, not the sender's.  vcpu 1 takes a per-vcpu VIRQ_TIMER from its own
 * singleshot timer, then downs itself; vcpu 0 sees it down, brings it up
 * again, and vcpu 1 resumes after its VCPUOP_down.
 *
 * The hostile part (vcpu 2, never initialised by a valid context until the
 * end): up before any context, a non-canonical rip, a trap handler and an
 * LDT Xen refuses, a user-mode context without a user table, a cr3 that is
 * Xen's frame or no page table at all, GDT frames that are Xen's or
 * writable; bind_vcpu/bind_ipi/bind_virq/vcpu_op naming a vcpu that does
 * not exist; an IPI port or a per-vcpu VIRQ rebound; a global VIRQ on
 * vcpu 1; another vcpu's singleshot timer; initialising vcpu 1 while it
 * runs.  Xen 4.17's answers (common/domain.c do_vcpu_op, arch/x86/domain.c
 * arch_set_info_guest, common/event_channel.c) are each line's.  Ring-0
 * selectors in a context are fixed up, not refused (fixup_guest_code_
 * selector): vcpu 2 then runs with RPL-3 cs and ss and says so.
 *
 * "smp: N IPI round trips in T ns", then "smp: N/M attempts refused".
 */
#include "attempt.h"
#include "cmdline.h"
#include "evtchn.h"

#define VCPUOP_initialise           0
#define VCPUOP_up                   1
#define VCPUOP_down                 2
#define VCPUOP_is_up                3
#define VCPUOP_set_singleshot_timer 8
#define EVTCHNOP_bind_virq          1
#define EVTCHNOP_bind_ipi           7
#define EVTCHNOP_bind_vcpu          8
#define VIRQ_TIMER                  0
#define VIRQ_CONSOLE                2       /* a global one */
#define VGCF_in_kernel              (1UL << 2)
#define NO_VCPU                     7       /* the domain has maxvcpus = 3 */
#define FOREVER                     (1UL << 62)   /* a poll's deadline: none */

/* public/arch-x86/xen-x86_64.h's cpu_user_regs and vcpu_guest_context */
struct cpu_user_regs {
    uint64_t r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8;
    uint64_t rax, rcx, rdx, rsi, rdi;
    uint32_t error_code, entry_vector;
    uint64_t rip;
    uint16_t cs, _pad0[1];
    uint8_t saved_upcall_mask, _pad1[3];
    uint64_t rflags, rsp;
    uint16_t ss, _pad2[3], es, _pad3[3], ds, _pad4[3], fs, _pad5[3], gs, _pad6[3];
};
_Static_assert(sizeof(struct cpu_user_regs) == 200, "cpu_user_regs");

struct vcpu_guest_context {
    uint8_t fpu_ctxt[512];
    uint64_t flags;
    struct cpu_user_regs user_regs;
    struct trap_info trap_ctxt[256];
    uint64_t ldt_base, ldt_ents;
    uint64_t gdt_frames[16], gdt_ents;
    uint64_t kernel_ss, kernel_sp;
    uint64_t ctrlreg[8], debugreg[8];
    uint64_t event_callback_eip, failsafe_callback_eip, syscall_callback_eip;
    uint64_t vm_assist, fs_base, gs_base_kernel, gs_base_user;
};
_Static_assert(sizeof(struct vcpu_guest_context) == 5168, "vcpu_guest_context");

struct evtchn_bind_ipi { uint32_t vcpu; evtchn_port_t port; };
struct evtchn_bind_vcpu { evtchn_port_t port; uint32_t vcpu; };
struct evtchn_bind_virq { uint32_t virq, vcpu; evtchn_port_t port; };
struct vcpu_set_singleshot_timer { uint64_t timeout_abs_ns; uint32_t flags; };

static inline long vcpu_op(int cmd, unsigned int vcpu, void *arg)
{
    return _hypercall3(__HYPERVISOR_vcpu_op, cmd, vcpu, arg);
}

static char stacks[3][8192] __attribute__((aligned(16)));
static struct vcpu_guest_context ctxt;
static evtchn_port_t ipi[2];            /* ipi[n]: bound to vcpu n */
static volatile unsigned long rounds, vcpu1_stage, vcpu2_cs, vcpu2_ss;
static volatile long vcpu1_timer_rc, vcpu1_other_timer_rc;

static void secondary(unsigned long id) __attribute__((noreturn));

/* A valid context: entry secondary(id) on stacks[id], the boot L4, flat
 * 64-bit selectors, kernel mode, no GDT frames, no trap handlers. */
static void good_context(unsigned int id)
{
    memset(&ctxt, 0, sizeof(ctxt));
    ctxt.flags = VGCF_in_kernel;
    ctxt.user_regs.rip = (uint64_t)secondary;
    ctxt.user_regs.rsp = (uint64_t)&stacks[id][sizeof(stacks[id]) - 8];
    ctxt.user_regs.rdi = id;
    ctxt.user_regs.cs = FLAT_KERNEL_CS;
    ctxt.user_regs.ss = FLAT_KERNEL_SS;
    ctxt.user_regs.rflags = 0x202;
    ctxt.kernel_ss = FLAT_KERNEL_SS;
    ctxt.kernel_sp = ctxt.user_regs.rsp;
    ctxt.ctrlreg[3] = (uint64_t)virt_to_mfn((void *)start_info->pt_base) << PAGE_SHIFT;
}

static long bind_ipi(unsigned int vcpu, evtchn_port_t *port)
{
    struct evtchn_bind_ipi op = { .vcpu = vcpu };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_ipi, &op);

    *port = op.port;
    return rc;
}

static long bind_vcpu(evtchn_port_t port, unsigned int vcpu)
{
    struct evtchn_bind_vcpu op = { .port = port, .vcpu = vcpu };

    return HYPERVISOR_event_channel_op(EVTCHNOP_bind_vcpu, &op);
}

static long bind_virq(unsigned int virq, unsigned int vcpu, evtchn_port_t *port)
{
    struct evtchn_bind_virq op = { .virq = virq, .vcpu = vcpu };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_virq, &op);

    *port = op.port;
    return rc;
}

static void set_mask(evtchn_port_t port, int masked)
{
    unsigned long bit = 1UL << (port % 64);

    if ( masked )
        __atomic_fetch_or(&shared->evtchn_mask[port / 64], bit, __ATOMIC_SEQ_CST);
    else
        __atomic_fetch_and(&shared->evtchn_mask[port / 64], ~bit, __ATOMIC_SEQ_CST);
}

static void clear_marks(void)
{
    for ( int v = 0; v < 2; v++ )
    {
        shared->vcpu_info[v].evtchn_upcall_pending = 0;
        shared->vcpu_info[v].evtchn_pending_sel = 0;
    }
}

/* An event on port (sent on send_port) marks vcpu `to`'s vcpu_info only. */
static void lands_on(const char *what, evtchn_port_t send_port, evtchn_port_t port, int to)
{
    int mine, other;

    evtchn_consume(port);
    clear_marks();
    evtchn_send(send_port);
    mine = shared->vcpu_info[to].evtchn_upcall_pending;
    other = shared->vcpu_info[!to].evtchn_upcall_pending;
    report(mine && !other ? ALLOWED : WRONG, what, "vcpu_info[%d] %s, vcpu_info[%d] %s",
           to, mine ? "marked" : "NOT marked", !to, other ? "MARKED" : "not marked");
    evtchn_consume(port);
    clear_marks();
}

/* ---- the secondary vcpus ------------------------------------------------ */

static void vcpu1_timer(void)
{
    evtchn_port_t port;
    struct vcpu_set_singleshot_timer t = { 0 };

    vcpu1_timer_rc = bind_virq(VIRQ_TIMER, 1, &port);
    t.timeout_abs_ns = now_ns() + MILLISECONDS(1);
    vcpu1_other_timer_rc = vcpu_op(VCPUOP_set_singleshot_timer, 0, &t);
    if ( !vcpu1_timer_rc )
        vcpu1_timer_rc = vcpu_op(VCPUOP_set_singleshot_timer, 1, &t);
    if ( !vcpu1_timer_rc && evtchn_poll(port, now_ns() + SECONDS(5)) )
        vcpu1_timer_rc = 1;             /* the timer never came */
}

static void vcpu1(void)
{
    unsigned long n = 0;

    for ( ;; )
    {
        evtchn_poll(ipi[1], FOREVER);
        if ( !evtchn_consume(ipi[1]) )
            continue;
        if ( n++ == rounds )
            break;                      /* the last one says: go on */
        evtchn_send(ipi[0]);
    }
    vcpu1_timer();
    vcpu1_stage = 1;
    vcpu_op(VCPUOP_down, 1, NULL);      /* returns only once up again */
    vcpu1_stage = 2;
    evtchn_send(ipi[0]);
    vcpu_op(VCPUOP_down, 1, NULL);
    for ( ;; )
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
}

static void secondary(unsigned long id)
{
    if ( id == 1 )
        vcpu1();
    else
    {
        uint16_t cs, ss;

        asm volatile ("mov %%cs, %0; mov %%ss, %1" : "=r" (cs), "=r" (ss));
        vcpu2_cs = cs;
        vcpu2_ss = ss;
        vcpu_op(VCPUOP_down, id, NULL);
    }
    for ( ;; )
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
}

/* ---- vcpu 0 --------------------------------------------------------------- */

static void refused_context(const char *what, int err)
{
    long rc = vcpu_op(VCPUOP_initialise, 2, &ctxt);

    report(refusal(rc, err), what, "%s (Xen: %s)", rcstr(rc), rcstr(-err));
}

static void hostile_contexts(void)
{
    long rc = vcpu_op(VCPUOP_up, 2, NULL);
    void *data = padding_alloc();

    report(refusal(rc, XEN_EINVAL), "VCPUOP_up of a vcpu never initialised",
           "%s (Xen: -22 EINVAL)", rcstr(rc));
    good_context(2);
    ctxt.user_regs.rip = 0x0000800000000000UL;
    refused_context("a context with a non-canonical rip", XEN_EINVAL);
    good_context(2);
    ctxt.trap_ctxt[14].address = 0x8000000000000000UL;
    refused_context("a trap handler at a non-canonical address", XEN_EINVAL);
    good_context(2);
    ctxt.ldt_base = (uint64_t)data + 8;
    ctxt.ldt_ents = 1;
    refused_context("an LDT base not page-aligned", XEN_EINVAL);
    good_context(2);
    ctxt.flags = 0;
    refused_context("guest user mode without a user page table", XEN_EINVAL);
    good_context(2);
    ctxt.ctrlreg[3] = 0x10UL << PAGE_SHIFT;
    refused_context("cr3 naming a frame of Xen's (not the domain's)", XEN_EINVAL);
    good_context(2);
    ctxt.ctrlreg[3] = (uint64_t)virt_to_mfn(data) << PAGE_SHIFT;
    refused_context("cr3 naming a data frame mapped writable", XEN_EINVAL);
    good_context(2);
    ctxt.gdt_ents = 16;
    ctxt.gdt_frames[0] = 0x10;
    refused_context("a GDT frame of Xen's", XEN_EINVAL);
    good_context(2);
    ctxt.gdt_ents = 16;
    ctxt.gdt_frames[0] = virt_to_mfn(data);
    refused_context("a GDT frame mapped writable", XEN_EINVAL);
    good_context(2);
    ctxt.gdt_ents = 15 * 512;
    refused_context("more GDT frames than Xen has room for", XEN_EINVAL);
}

static void hostile_bindings(void)
{
    evtchn_port_t port = 0;
    long rc;

    rc = bind_vcpu(ipi[0], NO_VCPU);
    report(refusal(rc, XEN_ENOENT), "bind_vcpu to a vcpu that does not exist", "%s (Xen: -2 ENOENT)", rcstr(rc));
    rc = bind_ipi(NO_VCPU, &port);
    report(refusal(rc, XEN_ENOENT), "bind_ipi to a vcpu that does not exist", "%s (Xen: -2 ENOENT)", rcstr(rc));
    rc = bind_virq(VIRQ_TIMER, NO_VCPU, &port);
    report(refusal(rc, XEN_ENOENT), "bind_virq on a vcpu that does not exist", "%s (Xen: -2 ENOENT)", rcstr(rc));
    rc = vcpu_op(VCPUOP_is_up, NO_VCPU, NULL);
    report(refusal(rc, XEN_ENOENT), "vcpu_op on a vcpu that does not exist", "%s (Xen: -2 ENOENT)", rcstr(rc));
    rc = bind_vcpu(ipi[0], 1);
    report(refusal(rc, XEN_EINVAL), "bind_vcpu of an IPI port", "%s (Xen: -22 EINVAL)", rcstr(rc));
    rc = bind_virq(VIRQ_TIMER, 0, &port);
    if ( !rc )
        rc = bind_vcpu(port, 1);
    report(refusal(rc, XEN_EINVAL), "bind_vcpu of a per-vcpu VIRQ (timer)", "%s (Xen: -22 EINVAL)", rcstr(rc));
    rc = bind_virq(VIRQ_CONSOLE, 1, &port);
    report(refusal(rc, XEN_EINVAL), "a global VIRQ bound on vcpu 1", "%s (Xen: -22 EINVAL)", rcstr(rc));
}

/* With vcpu 1 down: where an IPI and a rebound port's events land. */
static void delivery(void)
{
    evtchn_port_t unbound, local;
    long rc;

    lands_on("an IPI to vcpu 1 marks vcpu 1", ipi[1], ipi[1], 1);
    lands_on("an IPI to vcpu 0 marks vcpu 0", ipi[0], ipi[0], 0);
    rc = evtchn_alloc_unbound(DOMID_SELF, &unbound);
    if ( !rc )
        rc = evtchn_bind_interdomain(DOMID_SELF, unbound, &local);
    if ( !rc )
        rc = bind_vcpu(unbound, 1);
    report(rc ? WRONG : ALLOWED, "bind_vcpu of a loopback port to vcpu 1", "%s (Xen: 0 OK)", rcstr(rc));
    evtchn_consume(local);
    lands_on("its event marks vcpu 1", local, unbound, 1);
    bind_vcpu(unbound, 0);
    lands_on("rebound to vcpu 0, it marks vcpu 0", local, unbound, 0);
}

static void ping_pong(unsigned long n)
{
    uint64_t start = now_ns();

    for ( unsigned long i = 0; i < n; i++ )
    {
        set_mask(ipi[1], i >= n / 2);   /* the second half: a spinlock kick */
        evtchn_send(ipi[1]);
        while ( !evtchn_consume(ipi[0]) )
            evtchn_poll(ipi[0], FOREVER);
    }
    printk("smp: %lu IPI round trips in %lu ns\n", n, (unsigned long)(now_ns() - start));
    evtchn_send(ipi[1]);                /* go on */
}

static void wait_stage(unsigned long stage)
{
    uint64_t deadline = now_ns() + SECONDS(10);

    while ( vcpu1_stage != stage && now_ns() < deadline )
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
}

static void run_vcpu1(void)
{
    long rc;

    good_context(1);
    rc = vcpu_op(VCPUOP_initialise, 1, &ctxt);
    report(rc ? WRONG : ALLOWED, "VCPUOP_initialise of vcpu 1", "%s (Xen: 0 OK)", rcstr(rc));
    rc = vcpu_op(VCPUOP_is_up, 1, NULL);
    report(rc == 0 ? ALLOWED : WRONG, "initialised without VGCF_online, it stays down",
           "is_up %ld (Xen: 0)", rc);
    rc = vcpu_op(VCPUOP_up, 1, NULL);
    report(rc ? WRONG : ALLOWED, "VCPUOP_up of vcpu 1", "%s (Xen: 0 OK)", rcstr(rc));
    rc = vcpu_op(VCPUOP_initialise, 1, &ctxt);
    report(refusal(rc, XEN_EEXIST), "VCPUOP_initialise of vcpu 1 while it runs",
           "%s (Xen: -17 EEXIST)", rcstr(rc));
    ping_pong(rounds);
    wait_stage(1);
    while ( vcpu_op(VCPUOP_is_up, 1, NULL) == 1 )
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    report(vcpu1_timer_rc ? WRONG : ALLOWED, "vcpu 1's own VIRQ_TIMER from its singleshot timer",
           "%s (Xen: 0 OK)", rcstr(vcpu1_timer_rc));
    report(refusal(vcpu1_other_timer_rc, XEN_EINVAL), "vcpu 1 sets vcpu 0's singleshot timer",
           "%s (Xen: -22 EINVAL)", rcstr(vcpu1_other_timer_rc));
    evtchn_consume(ipi[0]);
    rc = vcpu_op(VCPUOP_up, 1, NULL);
    evtchn_poll(ipi[0], now_ns() + SECONDS(5));
    report(!rc && vcpu1_stage == 2 ? ALLOWED : WRONG, "vcpu 1 downed itself; up again, it resumes",
           "%s, stage %lu (Xen: resumes after VCPUOP_down)", rcstr(rc), vcpu1_stage);
}

static void run_vcpu2(void)
{
    long rc;

    good_context(2);
    ctxt.user_regs.cs = FLAT_KERNEL_CS & ~3;
    ctxt.user_regs.ss = FLAT_KERNEL_SS & ~3;
    ctxt.kernel_ss = FLAT_KERNEL_SS & ~3;
    ctxt.trap_ctxt[3].cs = FLAT_KERNEL_CS & ~3;
    rc = vcpu_op(VCPUOP_initialise, 2, &ctxt);
    if ( !rc )
        rc = vcpu_op(VCPUOP_up, 2, NULL);
    for ( int i = 0; !rc && !vcpu2_cs && i < 1000; i++ )
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    report(!rc && (vcpu2_cs & 3) == 3 && (vcpu2_ss & 3) == 3 ? ALLOWED : WRONG,
           "a context with ring-0 selectors (fixed up to RPL 3)", "%s, cs 0x%lx ss 0x%lx",
           rcstr(rc), vcpu2_cs, vcpu2_ss);
}

void guest_main(start_info_t *si)
{
    attempts_init("smp");
    if ( events_init() )
        xen_shutdown(SHUTDOWN_crash);
    rounds = cmdline_num("rounds", 1000);
    if ( bind_ipi(0, &ipi[0]) || bind_ipi(1, &ipi[1]) )
        xen_shutdown(SHUTDOWN_crash);
    hostile_contexts();
    hostile_bindings();
    delivery();
    run_vcpu1();
    run_vcpu2();
    attempts_done();
}
