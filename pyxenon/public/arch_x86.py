"""x86_64 part of the Xen ABI: arch-x86/xen.h and arch-x86/xen-x86_64.h.

Also the CPUID leaves of arch-x86/cpuid.h.

Hypercall calling convention for a 64-bit PV guest: number in %rax,
arguments 1-5 in %rdi, %rsi, %rdx, %r10, %r8, result in %rax.  Guests enter
through the hypercall page: ``call hypercall_page + nr * 32``.
"""

import ctypes


# ---------------------------------------------------------------------------
# Basic types.
# ---------------------------------------------------------------------------

# The machine word Xen uses in shared structures: unsigned long, 64-bit here.
xen_ulong_t = ctypes.c_uint64
# A page frame number (machine or guest): unsigned long, 64-bit here.
xen_pfn_t = ctypes.c_uint64
# A callback entry point (event, failsafe, syscall, nmi ...): on x86_64 just
# the 64-bit virtual address (there is no struct xen_callback: the CS is
# implied, unlike on x86_32).
xen_callback_t = ctypes.c_uint64
# A TSC value as read by RDTSC.
tsc_timestamp_t = ctypes.c_uint64

# XEN_GUEST_HANDLE(type) is "struct { type *p; }": one guest-virtual pointer,
# 8 bytes with 8-byte alignment on x86_64.  Here it is the bare address.
guest_handle = ctypes.c_uint64


# ---------------------------------------------------------------------------
# Flat segment selectors.  They live in the Xen-reserved part of every GDT
# (see FIRST_RESERVED_GDT_*), so a guest can run without its own GDT.
# A 64-bit PV kernel runs in ring 3, so kernel and user selectors coincide.
# ---------------------------------------------------------------------------

FLAT_RING3_CS32 = 0xE023  # 32-bit code, GDT entry 260, RPL 3
FLAT_RING3_CS64 = 0xE033  # 64-bit code, GDT entry 262, RPL 3
FLAT_RING3_DS32 = 0xE02B  # 32-bit data, GDT entry 261, RPL 3
FLAT_RING3_DS64 = 0x0000  # 64-bit data: the null selector
FLAT_RING3_SS32 = 0xE02B  # 32-bit stack, GDT entry 261, RPL 3
FLAT_RING3_SS64 = 0xE02B  # 64-bit stack, GDT entry 261, RPL 3

FLAT_KERNEL_DS64 = FLAT_RING3_DS64
FLAT_KERNEL_DS32 = FLAT_RING3_DS32
FLAT_KERNEL_DS = FLAT_KERNEL_DS64
FLAT_KERNEL_CS64 = FLAT_RING3_CS64
FLAT_KERNEL_CS32 = FLAT_RING3_CS32
FLAT_KERNEL_CS = FLAT_KERNEL_CS64
FLAT_KERNEL_SS64 = FLAT_RING3_SS64
FLAT_KERNEL_SS32 = FLAT_RING3_SS32
FLAT_KERNEL_SS = FLAT_KERNEL_SS64

FLAT_USER_DS64 = FLAT_RING3_DS64
FLAT_USER_DS32 = FLAT_RING3_DS32
FLAT_USER_DS = FLAT_USER_DS64
FLAT_USER_CS64 = FLAT_RING3_CS64
FLAT_USER_CS32 = FLAT_RING3_CS32
FLAT_USER_CS = FLAT_USER_CS64
FLAT_USER_SS64 = FLAT_RING3_SS64
FLAT_USER_SS32 = FLAT_RING3_SS32
FLAT_USER_SS = FLAT_USER_SS64


# ---------------------------------------------------------------------------
# Virtual address space.  Xen owns [HYPERVISOR_VIRT_START, HYPERVISOR_VIRT_END)
# of every 64-bit PV address space (the bottom of the upper canonical half);
# the guest may not map anything there.  Its first 256 GiB hold the read-only
# machine-to-phys table (one 8-byte PFN per machine frame).
# ---------------------------------------------------------------------------

HYPERVISOR_VIRT_START = 0xFFFF800000000000  # first Xen-reserved address
HYPERVISOR_VIRT_END = 0xFFFF880000000000    # end of the Xen-reserved hole
MACH2PHYS_VIRT_START = 0xFFFF800000000000   # start of the M2P table
MACH2PHYS_VIRT_END = 0xFFFF804000000000     # end of the M2P table
# Number of 8-byte entries the M2P window can hold.
MACH2PHYS_NR_ENTRIES = (MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> 3


# ---------------------------------------------------------------------------
# Reserved GDT entries.  Xen keeps the tail of every GDT for itself, starting
# at page 14 of the (16-page, 8192-entry) table.  A guest's GDT frames may
# only describe entries below FIRST_RESERVED_GDT_ENTRY.
# ---------------------------------------------------------------------------

FIRST_RESERVED_GDT_PAGE = 14
FIRST_RESERVED_GDT_BYTE = FIRST_RESERVED_GDT_PAGE * 4096
FIRST_RESERVED_GDT_ENTRY = FIRST_RESERVED_GDT_BYTE // 8

# Number of vcpu_info slots in shared_info; vCPUs beyond this must register
# a vcpu_info elsewhere (VCPUOP_register_vcpu_info).
XEN_LEGACY_MAX_VCPUS = 32


# ---------------------------------------------------------------------------
# HYPERVISOR_set_segment_base(which, base): which base to load.
# ---------------------------------------------------------------------------

SEGBASE_FS = 0           # FS base
SEGBASE_GS_USER = 1      # GS base used while in user mode
SEGBASE_GS_KERNEL = 2    # GS base used while in kernel mode
SEGBASE_GS_USER_SEL = 3  # load user %gs with the selector in base[15:0]


# ---------------------------------------------------------------------------
# Virtual IDT: HYPERVISOR_set_trap_table takes an array of trap_info, ended
# by an entry whose address is 0.
# ---------------------------------------------------------------------------

class trap_info(ctypes.LittleEndianStructure):
    _fields_ = [
        ("vector", ctypes.c_uint8),    # exception/interrupt vector number
        ("flags", ctypes.c_uint8),     # bits 0-1: DPL allowed to raise it (int n);
                                       # bit 2: mask events on entry (like an interrupt gate)
        ("cs", ctypes.c_uint16),       # code selector of the handler
        ("address", ctypes.c_uint64),  # handler entry point (unsigned long)
    ]


def TI_GET_DPL(ti):
    """Privilege level that may raise the trap with a software INT."""
    return ti.flags & 3


def TI_GET_IF(ti):
    """Non-zero if event delivery is masked on entry to the handler."""
    return ti.flags & 4


def TI_SET_DPL(ti, dpl):
    ti.flags |= dpl


def TI_SET_IF(ti, if_):
    ti.flags |= (1 if if_ else 0) << 2


# ---------------------------------------------------------------------------
# Register frame (x86_64).  In GNU C each 64-bit register is an anonymous
# union that also names the 32-bit view (rax/eax/_eax); the layout is the
# same as with the plain 64-bit names used here (Xen's non-GNU-C spelling).
# ---------------------------------------------------------------------------

class cpu_user_regs(ctypes.LittleEndianStructure):
    _fields_ = [
        ("r15", ctypes.c_uint64),                 # r15 (the frame's lowest address)
        ("r14", ctypes.c_uint64),                 # r14
        ("r13", ctypes.c_uint64),                 # r13
        ("r12", ctypes.c_uint64),                 # r12
        ("rbp", ctypes.c_uint64),                 # frame pointer
        ("rbx", ctypes.c_uint64),                 # rbx
        ("r11", ctypes.c_uint64),                 # r11 (rflags after SYSCALL)
        ("r10", ctypes.c_uint64),                 # r10 (hypercall argument 4)
        ("r9", ctypes.c_uint64),                  # r9
        ("r8", ctypes.c_uint64),                  # r8 (hypercall argument 5)
        ("rax", ctypes.c_uint64),                 # rax (hypercall number / result)
        ("rcx", ctypes.c_uint64),                 # rcx (return rip after SYSCALL)
        ("rdx", ctypes.c_uint64),                 # rdx (hypercall argument 3)
        ("rsi", ctypes.c_uint64),                 # rsi (hypercall argument 2; start_info at boot)
        ("rdi", ctypes.c_uint64),                 # rdi (hypercall argument 1)
        ("error_code", ctypes.c_uint32),          # Xen-private: exception error code
        ("entry_vector", ctypes.c_uint32),        # Xen-private: vector that caused the entry
        ("rip", ctypes.c_uint64),                 # instruction pointer
        ("cs", ctypes.c_uint16),                  # code selector
        ("_pad0", ctypes.c_uint16 * 1),           # padding
        ("saved_upcall_mask", ctypes.c_uint8),    # evtchn_upcall_mask at entry (~rflags.IF)
        ("_pad1", ctypes.c_uint8 * 3),            # padding
        ("rflags", ctypes.c_uint64),              # flags register
        ("rsp", ctypes.c_uint64),                 # stack pointer
        ("ss", ctypes.c_uint16),                  # stack selector
        ("_pad2", ctypes.c_uint16 * 3),           # padding
        ("es", ctypes.c_uint16),                  # es (selectors sit in 8-byte slots)
        ("_pad3", ctypes.c_uint16 * 3),           # padding
        ("ds", ctypes.c_uint16),                  # ds
        ("_pad4", ctypes.c_uint16 * 3),           # padding
        ("fs", ctypes.c_uint16),                  # fs selector (base: SEGBASE_FS)
        ("_pad5", ctypes.c_uint16 * 3),           # padding
        ("gs", ctypes.c_uint16),                  # gs selector (bases: SEGBASE_GS_*)
        ("_pad6", ctypes.c_uint16 * 3),           # padding
    ]


def xen_pfn_to_cr3(pfn):
    """CR3 value (as a PV guest passes it) for a page-table frame."""
    return (pfn << 12) & 0xFFFFFFFFFFFFFFFF


def xen_cr3_to_pfn(cr3):
    """Frame number held in a PV CR3 value."""
    return (cr3 & 0xFFFFFFFFFFFFFFFF) >> 12


# ---------------------------------------------------------------------------
# HYPERVISOR_iret: a 64-bit PV kernel returns from an exception/event by
# pushing this frame and calling the hypercall.  The struct starts at the
# guest %rsp at the time of the hypercall.
#
# If flags has VGCF_in_syscall: restore rax, rip, rflags, rsp only (SYSRET
# style; r11, rcx, cs, ss are dropped).  Otherwise restore rax, r11, rcx,
# cs:rip, rflags, ss:rsp.  A saved CS with RPL 0, 1 or 2 means "return to
# guest kernel mode", RPL 3 means "return to guest user mode".
# ---------------------------------------------------------------------------

# Guest left through SYSCALL and may return with SYSRET (iret_context.flags).
VGCF_in_syscall = 1 << 8
VGCF_IN_SYSCALL = VGCF_in_syscall


class iret_context(ctypes.LittleEndianStructure):
    _fields_ = [
        ("rax", ctypes.c_uint64),     # guest %rax to restore (lowest address)
        ("r11", ctypes.c_uint64),     # guest %r11 to restore
        ("rcx", ctypes.c_uint64),     # guest %rcx to restore
        ("flags", ctypes.c_uint64),   # VGCF_in_syscall or 0
        ("rip", ctypes.c_uint64),     # return address
        ("cs", ctypes.c_uint64),      # return code selector (RPL picks kernel/user)
        ("rflags", ctypes.c_uint64),  # flags to restore (IF unmasks events)
        ("rsp", ctypes.c_uint64),     # return stack pointer
        ("ss", ctypes.c_uint64),      # return stack selector
    ]


# ---------------------------------------------------------------------------
# Per-vCPU and per-domain arch parts of vcpu_info / shared_info.
# ---------------------------------------------------------------------------

class arch_vcpu_info(ctypes.LittleEndianStructure):
    _fields_ = [
        ("cr2", ctypes.c_uint64),  # faulting address of the last page fault delivered
        ("pad", ctypes.c_uint64),  # keeps vcpu_info at 64 bytes
    ]


class arch_shared_info(ctypes.LittleEndianStructure):
    # On x86_64 wc_sec_hi is in shared_info itself, not here (x86_32 only).
    _fields_ = [
        ("max_pfn", ctypes.c_uint64),               # number of valid p2m entries
        ("pfn_to_mfn_frame_list_list", xen_pfn_t),  # MFN of the top page of the 3-level
                                                    # p2m frame tree (0: unset, ~0: invalid)
        ("nmi_reason", ctypes.c_uint64),            # XEN_NMIREASON_* bits of a pending NMI
        ("p2m_cr3", ctypes.c_uint64),               # address space (CR3 format) holding the
                                                    # linear p2m list; 0 = not provided
        ("p2m_vaddr", ctypes.c_uint64),             # virtual address of the linear p2m list
        ("p2m_generation", ctypes.c_uint64),        # bumped around p2m changes; odd = updating
    ]


# ---------------------------------------------------------------------------
# Full vCPU state, as used by VCPUOP_initialise (bring up a secondary vCPU).
# ---------------------------------------------------------------------------

# vcpu_guest_context.flags
VGCF_I387_VALID = 1 << 0                # fpu_ctxt holds valid state (old name)
VGCF_IN_KERNEL = 1 << 2                 # vCPU starts in guest kernel mode (old name)
VGCF_i387_valid = 1 << 0                # fpu_ctxt holds valid state
VGCF_in_kernel = 1 << 2                 # vCPU starts in guest kernel mode
VGCF_failsafe_disables_events = 1 << 3  # mask events when entering the failsafe callback
VGCF_syscall_disables_events = 1 << 4   # mask events when entering the syscall callback
VGCF_online = 1 << 5                    # vCPU is up (used on save/restore)


class vcpu_guest_context_fpu_ctxt(ctypes.LittleEndianStructure):
    _fields_ = [
        ("x", ctypes.c_char * 512),  # FXSAVE image
    ]


class vcpu_guest_context(ctypes.LittleEndianStructure):
    _fields_ = [
        ("fpu_ctxt", vcpu_guest_context_fpu_ctxt),  # FPU/SSE state, first so it can be 16-aligned
        ("flags", ctypes.c_uint64),                 # VGCF_* flags
        ("user_regs", cpu_user_regs),               # general registers, rip, rflags, selectors
        ("trap_ctxt", trap_info * 256),             # virtual IDT
        ("ldt_base", ctypes.c_uint64),              # LDT linear address
        ("ldt_ents", ctypes.c_uint64),              # LDT entry count
        ("gdt_frames", ctypes.c_uint64 * 16),       # machine frames holding the GDT
        ("gdt_ents", ctypes.c_uint64),              # GDT entry count
        ("kernel_ss", ctypes.c_uint64),             # stack selector for entering the kernel
        ("kernel_sp", ctypes.c_uint64),             # stack pointer for entering the kernel
        ("ctrlreg", ctypes.c_uint64 * 8),           # CR0-CR7; CR3 = kernel page table,
                                                    # ctrlreg[1] = user page table (x86_64)
        ("debugreg", ctypes.c_uint64 * 8),          # DR0-DR7
        ("event_callback_eip", ctypes.c_uint64),    # event upcall entry point
        ("failsafe_callback_eip", ctypes.c_uint64), # failsafe callback entry point
        ("syscall_callback_eip", ctypes.c_uint64),  # 64-bit SYSCALL entry point
        ("vm_assist", ctypes.c_uint64),             # bitmap of enabled VMASST_TYPE_*
        ("fs_base", ctypes.c_uint64),               # FS base
        ("gs_base_kernel", ctypes.c_uint64),        # GS base in kernel mode
        ("gs_base_user", ctypes.c_uint64),          # GS base in user mode
    ]


# ---------------------------------------------------------------------------
# CPUID leaves Xen exposes to guests (arch-x86/cpuid.h).  The base is
# XEN_CPUID_FIRST_LEAF, or the next free multiple of 0x100 above it when
# another hypervisor interface (e.g. Viridian) sits there; guests scan for the
# signature.  Relative to the base:
#   +0  EAX = highest Xen leaf; EBX, ECX, EDX = "XenVMMXenVMM"
#   +1  EAX = Xen version, major in bits 31:16, minor in 15:0
#   +2  EAX = number of hypercall pages (always 1), EBX = base of Xen MSRs
#       (write the hypercall page's address there), ECX = features 1
#   +3  TSC/time parameters (sub-leaves 0-2)
#   +4  HVM-only feature flags (XEN_HVM_CPUID_*)
#   +5  PV parameters: EAX = highest sub-leaf, EBX[7:0] = max machine
#       address width in bits
# ---------------------------------------------------------------------------

XEN_CPUID_FIRST_LEAF = 0x40000000
XEN_CPUID_SIGNATURE_EBX = 0x566E6558  # "XenV"
XEN_CPUID_SIGNATURE_ECX = 0x65584D4D  # "MMXe"
XEN_CPUID_SIGNATURE_EDX = 0x4D4D566E  # "nVMM"
# Leaf +2 ECX: MMU_PT_UPDATE_PRESERVE_AD is available to this guest.
XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD = 1 << 0
# Leaf +4 EAX (HVM guests only).
XEN_HVM_CPUID_APIC_ACCESS_VIRT = 1 << 0  # APIC register accesses are virtualised
XEN_HVM_CPUID_X2APIC_VIRT = 1 << 1       # x2APIC accesses are virtualised
XEN_HVM_CPUID_IOMMU_MAPPINGS = 1 << 2    # foreign mappings have IOMMU entries
XEN_HVM_CPUID_VCPU_ID_PRESENT = 1 << 3   # EBX holds the vCPU id
XEN_HVM_CPUID_DOMID_PRESENT = 1 << 4     # ECX holds the domain id
XEN_HVM_CPUID_EXT_DEST_ID = 1 << 5       # 15-bit APIC destination ids via spare bits
XEN_HVM_CPUID_UPCALL_VECTOR = 1 << 6     # per-vCPU upcall vectors work with pIRQs
# Leaf +5 EBX: field holding the maximum machine address width.
XEN_CPUID_MACHINE_ADDRESS_WIDTH_MASK = 0xFF << 0
# Offset of the highest Xen leaf from the base (leaf +0 EAX = base + this).
XEN_CPUID_MAX_NUM_LEAVES = 5


def XEN_CPUID_LEAF(i):
    """Xen CPUID leaf at offset i from the default base."""
    return XEN_CPUID_FIRST_LEAF + i
