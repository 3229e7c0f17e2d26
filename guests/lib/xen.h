/*
 * xen.h - the small slice of the Xen PV x86_64 guest ABI the toy guests use.
 *
 * Written for pyxenon's toy guests so that they build without the Xen
 * public headers installed.  Only numbers and layouts are reproduced here;
 * every value matches Xen's public interface (xen.h, sched.h, version.h,
 * event_channel.h, elfnote.h, errno.h, io/console.h, arch-x86/xen.h,
 * arch-x86/xen-x86_64.h).
 *
 * Usable from C and from assembly (the C-only parts hide behind
 * __ASSEMBLY__).
 */
#ifndef GUEST_XEN_H
#define GUEST_XEN_H

/* ---- Memory layout ---------------------------------------------------- */

#define PAGE_SHIFT              12
#define PAGE_SIZE               (1 << PAGE_SHIFT)

/* Where the guest image is linked; also its ELF PADDR_OFFSET. */
#define GUEST_VIRT_BASE         0xffffffff80000000

/* Read-only machine-to-physical table Xen maps into every 64-bit PV guest. */
#define MACH2PHYS_VIRT_START    0xFFFF800000000000

/*
 * Xen's own part of every 64-bit PV address space (xen-x86_64.h): a guest
 * can never map anything here (the m2p above is Xen's read-only window).
 */
#define HYPERVISOR_VIRT_START   0xFFFF800000000000
#define HYPERVISOR_VIRT_END     0xFFFF880000000000

/* ---- Segments (arch-x86/xen-x86_64.h, arch-x86/xen.h) --------------------- */

/*
 * The flat segments in the Xen-private part of every GDT.  A 64-bit PV
 * kernel runs in ring 3, so its code and stack selectors have RPL 3.
 */
#define FLAT_RING3_CS64         0xe033  /* GDT index 262 */
#define FLAT_RING3_SS64         0xe02b  /* GDT index 261 */
#define FLAT_KERNEL_CS          FLAT_RING3_CS64
#define FLAT_KERNEL_SS          FLAT_RING3_SS64

/* GDT entries from here up belong to Xen (the last two GDT pages). */
#define FIRST_RESERVED_GDT_PAGE  14
#define FIRST_RESERVED_GDT_BYTE  (FIRST_RESERVED_GDT_PAGE * 4096)
#define FIRST_RESERVED_GDT_ENTRY (FIRST_RESERVED_GDT_BYTE / 8)

/* Each hypercall has a 32-byte stub in the hypercall page. */
#define HYPERCALL_STUB_SIZE     32

/* ---- ELF note types (owner "Xen") -------------------------------------- */

#define XEN_ELFNOTE_ENTRY           1
#define XEN_ELFNOTE_HYPERCALL_PAGE  2
#define XEN_ELFNOTE_VIRT_BASE       3
#define XEN_ELFNOTE_PADDR_OFFSET    4
#define XEN_ELFNOTE_XEN_VERSION     5
#define XEN_ELFNOTE_GUEST_OS        6
#define XEN_ELFNOTE_GUEST_VERSION   7
#define XEN_ELFNOTE_LOADER          8
#define XEN_ELFNOTE_PAE_MODE        9
#define XEN_ELFNOTE_FEATURES        10
#define XEN_ELFNOTE_SUSPEND_CANCEL  14

/* ---- Hypercall numbers ------------------------------------------------- */

#define __HYPERVISOR_set_trap_table         0
#define __HYPERVISOR_mmu_update             1
#define __HYPERVISOR_set_gdt                2
#define __HYPERVISOR_stack_switch           3
#define __HYPERVISOR_set_callbacks          4
#define __HYPERVISOR_fpu_taskswitch         5
#define __HYPERVISOR_platform_op            7
#define __HYPERVISOR_set_debugreg           8
#define __HYPERVISOR_get_debugreg           9
#define __HYPERVISOR_update_descriptor      10
#define __HYPERVISOR_memory_op              12
#define __HYPERVISOR_multicall              13
#define __HYPERVISOR_update_va_mapping      14
#define __HYPERVISOR_set_timer_op           15
#define __HYPERVISOR_xen_version            17
#define __HYPERVISOR_console_io             18
#define __HYPERVISOR_grant_table_op         20
#define __HYPERVISOR_vm_assist              21
#define __HYPERVISOR_iret                   23
#define __HYPERVISOR_vcpu_op                24
#define __HYPERVISOR_set_segment_base       25
#define __HYPERVISOR_mmuext_op              26
#define __HYPERVISOR_sched_op               29
#define __HYPERVISOR_callback_op            30
#define __HYPERVISOR_event_channel_op       32
#define __HYPERVISOR_physdev_op             33

/* ---- Errors (errno.h): hypercalls return -XEN_Exxx ------------------------ */

#define XEN_EPERM               1
#define XEN_ENOENT              2
#define XEN_ESRCH               3
#define XEN_EIO                 5
#define XEN_ENXIO               6
#define XEN_E2BIG               7
#define XEN_EBADF               9
#define XEN_EAGAIN              11
#define XEN_ENOMEM              12
#define XEN_EACCES              13
#define XEN_EFAULT              14
#define XEN_EBUSY               16
#define XEN_EEXIST              17
#define XEN_ENODEV              19
#define XEN_EINVAL              22
#define XEN_ENOSPC              28
#define XEN_ERANGE              34
#define XEN_ENOSYS              38
#define XEN_EOPNOTSUPP          95

/* ---- Domain ids (xen.h) ---------------------------------------------------- */

#define DOMID_SELF              0x7FF0
#define DOMID_IO                0x7FF1
#define DOMID_XEN               0x7FF2

/* ---- set_trap_table (arch-x86/xen.h) --------------------------------------- */

/*
 * trap_info.flags: bits 0-1 are the privilege level allowed to raise the
 * vector with `int n` (0: nobody, 1-2: the kernel, 3: everyone); bit 2,
 * when set, makes the entry behave like an interrupt gate: Xen sets the
 * vcpu's evtchn_upcall_mask (events masked) when it delivers the trap.
 * The table handed to set_trap_table ends with an entry whose address is 0.
 */
#define TI_GET_DPL(_ti)         ((_ti)->flags & 3)
#define TI_GET_IF(_ti)          ((_ti)->flags & 4)
#define TI_SET_DPL(_ti, _dpl)   ((_ti)->flags |= (_dpl))
#define TI_SET_IF(_ti, _if)     ((_ti)->flags |= ((!!(_if)) << 2))
#define TI_FLAG_DPL_MASK        3
#define TI_FLAG_IF              4

/* ---- iret (arch-x86/xen-x86_64.h) ------------------------------------------ */

/* iret_context.flags: return as from SYSCALL (rcx/r11/cs/ss discarded). */
#define VGCF_in_syscall         (1 << 8)

/* ---- mmu_update (xen.h) ---------------------------------------------------- */

/* The command is in bits 0-1 of mmu_update.ptr. */
#define MMU_NORMAL_PT_UPDATE        0   /* checked *ptr = val; ptr is a MA */
#define MMU_MACHPHYS_UPDATE         1   /* m2p[ptr >> 12] = val */
#define MMU_PT_UPDATE_PRESERVE_AD   2
#define MMU_PT_UPDATE_NO_TRANSLATE  3

/* ---- mmuext_op (xen.h) ----------------------------------------------------- */

#define MMUEXT_PIN_L1_TABLE         0
#define MMUEXT_PIN_L2_TABLE         1
#define MMUEXT_PIN_L3_TABLE         2
#define MMUEXT_PIN_L4_TABLE         3
#define MMUEXT_UNPIN_TABLE          4
#define MMUEXT_NEW_BASEPTR          5
#define MMUEXT_TLB_FLUSH_LOCAL      6
#define MMUEXT_INVLPG_LOCAL         7
#define MMUEXT_TLB_FLUSH_MULTI      8
#define MMUEXT_INVLPG_MULTI         9
#define MMUEXT_TLB_FLUSH_ALL        10
#define MMUEXT_INVLPG_ALL           11
#define MMUEXT_FLUSH_CACHE          12
#define MMUEXT_SET_LDT              13
#define MMUEXT_NEW_USER_BASEPTR     15
#define MMUEXT_CLEAR_PAGE           16
#define MMUEXT_COPY_PAGE            17

/* ---- update_va_mapping flags (xen.h) --------------------------------------- */

#define UVMF_NONE               0   /* no flush */
#define UVMF_TLB_FLUSH          1   /* flush the whole TLB */
#define UVMF_INVLPG             2   /* flush this one address */
#define UVMF_FLUSHTYPE_MASK     3
#define UVMF_LOCAL              0   /* this vcpu's TLB only */
#define UVMF_ALL                4   /* every vcpu's TLB */

/* ---- console_io -------------------------------------------------------- */

#define CONSOLEIO_write         0
#define CONSOLEIO_read          1

/* ---- sched_op ---------------------------------------------------------- */

#define SCHEDOP_yield           0
#define SCHEDOP_block           1
#define SCHEDOP_shutdown        2
#define SCHEDOP_poll            3

#define SHUTDOWN_poweroff       0
#define SHUTDOWN_reboot         1
#define SHUTDOWN_suspend        2
#define SHUTDOWN_crash          3
#define SHUTDOWN_watchdog       4

/* ---- xen_version ------------------------------------------------------- */

#define XENVER_version              0   /* returns (major << 16) | minor */
#define XENVER_extraversion         1   /* fills xen_extraversion_t */
#define XENVER_compile_info         2
#define XENVER_capabilities         3   /* fills xen_capabilities_info_t */
#define XENVER_changeset            4
#define XENVER_platform_parameters  5
#define XENVER_get_features         6
#define XENVER_pagesize             7
#define XENVER_guest_handle         8
#define XENVER_commandline          9

/* ---- event_channel_op -------------------------------------------------- */

#define EVTCHNOP_send           4

/* ---- start_info flags -------------------------------------------------- */

#define SIF_PRIVILEGED          (1 << 0)
#define SIF_INITDOMAIN          (1 << 1)

#ifndef __ASSEMBLY__

#include <stdint.h>

typedef uint32_t evtchn_port_t;
typedef uint16_t domid_t;

/*
 * One entry of the virtual IDT handed to HYPERVISOR_set_trap_table
 * (arch-x86/xen.h).  x86_64: 16 bytes, address at offset 8.
 */
struct trap_info {
    uint8_t       vector;               /* exception vector */
    uint8_t       flags;                /* 0-1: DPL for int n; 2: mask events */
    uint16_t      cs;                   /* code selector: FLAT_KERNEL_CS */
    unsigned long address;              /* handler; 0 ends the table */
};
_Static_assert(sizeof(struct trap_info) == 16, "trap_info");
_Static_assert(__builtin_offsetof(struct trap_info, address) == 8, "trap_info");

/*
 * HYPERVISOR_iret's argument, on the kernel stack at the `syscall` of the
 * iret hypercall-page entry (xen-x86_64.h).  rax is at the lowest address:
 * the guest pushes ss, rsp, rflags, cs, rip (an iret frame) and flags, and
 * jumps to the entry, which pushes rcx, r11 and rax itself.
 */
struct iret_context {
    uint64_t rax, r11, rcx, flags, rip, cs, rflags, rsp, ss;
};
_Static_assert(sizeof(struct iret_context) == 72, "iret_context");

/* Argument array of HYPERVISOR_mmu_update (xen.h). */
struct mmu_update {
    uint64_t ptr;                       /* machine address of the PTE | MMU_* */
    uint64_t val;                       /* new contents of the PTE */
};
_Static_assert(sizeof(struct mmu_update) == 16, "mmu_update");

/* Argument array of HYPERVISOR_mmuext_op (xen.h).  x86_64: 24 bytes. */
struct mmuext_op {
    unsigned int cmd;                   /* MMUEXT_* */
    union {
        unsigned long mfn;              /* pin/unpin, new_baseptr, ... */
        unsigned long linear_addr;      /* invlpg, set_ldt */
    } arg1;
    union {
        unsigned int nr_ents;           /* set_ldt */
        const void *vcpumask;           /* tlb_flush_multi, invlpg_multi */
        unsigned long src_mfn;          /* copy_page */
    } arg2;
};
_Static_assert(sizeof(struct mmuext_op) == 24, "mmuext_op");
_Static_assert(__builtin_offsetof(struct mmuext_op, arg1) == 8, "mmuext_op");
_Static_assert(__builtin_offsetof(struct mmuext_op, arg2) == 16, "mmuext_op");

/* One call of HYPERVISOR_multicall (xen.h multicall_entry).  x86_64: 64 bytes. */
struct multicall_entry {
    unsigned long op;                   /* __HYPERVISOR_* */
    unsigned long result;               /* what that hypercall returned */
    unsigned long args[6];
};
_Static_assert(sizeof(struct multicall_entry) == 64, "multicall_entry");

/* ---- shared_info (xen.h, arch-x86/xen.h, arch-x86/xen-x86_64.h) ---------- */

#define XEN_LEGACY_MAX_VCPUS    32

struct vcpu_time_info {
    uint32_t version;
    uint32_t pad0;
    uint64_t tsc_timestamp;
    uint64_t system_time;
    uint32_t tsc_to_system_mul;
    int8_t   tsc_shift;
    uint8_t  flags;
    uint8_t  pad1[2];
};                                      /* 32 bytes */

struct arch_vcpu_info {
    unsigned long cr2;                  /* the faulting address of a #PF */
    unsigned long pad;
};

struct vcpu_info {
    uint8_t evtchn_upcall_pending;
    uint8_t evtchn_upcall_mask;         /* non-zero: events masked */
    unsigned long evtchn_pending_sel;
    struct arch_vcpu_info arch;
    struct vcpu_time_info time;
};                                      /* 64 bytes */

struct arch_shared_info {
    unsigned long max_pfn;
    unsigned long pfn_to_mfn_frame_list_list;
    unsigned long nmi_reason;
    unsigned long p2m_cr3;
    unsigned long p2m_vaddr;
    unsigned long p2m_generation;
};

typedef struct shared_info {
    struct vcpu_info vcpu_info[XEN_LEGACY_MAX_VCPUS];
    unsigned long evtchn_pending[sizeof(unsigned long) * 8];
    unsigned long evtchn_mask[sizeof(unsigned long) * 8];
    uint32_t wc_version;
    uint32_t wc_sec;
    uint32_t wc_nsec;
    uint32_t wc_sec_hi;
    struct arch_shared_info arch;
} shared_info_t;

_Static_assert(sizeof(struct vcpu_time_info) == 32, "vcpu_time_info");
_Static_assert(sizeof(struct vcpu_info) == 64, "vcpu_info");
_Static_assert(__builtin_offsetof(struct vcpu_info, evtchn_upcall_mask) == 1,
               "vcpu_info");
_Static_assert(__builtin_offsetof(struct vcpu_info, arch.cr2) == 16, "vcpu_info");
_Static_assert(__builtin_offsetof(shared_info_t, evtchn_pending) == 2048,
               "shared_info");
_Static_assert(__builtin_offsetof(shared_info_t, wc_version) == 3072,
               "shared_info");
_Static_assert(__builtin_offsetof(shared_info_t, arch) == 3088, "shared_info");

typedef char xen_extraversion_t[16];
typedef char xen_capabilities_info_t[1024];

/* Argument of SCHEDOP_shutdown. */
struct sched_shutdown {
    unsigned int reason;                /* SHUTDOWN_* */
};

/* Argument of EVTCHNOP_send. */
struct evtchn_send {
    evtchn_port_t port;
};

/*
 * Handed to the guest in %rsi at entry.  x86_64 layout; sizes and offsets
 * are checked below.
 */
typedef struct start_info {
    char magic[32];                     /* "xen-<version>-<platform>" */
    unsigned long nr_pages;             /* pages given to the domain */
    unsigned long shared_info;          /* machine address of shared_info */
    uint32_t flags;                     /* SIF_* */
    unsigned long store_mfn;            /* xenstore ring, machine frame */
    uint32_t store_evtchn;
    union {
        struct {
            unsigned long mfn;          /* console ring, machine frame */
            uint32_t evtchn;
        } domU;
        struct {
            uint32_t info_off;
            uint32_t info_size;
        } dom0;
    } console;
    unsigned long pt_base;              /* virtual address of top page table */
    unsigned long nr_pt_frames;
    unsigned long mfn_list;             /* virtual address of the p2m list */
    unsigned long mod_start;
    unsigned long mod_len;
    int8_t cmd_line[1024];
    unsigned long first_p2m_pfn;
    unsigned long nr_p2m_frames;
} start_info_t;

_Static_assert(__builtin_offsetof(start_info_t, nr_pages) == 32, "start_info");
_Static_assert(__builtin_offsetof(start_info_t, store_mfn) == 56, "start_info");
_Static_assert(__builtin_offsetof(start_info_t, console) == 72, "start_info");
_Static_assert(__builtin_offsetof(start_info_t, pt_base) == 88, "start_info");
_Static_assert(__builtin_offsetof(start_info_t, cmd_line) == 128, "start_info");
_Static_assert(__builtin_offsetof(start_info_t, nr_p2m_frames) == 1160,
               "start_info");
_Static_assert(sizeof(start_info_t) == 1168, "start_info");

/* The PV console ring page (one page, shared with the console backend). */
typedef uint32_t XENCONS_RING_IDX;

struct xencons_interface {
    char in[1024];                      /* backend -> guest */
    char out[2048];                     /* guest -> backend */
    XENCONS_RING_IDX in_cons, in_prod;
    XENCONS_RING_IDX out_cons, out_prod;
};

#define XENCONS_MASK(idx, ring) ((idx) & (sizeof(ring) - 1))

_Static_assert(__builtin_offsetof(struct xencons_interface, out_prod) == 3084,
               "xencons_interface");

#endif /* !__ASSEMBLY__ */

#endif /* GUEST_XEN_H */
