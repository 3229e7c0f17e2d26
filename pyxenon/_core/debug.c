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
 *
 * The guest's own breakpoints (%dr0-3 as %dr7 enables them,
 * hypervisor/debugtrap.py) are hooks of the same kind, added here through
 * the same add_hook and only while one is armed: Unicorn never fires a
 * debug register.  An instruction breakpoint is a fault (#DB before the
 * instruction, passed once after an iret with RF set); a data or I/O
 * breakpoint a trap (#DB before the next instruction, one later after a
 * MOV SS: its interrupt shadow).  Every hook that may stop the engine
 * mid-block is added by add_hook alone.
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
    uint16_t bp;          /* a guest breakpoint: which of %dr0-3 */
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

/* The point's own vcpu, running; a #DB some other guest breakpoint of
 * the same instruction raised already may gather this one's bit too. */
static struct xc_vcpu *guest_subject(struct xc_dbg_point *p)
{
    struct xc_vcpu *v = p->m->current;
    if (!v || v->handle != p->handle)
        return NULL;
    if (v->stop == XC_STOP_NONE || (v->stop == XC_STOP_EXCEPTION && v->db_hooked))
        return v;
    return NULL;
}

static void raise_db(struct xc_machine *m, struct xc_vcpu *v)
{
    v->vector = 1;
    v->error_code = 0;
    v->db_hooked = 1;
    v->stop = XC_STOP_EXCEPTION;
    uc_emu_stop(m->uc);
}

/* An instruction breakpoint is a fault: the instruction has not run. */
static void guest_code_hit(uc_engine *uc, uint64_t addr, uint32_t size, void *data)
{
    struct xc_dbg_point *p = data;
    struct xc_vcpu *v = guest_subject(p);
    if (!v)
        return;
    if (v->db_skip && addr == v->db_skip_pc) {
        v->db_skip = 0;       /* RF: the instruction an iret resumed with it */
        return;
    }
    v->db_status |= 1u << p->bp;
    raise_db(p->m, v);
}

/* A data breakpoint is a trap: the access completes, the boundary hook
 * raises the #DB before the next instruction. */
static void guest_data_hit(uc_engine *uc, uc_mem_type type, uint64_t ma, int size,
                           int64_t value, void *data)
{
    struct xc_dbg_point *p = data;
    struct xc_vcpu *v = guest_subject(p);
    if (!v || ma + (uint64_t)size <= p->ma || ma >= p->ma + p->len)
        return;
    v->db_status |= 1u << p->bp;
    v->db_pending = 1;
}

/* An I/O instruction io.c emulated touched an armed I/O breakpoint
 * (Xen's check_guest_io_breakpoint, which needs CR4.DE). */
void xc_db_io_check(struct xc_vcpu *v, uint32_t port, int size)
{
    for (int i = 0; i < 4; i++) {
        if ((v->db_io >> i & 1) && port < v->db_io_port[i] + v->db_io_len[i] &&
            port + (uint32_t)size > v->db_io_port[i]) {
            v->db_status |= 1u << i;
            v->db_pending = 1;
        }
    }
}

/* mov to %ss (8E /2, after any prefixes): the next instruction runs in
 * its shadow.  (pop %ss does not exist in 64-bit code.) */
/* A legacy prefix (operand, address size, lock, rep, segment) or REX. */
static int prefix(uint8_t b)
{
    return b == 0x66 || b == 0x67 || b == 0xF0 || b == 0xF2 || b == 0xF3 ||
           (b & 0xE7) == 0x26 || b == 0x64 || b == 0x65 || (b & 0xF0) == 0x40;
}

static int mov_ss(struct xc_machine *m, struct xc_vcpu *v, uint64_t pc)
{
    uint8_t b[16] = {0};
    uint64_t in_page = PAGE_SIZE - (pc & (PAGE_SIZE - 1));
    int i = 0;
    /* an instruction may end before a page that is not mapped */
    if (xc_copy_from_guest(m, v, b, pc, 15) &&
        (in_page >= 15 || xc_copy_from_guest(m, v, b, pc, in_page)))
        return 0;
    while (i < 14 && prefix(b[i]))
        i++;
    return b[i] == 0x8E && (b[i + 1] >> 3 & 7) == 2;
}

/* Before every instruction while a guest data or I/O breakpoint is armed. */
static void guest_boundary(uc_engine *uc, uint64_t addr, uint32_t size, void *data)
{
    struct xc_dbg_point *p = data;
    struct xc_vcpu *v = guest_subject(p);
    if (!v)
        return;
    if (v->db_pending == 1 && mov_ss(p->m, v, v->db_prev_pc))
        v->db_pending = 2;    /* the shadow: after this instruction */
    else if (v->db_pending) {
        v->db_pending = 0;
        raise_db(p->m, v);
    }
    v->db_prev_pc = addr;
}

/* Each kind's hook: its type, its callback, and what it is bounded to
 * (CODE_AT: the point's address; DATA_AT: its machine bytes; 0: all). */
enum { EVERYWHERE, CODE_AT, DATA_AT };
static const struct {
    int type;
    void *callback;
    int range;
} hooks[] = {
    [XC_DBG_SW] = {UC_HOOK_CODE, code_hit, CODE_AT},
    [XC_DBG_HW] = {UC_HOOK_CODE, code_hit, CODE_AT},
    [XC_DBG_WRITE] = {UC_HOOK_MEM_WRITE, data_hit, DATA_AT},
    [XC_DBG_READ] = {UC_HOOK_MEM_READ, data_hit, DATA_AT},
    [XC_DBG_ACCESS] = {UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, data_hit, DATA_AT},
    [XC_DBG_STEP] = {UC_HOOK_CODE, step_hit, EVERYWHERE},
    [XC_DBG_BOUNDARY] = {UC_HOOK_CODE, boundary, EVERYWHERE},
    [XC_DBG_GUEST_X] = {UC_HOOK_CODE, guest_code_hit, CODE_AT},
    [XC_DBG_GUEST_W] = {UC_HOOK_MEM_WRITE, guest_data_hit, DATA_AT},
    [XC_DBG_GUEST_RW] = {UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, guest_data_hit, DATA_AT},
    [XC_DBG_GUEST_BOUNDARY] = {UC_HOOK_CODE, guest_boundary, EVERYWHERE},
};

/*
 * The one place an engine hook of the debugger's, or of the guest's debug
 * registers, is added: every hook that may stop the engine mid-block.
 */
static uc_err add_hook(struct xc_machine *m, struct xc_dbg_point *p)
{
    uint64_t begin = 1, end = 0;      /* Unicorn's "everywhere" */
    if (hooks[p->kind].range == CODE_AT) {
        begin = end = p->va;
    } else if (hooks[p->kind].range == DATA_AT) {
        /* a store or load that begins up to 7 bytes before the range may cover it */
        begin = p->ma >= 7 ? p->ma - 7 : 0;
        end = p->ma + p->len - 1;
    }
    return uc_hook_add(m->uc, &p->hook, hooks[p->kind].type, hooks[p->kind].callback, p,
                       begin, end);
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
 * for v alone).  The debugger's come while the engine is not running; a
 * guest's may come from a hypercall, which then ends the run (the
 * translations go).  NULL: refused.
 */
static struct xc_dbg_point *insert(struct xc_machine *m, struct xc_vcpu *v, int kind,
                                   int bp, uint64_t va, uint64_t ma, uint64_t len)
{
    struct xc_dbg_point *p;
    int data = (kind >= XC_DBG_WRITE && kind <= XC_DBG_ACCESS) ||
               kind == XC_DBG_GUEST_W || kind == XC_DBG_GUEST_RW;
    if (len > PAGE_SIZE || (data && (!len || ma + len > m->nr_frames << PAGE_SHIFT)))
        return NULL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    *p = (struct xc_dbg_point){.m = m, .va = va, .ma = ma, .len = len, .handle = v->handle,
                               .domid = v->domid, .kind = kind, .bp = bp};
    if (add_hook(m, p) != UC_ERR_OK) {
        free(p);
        return NULL;
    }
    xc_exits_precise(m, 1);      /* its stops come before the next instruction */
    drop_translations(m);
    return p;
}

struct xc_dbg_point *xc_dbg_insert(struct xc_machine *m, struct xc_vcpu *v, int kind,
                                   uint64_t va, uint64_t ma, uint64_t len)
{
    if (kind < XC_DBG_SW || kind > XC_DBG_BOUNDARY)
        return NULL;
    return insert(m, v, kind, 0, va, ma, len);
}

/* A guest breakpoint bp (0-3) of v's: an instruction (va), a watched
 * range (its machine address ma, len bytes), or the boundary check. */
struct xc_dbg_point *xc_dbg_insert_guest(struct xc_machine *m, struct xc_vcpu *v, int kind,
                                         int bp, uint64_t va, uint64_t ma, uint64_t len)
{
    if (kind < XC_DBG_GUEST_X || kind > XC_DBG_GUEST_BOUNDARY || bp < 0 || bp > 3)
        return NULL;
    return insert(m, v, kind, bp, va, ma, len);
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
