"""HYPERVISOR_xen_version(cmd, arg): version.h and features.h.

Every command returns 0 on success, except XENVER_version (returns the
version), XENVER_pagesize (returns the page size) and XENVER_build_id
(returns a length).
"""

import ctypes

from .xen import xen_ulong_t


XENVER_version = 0              # arg NULL; returns (major << 16) | minor
XENVER_extraversion = 1         # arg -> xen_extraversion_t, e.g. ".0" or "-rc"
XENVER_compile_info = 2         # arg -> xen_compile_info
XENVER_capabilities = 3         # arg -> xen_capabilities_info_t, e.g. "xen-3.0-x86_64 ..."
XENVER_changeset = 4            # arg -> xen_changeset_info_t (source revision)
XENVER_platform_parameters = 5  # arg -> xen_platform_parameters
XENVER_get_features = 6         # arg -> xen_feature_info
XENVER_pagesize = 7             # arg NULL; returns the page size
XENVER_guest_handle = 8         # arg -> xen_domain_handle_t (the domain's UUID)
XENVER_commandline = 9          # arg -> xen_commandline_t (Xen's command line)
XENVER_build_id = 10            # arg -> xen_build_id; returns bytes written


# The string results are fixed-size char arrays, NUL-terminated if shorter.
xen_extraversion_t = ctypes.c_char * 16
XEN_EXTRAVERSION_LEN = ctypes.sizeof(xen_extraversion_t)

xen_capabilities_info_t = ctypes.c_char * 1024
XEN_CAPABILITIES_INFO_LEN = ctypes.sizeof(xen_capabilities_info_t)

xen_changeset_info_t = ctypes.c_char * 64
XEN_CHANGESET_INFO_LEN = ctypes.sizeof(xen_changeset_info_t)

xen_commandline_t = ctypes.c_char * 1024


class xen_compile_info(ctypes.LittleEndianStructure):
    _fields_ = [
        ("compiler", ctypes.c_char * 64),        # compiler that built Xen
        ("compile_by", ctypes.c_char * 16),      # user who built it
        ("compile_domain", ctypes.c_char * 32),  # DNS domain of the build host
        ("compile_date", ctypes.c_char * 32),    # build date
    ]


class xen_platform_parameters(ctypes.LittleEndianStructure):
    _fields_ = [
        ("virt_start", xen_ulong_t),  # lowest virtual address reserved by Xen
                                      # (HYPERVISOR_VIRT_START)
    ]


class xen_feature_info(ctypes.LittleEndianStructure):
    _fields_ = [
        ("submap_idx", ctypes.c_uint32),  # IN: which 32-bit block of XENFEAT_* bits
        ("submap", ctypes.c_uint32),      # OUT: that block (bit n = feature 32*idx + n)
    ]


class xen_build_id(ctypes.LittleEndianStructure):
    _fields_ = [
        ("len", ctypes.c_uint32),        # IN: size of buf
        ("buf", ctypes.c_ubyte * 0),     # OUT: the build id bytes (flexible array)
    ]


# ---------------------------------------------------------------------------
# Feature bits reported by XENVER_get_features.  The same names, minus the
# XENFEAT_ prefix, are used in the kernel's XEN_ELFNOTE_FEATURES string.
# ---------------------------------------------------------------------------

XENFEAT_writable_page_tables = 0        # page tables may be written directly
XENFEAT_writable_descriptor_tables = 1  # GDT/LDT may be written directly
XENFEAT_auto_translated_physmap = 2     # Xen does pfn <-> mfn translation (no P2M in guest)
XENFEAT_supervisor_mode_kernel = 3      # guest kernel runs in ring 0
XENFEAT_pae_pgdir_above_4gb = 4         # PAE page directories may sit above 4 GiB
XENFEAT_mmu_pt_update_preserve_ad = 5   # MMU_PT_UPDATE_PRESERVE_AD is supported
XENFEAT_highmem_assist = 6              # MMUEXT_CLEAR_PAGE / MMUEXT_COPY_PAGE are supported
XENFEAT_gnttab_map_avail_bits = 7       # map_grant_ref honours GNTMAP_guest_avail bits
XENFEAT_hvm_callback_vector = 8         # HVM: callback via a vector
XENFEAT_hvm_safe_pvclock = 9            # HVM: pvclock is safe to use
XENFEAT_hvm_pirqs = 10                  # HVM: physical IRQs via event channels
XENFEAT_dom0 = 11                       # may run as dom0
# 12 was XENFEAT_grant_map_identity, now retired.
XENFEAT_memory_op_vnode_supported = 13  # XENMEMF_vnode is accepted
XENFEAT_ARM_SMCCC_supported = 14        # ARM: SMC calling convention
XENFEAT_linux_rsdp_unrestricted = 15    # PVH Linux: RSDP may be anywhere
XENFEAT_not_direct_mapped = 16          # domain's gfn != mfn
XENFEAT_direct_mapped = 17              # domain's gfn == mfn

XENFEAT_NR_SUBMAPS = 1                  # number of 32-bit feature blocks
