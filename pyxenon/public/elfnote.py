"""Xen ELF notes: elfnote.h.

A PV kernel describes itself to the domain builder with ELF notes (in a
PT_NOTE segment or SHT_NOTE section) whose owner name is "Xen" and whose
type is one of the XEN_ELFNOTE_* numbers below.  Values are either numbers
(little-endian, 4 or 8 bytes) or NUL-terminated strings.  Kernels without
notes may use the older "__xen_guest" section instead.
"""

# The note's name field (n_namesz = 4, counting the NUL).
XEN_ELFNOTE_NAME = b"Xen"

XEN_ELFNOTE_INFO = 0                # string: a NAME=VALUE pair
XEN_ELFNOTE_ENTRY = 1               # number: virtual entry point
XEN_ELFNOTE_HYPERCALL_PAGE = 2      # number: virtual address to put the hypercall page at
XEN_ELFNOTE_VIRT_BASE = 3           # number: virtual address of the image base (default 0)
XEN_ELFNOTE_PADDR_OFFSET = 4        # number: subtract from ELF p_paddr to get the
                                    # pseudo-physical load address (default 0)
XEN_ELFNOTE_XEN_VERSION = 5         # string: Xen version the kernel expects, e.g. "xen-3.0"
XEN_ELFNOTE_GUEST_OS = 6            # string: guest OS name, e.g. "linux"
XEN_ELFNOTE_GUEST_VERSION = 7       # string: guest OS version
XEN_ELFNOTE_LOADER = 8              # string: loader type, "generic"
XEN_ELFNOTE_PAE_MODE = 9            # string: x86_32 PAE support: "yes", "no", "bimodal"
XEN_ELFNOTE_FEATURES = 10           # string: '|'-separated XENFEAT_ names without the
                                    # prefix; '!' before a name = required
XEN_ELFNOTE_BSD_SYMTAB = 11         # string: "yes" to have the symbol table loaded
XEN_ELFNOTE_HV_START_LOW = 12       # number: lowest address the hypervisor hole may
                                    # start at (<= HYPERVISOR_VIRT_START)
XEN_ELFNOTE_L1_MFN_VALID = 13       # numbers: mask/value pairs recognising non-present
                                    # L1 PTEs that still hold valid MFNs
XEN_ELFNOTE_SUSPEND_CANCEL = 14     # number: kernel supports cooperative suspend cancel
XEN_ELFNOTE_INIT_P2M = 15           # number: virtual address for the initial P2M list
                                    # (instead of right after the initrd)
XEN_ELFNOTE_MOD_START_PFN = 16      # number: kernel accepts an initrd given as a PFN, not
                                    # mapped by the initial page tables
XEN_ELFNOTE_SUPPORTED_FEATURES = 17 # number: XENFEAT_ bitmap the kernel supports
XEN_ELFNOTE_PHYS32_ENTRY = 18       # number: 32-bit physical entry point (PVH only)
XEN_ELFNOTE_MAX = XEN_ELFNOTE_PHYS32_ENTRY  # highest guest note type

# Notes in Xen crash dumps and "xl dump-core" files, not in kernels.
XEN_ELFNOTE_CRASH_INFO = 0x1000001
XEN_ELFNOTE_CRASH_REGS = 0x1000002
XEN_ELFNOTE_DUMPCORE_NONE = 0x2000000
XEN_ELFNOTE_DUMPCORE_HEADER = 0x2000001
XEN_ELFNOTE_DUMPCORE_XEN_VERSION = 0x2000002
XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION = 0x2000003

# note type -> name without the prefix, e.g. 1 -> "ENTRY".
XEN_ELFNOTE_NAMES = dict(sorted(
    (value, name[len("XEN_ELFNOTE_"):])
    for name, value in globals().items()
    if name.startswith("XEN_ELFNOTE_") and isinstance(value, int)
    and name != "XEN_ELFNOTE_MAX"
))
