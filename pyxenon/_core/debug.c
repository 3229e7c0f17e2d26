/*
 * The host debugger's engine hooks (toolstack/gdbstub.py through
 * hypervisor/debugger.py): breakpoints, watchpoints and the single step.
 *
 * Each is a Unicorn hook added while it is set and deleted with it, so a
 * machine with none set runs exactly the code it ran before: a breakpoint
 * hook is bounded to its one address (Unicorn emits its call only into
 * that instruction's translation), a watchpoint's to its machine bytes.
 * Unicorn decides at translation time what a block calls, so every change
 * drops translated code before the next run.  A hook answers only for the
 * debugged domain's vcpus (it sees every domain's code at that address).
 * These are the debugger's own: the guest's debug registers and its #DB
 * never see them.
 */
#include <stdlib.h>

#include "core.h"

struct xc_dbg_point {
    struct xc_machine *m;
    uc_hook hook;
    uint64_t va, ma, len; /* a watchpoint: guest address, machine address, bytes */
    uint32_t handle;      /* the vcpu a step belongs to */
    uint16_t domid;
    uint16_t kind;        /* XC_DBG_* */
};

/* The running vcpu, when it is the point's domain's and nothing stopped it yet. */
static struct xc_vcpu *subject(struct xc_dbg_point *p)
{
    struct xc_vcpu *v = p->m->current;
    return v && v->domid == p->domid && v->stop == XC_STOP_NONE ? v : NULL;
}

static void hit(struct xc_dbg_point *p, struct xc_vcpu *v, uint64_t addr)
{
    v->dbg_kind = p->kind;
    v->dbg_addr = addr;
    v->stop = XC_STOP_DEBUG;
    uc_emu_stop(p->m->uc);
}

/* Before the instruction at addr: a stop here leaves it unexecuted. */
static void code_hit(uc_engine *uc, uint64_t addr, uint32_t size, void *data)
{
    struct xc_dbg_point *p = data;
    struct xc_vcpu *v = subject(p);
    if (!v)
        return;
    if (v->dbg_skip && addr == v->dbg_skip_pc) {
        v->dbg_skip = 0;      /* the breakpoint the debugger resumes from */
        return;
    }
    hit(p, v, addr);
}

/* Every instruction of the stepping vcpu: stop before its second. */
static void step_hit(uc_engine *uc, uint64_t addr, uint32_t size, void *data)
{
    struct xc_dbg_point *p = data;
    struct xc_vcpu *v = subject(p);
    if (v && v->handle == p->handle && v->dbg_steps++)
        hit(p, v, addr);
}

/*
 * A load or store touching the watched bytes: the access completes, and
 * the boundary hook stops the vcpu before its next instruction.  Stopping
 * here would not do: if the next instruction begins a block chained to
 * this one, Unicorn leaves without syncing rip past the access, and the
 * access runs again when the vcpu resumes.
 */
static void data_hit(uc_engine *uc, uc_mem_type type, uint64_t ma, int size,
                     int64_t value, void *data)
{
    struct xc_dbg_point *p = data;
    struct xc_vcpu *v = subject(p);
    if (!v || ma + (uint64_t)size <= p->ma || ma >= p->ma + p->len)
        return;
    v->dbg_kind = p->kind;
    v->dbg_addr = p->va + (ma > p->ma ? ma - p->ma : 0);
    v->dbg_pending = 1;
}

/* Before every instruction while a watchpoint is set: rip is synced here,
 * so a stop leaves the vcpu just after the access that hit. */
static void boundary(uc_engine *uc, uint64_t addr, uint32_t size, void *data)
{
    struct xc_dbg_point *p = data;
    struct xc_vcpu *v = subject(p);
    if (v && v->dbg_pending) {
        v->dbg_pending = 0;
        v->stop = XC_STOP_DEBUG;
        uc_emu_stop(uc);
    }
}

static uc_err add_hook(struct xc_machine *m, struct xc_dbg_point *p)
{
    /* a store or load that begins up to 7 bytes before the range may cover it */
    uint64_t lo = p->ma >= 7 ? p->ma - 7 : 0, hi = p->ma + p->len - 1;
    int data_types[] = {0, 0, UC_HOOK_MEM_WRITE, UC_HOOK_MEM_READ,
                        UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE};
    switch (p->kind) {
    case XC_DBG_SW:
    case XC_DBG_HW:
        return uc_hook_add(m->uc, &p->hook, UC_HOOK_CODE, code_hit, p, p->va, p->va);
    case XC_DBG_STEP:
        return uc_hook_add(m->uc, &p->hook, UC_HOOK_CODE, step_hit, p, 1, 0);
    case XC_DBG_BOUNDARY:
        return uc_hook_add(m->uc, &p->hook, UC_HOOK_CODE, boundary, p, 1, 0);
    default:
        return uc_hook_add(m->uc, &p->hook, data_types[p->kind], data_hit, p, lo, hi);
    }
}

/* Translated code goes before the next run: it was made with or without
 * the hook's calls. */
static void drop_translations(struct xc_machine *m)
{
    m->code_flush_pending = 1;
    m->flush_pending = 1;
}

/*
 * Set a breakpoint (va), watchpoint (va, its machine address ma, len
 * bytes, within one page), step or boundary hook for v's domain (a step
 * for v alone).  The engine must not be running.  NULL: refused.
 */
struct xc_dbg_point *xc_dbg_insert(struct xc_machine *m, struct xc_vcpu *v, int kind,
                                   uint64_t va, uint64_t ma, uint64_t len)
{
    struct xc_dbg_point *p;
    if (kind < XC_DBG_SW || kind > XC_DBG_BOUNDARY || len > PAGE_SIZE ||
        (kind >= XC_DBG_WRITE && kind <= XC_DBG_ACCESS &&
         (!len || ma + len > m->nr_frames << PAGE_SHIFT)))
        return NULL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    *p = (struct xc_dbg_point){.m = m, .va = va, .ma = ma, .len = len,
                               .handle = v->handle, .domid = v->domid, .kind = kind};
    if (add_hook(m, p) != UC_ERR_OK) {
        free(p);
        return NULL;
    }
    xc_exits_precise(m, 1);      /* its stops come before the next instruction */
    drop_translations(m);
    return p;
}

/* Unicorn never calls a deleted hook again, so its point can go at once. */
void xc_dbg_remove(struct xc_machine *m, struct xc_dbg_point *p)
{
    uc_hook_del(m->uc, p->hook);
    free(p);
    xc_exits_precise(m, -1);
    drop_translations(m);
}

/* A debugger write must leave the hypervisor's rules whole: only to a
 * frame of the domain's own that is no page table or descriptor page in
 * use (Xen's gdbsx writes any frame; here the validated types stand). */
static int debugger_may_write(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn)
{
    struct page_info *page = &m->frames[mfn];
    if (page->owner != v->domid)
        return 0;
    return !page->type_count || page->type == PGT_WRITABLE || page->type == PGT_NONE;
}

/*
 * Machine address of va for the debugger, as Xen's gdbsx finds it
 * (dbg_pv_va2mfn): through the vcpu's tables, else its kernel's (a vcpu
 * stopped in guest user mode still shows the kernel), no permission
 * checked.  A write drops translations of code in the frame.  -1: refused.
 */
int64_t xc_dbg_translate(struct xc_machine *m, struct xc_vcpu *v, uint64_t va, int write)
{
    uint64_t mfn;
    if (va >= HYPERVISOR_VIRT_START && va < HYPERVISOR_VIRT_END)
        return -1;
    if (xc_walk_peek(m, v->cr3, va, &mfn) &&
        (!v->kernel_cr3 || xc_walk_peek(m, v->kernel_cr3, va, &mfn)))
        return -1;
    if (write) {
        if (!debugger_may_write(m, v, mfn))
            return -1;
        xc_frame_written(m, mfn);
    }
    return (int64_t)((mfn << PAGE_SHIFT) | (va & (PAGE_SIZE - 1)));
}
