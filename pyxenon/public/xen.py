"""Core Xen ABI: xen.h.

Hypercall numbers, the mmu_update / mmuext_op / update_va_mapping
vocabulary, domain ids, and the three pages every PV guest shares with the
hypervisor: start_info, shared_info (with one vcpu_info per legacy vCPU) and
the vcpu_time_info inside each vcpu_info.

Hypercall numbers are Xen's ``__HYPERVISOR_<name>`` spelled
``HYPERVISOR_<name>``; HYPERCALL_NAMES maps number -> ``<name>``.
Virtual-IRQ numbers (also in xen.h) are in event_channel.py.
"""

import ctypes

from ._compat import LittleEndianUnion

# xen_ulong_t, xen_pfn_t and guest_handle are arch types; other modules take
# them from here, as the C headers do via xen.h.
from .arch_x86 import (
    XEN_LEGACY_MAX_VCPUS,
    arch_shared_info,
    arch_vcpu_info,
    guest_handle,
    xen_pfn_t,
    xen_ulong_t,
)

# A domain id (16 bits; ids >= DOMID_FIRST_RESERVED are special).
domid_t = ctypes.c_uint16
# Opaque per-domain handle (a UUID), returned by XENVER_guest_handle.
xen_domain_handle_t = ctypes.c_uint8 * 16


# ---------------------------------------------------------------------------
# Hypercall numbers.  A PV guest calls hypercall_page + 32 * number.
# ---------------------------------------------------------------------------

HYPERVISOR_set_trap_table = 0            # load the virtual IDT (trap_info[])
HYPERVISOR_mmu_update = 1                # batch of checked PTE / M2P writes (mmu_update[])
HYPERVISOR_set_gdt = 2                   # install GDT from a list of frames
HYPERVISOR_stack_switch = 3              # set the kernel stack (ss, sp) used on entry
HYPERVISOR_set_callbacks = 4             # set event / failsafe / syscall entry points
HYPERVISOR_fpu_taskswitch = 5            # set or clear CR0.TS
HYPERVISOR_sched_op_compat = 6           # old sched_op (before 3.0.1)
HYPERVISOR_platform_op = 7               # host platform control (dom0)
HYPERVISOR_set_debugreg = 8              # write a debug register
HYPERVISOR_get_debugreg = 9              # read a debug register
HYPERVISOR_update_descriptor = 10        # write one GDT/LDT descriptor
# 11 is unused (was dom_mem_op).
HYPERVISOR_memory_op = 12                # XENMEM_* reservation and physmap ops
HYPERVISOR_multicall = 13                # run a list of hypercalls (multicall_entry[])
HYPERVISOR_update_va_mapping = 14        # set the PTE mapping one virtual address
HYPERVISOR_set_timer_op = 15             # one-shot timer at an absolute system time
HYPERVISOR_event_channel_op_compat = 16  # old event_channel_op (evtchn_op struct)
HYPERVISOR_xen_version = 17              # XENVER_* queries
HYPERVISOR_console_io = 18               # read/write the Xen emergency console
HYPERVISOR_physdev_op_compat = 19        # old physdev_op
HYPERVISOR_grant_table_op = 20           # GNTTABOP_* grant operations
HYPERVISOR_vm_assist = 21                # enable/disable a VMASST_TYPE_* assist
HYPERVISOR_update_va_mapping_otherdomain = 22  # update_va_mapping on a foreign domain's frame
HYPERVISOR_iret = 23                     # return from guest exception/event (x86)
HYPERVISOR_vcpu_op = 24                  # VCPUOP_* per-vCPU ops
HYPERVISOR_set_segment_base = 25         # load FS / GS bases (x86_64)
HYPERVISOR_mmuext_op = 26                # pin/unpin, baseptr, TLB flush ... (mmuext_op[])
HYPERVISOR_xsm_op = 27                   # security-module ops
HYPERVISOR_nmi_op = 28                   # NMI callback registration
HYPERVISOR_sched_op = 29                 # SCHEDOP_* yield / block / shutdown / poll
HYPERVISOR_callback_op = 30              # CALLBACKOP_* register entry points
HYPERVISOR_xenoprof_op = 31              # profiling
HYPERVISOR_event_channel_op = 32         # EVTCHNOP_* event channel ops
HYPERVISOR_physdev_op = 33               # PHYSDEVOP_* physical device ops
HYPERVISOR_hvm_op = 34                   # HVM parameters and ops
HYPERVISOR_sysctl = 35                   # host control (toolstack)
HYPERVISOR_domctl = 36                   # domain control (toolstack)
HYPERVISOR_kexec_op = 37                 # kexec / crash kernel
HYPERVISOR_tmem_op = 38                  # transcendent memory (removed)
HYPERVISOR_argo_op = 39                  # Argo inter-domain messaging
HYPERVISOR_xenpmu_op = 40                # PMU virtualisation
HYPERVISOR_dm_op = 41                    # device-model ops
HYPERVISOR_hypfs_op = 42                 # hypervisor filesystem
# Numbers reserved for architecture-specific hypercalls.
HYPERVISOR_arch_0 = 48
HYPERVISOR_arch_1 = 49
HYPERVISOR_arch_2 = 50
HYPERVISOR_arch_3 = 51
HYPERVISOR_arch_4 = 52
HYPERVISOR_arch_5 = 53
HYPERVISOR_arch_6 = 54
HYPERVISOR_arch_7 = 55

# number -> name without the HYPERVISOR_ prefix, e.g. 18 -> "console_io".
HYPERCALL_NAMES = dict(sorted(
    (value, name[len("HYPERVISOR_"):])
    for name, value in globals().items()
    if name.startswith("HYPERVISOR_")
))


# ---------------------------------------------------------------------------
# HYPERVISOR_mmu_update(mmu_update req[], count, done_out, foreigndom).
# The low 2 bits of mmu_update.ptr select the command; the rest is a machine
# address.
# ---------------------------------------------------------------------------

MMU_NORMAL_PT_UPDATE = 0        # checked write of val to the PTE at machine address ptr
MMU_MACHPHYS_UPDATE = 1         # M2P[ptr >> PAGE_SHIFT] = val (val is a PFN)
MMU_PT_UPDATE_PRESERVE_AD = 2   # like NORMAL, but keep the PTE's current Accessed/Dirty bits
MMU_PT_UPDATE_NO_TRANSLATE = 3  # like NORMAL, val's frame not translated via the foreign domain


class mmu_update(ctypes.LittleEndianStructure):
    _fields_ = [
        ("ptr", ctypes.c_uint64),  # machine address of the entry, low 2 bits = MMU_* command
        ("val", ctypes.c_uint64),  # new PTE contents (or PFN for MMU_MACHPHYS_UPDATE)
    ]


# ---------------------------------------------------------------------------
# HYPERVISOR_mmuext_op(mmuext_op ops[], count, done_out, foreigndom).
# ---------------------------------------------------------------------------

MMUEXT_PIN_L1_TABLE = 0        # validate mfn as an L1 page table and pin it
MMUEXT_PIN_L2_TABLE = 1        # ... as an L2
MMUEXT_PIN_L3_TABLE = 2        # ... as an L3
MMUEXT_PIN_L4_TABLE = 3        # ... as an L4
MMUEXT_UNPIN_TABLE = 4         # drop the pin on mfn
MMUEXT_NEW_BASEPTR = 5         # switch the kernel page table (CR3) to mfn
MMUEXT_TLB_FLUSH_LOCAL = 6     # flush this vCPU's TLB
MMUEXT_INVLPG_LOCAL = 7        # flush linear_addr from this vCPU's TLB
MMUEXT_TLB_FLUSH_MULTI = 8     # flush the TLBs of the vCPUs in vcpumask
MMUEXT_INVLPG_MULTI = 9        # flush linear_addr on the vCPUs in vcpumask
MMUEXT_TLB_FLUSH_ALL = 10      # flush every vCPU's TLB
MMUEXT_INVLPG_ALL = 11         # flush linear_addr on every vCPU
MMUEXT_FLUSH_CACHE = 12        # write back and invalidate caches (WBINVD) locally
MMUEXT_SET_LDT = 13            # LDT at linear_addr (page aligned), nr_ents entries
MMUEXT_NEW_USER_BASEPTR = 15   # set the user-mode page table (x86_64) to mfn
MMUEXT_CLEAR_PAGE = 16         # zero the frame mfn
MMUEXT_COPY_PAGE = 17          # copy frame src_mfn to frame mfn
MMUEXT_FLUSH_CACHE_GLOBAL = 18 # write back and invalidate caches on all CPUs
MMUEXT_MARK_SUPER = 19         # mark the superpage headed by mfn
MMUEXT_UNMARK_SUPER = 20       # undo MMUEXT_MARK_SUPER


class mmuext_op_arg1(LittleEndianUnion):
    _fields_ = [
        ("mfn", xen_pfn_t),                # pin/unpin, baseptrs, clear/copy dest, (un)mark super
        ("linear_addr", ctypes.c_uint64),  # INVLPG_*, SET_LDT
    ]


class mmuext_op_arg2(LittleEndianUnion):
    _fields_ = [
        ("nr_ents", ctypes.c_uint32),  # SET_LDT: number of LDT entries
        ("vcpumask", guest_handle),    # *_MULTI: guest pointer to a bitmap of vCPUs
        ("src_mfn", xen_pfn_t),        # COPY_PAGE: source frame
    ]


class mmuext_op(ctypes.LittleEndianStructure):
    _fields_ = [
        ("cmd", ctypes.c_uint32),    # MMUEXT_* command
        ("arg1", mmuext_op_arg1),    # first argument, meaning per command
        ("arg2", mmuext_op_arg2),    # second argument, meaning per command
    ]


# ---------------------------------------------------------------------------
# HYPERVISOR_update_va_mapping(va, val, flags): TLB flush requested after the
# update.  For a multi-vCPU flush the guest ORs a pointer to a vCPU bitmap
# into flags (UVMF_MULTI); a NULL pointer means local (UVMF_LOCAL).
# ---------------------------------------------------------------------------

UVMF_NONE = 0 << 0            # no flush
UVMF_TLB_FLUSH = 1 << 0       # flush whole TLB(s)
UVMF_INVLPG = 2 << 0          # flush just the updated va
UVMF_FLUSHTYPE_MASK = 3 << 0  # the bits above
UVMF_MULTI = 0 << 2           # flush the vCPUs in the bitmap ORed into flags
UVMF_LOCAL = 0 << 2           # flush only this vCPU
UVMF_ALL = 1 << 2             # flush all vCPUs


# ---------------------------------------------------------------------------
# HYPERVISOR_console_io(cmd, count, buffer).
# ---------------------------------------------------------------------------

CONSOLEIO_write = 0  # write count bytes from buffer to the Xen console
CONSOLEIO_read = 1   # read up to count bytes; returns the number read


# ---------------------------------------------------------------------------
# HYPERVISOR_vm_assist(cmd, type).
# ---------------------------------------------------------------------------

VMASST_CMD_enable = 0
VMASST_CMD_disable = 1

VMASST_TYPE_4gb_segments = 0         # x86_32: emulate 4 GiB segment limits
VMASST_TYPE_4gb_segments_notify = 1  # x86_32: trap 15 when the above is used
VMASST_TYPE_writable_pagetables = 2  # guest may write L1 PTEs directly (trapped and checked)
VMASST_TYPE_pae_extended_cr3 = 3     # x86_32 PAE: page directories above 4 GiB
VMASST_TYPE_architectural_iopl = 4   # virtual IOPL handled like hardware (from iret, in frames)
VMASST_TYPE_runstate_update_flag = 5 # set XEN_RUNSTATE_UPDATE while writing runstate info
VMASST_TYPE_m2p_strict = 32          # x86_64: M2P never visible from guest user mode


# ---------------------------------------------------------------------------
# Domain ids.
# ---------------------------------------------------------------------------

DOMID_FIRST_RESERVED = 0x7FF0  # ids from here up are never real domains
DOMID_SELF = 0x7FF0            # "the calling domain"
DOMID_IO = 0x7FF1              # foreign domain meaning "I/O memory" in mmu_update & co
DOMID_XEN = 0x7FF2             # owner of Xen's own pages (e.g. the M2P table)
DOMID_COW = 0x7FF3             # owner of shared copy-on-write pages
DOMID_INVALID = 0x7FF4         # owner of pages with no valid owner
DOMID_IDLE = 0x7FFF            # the idle domain
DOMID_MASK = 0x7FFF            # valid bits of a domain id


# ---------------------------------------------------------------------------
# HYPERVISOR_multicall(multicall_entry calls[], nr_calls).
# ---------------------------------------------------------------------------

class multicall_entry(ctypes.LittleEndianStructure):
    _fields_ = [
        ("op", xen_ulong_t),          # hypercall number
        ("result", xen_ulong_t),      # OUT: that hypercall's return value
        ("args", xen_ulong_t * 6),    # its arguments
    ]


# ---------------------------------------------------------------------------
# Event channels: with the 2-level ABI a 64-bit guest has 64 selector bits x
# 64-bit words = 4096 ports (Xen: sizeof(xen_ulong_t)^2 * 64).  Xen only
# defines the name for interfaces before 4.4; event_channel.py has the
# current name EVTCHN_2L_NR_CHANNELS.
# ---------------------------------------------------------------------------

NR_EVENT_CHANNELS = ctypes.sizeof(xen_ulong_t) * ctypes.sizeof(xen_ulong_t) * 64


# ---------------------------------------------------------------------------
# Per-vCPU time: Xen updates it, the guest reads it without locks.
#   now_ns = system_time + scale(tsc - tsc_timestamp)
#   scale(d) = ((d << tsc_shift) * tsc_to_system_mul) >> 32
#   (tsc_shift negative means shift right.)
# version is odd while Xen is writing; the guest re-reads until it sees the
# same even version before and after.
# ---------------------------------------------------------------------------

class vcpu_time_info(ctypes.LittleEndianStructure):
    _fields_ = [
        ("version", ctypes.c_uint32),            # update counter, odd = update in progress
        ("pad0", ctypes.c_uint32),               # padding
        ("tsc_timestamp", ctypes.c_uint64),      # TSC when system_time was sampled
        ("system_time", ctypes.c_uint64),        # ns since the domain's boot at that moment
        ("tsc_to_system_mul", ctypes.c_uint32),  # TSC -> ns multiplier, scaled by 2^32
        ("tsc_shift", ctypes.c_int8),            # pre-multiply shift of the TSC delta
        ("flags", ctypes.c_uint8),               # XEN_PVCLOCK_* bits
        ("pad1", ctypes.c_uint8 * 2),            # padding
    ]  # 32 bytes


XEN_PVCLOCK_TSC_STABLE_BIT = 1 << 0  # TSC is synchronised across CPUs
XEN_PVCLOCK_GUEST_STOPPED = 1 << 1   # guest was paused (for watchdogs)


# ---------------------------------------------------------------------------
# Per-vCPU shared data (64 bytes on x86): the event upcall flags, the
# 2-level selector word, arch state and the time record.
#   1 + 1 + 6 pad + 8 (evtchn_pending_sel) + 16 (arch) + 32 (time) = 64
# ---------------------------------------------------------------------------

class vcpu_info(ctypes.LittleEndianStructure):
    _fields_ = [
        ("evtchn_upcall_pending", ctypes.c_uint8),  # set by Xen: an event is waiting;
                                                    # guest clears it before scanning
        ("evtchn_upcall_mask", ctypes.c_uint8),     # set by guest: no upcalls (virtual CLI)
        ("evtchn_pending_sel", xen_ulong_t),        # bit i: word i of evtchn_pending may have
                                                    # pending ports (2-level ABI)
        ("arch", arch_vcpu_info),                   # cr2 and padding
        ("time", vcpu_time_info),                   # this vCPU's clock parameters
    ]


# ---------------------------------------------------------------------------
# The shared info page (one per domain, pointed at by start_info.shared_info).
# On x86_64: vcpu_info[32] (2048) + evtchn_pending[64] and evtchn_mask[64]
# (512 each: sizeof(xen_ulong_t) * 8 words of 64 bits = 4096 ports) +
# wc_version, wc_sec, wc_nsec, wc_sec_hi (16) + arch (48) = 3136 bytes.
# ---------------------------------------------------------------------------

class shared_info(ctypes.LittleEndianStructure):
    _fields_ = [
        ("vcpu_info", vcpu_info * XEN_LEGACY_MAX_VCPUS),  # vCPUs 0-31 (unless moved)
        # bit per port: event pending (Xen sets, guest clears)
        ("evtchn_pending", xen_ulong_t * (ctypes.sizeof(xen_ulong_t) * 8)),
        # bit per port: masked, no upcall on pending (guest-owned)
        ("evtchn_mask", xen_ulong_t * (ctypes.sizeof(xen_ulong_t) * 8)),
        ("wc_version", ctypes.c_uint32),            # wall clock update counter (as vcpu_time_info)
        ("wc_sec", ctypes.c_uint32),                # wall clock at system time 0: seconds (low 32)
        ("wc_nsec", ctypes.c_uint32),               # ... nanoseconds
        ("wc_sec_hi", ctypes.c_uint32),             # ... seconds, high 32 bits (not on x86_32)
        ("arch", arch_shared_info),                 # p2m location, max_pfn, nmi_reason
    ]


# ---------------------------------------------------------------------------
# start_info: filled in by the domain builder; %rsi points to it at entry.
# Start-of-day layout of the initial virtual region, in order, each part
# 4 KiB aligned: kernel, initrd (mod_start), P2M list (mfn_list), start_info,
# xenstore ring, console ring (domU only), bootstrap page tables (pt_base),
# bootstrap stack; ending on a 4 MiB boundary with at least 512 KiB spare.
# ---------------------------------------------------------------------------

MAX_GUEST_CMDLINE = 1024


class start_info_console_domU(ctypes.LittleEndianStructure):
    _fields_ = [
        ("mfn", xen_pfn_t),           # machine frame of the console ring (xencons_interface)
        ("evtchn", ctypes.c_uint32),  # event channel of the console ring
    ]


class start_info_console_dom0(ctypes.LittleEndianStructure):
    _fields_ = [
        ("info_off", ctypes.c_uint32),   # offset of a dom0_vga_console_info in this page
        ("info_size", ctypes.c_uint32),  # its size
    ]


class start_info_console(LittleEndianUnion):
    _fields_ = [
        ("domU", start_info_console_domU),  # ordinary guests: the PV console ring
        ("dom0", start_info_console_dom0),  # initial domain: physical console info
    ]


class start_info(ctypes.LittleEndianStructure):
    _fields_ = [
        # Valid at boot and after resume:
        ("magic", ctypes.c_char * 32),          # "xen-<version>-<platform>", e.g. "xen-3.0-x86_64"
        ("nr_pages", ctypes.c_uint64),          # pages allocated to the domain
        ("shared_info", ctypes.c_uint64),       # machine address of the shared info page
        ("flags", ctypes.c_uint32),             # SIF_* flags
        ("store_mfn", xen_pfn_t),               # machine frame of the xenstore ring
        ("store_evtchn", ctypes.c_uint32),      # event channel of the xenstore ring
        ("console", start_info_console),        # console ring (domU) or console info (dom0)
        # Valid at boot only:
        ("pt_base", ctypes.c_uint64),           # virtual address of the bootstrap L4 page table
        ("nr_pt_frames", ctypes.c_uint64),      # number of bootstrap page-table frames
        ("mfn_list", ctypes.c_uint64),          # virtual address of the P2M list (pfn -> mfn)
        ("mod_start", ctypes.c_uint64),         # virtual address of the initrd (PFN if
                                                # SIF_MOD_START_PFN)
        ("mod_len", ctypes.c_uint64),           # initrd size in bytes
        ("cmd_line", ctypes.c_int8 * MAX_GUEST_CMDLINE),  # kernel command line, NUL-terminated
        ("first_p2m_pfn", ctypes.c_uint64),     # first PFN of the initial page tables + P2M
        ("nr_p2m_frames", ctypes.c_uint64),     # number of such PFNs
    ]


# start_info.flags
SIF_PRIVILEGED = 1 << 0       # domain is privileged
SIF_INITDOMAIN = 1 << 1       # domain is the initial control domain (dom0)
SIF_MULTIBOOT_MOD = 1 << 2    # mod_start is a list of multiboot modules
SIF_MOD_START_PFN = 1 << 3    # mod_start is a PFN, not a virtual address
SIF_VIRT_P2M_4TOOLS = 1 << 4  # tools understand the linear p2m (3-level tree not needed)
SIF_PM_MASK = 0xFF << 8       # byte reserved for power-management options
