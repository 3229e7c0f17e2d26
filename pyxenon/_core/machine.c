/*
 * The machine: one Unicorn engine in long mode and virtual-TLB mode, the
 * machine memory and frame table, the hypervisor's own pages (its GDT page,
 * the ring-0 code that drops to ring 3), and switching which vcpu runs.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include "core.h"

/* The engine's TLB sizes (QEMU's CPU_TLB_DYN_*_BITS; see model_tlb_resize). */
#define TLB_MIN_ENTRIES 64
#define TLB_START_ENTRIES 256
#define TLB_MAX_ENTRIES (1UL << 20)

#define RING0_CS 0xe008
#define RING0_DS 0xe010
#define RING3_CS64 0xe033
#define RING3_DS 0xe02b

static void *reserve(uint64_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* A flat 64-bit descriptor: type bits, DPL, long-mode code flag. */
static uint64_t descriptor(int code, int dpl, int longmode)
{
    uint64_t d = 0x0000FFFFUL | (0xFUL << 48);   /* limit 0xfffff */
    d |= (code ? 0xBUL : 0x3UL) << 40;           /* accessed code/data */
    d |= 1UL << 44;                              /* S: code or data */
    d |= (uint64_t)dpl << 45;
    d |= 1UL << 47;                              /* present */
    d |= (longmode ? 1UL << 53 : 1UL << 54);     /* L, or D/B */
    d |= 1UL << 55;                              /* 4 KiB granularity */
    return d;
}

/* Xen's reserved GDT page, as seen at selectors 0xe000 and up. */
static void build_xen_gdt(uint64_t *gdt)
{
    gdt[RING0_CS >> 3 & 511] = descriptor(1, 0, 1);
    gdt[RING0_DS >> 3 & 511] = descriptor(0, 0, 0);
    gdt[0xe020 >> 3 & 511] = descriptor(1, 3, 0);      /* FLAT_RING3_CS32 */
    gdt[RING3_DS >> 3 & 511] = descriptor(0, 3, 0);    /* FLAT_RING3_DS32/SS */
    gdt[RING3_CS64 >> 3 & 511] = descriptor(1, 3, 1);  /* FLAT_RING3_CS64 */
}

/*
 * QEMU reads the TSS on a call through a gate to an inner ring, and
 * aborts the whole process (get_rsp_from_tss: cpu_abort "invalid tss")
 * when TR is not present -- and Unicorn never loads one.  So the engine
 * has a TSS, in Xen's GDT page (guest-readable, as the GDT area is), and
 * every stack it names is non-canonical: the first push of such a ring
 * change is a #GP for the guest while it is still in ring 3, the way
 * Xen's gates fault (pv/emul-gate-op.c).  Each of its quadwords, seen as
 * a descriptor at selectors 0xe800-0xe860, is not present.
 */
#define TSS_OFFSET 0x800
#define TSS_LIMIT 0x67
#define TSS_SELECTOR 0xe040             /* Xen's (asm/desc.h) */
#define TSS_FLAGS (0x8000 | 0x9 << 8)  /* present, available 64-bit TSS */
#define NO_STACK 0x8000000000000000UL  /* its first push: non-canonical */

static void build_tss(uint8_t *xen_gdt)
{
    static const int stacks[] = {4, 12, 20, 36, 44, 52, 60, 68, 76, 84}; /* rsp0-2, ist1-7 */
    uint64_t no_stack = NO_STACK;
    uint16_t no_iomap = TSS_LIMIT + 1;
    for (unsigned i = 0; i < sizeof(stacks) / sizeof(stacks[0]); i++)
        memcpy(xen_gdt + TSS_OFFSET + stacks[i], &no_stack, 8);
    memcpy(xen_gdt + TSS_OFFSET + 102, &no_iomap, 2);
}

static int set_control_state(uc_engine *uc)
{
    uc_x86_mmr tr = {TSS_SELECTOR, GDT_VIRT_START + GDT_GUEST_PAGES * PAGE_SIZE + TSS_OFFSET,
                     TSS_LIMIT, TSS_FLAGS};
    uint64_t cr0 = 0x80050033;  /* PG WP NE ET MP PE */
    uint64_t cr4 = 0x6A0;       /* OSXMMEXCPT OSFXSR PGE PAE */
    uc_x86_msr efer = {0xC0000080, 0xD01}; /* NXE LMA LME SCE */
    uc_x86_mmr gdtr = {0, GDT_VIRT_START, GDT_PAGES * PAGE_SIZE - 1, 0};
    if (uc_reg_write(uc, UC_X86_REG_CR0, &cr0) || uc_reg_write(uc, UC_X86_REG_CR4, &cr4))
        return -1;
    if (uc_reg_write(uc, UC_X86_REG_MSR, &efer))
        return -1;
    if (uc_reg_write(uc, UC_X86_REG_TR, &tr))
        return -1;
    return uc_reg_write(uc, UC_X86_REG_GDTR, &gdtr) ? -1 : 0;
}

/*
 * Unicorn skips QEMU's exception delivery when an interrupt hook takes the
 * exception, and with it the reset of the CPU's "exception in flight"
 * (old_exception): the next contributory fault would become a #DF.  The
 * field is not in the API, so find it in the saved context once -- it is the
 * one 32-bit word that goes from -1 to 0 when a #DE is taken -- and reset
 * it after every exception (xc_clear_exception).
 */
static void stop_on_intr(uc_engine *uc, uint32_t intno, void *data)
{
    uc_emu_stop(uc);
}

static long find_exception_field(struct xc_machine *m)
{
    size_t size = uc_context_size(m->uc);
    uc_context *before, *after;
    uc_hook h;
    long found = -1;
    uint64_t rip = XEN_VIRT_START + 32, rsp = XEN_VIRT_START + 2 * PAGE_SIZE - 64;
    static const uint8_t div0[] = {0x31, 0xc9, 0xf7, 0xf1};   /* xor ecx,ecx; div ecx */
    if (uc_context_alloc(m->uc, &before) || uc_context_alloc(m->uc, &after))
        return -1;
    memcpy(m->mem + (m->text_mfn << PAGE_SHIFT) + 32, div0, sizeof(div0));
    uc_reg_write(m->uc, UC_X86_REG_RSP, &rsp);
    uc_context_save(m->uc, before);
    uc_hook_add(m->uc, &h, UC_HOOK_INTR, stop_on_intr, NULL, 1, 0);
    uc_emu_start(m->uc, rip, rip + sizeof(div0), 0, 0);
    uc_hook_del(m->uc, h);
    uc_context_save(m->uc, after);
    for (size_t off = 0; off + 4 <= size; off += 4) {
        int32_t a, b;
        memcpy(&a, (char *)before + off, 4);
        memcpy(&b, (char *)after + off, 4);
        if (a == -1 && b == 0)
            found = found < 0 ? (long)off : -2;   /* -2: not unique */
    }
    uc_context_restore(m->uc, before);
    uc_context_free(before);
    uc_context_free(after);
    return found;
}

/*
 * Unicorn's interrupt hook gives the vector only; QEMU has put the error
 * code (a selector's for #GP/#NP/#SS/#TS from segment loads, far transfers
 * and iret, as the hardware's) in env->error_code.  Find that word too: the
 * one that reads 0xfff8, then 0xfff0, after loading those (zero)
 * descriptors into DS from ring 0 -- each a #GP(selector).
 */
static void load_ds_probe(struct xc_machine *m, uc_context *out, uint16_t sel)
{
    /* mov (%rip), %ds with the selector right after it: in no register */
    uint8_t code[] = {0x8e, 0x1d, 0, 0, 0, 0, (uint8_t)sel, (uint8_t)(sel >> 8)};
    uint64_t rip = XEN_VIRT_START + 48;
    uc_hook h;
    memcpy(m->mem + (m->text_mfn << PAGE_SHIFT) + 48, code, sizeof(code));
    uc_hook_add(m->uc, &h, UC_HOOK_INTR, stop_on_intr, NULL, 1, 0);
    uc_emu_start(m->uc, rip, rip + 6, 0, 0);
    uc_hook_del(m->uc, h);
    uc_context_save(m->uc, out);
}

static long find_error_code_field(struct xc_machine *m)
{
    size_t size = uc_context_size(m->uc);
    uc_context *before, *first, *second;
    long found = -1;
    if (uc_context_alloc(m->uc, &before) || uc_context_alloc(m->uc, &first) ||
        uc_context_alloc(m->uc, &second))
        return -1;
    uc_context_save(m->uc, before);
    load_ds_probe(m, first, 0xfff8);
    uc_context_restore(m->uc, before);
    load_ds_probe(m, second, 0xfff0);
    for (size_t off = 0; off + 4 <= size; off += 4) {
        uint32_t a, b;
        memcpy(&a, (char *)first + off, 4);
        memcpy(&b, (char *)second + off, 4);
        if (a == 0xfff8 && b == 0xfff0)
            found = found == -1 ? (long)off : -2;   /* -2: not unique */
    }
    uc_context_restore(m->uc, before);
    uc_context_free(before);
    uc_context_free(first);
    uc_context_free(second);
    return found;
}

/* The CPU's error code for an exception the engine raised (0: unknown). */
static uint32_t engine_error_code(struct xc_machine *m, struct xc_vcpu *v)
{
    uint32_t code = 0;
    if (m->error_code_field >= 0 && v->vector < 32 && ((1u << v->vector) & XC_EC_VECTORS))
        memcpy(&code, (char *)v->ctx + m->error_code_field, 4);
    return code;
}

void xc_clear_exception(struct xc_machine *m)
{
    int32_t none = -1;
    struct xc_vcpu *v = m->current;
    int engine = v && v->error_code == XC_EC_ENGINE;
    if (!v || (m->exception_field < 0 && !engine))
        return;
    uc_context_save(m->uc, v->ctx);
    if (engine)
        v->error_code = engine_error_code(m, v);
    if (m->exception_field < 0)
        return;
    memcpy((char *)v->ctx + m->exception_field, &none, 4);
    uc_context_restore(m->uc, v->ctx);
}

/*
 * Unicorn enforces the privilege level only after a real ring transition,
 * so the machine starts in ring 0 and runs one iretq into ring 3; the
 * resulting CPU state is the template every new vcpu starts from.
 */
static int drop_to_ring3(struct xc_machine *m)
{
    m->exception_field = find_exception_field(m);
    m->error_code_field = find_error_code_field(m);
    uint64_t *stack = (uint64_t *)(m->mem + (m->stack_mfn << PAGE_SHIFT));
    uint64_t frame[5] = {XEN_VIRT_START + 16, RING3_CS64, 0x202, 0, RING3_DS};
    uint64_t rsp = XEN_VIRT_START + 2 * PAGE_SIZE - sizeof(frame);
    uint64_t rip = XEN_VIRT_START, cs = 0;
    m->mem[m->text_mfn << PAGE_SHIFT] = 0x48;       /* iretq */
    m->mem[(m->text_mfn << PAGE_SHIFT) + 1] = 0xCF;
    memcpy(stack + 512 - 5, frame, sizeof(frame));
    uc_reg_write(m->uc, UC_X86_REG_RSP, &rsp);
    /* Fetching at the ring-3 target faults (nothing is mapped yet): fine. */
    uc_emu_start(m->uc, rip, XEN_VIRT_START + 16, 0, 0);
    uc_reg_read(m->uc, UC_X86_REG_RIP, &rip);
    uc_reg_read(m->uc, UC_X86_REG_CS, &cs);
    if (rip != XEN_VIRT_START + 16 || cs != RING3_CS64)
        return -1;
    if (uc_context_alloc(m->uc, &m->ring3) || uc_context_save(m->uc, m->ring3))
        return -1;
    uc_ctl_flush_tlb(m->uc);
    m->tlb_size = TLB_START_ENTRIES;
    return 0;
}

static int add_hooks(struct xc_machine *m)
{
    uc_engine *uc = m->uc;
    if (uc_hook_add(uc, &m->hooks[0], UC_HOOK_TLB_FILL, xc_tlb_fill, m, 1, 0))
        return -1;
    if (uc_hook_add(uc, &m->hooks[1], UC_HOOK_INSN, xc_hook_syscall, m, 1, 0,
                    UC_X86_INS_SYSCALL))
        return -1;
    if (uc_hook_add(uc, &m->hooks[2], UC_HOOK_INTR, xc_hook_intr, m, 1, 0))
        return -1;
    if (uc_hook_add(uc, &m->hooks[3], UC_HOOK_INSN, xc_hook_in, m, 1, 0, UC_X86_INS_IN))
        return -1;
    if (uc_hook_add(uc, &m->hooks[5], UC_HOOK_INSN_INVALID, xc_hook_invalid, m, 1, 0))
        return -1;
    if (uc_hook_add(uc, &m->hooks[6], UC_HOOK_INSN, xc_hook_cpuid, m, 1, 0, UC_X86_INS_CPUID))
        return -1;
    return uc_hook_add(uc, &m->hooks[4], UC_HOOK_INSN, xc_hook_out, m, 1, 0, UC_X86_INS_OUT) ? -1 : 0;
}

static int map_hypervisor(struct xc_machine *m, uint64_t hv_frames)
{
    uint64_t m2p_bytes = (m->nr_frames * 8 + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    for (uint64_t f = 0; f < hv_frames; f++)
        m->frames[f].owner = OWNER_XEN;
    m->xen_gdt_mfn = 0;
    m->zero_mfn = 1;
    m->text_mfn = 2;
    m->stack_mfn = 3;
    build_xen_gdt((uint64_t *)m->mem);
    build_tss(m->mem);
    /* All of machine memory is one Unicorn region, mapped once: Unicorn
     * 2.1.4 can give a region added after a smaller one the same internal
     * RAM offset as an earlier region, and translated blocks are found by
     * that offset, so per-domain regions could run one domain's code in
     * another.  Which frames a guest reaches is the page walk's business. */
    if (uc_mem_map_ptr(m->uc, 0, m->nr_frames << PAGE_SHIFT, UC_PROT_ALL, m->mem))
        return -1;
    m->m2p_paddr = m->nr_frames << PAGE_SHIFT;
    return uc_mem_map_ptr(m->uc, m->m2p_paddr, m2p_bytes, UC_PROT_READ, m->m2p) ? -1 : 0;
}

static int reserve_memory(struct xc_machine *m, uint64_t nr_frames)
{
    m->nr_frames = nr_frames;
    m->mem = reserve(nr_frames << PAGE_SHIFT);
    m->m2p = reserve(nr_frames * 8);
    m->frames = reserve(nr_frames * sizeof(struct page_info));
    if (!m->mem || !m->m2p || !m->frames)
        return -1;
    for (uint64_t f = 0; f < nr_frames; f++)
        m->frames[f].owner = OWNER_FREE;
    return 0;
}

static int open_engine(struct xc_machine *m)
{
    if (uc_open(UC_ARCH_X86, UC_MODE_64, &m->uc))
        return -1;
    return uc_ctl_tlb_mode(m->uc, UC_TLB_VIRTUAL) ? -1 : 0;
}

struct xc_machine *xc_machine_new(uint64_t nr_frames, uint64_t hv_frames)
{
    struct xc_machine *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->tlbflush_clock = 1;        /* a frame never stamped needs no flush */
    m->boot_tsc = __builtin_ia32_rdtsc();   /* system time 0 */
    m->work_budget = XC_WORK_BUDGET;
    m->offer_fsgsbase = 1;        /* Xen's PV default policy has it ('A') */
    if (reserve_memory(m, nr_frames) || open_engine(m) || map_hypervisor(m, hv_frames) ||
        set_control_state(m->uc) || add_hooks(m) || drop_to_ring3(m) ||
        xc_watchdog_start(m)) {
        xc_machine_free(m);
        return NULL;
    }
    xc_exits_init(m);
    return m;
}

void xc_machine_free(struct xc_machine *m)
{
    if (!m)
        return;
    if (m->watchdog)
        xc_watchdog_stop(m);
    if (m->ring3)
        uc_context_free(m->ring3);
    if (m->hook_ctx)
        uc_context_free(m->hook_ctx);
    xc_shadow_enable(m, 0);      /* the checker's TLB shadow (audit.c), if it was on */
    xc_sched_free(m);
    if (m->uc)
        uc_close(m->uc);
    if (m->mem)
        munmap(m->mem, m->nr_frames << PAGE_SHIFT);
    if (m->m2p)
        munmap(m->m2p, m->nr_frames * 8);
    if (m->frames)
        munmap(m->frames, m->nr_frames * sizeof(struct page_info));
    free(m);
}

/* Give frames [first, first+count) to a domain. */
int xc_frames_assign(struct xc_machine *m, uint64_t first, uint64_t count, uint16_t owner)
{
    if (first + count > m->nr_frames || first + count < first)
        return -1;
    for (uint64_t f = first; f < first + count; f++) {
        memset(&m->frames[f], 0, sizeof(m->frames[f]));
        m->frames[f].owner = owner;
    }
    return 0;
}

/*
 * Take frames back: zeroed, host memory freed, and every translation of
 * them dropped, so that code a dead domain ran there never runs for the
 * next owner of the frame.
 */
int xc_frames_release(struct xc_machine *m, uint64_t first, uint64_t count)
{
    if (first + count > m->nr_frames || first + count < first)
        return -1;
    for (uint64_t f = first; f < first + count; f++) {
        memset(&m->frames[f], 0, sizeof(m->frames[f]));
        m->frames[f].owner = OWNER_FREE;
        m->m2p[f] = ~0UL;
    }
    madvise(m->mem + (first << PAGE_SHIFT), count << PAGE_SHIFT, MADV_DONTNEED);
    m->code_flush_pending = 1;
    xc_request_flush(m);
    return 0;
}

struct xc_vcpu *xc_vcpu_new(struct xc_machine *m, uint16_t domid, uint16_t vcpu_id, uint32_t handle)
{
    struct xc_vcpu *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->domid = domid;
    v->vcpu_id = vcpu_id;
    v->handle = handle;
    v->kernel_mode = 1;
    if (uc_context_alloc(m->uc, &v->ctx)) {
        free(v);
        return NULL;
    }
    /* Start from ring 3: load the template, save it as this vcpu's state. */
    struct xc_vcpu *was = m->current;
    if (was)
        uc_context_save(m->uc, was->ctx);
    uc_context_restore(m->uc, m->ring3);
    uc_context_save(m->uc, v->ctx);
    if (was)
        uc_context_restore(m->uc, was->ctx);
    xc_vcpu_link(m, v);
    if (xc_sched_add(m, v)) {
        xc_vcpu_unlink(m, v);
        uc_context_free(v->ctx);
        free(v);
        return NULL;
    }
    return v;
}

void xc_vcpu_free(struct xc_machine *m, struct xc_vcpu *v)
{
    if (m->current == v)
        m->current = NULL;
    xc_sched_remove(m, v);
    xc_vcpu_unlink(m, v);
    uc_context_free(v->ctx);
    free(v);
}

/*
 * Make v the vcpu the engine runs: registers and address space.  Only the
 * TLB goes (with it Unicorn's jump cache, which finds blocks by virtual
 * address); translated blocks stay, because Unicorn finds them by machine
 * address, which says whose code they are.
 */
/*
 * The engine's TLB (QEMU's softmmu TLB) is direct-mapped and starts with
 * 256 entries; it is resized only when it is flushed (cputlb.c,
 * tlb_mmu_resize_locked): doubled when the most entries in use at a flush
 * within a 100 ms window passed 70%, shrunk to fit that most once a window
 * ended under 30%.  A guest that never flushes -- one domain walking a large
 * working set -- would miss on every page forever, so its size is modelled
 * here by the same rule, and a run that filled more than twice the model
 * (the TLB is surely thrashing) ends with a flush to let it grow.  The
 * model counts fills, not entries, so it can only overestimate the use;
 * it follows QEMU's window (a model that shrank at every lightly used
 * flush would force a flush each time a context switch came back to a
 * larger working set).  The fill that passes twice the model ends the run
 * at the next block (xc_end_run_at_block), so growth does not wait for the
 * slice's end.
 */
#define TLB_WINDOW_NS (100ULL * 1000 * 1000)

static uint64_t realtime_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);      /* QEMU's get_clock_realtime() */
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

/* QEMU's shrink: the next power of two over the window's most, doubled
 * if that would be over 70% used, never under the minimum. */
static uint64_t shrunk_size(uint64_t most)
{
    uint64_t size = TLB_MIN_ENTRIES;
    while (size < most)
        size *= 2;
    return most * 100 > size * 70 ? size * 2 : size;
}

static void model_tlb_resize(struct xc_machine *m)
{
    uint64_t used = m->tlb_fills < m->tlb_size ? m->tlb_fills : m->tlb_size;
    uint64_t now = realtime_ns(), size = m->tlb_size;
    int expired = now > m->tlb_window_ns + TLB_WINDOW_NS;
    if (used > m->tlb_window_max)
        m->tlb_window_max = used;
    if (m->tlb_window_max * 100 > size * 70)
        size = size < TLB_MAX_ENTRIES ? size * 2 : size;
    else if (m->tlb_window_max * 100 < size * 30 && expired)
        size = shrunk_size(m->tlb_window_max);
    if (size != m->tlb_size || expired) {
        m->tlb_window_ns = now;
        m->tlb_window_max = size != m->tlb_size ? 0 : used;
    }
    m->tlb_size = size;
    m->tlb_fills = 0;
}

static void tlb_flushed(struct xc_machine *m)
{
    uc_ctl_flush_tlb(m->uc);
    model_tlb_resize(m);
    m->tlbflush_clock++;          /* frames stamped before now have no translations left */
    xc_shadow_clear(m);
}

static void switch_to(struct xc_machine *m, struct xc_vcpu *v)
{
    if (m->current == v)
        return;
    if (m->current)
        uc_context_save(m->uc, m->current->ctx);
    uc_context_restore(m->uc, v->ctx);
    m->current = v;
    if (v->tsc_aux_stale)
        xc_load_tsc_aux(m, v);
    tlb_flushed(m);
}

/* The copies a guest registered (VCPUOP_register_vcpu_time_memory_area,
 * _runstate_memory_area): written at each slice's start, as Xen writes them
 * at each context switch; an address the guest cannot write is skipped. */
static void update_guest_copies(struct xc_machine *m, struct xc_vcpu *v, uint64_t system_time)
{
    struct {
        int32_t state;            /* RUNSTATE_running */
        uint32_t pad;
        uint64_t state_entry_time, time[4];
    } rs = {0, 0, system_time, {v->runstate[0], v->runstate[1], v->runstate[2], v->runstate[3]}};
    if (v->time_va)
        xc_copy_to_guest(m, v, v->time_va, m->mem + v->vcpu_info_ma + 32, XC_TIME_INFO_SIZE);
    if (v->runstate_va)
        xc_copy_to_guest(m, v, v->runstate_va, &rs, sizeof(rs));
}

/* Give the engine to v for a slice that starts at system_time: registers,
 * address space, clock, and a due event upcall if C can enter it.  Returns
 * 1 when an upcall is due that hypervisor/traps.py must deliver. */
int xc_enter(struct xc_machine *m, struct xc_vcpu *v, uint64_t system_time)
{
    switch_to(m, v);
    xc_update_time(m, v, system_time);
    update_guest_copies(m, v, system_time);
    return xc_upcall_ready(m, v) && !xc_bounce_event(m, v);
}

static void flush_tlb(struct xc_machine *m)
{
    tlb_flushed(m);
    if (m->code_flush_pending) {
        m->code_flush_pending = 0;
        uc_ctl_flush_tb(m->uc);
    }
}

/* Do a requested flush now, as the next run would (host-driven tests). */
void xc_settle(struct xc_machine *m)
{
    if (m->flush_pending) {
        m->flush_pending = 0;
        flush_tlb(m);
    }
}

/*
 * A handler changed mappings (or code, see xc_frame_written): flushing
 * inside the engine would free the block that is running, so leave the
 * engine now and flush before the guest's next instruction.
 */
void xc_request_flush(struct xc_machine *m)
{
    m->flush_pending = 1;
    if (m->current)
        m->current->stop = m->current->stop ? m->current->stop : XC_STOP_HYPERCALL;
    uc_emu_stop(m->uc);
}

/*
 * The hypervisor wrote frame mfn through its own mapping, which Unicorn
 * does not watch for self-modifying code: if code was ever fetched from
 * the frame, its translations may be stale, so drop them all (rare: guests
 * seldom have the hypervisor write into their code).
 */
void xc_frame_written(struct xc_machine *m, uint64_t mfn)
{
    if (mfn < m->nr_frames && (m->frames[mfn].flags & PGF_CODE)) {
        m->code_flush_pending = 1;
        xc_request_flush(m);
    }
}

/*
 * A guest never runs outside ring 3 (PV x86_64 kernels run there too, as
 * under Xen).  No path to ring 0 is known -- gates fault on the TSS's
 * stacks, every other far transfer keeps or raises the CPL -- so this is
 * the belt to those braces: a vcpu found in another ring is stopped, and
 * its domain crashes (hypervisor/traps.py on_engine_error), before any
 * other vcpu runs in the engine it may have changed.  Virtual-8086 mode
 * (ring 3, but real-mode selectors; QEMU's 32-bit iret enters it from
 * long mode: helper_ret_protected, return_to_vm86) is no PV guest's
 * either, and nothing here could bounce out of it.
 */
#define RFLAGS_VM 0x20000UL

static int left_ring3(struct xc_machine *m)
{
    uint64_t cs = 3, ss = 3, rflags = 0;
    uc_reg_read(m->uc, UC_X86_REG_CS, &cs);
    uc_reg_read(m->uc, UC_X86_REG_SS, &ss);
    uc_reg_read(m->uc, UC_X86_REG_RFLAGS, &rflags);
    if ((cs & 3) == 3 && (ss & 3) == 3 && !(rflags & RFLAGS_VM))
        return 0;
    m->current->stop = XC_STOP_NONE;
    return 1;
}

/* Run the current vcpu from its rip until a stop, a timeout or `blocks`
 * translated blocks (0: no limit).  A count of blocks, not instructions,
 * is as reproducible (the same code, entered at the same places, makes the
 * same blocks) and costs a block hook, where Unicorn's count of
 * instructions costs a hook on every instruction. */
int xc_run(struct xc_machine *m, uint64_t timeout_us, uint64_t blocks)
{
    uint64_t rip;
    int err;
    m->current->stop = XC_STOP_NONE;
    m->current->fault_rip = 0;
    m->exit_lookup = 0;
    if (m->flush_pending) {
        m->flush_pending = 0;
        flush_tlb(m);
    }
    uc_reg_read(m->uc, UC_X86_REG_RIP, &rip);
    xc_exits_settle(m, blocks > 0);
    m->block_budget = blocks;
    xc_watchdog_arm(m, timeout_us);
    err = uc_emu_start(m->uc, rip, XC_NEVER, 0, 0);
    m->block_budget = 0;
    xc_watchdog_disarm(m);
    xc_fault_in_hook_done(m);
    if (m->tlb_fills > 2 * m->tlb_size)
        tlb_flushed(m);      /* thrashing: let the engine's TLB grow */
    if (m->current->stop == XC_STOP_EXCEPTION) {
        xc_clear_exception(m);
        if (err == UC_ERR_INSN_INVALID)
            err = UC_ERR_OK;      /* reported as #UD */
    }
    /* A stop request makes Unicorn look up the exit address; its refused
     * lookup is reported as an exception the guest never raised. */
    if (err == UC_ERR_EXCEPTION && m->exit_lookup && m->current->stop != XC_STOP_EXCEPTION)
        err = UC_ERR_OK;
    return left_ring3(m) ? XC_ERR_RING : err;
}

const char *xc_strerror(int err)
{
    if (err == XC_ERR_RING)
        return "the vcpu left ring 3 or entered virtual-8086 mode in the engine";
    return uc_strerror(err);
}

/* Leave the engine at the next instruction boundary. */
void xc_stop(struct xc_machine *m)
{
    if (m->current)
        m->current->stop = XC_STOP_HYPERCALL;
    uc_emu_stop(m->uc);
}
