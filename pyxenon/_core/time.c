/*
 * Time as Xen keeps it for a PV guest (xen/arch/x86/time.c).
 *
 * System time is the TSC scaled (get_s_time_fixed: a stamp plus
 * scale_delta of the TSC since), and vcpu_time_info hands the guest the
 * same stamp and scale (__update_vcpu_system_time), so what a guest
 * computes from its own rdtsc is the hypervisor's system time itself:
 * Linux's clocksource watchdog finds the TSC and the Xen clock agree.
 *
 * Deterministic mode emulates the TSC instead, as Xen does for a domain
 * whose TSC is emulated (d->arch.vtsc): CR4.TSD makes rdtsc and rdtscp
 * fault, and the fault is answered with pv_soft_rdtsc's value, the
 * virtual system time, strictly increasing -- so a run depends only on
 * what the guests do.  The virtual TSC runs at 1 GHz: one tick is one
 * virtual nanosecond (gtime_to_gtsc is the identity).
 */
#include "core.h"

#define VTSC_HZ 1000000000UL
#define CR4_TSD 0x4UL
#define SECOND_NS 1000000000UL

/* Xen's scale_delta: ((delta << shift) * mul) >> 32, shift < 0 shifting right. */
uint64_t xc_scale_delta(uint64_t delta, uint32_t mul, int32_t shift)
{
    if (shift < 0)
        delta >>= -shift;
    else
        delta <<= shift;
    return (uint64_t)(((unsigned __int128)delta * mul) >> 32);
}

/* Xen's set_time_scale: the (mul, shift) that turn ticks at hz into ns. */
void xc_set_tsc_hz(struct xc_machine *m, uint64_t hz)
{
    uint64_t tps64 = hz ? hz : 1;
    uint32_t tps32;
    int32_t shift = 0;
    while (tps64 > SECOND_NS * 2) {
        tps64 >>= 1;
        shift--;
    }
    tps32 = (uint32_t)tps64;
    while (tps32 <= (uint32_t)SECOND_NS) {
        tps32 <<= 1;
        shift++;
    }
    m->tsc_mul = (uint32_t)((SECOND_NS << 32) / tps32);   /* div_frac */
    m->tsc_shift = shift;
}

/* Xen's NOW(): ns since the machine booted (deterministic: the virtual
 * time of the slice that runs). */
uint64_t xc_system_time(struct xc_machine *m)
{
    if (m->vtsc)
        return m->slice_stime;
    return xc_scale_delta(__builtin_ia32_rdtsc() - m->boot_tsc, m->tsc_mul, m->tsc_shift);
}

/*
 * Deterministic mode: the TSC is emulated from now on (before any vcpu
 * exists: they start from the template state, which gets CR4.TSD).
 */
int xc_set_vtsc(struct xc_machine *m)
{
    uint64_t cr4 = 0;
    int err;
    if (m->current)
        return -1;
    m->vtsc = 1;
    xc_set_tsc_hz(m, VTSC_HZ);
    uc_context_restore(m->uc, m->ring3);
    uc_reg_read(m->uc, UC_X86_REG_CR4, &cr4);
    cr4 |= CR4_TSD;
    err = uc_reg_write(m->uc, UC_X86_REG_CR4, &cr4);
    return err || uc_context_save(m->uc, m->ring3) ? -1 : 0;
}

/* Xen's pv_soft_rdtsc: system time, but never the same value twice (the
 * last is per vcpu here: a domain has one). */
static uint64_t soft_rdtsc(struct xc_machine *m, struct xc_vcpu *v)
{
    uint64_t now = m->slice_stime;
    v->vtsc_last = now > v->vtsc_last ? now : v->vtsc_last + 1;
    return v->vtsc_last;     /* gtime_to_gtsc at 1 GHz */
}

/* The TSC the guest reads (rdmsr of IA32_TSC too). */
uint64_t xc_guest_tsc(struct xc_machine *m, struct xc_vcpu *v)
{
    return m->vtsc ? soft_rdtsc(m, v) : __builtin_ia32_rdtsc();
}

/* The instruction at rip: 2 for rdtsc, 3 for rdtscp, else 0. */
static int rdtsc_length(struct xc_machine *m, struct xc_vcpu *v, uint64_t rip)
{
    uint8_t insn[3] = {0};
    if (xc_copy_from_guest(m, v, insn, rip, 2) || insn[0] != 0x0F)
        return 0;
    if (insn[1] == 0x31)
        return 2;
    if (insn[1] != 0x01 || xc_copy_from_guest(m, v, insn, rip, 3))
        return 0;
    return insn[2] == 0xF9 ? 3 : 0;
}

/*
 * A #GP with the TSC emulated: if rdtsc or rdtscp raised it, answer as
 * Xen's emulator does (edx:eax the TSC; rdtscp's ecx TSC_AUX, the vcpu's
 * as msr.c keeps it) and let the guest go on after it.  1 if it was one of them.
 */
int xc_emulate_rdtsc(struct xc_machine *m, struct xc_vcpu *v)
{
    uint64_t rip = 0, tsc, lo, hi, aux = v->tsc_aux;
    int len;
    uc_reg_read(m->uc, UC_X86_REG_RIP, &rip);
    len = rdtsc_length(m, v, rip);
    if (!len)
        return 0;
    tsc = soft_rdtsc(m, v);
    lo = tsc & 0xFFFFFFFFUL;
    hi = tsc >> 32;
    rip += len;
    xc_clear_exception(m);   /* taken here, never delivered: not "in flight" */
    uc_reg_write(m->uc, UC_X86_REG_RAX, &lo);
    uc_reg_write(m->uc, UC_X86_REG_RDX, &hi);
    if (len == 3)
        uc_reg_write(m->uc, UC_X86_REG_RCX, &aux);
    xc_write_rip(m->uc, rip);   /* last: Unicorn may leave the hook here */
    return 1;
}

/* Xen's vcpu_time_info (in vcpu_info at 32). */
struct time_info {
    uint32_t version, pad0;
    uint64_t tsc_timestamp, system_time;
    uint32_t tsc_to_system_mul;
    int8_t tsc_shift;
    uint8_t flags, pad1[2];
};
_Static_assert(sizeof(struct time_info) == XC_TIME_INFO_SIZE, "public/xen.h");

/*
 * __update_vcpu_system_time: a stamp (TSC, system time at that TSC) and
 * the scale, with the version protocol (odd while it changes).  The stamp
 * is taken now; deterministic mode stamps the slice's virtual time, whose
 * TSC is the same number.
 */
void xc_update_time(struct xc_machine *m, struct xc_vcpu *v, uint64_t system_time)
{
    volatile struct time_info *t = (void *)(m->mem + v->vcpu_info_ma + 32);
    uint64_t tsc = m->vtsc ? system_time : __builtin_ia32_rdtsc();
    m->slice_stime = system_time;
    t->version = (t->version + 1) | 1;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    t->tsc_timestamp = tsc;
    t->system_time = m->vtsc ? system_time
                             : xc_scale_delta(tsc - m->boot_tsc, m->tsc_mul, m->tsc_shift);
    t->tsc_to_system_mul = m->tsc_mul;
    t->tsc_shift = (int8_t)m->tsc_shift;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    t->version += 1;
}
