"""cffi build script for the C core (pyxenon._core._xcore).

The core is compiled against the headers that the unicorn wheel ships and
linked against its libunicorn.so.2, so the C hooks run inside the very engine
library the host loads; no system Unicorn is needed.

A fuzzing build (PYXENON_FUZZ_BUILD=1, docs/FUZZING.md) compiles the core
with clang's -fsanitize=fuzzer-no-link, so libFuzzer (through atheris)
sees which C branches an input reached.  Such a core needs libFuzzer's
runtime loaded first (LD_PRELOAD of atheris's ubsan_with_fuzzer.so), so it
goes into its own, non-editable, installation.
"""
import os
import shutil

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["machine.c", "mm.c", "traps.c", "regs.c", "pagetype.c", "ptlevels.c", "audit.c", "fast.c",
           "events.c", "mmu.c", "sched.c", "runq.c", "msr.c", "watchdog.c", "cpuid.c", "io.c", "debug.c",
           "time.c", "exits.c"]

CDEF = """
#define PGT_NONE 0
#define PGT_L1 1
#define PGT_L2 2
#define PGT_L3 3
#define PGT_L4 4
#define PGT_SEG_DESC 5
#define PGT_WRITABLE 6
#define _PAGE_GNTTAB 4611686018427387904
#define PGF_PINNED 1
#define PGF_CODE 2
#define PGF_VALIDATED 4
#define PGF_PARTIAL 8
#define PGF_PARTIAL_SET 16
#define ERESTART 85
#define PTF_PREEMPTIBLE 4
#define PLANT_TYPE_AFTER_VALIDATION 1
#define PLANT_NO_TYPE_CHANGE_FLUSH 2
struct page_info {
    uint32_t count; uint32_t type_count; uint16_t owner; uint8_t type; uint8_t flags;
    int16_t linear; uint16_t nr_validated; uint32_t tlbflush_stamp;
};
struct xc_violation { uint32_t code; uint32_t pad; uint64_t mfn; uint64_t detail; };
struct xc_vcpu;
struct xc_link;
struct xc_vcpu {
    uint64_t cr3; uint64_t kernel_cr3; uint64_t user_cr3; uint64_t cr2;
    uint64_t hypercalls; uint64_t call_digest; uint64_t fault_rip;
    uint64_t gdt_mfn[14]; uint32_t gdt_frames;
    uint32_t vector; uint32_t error_code; int32_t stop; uint32_t handle;
    uint16_t domid; uint16_t vcpu_id; uint32_t kernel_mode; uint32_t evtchn_fifo;
    uint64_t event_callback; uint64_t vcpu_info_ma;
    int32_t blocked; uint32_t poll_port; uint64_t wake_at; uint64_t timer_at; uint32_t max_ports;
    int32_t domain_running;
    uint32_t nr_links; uint64_t shared_ma; struct xc_link *links;
    uint64_t runstate[4]; uint64_t runstate_va; uint64_t time_va;
    uint64_t old_guest_table; uint64_t old_guest_ptpg; int32_t old_guest_partial;
    uint32_t iopl; uint32_t iobmp_limit; uint64_t iobmp; struct xc_domio *io; uint64_t vtsc_last;
    struct xc_perfc *perfc;
    uint64_t dbg_addr; uint64_t dbg_skip_pc; uint32_t dbg_kind; uint32_t dbg_skip;
    uint32_t dbg_steps; uint32_t dbg_pending;
    uint32_t cpuid_faulting; uint32_t noncanonical; uint32_t seq;
    uint64_t gs_base_other; uint32_t tsc_aux;
    uint32_t db_status; uint32_t db_pending; uint32_t db_hooked; uint32_t db_skip;
    uint64_t db_skip_pc; uint64_t db_prev_pc; uint64_t db_io_port[4]; uint32_t db_io_len[4];
    uint32_t db_io; uint32_t fsgsbase;
    ...;
};
#define XC_PERFC_NR 64
#define XC_SAMPLE 63
struct xc_perfc_call {
    uint64_t calls; uint64_t python; uint64_t py_cycles; uint64_t fast_timed;
    uint64_t fast_cycles;
};
struct xc_perfc {
    struct xc_perfc_call calls[65]; uint64_t events_sent; uint64_t tick; uint64_t msr[2];
    uint64_t msr_python[2];
};
struct xc_trec {
    uint64_t tsc; uint64_t nr; uint64_t a1; uint64_t a2; uint64_t a3; int64_t rc;
    uint32_t cycles; uint16_t domid; uint16_t vcpu_id; uint32_t python; uint32_t pad;
};
struct xc_tbuf {
    uint64_t size; uint64_t prod; uint64_t cons; uint64_t lost; struct xc_trec *recs;
};
struct xc_domio { uint32_t pci_cf8; uint32_t cmos_idx; uint32_t arch_iopl; };
#define XC_POLL_SET 4294967295
#define XC_WORK_BUDGET 524288
#define XC_ENTRY_COST 64
#define XC_ERR_RING 1000
struct xc_link { struct xc_vcpu *peer; uint64_t peer_shared_ma; uint32_t peer_port; };
typedef ... uc_engine;
struct xc_machine {
    uc_engine *uc; uint8_t *mem; uint64_t nr_frames; uint64_t *m2p; struct page_info *frames;
    struct xc_vcpu *current;
    int flush_pending; int code_flush_pending;
    int fast_paths; long exception_field; long error_code_field; int64_t xen_version;
    uint64_t boot_tsc; uint64_t slice_stime; int vtsc; uint64_t py_calls; uint64_t slices; uint64_t chain_ns;
    uint32_t tlbflush_clock; uint64_t work; uint64_t work_budget; uint32_t plant;
    uint32_t tsc_mul; int32_t tsc_shift; uint64_t tlb_fills; uint64_t tlb_misses; uint64_t tlb_size; int watchdog_parked;
    struct xc_tbuf *tbuf; uint64_t sched_visits; uint32_t slot_cap; int offer_fsgsbase;
    ...;
};
struct xc_machine *xc_machine_new(uint64_t nr_frames, uint64_t hv_frames);
void xc_machine_free(struct xc_machine *m);
int xc_frames_assign(struct xc_machine *m, uint64_t first, uint64_t count, uint16_t owner);
int xc_frames_release(struct xc_machine *m, uint64_t first, uint64_t count);
struct xc_vcpu *xc_vcpu_new(struct xc_machine *m, uint16_t domid, uint16_t vcpu_id, uint32_t handle);
void xc_vcpu_free(struct xc_machine *m, struct xc_vcpu *v);
int xc_enter(struct xc_machine *m, struct xc_vcpu *v, uint64_t system_time);
int xc_ready(struct xc_machine *m, uint32_t *handles, int max);
int xc_due(struct xc_machine *m, uint64_t now);
int xc_due_list(struct xc_machine *m, uint64_t now, uint32_t *handles, int max);
uint64_t xc_next_wake(struct xc_machine *m);
void xc_sched_update(struct xc_machine *m, struct xc_vcpu *v);
struct xc_vcpu *xc_runq_next(struct xc_machine *m, struct xc_vcpu *v);
#define XC_MSR_GP 0
#define XC_MSR_DONE 1
#define XC_MSR_PYTHON 2
int xc_msr_read(struct xc_machine *m, struct xc_vcpu *v, uint32_t index, uint64_t *value);
int xc_msr_write(struct xc_machine *m, struct xc_vcpu *v, uint32_t index, uint64_t value);
int xc_run_chain(struct xc_machine *m, uint64_t timeout_us);
void xc_request_flush(struct xc_machine *m);
void xc_settle(struct xc_machine *m);
void xc_frame_written(struct xc_machine *m, uint64_t mfn);
int xc_run(struct xc_machine *m, uint64_t timeout_us, uint64_t blocks);
const char *xc_strerror(int err);
const char *xc_reg_names(void);
int xc_regs(struct xc_machine *m, struct xc_vcpu *v, int write, uint64_t *vals);
int xc_set_rip(struct xc_machine *m, struct xc_vcpu *v, uint64_t rip);
int64_t xc_translate(struct xc_machine *m, struct xc_vcpu *v, uint64_t va, int write);
int xc_copy_from_guest(struct xc_machine *m, struct xc_vcpu *v, void *dst, uint64_t va, uint64_t len);
int xc_copy_to_guest(struct xc_machine *m, struct xc_vcpu *v, uint64_t va, const void *src, uint64_t len);
void xc_raise(struct xc_machine *m, uint32_t vector, uint32_t error_code);
int64_t xc_hypercall(struct xc_machine *m, struct xc_vcpu *v, const uint64_t *a);
int xc_get_page(struct xc_machine *m, uint64_t mfn, uint16_t domid);
void xc_put_page(struct xc_machine *m, uint64_t mfn);
void xc_put_l1e(struct xc_machine *m, struct xc_vcpu *v, uint64_t e);
int xc_get_page_and_type(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, uint16_t domid,
                         int type, int flags);
int xc_put_page_and_type(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int preemptible);
int xc_mod_entry(struct xc_machine *m, struct xc_vcpu *v, uint64_t table, uint32_t index,
                 uint64_t new, int preserve_ad);
int xc_mmu_normal_update(struct xc_machine *m, struct xc_vcpu *v, uint64_t ma, uint64_t val,
                         int preserve_ad);
int xc_pin(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int level);
int xc_unpin(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn);
int xc_new_baseptr(struct xc_machine *m, struct xc_vcpu *v, uint64_t mfn, int user);
int xc_put_old_guest_table(struct xc_machine *m, struct xc_vcpu *v);
int xc_check_descriptor(uint64_t *desc);
void xc_cpuid(struct xc_machine *m, uint32_t leaf, uint32_t subleaf, uint32_t *r);
uint32_t xc_io_read(struct xc_machine *m, struct xc_vcpu *v, uint32_t port, int size, int *ok);
int xc_io_write(struct xc_machine *m, struct xc_vcpu *v, uint32_t port, int size, uint32_t value);
int xc_shadow_enable(struct xc_machine *m, int on);
void xc_shadow_record(struct xc_machine *m, uint64_t va, uint64_t paddr, uint32_t perms);
int xc_shadow_entry(struct xc_machine *m, uint32_t i, uint64_t *va, uint64_t *mfn,
                    uint16_t *domid);
int xc_tlb_probe(struct xc_machine *m, struct xc_vcpu *v, uint64_t va, int write);
int xc_audit(struct xc_machine *m, const uint64_t *ranges, uint32_t nr_ranges,
             const uint64_t *extra, uint64_t n_extra, struct xc_violation *out, int max);
void xc_stop(struct xc_machine *m);
int xc_exits_at_blocks(struct xc_machine *m);
int xc_set_cr0(struct xc_machine *m, struct xc_vcpu *v, uint64_t cr0);
uint64_t xc_get_cr0(struct xc_machine *m, struct xc_vcpu *v);
uint64_t xc_host_tsc(void);
uint64_t xc_system_time(struct xc_machine *m);
void xc_set_tsc_hz(struct xc_machine *m, uint64_t hz);
int xc_set_vtsc(struct xc_machine *m);
uint64_t xc_guest_tsc(struct xc_machine *m, struct xc_vcpu *v);
uint64_t xc_scale_delta(uint64_t delta, uint32_t mul, int32_t shift);
int xc_code64(struct xc_machine *m, struct xc_vcpu *v);
#define XC_STOP_DEBUG 3
#define XC_DBG_SW 0
#define XC_DBG_HW 1
#define XC_DBG_WRITE 2
#define XC_DBG_READ 3
#define XC_DBG_ACCESS 4
#define XC_DBG_STEP 5
#define XC_DBG_BOUNDARY 6
#define XC_DBG_GUEST_X 7
#define XC_DBG_GUEST_W 8
#define XC_DBG_GUEST_RW 9
#define XC_DBG_GUEST_BOUNDARY 10
struct xc_dbg_point;
struct xc_dbg_point *xc_dbg_insert_guest(struct xc_machine *m, struct xc_vcpu *v, int kind,
                                         int bp, uint64_t va, uint64_t ma, uint64_t len);
struct xc_dbg_point *xc_dbg_insert(struct xc_machine *m, struct xc_vcpu *v, int kind,
                                   uint64_t va, uint64_t ma, uint64_t len);
void xc_dbg_remove(struct xc_machine *m, struct xc_dbg_point *p);
int64_t xc_dbg_translate(struct xc_machine *m, struct xc_vcpu *v, uint64_t va, int write);

extern "Python+C" int64_t xc_py_hypercall(uint32_t handle, uint64_t nr, uint64_t a1,
                                          uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5);
"""


def unicorn_dirs():
    """The include and lib folders inside the installed unicorn wheel."""
    import importlib.util

    spec = importlib.util.find_spec("unicorn")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pyxenon: the unicorn package must be installed to build the C core")
    pkg = list(spec.submodule_search_locations)[0]
    return os.path.join(pkg, "include"), os.path.join(pkg, "lib")


def fuzz_flags():
    """Compiler flags of a fuzzing build (none for a normal one)."""
    if os.environ.get("PYXENON_FUZZ_BUILD") != "1":
        return []
    clang = os.environ.get("CC") or shutil.which("clang")
    if not clang or "clang" not in os.path.basename(clang):
        raise SystemExit("pyxenon: PYXENON_FUZZ_BUILD=1 needs clang (set CC or install clang)")
    # distutils takes the compiler and the linker from here
    os.environ["CC"], os.environ["LDSHARED"] = clang, f"{clang} -shared"
    return ["-fsanitize=fuzzer-no-link", "-gline-tables-only"]


def make_ffi():
    include, lib = unicorn_dirs()
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source(
        "pyxenon._core._xcore",
        '#include "core.h"\n',
        sources=[os.path.relpath(os.path.join(HERE, s)) for s in SOURCES],
        include_dirs=[HERE, include],
        library_dirs=[lib],
        extra_link_args=[os.path.join(lib, "libunicorn.so.2"), "-lpthread",
                         "-Wl,-rpath,$ORIGIN/../../unicorn/lib"],
        extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wno-unused-function"] + fuzz_flags(),
    )
    return ffi


ffibuilder = make_ffi()

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.join(HERE, "..", ".."), verbose=True)
