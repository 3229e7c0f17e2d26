/* Register access for the Python side: all of a vcpu's registers in one call. */
#include "core.h"

static const int reg_ids[] = {
    UC_X86_REG_RAX, UC_X86_REG_RBX, UC_X86_REG_RCX, UC_X86_REG_RDX,
    UC_X86_REG_RSI, UC_X86_REG_RDI, UC_X86_REG_RBP, UC_X86_REG_RSP,
    UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_R10, UC_X86_REG_R11,
    UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15,
    UC_X86_REG_RIP, UC_X86_REG_RFLAGS, UC_X86_REG_CS, UC_X86_REG_SS,
    UC_X86_REG_DS, UC_X86_REG_ES, UC_X86_REG_FS, UC_X86_REG_GS,
    UC_X86_REG_FS_BASE, UC_X86_REG_GS_BASE,
};
#define NR_REGS (int)(sizeof(reg_ids) / sizeof(reg_ids[0]))

/* The order of the values xc_regs moves, for the Python side. */
const char *xc_reg_names(void)
{
    return "rax rbx rcx rdx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15 "
           "rip rflags cs ss ds es fs gs fs_base gs_base";
}

/* What xc_regs writes: the GPRs, rflags, the FS/GS bases.  Never rip:
 * Unicorn answers a pc write inside a hook by longjmp-ing out of it, past
 * the rest of the hook (and the Python frames above it); xc_set_rip writes
 * rip, and only while the engine is not running. */
static const int write_idx[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 24, 25};
#define NR_WRITE (int)(sizeof(write_idx) / sizeof(write_idx[0]))

/*
 * Read (write=0) or write (write=1) the registers of v: from the engine when
 * v is running, else from its saved context.  Segment selectors are read-only
 * here: writing one would not change the privilege the CPU enforces.
 */
int xc_regs(struct xc_machine *m, struct xc_vcpu *v, int write, uint64_t *vals)
{
    void *ptrs[NR_REGS];
    int ids[NR_WRITE];
    for (int i = 0; i < NR_REGS; i++)
        ptrs[i] = &vals[i];
    if (!write) {
        if (m->current == v)
            return uc_reg_read_batch(m->uc, (int *)reg_ids, ptrs, NR_REGS);
        return uc_context_reg_read_batch(v->ctx, (int *)reg_ids, ptrs, NR_REGS);
    }
    for (int i = 0; i < NR_WRITE; i++) {
        ids[i] = reg_ids[write_idx[i]];
        ptrs[i] = &vals[write_idx[i]];
    }
    if (m->current == v)
        return uc_reg_write_batch(m->uc, ids, ptrs, NR_WRITE);
    return uc_context_reg_write_batch(v->ctx, ids, ptrs, NR_WRITE);
}

/*
 * rip of the running vcpu, from a hook as well as between runs.  Unicorn's
 * uc_reg_write of the PC also sets its skip_sync_pc_on_exit, which lasts
 * until the next exit check that ends a run: the watchdog's stop taken
 * there, maybe many blocks later, then keeps a rip that is no longer the
 * CPU's, and the guest runs again what it already ran.  uc_reg_write_batch
 * leaves the engine the same way (quit_request: the run goes on at rip)
 * without setting that flag.
 */
int xc_write_rip(uc_engine *uc, uint64_t rip)
{
    int id = UC_X86_REG_RIP;
    void *value = &rip;
    return uc_reg_write_batch(uc, &id, &value, 1);
}

int xc_set_rip(struct xc_machine *m, struct xc_vcpu *v, uint64_t rip)
{
    if (m->current == v)
        return xc_write_rip(m->uc, rip);
    return uc_context_reg_write(v->ctx, UC_X86_REG_RIP, &rip);
}

/* One register of v: from the engine when v is running, else its context. */
uint64_t xc_vcpu_reg(struct xc_machine *m, struct xc_vcpu *v, int id)
{
    uint64_t value = 0;
    if (m->current == v)
        uc_reg_read(m->uc, id, &value);
    else
        uc_context_reg_read(v->ctx, id, &value);
    return value;
}

int xc_vcpu_set_reg(struct xc_machine *m, struct xc_vcpu *v, int id, uint64_t value)
{
    if (m->current == v)
        return id == UC_X86_REG_RIP ? xc_write_rip(m->uc, value) : uc_reg_write(m->uc, id, &value);
    return uc_context_reg_write(v->ctx, id, &value);
}

/* CR0 of a vcpu: the guest's virtual TS flag lives in the real one, so
 * FPU use with TS set raises #NM as it would on hardware. */
uint64_t xc_get_cr0(struct xc_machine *m, struct xc_vcpu *v)
{
    return xc_vcpu_reg(m, v, UC_X86_REG_CR0);
}

int xc_set_cr0(struct xc_machine *m, struct xc_vcpu *v, uint64_t cr0)
{
    return xc_vcpu_set_reg(m, v, UC_X86_REG_CR0, cr0);
}

/* The TSC a guest's rdtsc reads: Unicorn passes the host's through. */
uint64_t xc_host_tsc(void)
{
    return __builtin_ia32_rdtsc();
}
