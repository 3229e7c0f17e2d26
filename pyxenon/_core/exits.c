/*
 * Where the engine may end a run.
 *
 * Unicorn places an exit check after every load and store it translates
 * (so a hook's uc_emu_stop takes effect at once) and one at the start of
 * every translated block.  The per-access checks cost a helper call on
 * every guest memory access, and they are unsafe for an asynchronous stop:
 * Unicorn restarts the instruction in flight, so a read-modify-write whose
 * store had happened runs twice (unicorn-engine/unicorn#1355).  Unicorn
 * has a switch that leaves them out of new translations (its ARM IT-block
 * workaround, uc_struct.no_exit_request, not in the API): with it on, a
 * run ends only at a block start, where nothing of the block has run, and
 * the watchdog may stop the engine directly.
 *
 * The switch's offset is read from Unicorn's own check_exit_request, whose
 * first two instructions load tcg_ctx->uc and test that byte; the decoded
 * offset is trusted only if the byte is 0 and the next one (init_done) 1.
 * Where that fails, per-access checks stay and the block hook ends slices
 * (watchdog.c), as before.
 *
 * Breakpoint hooks (the host debugger's and the guest's) need a stop
 * before the next instruction, and turn the per-access checks back on
 * while they last (xc_exits_precise).  Counted runs (the deterministic
 * mode, whose slice is a count of blocks) need the block hook only.  The
 * switch and the hooks are read when code is translated, so a change
 * drops translations.  A hook that moves rip inside a run must do it with
 * regs.c's xc_write_rip, or the next stop at a block start keeps a stale
 * rip.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include "core.h"

#define SANE_OFFSET 0x10000

static long exit_flag_offset(void)
{
    /* mov disp32(%rdi),%rsi ; cmpb $0x0,disp32(%rsi) */
    static const uint8_t mov[] = {0x48, 0x8b, 0xb7}, cmpb[] = {0x80, 0xbe};
    const uint8_t *p = dlsym(RTLD_DEFAULT, "check_exit_request_x86_64");
    int32_t off;
    if (!p || memcmp(p, mov, sizeof(mov)) || memcmp(p + 7, cmpb, sizeof(cmpb)) || p[13] != 0)
        return -1;
    memcpy(&off, p + 9, sizeof(off));
    return off > 0 && off < SANE_OFFSET ? off : -1;
}

static void set_block_hook(struct xc_machine *m, int on)
{
    if (on && !m->hooks[7])
        uc_hook_add(m->uc, &m->hooks[7], UC_HOOK_BLOCK, xc_hook_block, m, 1, 0);
    else if (!on && m->hooks[7]) {
        uc_hook_del(m->uc, m->hooks[7]);
        m->hooks[7] = 0;
    }
}

/* After the engine is set up (Unicorn initialised): block starts only, if
 * the switch is found; else every access and the block hook. */
void xc_exits_init(struct xc_machine *m)
{
    long off = exit_flag_offset();
    uint8_t *flag = off < 0 ? NULL : (uint8_t *)m->uc + off;
    if (flag && flag[0] == 0 && flag[1] == 1 && !getenv("PYXENON_EXIT_EVERY_ACCESS")) {
        m->no_exit_request = flag;
        *flag = 1;
        __atomic_store_n(&m->exits_precise, 0, __ATOMIC_RELEASE);
    } else {
        __atomic_store_n(&m->exits_precise, 1, __ATOMIC_RELEASE);
    }
    set_block_hook(m, m->exits_precise);
}

/* A hook that must stop before the next instruction came (+1) or went (-1).
 * Takes effect at the next run (xc_exits_settle). */
void xc_exits_precise(struct xc_machine *m, int delta)
{
    m->precise_users += delta;
}

/* Before a run, outside the engine: the checks and hooks this run needs. */
void xc_exits_settle(struct xc_machine *m, int counting)
{
    int precise = m->precise_users > 0 || !m->no_exit_request;
    if (precise == m->exits_precise && counting == m->counting)
        return;
    if (m->no_exit_request)
        *m->no_exit_request = !precise;
    __atomic_store_n(&m->exits_precise, precise, __ATOMIC_RELEASE);
    m->counting = counting;
    set_block_hook(m, precise || counting);
    uc_ctl_flush_tb(m->uc);
}

/* 1: an asynchronous stop may be made directly (it lands at a block start). */
int xc_exits_at_blocks(struct xc_machine *m)
{
    return !__atomic_load_n(&m->exits_precise, __ATOMIC_ACQUIRE);
}

/*
 * An instruction hook (in/out, cpuid) found that its instruction faults.
 * Unicorn completes the instruction after the hook and runs on to the
 * next exit check, so keep the registers as they are now, before the
 * instruction, and refuse every later access of the run: the TLB goes, and
 * xc_tlb_fill fills nothing while hook_fault is set.  xc_run restores the
 * registers when the run ends, so the fault is delivered exactly at the
 * instruction, with nothing after it done.
 */
void xc_fault_in_hook(struct xc_machine *m, uint32_t vector, uint32_t error_code)
{
    struct xc_vcpu *v = m->current;
    if (!v)
        return;
    uc_reg_read(m->uc, UC_X86_REG_RIP, &v->fault_rip);
    v->vector = vector;
    v->error_code = error_code;
    v->stop = XC_STOP_EXCEPTION;
    if (m->hook_ctx || !uc_context_alloc(m->uc, &m->hook_ctx)) {
        uc_context_save(m->uc, m->hook_ctx);
        m->hook_fault = 1;
        uc_ctl_flush_tlb(m->uc);
        m->flush_pending = 1;      /* the model and shadow follow before the next run */
    }
    uc_emu_stop(m->uc);
}

/* When the run ends: the registers as the faulting hook saw them. */
void xc_fault_in_hook_done(struct xc_machine *m)
{
    if (!m->hook_fault)
        return;
    m->hook_fault = 0;
    uc_context_restore(m->uc, m->hook_ctx);
}
