/*
 * xen.h - the small slice of the Xen PV x86_64 guest ABI the toy guests use.
 *
 * Written for pyxenon's toy guests so that they build without the Xen
 * public headers installed.  Only numbers and layouts are reproduced here;
 * every value matches Xen's public interface (xen.h, sched.h, version.h,
 * event_channel.h, elfnote.h, io/console.h, arch-x86/xen-x86_64.h).
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
