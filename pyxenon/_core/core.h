/*
 * The C core of pyxenon: the paths every guest instruction stream crosses
 * often enough that Python would be too slow, or that must hold even when a
 * guest misbehaves: the hypercall trap, exception capture, the guest
 * page-table walk on TLB miss.  Everything else lives in Python.
 *
 * One machine = one Unicorn engine shared by every domain of a host, as one
 * physical machine is shared by Xen's domains: machine memory is one frame
 * space, and a domain only reaches a frame through its own page tables.
 */
#ifndef PYXENON_CORE_H
#define PYXENON_CORE_H

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <unicorn/unicorn.h>

#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)

/* Xen's reserved virtual range on x86_64 (no guest mapping may cover it). */
#define HYPERVISOR_VIRT_START 0xFFFF800000000000UL
#define HYPERVISOR_VIRT_END 0xFFFF880000000000UL
#define MACH2PHYS_VIRT_START 0xFFFF800000000000UL
#define MACH2PHYS_VIRT_END 0xFFFF804000000000UL
/* Per-domain area: the GDT a vcpu runs with (16 pages, like Xen's). */
#define GDT_VIRT_START 0xFFFF820000000000UL
#define GDT_PAGES 16
#define GDT_GUEST_PAGES 14
/* Hypervisor text and the boot stack for the drop to ring 3. */
#define XEN_VIRT_START 0xFFFF82D040000000UL
#define XEN_CPUID_FIRST_LEAF 0x40000000u
#define XEN_CPUID_MAX_NUM_LEAVES 5u

/* emu_start's "until": never executed; its page is looked up when a run ends. */
#define XC_EXIT_PAGE (XEN_VIRT_START + 2 * PAGE_SIZE)
#define XC_NEVER (XC_EXIT_PAGE + 1)

/* Guest page-table entry bits (x86 long mode). */
#define _PAGE_PRESENT 0x001UL
#define _PAGE_RW 0x002UL
#define _PAGE_USER 0x004UL
#define _PAGE_ACCESSED 0x020UL
#define _PAGE_DIRTY 0x040UL
#define _PAGE_PSE 0x080UL
#define _PAGE_PWT 0x008UL
#define _PAGE_PCD 0x010UL
#define _PAGE_GLOBAL 0x100UL
#define _PAGE_AVAIL 0xE00UL               /* bits 9-11: the guest OS's own */
#define _PAGE_AVAIL_HIGH (0x7FFUL << 52)  /* bits 52-62: the guest OS's own... */
#define _PAGE_GNTTAB (1UL << 62)          /* ...but 62 marks a grant mapping (Xen's debug-build bit) */
#define _PAGE_GUEST_KERNEL (1UL << 52)    /* Xen's mark of a guest-kernel page in an L1 entry */
#define _PAGE_NX (1UL << 63)
#define PADDR_MASK 0x000FFFFFFFFFF000UL

/* #PF error code bits. */
#define PFEC_present 0x01
#define PFEC_write 0x02
#define PFEC_user 0x04
#define PFEC_reserved 0x08
#define PFEC_insn 0x10

/* Xen's hypercall numbers (xen.h) for the ones C answers. */
#define HYPERVISOR_mmu_update 1
#define HYPERVISOR_multicall 13
#define HYPERVISOR_iret 23
#define HYPERVISOR_update_va_mapping 14
#define HYPERVISOR_set_timer_op 15
#define HYPERVISOR_xen_version 17
#define HYPERVISOR_mmuext_op 26
#define HYPERVISOR_sched_op 29
#define HYPERVISOR_event_channel_op 32
#define DOMID_SELF 0x7FF0

/* Why the engine stopped, as the run loop reads it from the vcpu. */
enum xc_stop {
    XC_STOP_NONE = 0,      /* slice over or nothing to report */
    XC_STOP_HYPERCALL = 1, /* a handler asked the scheduler to look */
    XC_STOP_EXCEPTION = 2, /* vector/error_code/cr2 hold a guest fault */
    XC_STOP_DEBUG = 3,     /* a debugger's breakpoint, watchpoint or step (debug.c) */
};

/* xc_run's own error, beside Unicorn's uc_err values. */
#define XC_ERR_RING 1000

/* Pseudo-vector: a `syscall` from guest user mode, for the guest kernel. */
#define XC_VECTOR_SYSCALL 256
/* Flag on a vector below 32: `int n`, not exception n (traps.c). */
#define XC_VECTOR_SOFT 0x200
/* error_code of an exception the engine raised: the CPU's own, read from
 * the saved context once the engine stopped (xc_clear_exception) */
#define XC_EC_ENGINE 0xFFFFFFFFu
#define XC_EC_VECTORS ((1u << 8) | (1u << 10) | (1u << 11) | (1u << 12) | (1u << 13) | \
                       (1u << 14) | (1u << 17))   /* vectors with an error code */

/* Xen's hypercall_preempt_check, counted in work instead of time so that a
 * deterministic run repeats (xc_machine.work, reset at each trap): a unit
 * is a byte of guest memory a handler copies or validates (a page-table
 * entry visited costs 8, a whole L1 4096); a batch or multicall entry costs
 * XC_ENTRY_COST.  A trap past XC_WORK_BUDGET continues (Xen's hypercall
 * continuation; -ERESTART part-way through a table), so no one trap holds
 * the engine for long: about a millisecond of C validation. */
#define XC_WORK_BUDGET (512 * 1024)
#define XC_ENTRY_COST 64
#define XC_PTE_COST 8

/* Frame owners that are not domains (Xen's DOMID_ values). */
#define OWNER_XEN 0x7FF2
#define OWNER_FREE 0x7FF4 /* DOMID_INVALID: nobody owns it */

/* Frame types (page_info.type); hypervisor/mm.py uses these values. */
#define PGT_NONE 0
#define PGT_L1 1
#define PGT_L2 2
#define PGT_L3 3
#define PGT_L4 4
#define PGT_SEG_DESC 5
#define PGT_WRITABLE 6

/*
 * One machine frame, as Xen's struct page_info (xen/arch/x86/include/asm/mm.h):
 * a single-threaded engine needs no locked or in-flight states, so what is
 * left is the type, its count and the validation state.
 */
struct page_info {
    uint32_t count;      /* general references */
    uint32_t type_count; /* references needing the current type */
    uint16_t owner;      /* domid, OWNER_XEN or OWNER_FREE */
    uint8_t type;        /* PGT_*: kept when type_count drops to 0, as Xen keeps it,
                            so the next change of type knows what the frame was */
    uint8_t flags;       /* PGF_* */
    int16_t linear;      /* >0: linear entries this table holds; <0: its uses as one */
    uint16_t nr_validated; /* entries validated so far (PGF_PARTIAL) */
    uint32_t tlbflush_stamp; /* xc_machine.tlbflush_clock when its last type ref went */
};

/* page_info.flags: bit 0 is hypervisor/mm.py's PINNED. */
#define PGF_PINNED 0x01
#define PGF_CODE 0x02 /* instructions were fetched from it: translations may exist */
#define PGF_VALIDATED 0x04  /* PGT_validated: a page table's entries hold their refs */
#define PGF_PARTIAL 0x08    /* PGT_partial: (de)validation stopped at nr_validated */
#define PGF_PARTIAL_SET 0x10 /* PTF_partial_set: entry nr_validated itself is partial */

/* xc_machine.plant: bugs the invariant checker must catch (tests/test_mm_properties.py). */
#define PLANT_TYPE_AFTER_VALIDATION 1  /* bug 1: the type was recorded only once validated */
#define PLANT_NO_TYPE_CHANGE_FLUSH 2   /* bug 2: no flush when a frame's type changes */

/* Xen's -ERESTART: the operation stopped part-way and continues when called again. */
#ifndef ERESTART
#define ERESTART 85
#endif

/*
 * Where a send on one port of a domain lands, for the C fast path: an
 * interdomain channel whose remote domain has one vcpu.  hypervisor/
 * events.py keeps these in step with its ports (it stays the authority);
 * peer == NULL sends the call to Python.
 */
struct xc_link {
    struct xc_vcpu *peer;     /* the vcpu the remote port notifies */
    uint64_t peer_shared_ma;  /* machine address of the remote shared_info */
    uint32_t peer_port;       /* the remote port */
};

/* A domain's hypercall statistics (perfc.h): Xen's perfc hypercalls array,
 * split by path.  Slot XC_PERFC_NR counts numbers past the table. */
#define XC_PERFC_NR 64
#define XC_SAMPLE 63          /* one fast-path call in XC_SAMPLE+1 is timed */
struct xc_perfc_call {
    uint64_t calls;       /* traps with this number */
    uint64_t python;      /* of them, those the Python handlers answered */
    uint64_t py_cycles;   /* TSC cycles those spent, every one timed */
    uint64_t fast_timed;  /* fast-path calls timed (sampled) */
    uint64_t fast_cycles; /* and their cycles */
};
struct xc_perfc {
    struct xc_perfc_call calls[XC_PERFC_NR + 1];
    uint64_t events_sent; /* EVTCHNOP_send traps that returned 0 */
    uint64_t tick;        /* the sampling count */
    uint64_t msr[2];      /* rdmsr, wrmsr the guest kernel made that C answered (msr.c) */
    uint64_t msr_python[2]; /* and those hypervisor/emulate.py answered */
};

/* The trace buffer (Xen's t_buf): one record per hypercall trap. */
struct xc_trec {
    uint64_t tsc;         /* host TSC at the trap */
    uint64_t nr, a1, a2, a3;
    int64_t rc;
    uint32_t cycles;      /* how long it took (saturated) */
    uint16_t domid, vcpu_id;
    uint32_t python;      /* 1: the Python handlers answered */
    uint32_t pad;
};
struct xc_tbuf {
    uint64_t size;        /* records, a power of two */
    uint64_t prod;        /* records written (C) */
    uint64_t cons;        /* records read (Python) */
    uint64_t lost;        /* records lost to a full buffer */
    struct xc_trec *recs;
};

/* xc_vcpu.poll_port: a poll on a set of ports that hypervisor/vcpu.py holds. */
#define XC_POLL_SET 0xFFFFFFFFu

struct xc_vcpu {
    uint64_t cr3;         /* machine frame of the top-level page table */
    uint64_t kernel_cr3;  /* guest kernel's base pointer */
    uint64_t user_cr3;    /* guest user's base pointer (0 = none) */
    uint64_t cr2;         /* faulting address of a pending #PF */
    uint64_t hypercalls;  /* hypercalls taken */
    uint64_t call_digest; /* a digest of the guest's hypercalls so far (traps.c) */
    uint64_t fault_rip;   /* rip to report for a fault found mid-instruction (0: none) */
    uint64_t gdt_mfn[GDT_GUEST_PAGES]; /* guest GDT frames (0 = none) */
    uint32_t gdt_frames;  /* how many of gdt_mfn are set */
    uint32_t vector;      /* pending exception vector */
    uint32_t error_code;  /* its error code */
    int32_t stop;         /* enum xc_stop */
    uint32_t handle;      /* index of the Python Vcpu, for the callback */
    uint16_t domid;
    uint16_t vcpu_id;
    uint32_t kernel_mode; /* guest kernel (1) or guest user (0) mode */
    uint32_t evtchn_fifo; /* its domain is on the FIFO event ABI: events.c declines */
    uint64_t event_callback; /* the guest's event callback address (0: none) */
    uint64_t vcpu_info_ma;   /* machine address of this vcpu's vcpu_info */
    int32_t blocked;      /* blocked or polling: the scheduler passes it by */
    uint32_t poll_port;   /* polling this port; 0: a plain block; or XC_POLL_SET */
    uint64_t wake_at;     /* system time (ns) the block or poll ends; 0: never */
    uint64_t timer_at;    /* set_timer_op / singleshot deadline (ns); 0: none */
    uint32_t max_ports;   /* the domain's ports, when it has one vcpu; else 0 */
    int32_t domain_running; /* its domain runs (not paused or shut down) */
    uint32_t nr_links;    /* entries in links */
    uint64_t shared_ma;   /* machine address of the domain's shared_info */
    struct xc_link *links; /* per port of the domain, shared by its vcpus; or NULL */
    struct xc_vcpu *next, *prev; /* every vcpu of the machine, in creation order */
    uint64_t runstate[4]; /* ns spent running, runnable, blocked, offline */
    uint64_t runstate_va; /* guest copy of vcpu_runstate_info, updated per slice (0: none) */
    uint64_t time_va;     /* guest copy of vcpu_time_info, updated per slice (0: none) */
    uint64_t old_guest_table; /* a table whose put is unfinished (Xen's arch.old_guest_table), 0: none */
    uint64_t old_guest_ptpg;  /* the table that referenced it (linear accounting), 0: none */
    int32_t old_guest_partial; /* it holds a partial ref (PTF_partial_set), not a full one */
    uint32_t iopl;        /* virtual IOPL (PHYSDEVOP_set_iopl), 0-3 */
    uint32_t iobmp_limit; /* ports the I/O bitmap covers (PHYSDEVOP_set_iobitmap) */
    uint64_t iobmp;       /* its guest address */
    struct xc_domio *io;  /* the domain's emulated port state; NULL: every port #GPs */
    uint64_t vtsc_last;   /* the last emulated TSC it read (pv_soft_rdtsc) */
    uint64_t dbg_addr;    /* XC_STOP_DEBUG: the pc, or the data address, that stopped it */
    uint64_t dbg_skip_pc; /* a breakpoint here is passed once (resuming from it) */
    uint32_t dbg_kind;    /* XC_STOP_DEBUG: what stopped it (XC_DBG_*) */
    uint32_t dbg_skip;    /* dbg_skip_pc is in force */
    uint32_t dbg_steps;   /* instructions begun since a debugger step started */
    uint32_t dbg_pending; /* a watchpoint hit, to stop at the next instruction */
    uint32_t cpuid_faulting; /* MSR_INTEL_MISC_FEATURES_ENABLES.CPUID_FAULTING (guest_wrmsr) */
    uint32_t noncanonical; /* the #GP just noted is a non-canonical data access (mm.c) */
    /* The guest's own %dr0-3/%dr7 breakpoints (debug.c's XC_DBG_GUEST_*): */
    uint32_t db_status;   /* B0-B3 its hooks found, for %dr6 (do_debug) */
    uint32_t db_pending;  /* a data/I/O hit: #DB at the next instruction (2: after one more) */
    uint32_t db_hooked;   /* the #DB raised is the hooks', not the CPU's single step */
    uint32_t db_skip;     /* the instruction breakpoint at db_skip_pc is passed once (RF) */
    uint64_t db_skip_pc;
    uint64_t db_prev_pc;  /* the instruction the guest boundary hook saw last */
    uint64_t db_io_port[4]; /* I/O breakpoints (dr7_emul's R/W = 10): port and length */
    uint32_t db_io_len[4];
    uint32_t db_io;       /* which of dr0-3 are armed I/O breakpoints */
    uint32_t fsgsbase;    /* the guest's CR4.FSGSBASE (emulate.py's write_cr) */
    uc_context *ctx;      /* registers while the vcpu is not running */
    struct xc_perfc *perfc; /* its domain's hypercall statistics (perfc.h); NULL: none */
    uint32_t seq;         /* its creation slot: its bit in the run queue (runq.c) */
    uint32_t heap_pos;    /* its place in the deadline heap (runq.c), or none */
    uint64_t deadline;    /* the deadline it is in the heap for (0: none) */
    uint64_t gs_base_other; /* the GS base of the guest mode not running (Xen's gs_base_user) */
    uint32_t tsc_aux;     /* MSR_TSC_AUX (guest_wrmsr's msrs->tsc_aux) */
    uint32_t tsc_aux_stale; /* written while not running: the engine's is old (msr.c) */
};

/* A domain's port I/O state Xen keeps in struct arch_domain, shared by its
 * vcpus (Python allocates one per domain). */
struct xc_domio {
    uint32_t pci_cf8;     /* the latched CONFIG_ADDRESS (arch.pci_cf8) */
    uint32_t cmos_idx;    /* the latched RTC index (arch.cmos_idx) */
    uint32_t arch_iopl;   /* VMASST_TYPE_architectural_iopl is on */
};

struct xc_machine {
    uc_engine *uc;
    uint8_t *mem;         /* machine memory: frame f at mem + (f << 12) */
    uint64_t nr_frames;   /* size of the machine frame space */
    uint64_t *m2p;        /* machine-to-phys table (guest readable) */
    uint64_t m2p_paddr;   /* where the engine sees the m2p table */
    struct page_info *frames;
    struct xc_vcpu *current;
    struct xc_vcpu *first, *last; /* the vcpu list (sched.c) */
    uint64_t xen_gdt_mfn; /* Xen's reserved GDT page */
    uint64_t zero_mfn;    /* read-only zero page for unused GDT slots */
    uint64_t text_mfn;    /* hypervisor text: the iretq to ring 3 */
    uint64_t stack_mfn;   /* hypervisor stack for that iretq */
    uc_context *ring3;    /* template state: long mode, CPL 3 */
    int exit_lookup;      /* Unicorn looked up XC_NEVER while stopping */
    int flush_pending;    /* flush the TLB before the next run */
    int code_flush_pending; /* drop translated code before the next run */
    int fast_paths;       /* handle the hypercalls fast.c knows in C */
    pthread_t watchdog;   /* ends time slices (watchdog.c) */
    int watchdog_quit;
    uint64_t run_gen, stopped_gen, deadline_ns;
    uint64_t preempt_gen;         /* the run the watchdog wants ended (xc_hook_block) */
    int watchdog_parked;          /* the thread waits on watchdog_wake, not ticking */
    pthread_mutex_t watchdog_lock;
    pthread_cond_t watchdog_wake;
    long exception_field; /* offset of old_exception in a saved context (<0: unknown) */
    long error_code_field; /* offset of the CPU's error_code in one (<0: unknown) */
    int64_t xen_version;  /* what XENVER_version answers */
    uint64_t boot_tsc;    /* the TSC at boot: system time 0 (time.c) */
    uint64_t slice_stime; /* system time the running slice started at */
    int vtsc;             /* the TSC is emulated (deterministic mode) */
    uint64_t py_calls;    /* hypercalls that went to Python */
    uint64_t slices;      /* slices run */
    uint64_t chain_ns;    /* how long xc_run_chain may go on in C (0: never chain) */
    uint32_t tlbflush_clock; /* TLB flushes so far: page_info.tlbflush_stamp's clock */
    uint64_t tlb_fills;      /* guest TLB fills since the last flush */
    uint64_t tlb_misses;     /* guest TLB fills in all (statistics) */
    uint64_t tlb_size;       /* what the engine's TLB has grown to, as modelled (tlb_flushed) */
    uint64_t tlb_window_ns;  /* when the model's resize window began (QEMU's 100 ms) */
    uint64_t tlb_window_max; /* the most fills one flush saw in that window */
    uint64_t work;        /* work done in this trap (XC_WORK_BUDGET's units) */
    uint64_t work_budget; /* past it, a preemptible operation stops (XC_WORK_BUDGET) */
    struct xc_tlb_shadow *shadow; /* what the engine's TLB may hold (checking only), or NULL */
    uint32_t plant;       /* the checker's own tests only: reintroduce a fixed bug (PLANT_*) */
    uint32_t tsc_mul;     /* TSC to ns: vcpu_time_info's tsc_to_system_mul */
    int32_t tsc_shift;    /* and its tsc_shift */
    uc_hook hooks[8];
    uint8_t *no_exit_request; /* Unicorn's switch for per-access exit checks (exits.c), or NULL */
    int exits_precise;    /* new translations check for a stop after every access */
    int precise_users;    /* hooks that need that (breakpoints) */
    int counting;         /* the block hook is there for counted runs (exits.c) */
    uint64_t block_budget; /* blocks the counted run may still begin (0: not counted) */
    int hook_fault;       /* an instruction hook faulted its instruction: hook_ctx holds the registers */
    uc_context *hook_ctx; /* the registers at that instruction */
    struct xc_tbuf *tbuf; /* the hypercall trace buffer (perfc.h); NULL: no trace */
    /* runq.c: the vcpus by creation slot, a bit for each that can run (and
     * a bit for each word that has one), the heap of deadlines */
    struct xc_vcpu **slots;
    uint64_t *ready, *ready_summary;
    struct xc_vcpu **heap, **due;
    uint32_t *due_stack;
    uint32_t slot_cap, nr_slots, nr_live, heap_len;
    uint64_t sched_visits;  /* run-queue words and heap entries the scheduler's
                               questions read (runq.c): its work, for tests */
    int offer_fsgsbase;   /* the policy offers FSGSBASE (cpuid.c; on by default, as Xen's) */
};

/* machine.c: the interface the Python side uses (see build_core.py) */
struct xc_machine *xc_machine_new(uint64_t nr_frames, uint64_t hv_frames);
void xc_machine_free(struct xc_machine *m);
int xc_frames_assign(struct xc_machine *m, uint64_t first, uint64_t count, uint16_t owner);
int xc_frames_release(struct xc_machine *m, uint64_t first, uint64_t count);
struct xc_vcpu *xc_vcpu_new(struct xc_machine *m, uint16_t domid, uint16_t vcpu_id, uint32_t handle);
void xc_vcpu_free(struct xc_machine *m, struct xc_vcpu *v);
int xc_enter(struct xc_machine *m, struct xc_vcpu *v, uint64_t system_time);
void xc_request_flush(struct xc_machine *m);
void xc_settle(struct xc_machine *m);
void xc_frame_written(struct xc_machine *m, uint64_t mfn);
int xc_run(struct xc_machine *m, uint64_t timeout_us, uint64_t count);
void xc_stop(struct xc_machine *m);
void xc_clear_exception(struct xc_machine *m);
const char *xc_strerror(int err);

/* debug.c: the host debugger's hooks, set only while one is in force.
 * Kinds are gdb's Z types, then the step and the instruction boundary. */
#define XC_DBG_SW 0
#define XC_DBG_HW 1
#define XC_DBG_WRITE 2
#define XC_DBG_READ 3
#define XC_DBG_ACCESS 4
#define XC_DBG_STEP 5
#define XC_DBG_BOUNDARY 6
/* The guest's own breakpoints from %dr0-3/%dr7 (its #DB, not the debugger's). */
#define XC_DBG_GUEST_X 7
#define XC_DBG_GUEST_W 8
#define XC_DBG_GUEST_RW 9
#define XC_DBG_GUEST_BOUNDARY 10
struct xc_dbg_point;
struct xc_dbg_point *xc_dbg_insert_guest(struct xc_machine *m, struct xc_vcpu *v, int kind,
                                         int bp, uint64_t va, uint64_t ma, uint64_t len);
void xc_db_io_check(struct xc_vcpu *v, uint32_t port, int size);
struct xc_dbg_point *xc_dbg_insert(struct xc_machine *m, struct xc_vcpu *v, int kind,
                                   uint64_t va, uint64_t ma, uint64_t len);
void xc_dbg_remove(struct xc_machine *m, struct xc_dbg_point *p);
int64_t xc_dbg_translate(struct xc_machine *m, struct xc_vcpu *v, uint64_t va, int write);

/* mm.c */
int xc_walk_peek(struct xc_machine *m, uint64_t cr3, uint64_t va, uint64_t *mfn);
uint64_t xc_gdt_frame(struct xc_machine *m, struct xc_vcpu *v, uint64_t page);

/* traps.c */
int xc_code64(struct xc_machine *m, struct xc_vcpu *v);

/* time.c; vcpu_time_info's size (it sits in vcpu_info at 32) */
#define XC_TIME_INFO_SIZE 32
uint64_t xc_scale_delta(uint64_t delta, uint32_t mul, int32_t shift);
uint64_t xc_system_time(struct xc_machine *m);
void xc_update_time(struct xc_machine *m, struct xc_vcpu *v, uint64_t system_time);
int xc_emulate_rdtsc(struct xc_machine *m, struct xc_vcpu *v);
void xc_set_tsc_hz(struct xc_machine *m, uint64_t hz);
int xc_set_vtsc(struct xc_machine *m);
uint64_t xc_guest_tsc(struct xc_machine *m, struct xc_vcpu *v);

/* msr.c: xc_msr_write's answers */
#define XC_MSR_GP 0
#define XC_MSR_DONE 1
#define XC_MSR_PYTHON 2
int xc_msr_read(struct xc_machine *m, struct xc_vcpu *v, uint32_t index, uint64_t *value);
int xc_msr_write(struct xc_machine *m, struct xc_vcpu *v, uint32_t index, uint64_t value);
int xc_emulate_msr(struct xc_machine *m, struct xc_vcpu *v);
void xc_load_tsc_aux(struct xc_machine *m, struct xc_vcpu *v);

/* sched.c */
void xc_vcpu_link(struct xc_machine *m, struct xc_vcpu *v);
void xc_vcpu_unlink(struct xc_machine *m, struct xc_vcpu *v);
int xc_run_chain(struct xc_machine *m, uint64_t timeout_us);

/* runq.c */
int xc_ready(struct xc_machine *m, uint32_t *handles, int max);
int xc_due(struct xc_machine *m, uint64_t now);
int xc_due_list(struct xc_machine *m, uint64_t now, uint32_t *handles, int max);
uint64_t xc_next_wake(struct xc_machine *m);
struct xc_vcpu *xc_runq_next(struct xc_machine *m, struct xc_vcpu *v);
void xc_sched_update(struct xc_machine *m, struct xc_vcpu *v);
int xc_sched_add(struct xc_machine *m, struct xc_vcpu *v);
void xc_sched_remove(struct xc_machine *m, struct xc_vcpu *v);
void xc_sched_free(struct xc_machine *m);

void xc_hook_block(uc_engine *uc, uint64_t address, uint32_t size, void *data);
/* exits.c */
void xc_exits_init(struct xc_machine *m);
void xc_exits_precise(struct xc_machine *m, int delta);
void xc_exits_settle(struct xc_machine *m, int counting);
int xc_exits_at_blocks(struct xc_machine *m);
void xc_fault_in_hook(struct xc_machine *m, uint32_t vector, uint32_t error_code);
void xc_fault_in_hook_done(struct xc_machine *m);
void xc_end_run_at_block(struct xc_machine *m);
/* watchdog.c */
int xc_watchdog_start(struct xc_machine *m);
void xc_watchdog_stop(struct xc_machine *m);
void xc_watchdog_arm(struct xc_machine *m, uint64_t timeout_us);
void xc_watchdog_disarm(struct xc_machine *m);

/* fast.c */
int xc_fast_hypercall(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a, int64_t *rc);
int xc_fast_two_args(uint64_t nr);

/* events.c */
int xc_fast_evtchn_send(struct xc_machine *m, struct xc_vcpu *v, uint64_t arg, int64_t *rc);
int xc_fast_poll(struct xc_machine *m, struct xc_vcpu *v, uint64_t arg, int64_t *rc);
int xc_fast_evtchn_unmask(struct xc_machine *m, struct xc_vcpu *v, uint64_t arg, int64_t *rc);

/* pagetype.c: type references, validation state, the L1 rules */
#define PTF_PARTIAL_SET 0x1    /* the reference being put is a partial one */
#define PTF_PREEMPTIBLE 0x4
#define PTF_DEFER 0x8          /* leave the put to the vcpu's old_guest_table */
#define PTF_RETAIN_REF_ON_RESTART 0x10
int xc_get_page(struct xc_machine *m, uint64_t mfn, uint16_t domid);
void xc_put_page(struct xc_machine *m, uint64_t mfn);
int xc_get_type(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int type, int preemptible);
int xc_put_type(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int flags, int64_t ptpg);
int xc_get_page_and_type(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, uint16_t domid,
                         int type, int flags);
int xc_put_page_and_type(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int preemptible);
int xc_preempt_check(struct xc_machine *m);
int xc_get_l1e(struct xc_machine *m, struct xc_vcpu *v, uint16_t domid, uint64_t e);
void xc_put_l1e(struct xc_machine *m, struct xc_vcpu *v, uint64_t e);
uint64_t xc_adjust_l1e(uint64_t e);
int xc_l1_update(struct xc_machine *m, struct xc_vcpu *v, uint64_t table, uint32_t index,
                 uint64_t new, int preserve_ad);
int xc_promote_l1(struct xc_machine *m, struct xc_vcpu *v, uint64_t table);
void xc_demote_l1(struct xc_machine *m, struct xc_vcpu *v, uint64_t table);
int xc_check_descriptor(uint64_t *desc);

/* ptlevels.c: L2-L4 entries, linear tables, the operations on tables */
int xc_promote_table(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int level,
                     int preemptible);
int xc_demote_table(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int level,
                    int preemptible);
int xc_mod_entry(struct xc_machine *m, struct xc_vcpu *v, uint64_t table, uint32_t index,
                 uint64_t new, int preserve_ad);
int xc_pin(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int level);
int xc_unpin(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn);
int xc_new_baseptr(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int user);
int xc_put_old_guest_table(struct xc_machine *m, struct xc_vcpu *v);
int xc_mmu_normal_update(struct xc_machine *m, struct xc_vcpu *v, uint64_t ma, uint64_t val,
                         int preserve_ad);

/* audit.c: the whole-state invariant checker, and the TLB shadow it needs */
void xc_shadow_record(struct xc_machine *m, uint64_t va, uint64_t paddr, uint32_t perms);
int xc_shadow_entry(struct xc_machine *m, uint32_t i, uint64_t *va, uint64_t *mfn,
                    uint16_t *domid);
void xc_shadow_clear(struct xc_machine *m);
int xc_shadow_enable(struct xc_machine *m, int on);
/* One finding of xc_audit: what (audit.c's V_*), which frame, a detail. */
struct xc_violation {
    uint32_t code;
    uint32_t pad;
    uint64_t mfn;
    uint64_t detail;
};
int xc_audit(struct xc_machine *m, const uint64_t *ranges, uint32_t nr_ranges,
             const uint64_t *extra, uint64_t n_extra, struct xc_violation *out, int max);

/* regs.c */
const char *xc_reg_names(void);
int xc_regs(struct xc_machine *m, struct xc_vcpu *v, int write, uint64_t *vals);
int xc_set_rip(struct xc_machine *m, struct xc_vcpu *v, uint64_t rip);
uint64_t xc_vcpu_reg(struct xc_machine *m, struct xc_vcpu *v, int id);
int xc_write_rip(uc_engine *uc, uint64_t rip);
int xc_emulate_cli_sti(struct xc_machine *m, struct xc_vcpu *v);
int xc_vcpu_set_reg(struct xc_machine *m, struct xc_vcpu *v, int id, uint64_t value);
uint64_t xc_get_cr0(struct xc_machine *m, struct xc_vcpu *v);
int xc_set_cr0(struct xc_machine *m, struct xc_vcpu *v, uint64_t cr0);
uint64_t xc_host_tsc(void);

/* mm.c */
bool xc_tlb_fill(uc_engine *uc, uint64_t va, uc_mem_type type,
                 uc_tlb_entry *e, void *data);
int xc_tlb_probe(struct xc_machine *m, struct xc_vcpu *v, uint64_t va, int write);
int64_t xc_translate(struct xc_machine *m, struct xc_vcpu *v, uint64_t va,
                     int write);
int xc_copy_from_guest(struct xc_machine *m, struct xc_vcpu *v, void *dst,
                       uint64_t va, uint64_t len);
int xc_copy_to_guest(struct xc_machine *m, struct xc_vcpu *v, uint64_t va,
                     const void *src, uint64_t len);

/* mmu.c */
int xc_fast_update_va_mapping(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a,
                              int64_t *rc);
int xc_fast_mmuext(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a, int64_t *rc);
int xc_fast_mmu_update(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a, int64_t *rc);

/* traps.c */
void xc_hook_syscall(uc_engine *uc, void *data);
int xc_upcall_ready(struct xc_machine *m, struct xc_vcpu *v);
int xc_bounce_event(struct xc_machine *m, struct xc_vcpu *v);
int64_t xc_hypercall(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a);
int64_t xc_python(struct xc_machine *m, struct xc_vcpu *v, uint64_t nr, uint64_t a1,
                  uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5);
void xc_hook_intr(uc_engine *uc, uint32_t intno, void *data);
void xc_raise(struct xc_machine *m, uint32_t vector, uint32_t error_code);
bool xc_hook_invalid(uc_engine *uc, void *data);
uint32_t xc_hook_in(uc_engine *uc, uint32_t port, int size, void *data);
void xc_hook_out(uc_engine *uc, uint32_t port, int size, uint32_t value, void *data);
int xc_hook_cpuid(uc_engine *uc, void *data);
void xc_cpuid(struct xc_machine *m, uint32_t leaf, uint32_t subleaf, uint32_t *r);
uint32_t xc_io_read(struct xc_machine *m, struct xc_vcpu *v, uint32_t port, int size, int *ok);
int xc_io_write(struct xc_machine *m, struct xc_vcpu *v, uint32_t port, int size, uint32_t value);

/* The Python side of the hypercall path (cffi extern "Python+C"). */
int64_t xc_py_hypercall(uint32_t handle, uint64_t nr, uint64_t a1,
                        uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5);

#endif
