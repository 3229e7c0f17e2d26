"""HYPERVISOR_grant_table_op(cmd, args[], count): grant_table.h.

A domain shares its pages by writing entries in its grant table (pages it
gets from GNTTABOP_setup_table or XENMEM_add_to_physmap); other domains name
an entry by (granting domid, grant_ref_t) to map or copy that page.

Granting (v1): write domid and frame, write barrier, then write flags with
the type.  Revoking: if neither GTF_reading nor GTF_writing is set, cmpxchg
flags to 0.
"""

import ctypes

from ._compat import LittleEndianUnion
from .xen import domid_t, guest_handle, xen_pfn_t


# Index of an entry in a grant table.
grant_ref_t = ctypes.c_uint32
# Tracks one mapping made by GNTTABOP_map_grant_ref.
grant_handle_t = ctypes.c_uint32
# A v2 status-frame entry (the GTF_reading / GTF_writing bits).
grant_status_t = ctypes.c_uint16


# ---------------------------------------------------------------------------
# Grant entries.
# ---------------------------------------------------------------------------

class grant_entry_v1(ctypes.LittleEndianStructure):
    _fields_ = [
        ("flags", ctypes.c_uint16),  # GTF_* type and flags (set by guest and Xen)
        ("domid", domid_t),          # domain that may use this grant
        ("frame", ctypes.c_uint32),  # permit_access: frame to share; accept_transfer: frame
                                     # to receive into; transfer_completed: frame received
    ]


# Entries at the start of the table kept for the toolstack across resume.
GNTTAB_NR_RESERVED_ENTRIES = 8
GNTTAB_RESERVED_CONSOLE = 0   # entry granting the console ring to the backend
GNTTAB_RESERVED_XENSTORE = 1  # entry granting the xenstore ring to xenstored

# grant entry flags: the type in bits 0-1 ...
GTF_invalid = 0 << 0          # entry not in use
GTF_permit_access = 1 << 0    # domid may map / access frame
GTF_accept_transfer = 2 << 0  # domid may transfer a page to us (Xen writes its frame)
GTF_transitive = 3 << 0       # domid may use a grant of another domain through us
GTF_type_mask = 3 << 0
# ... and sub-flags for permit_access / transitive
GTF_readonly = 1 << 2         # read-only access only (set by guest)
GTF_reading = 1 << 3          # mapped / accessed for reading now (set by Xen)
GTF_writing = 1 << 4          # mapped / accessed for writing now (set by Xen)
GTF_PWT = 1 << 5              # x86 cache attribute of mappings: write-through
GTF_PCD = 1 << 6              # x86 cache attribute of mappings: cache disable
GTF_PAT = 1 << 7              # x86 cache attribute of mappings: PAT bit
GTF_sub_page = 1 << 8         # v2: only a byte range, copy only
# ... and sub-flags for accept_transfer
GTF_transfer_committed = 1 << 2  # Xen is transferring a frame: hands off the entry
GTF_transfer_completed = 1 << 3  # frame field now holds the transferred frame


class grant_entry_header(ctypes.LittleEndianStructure):
    # The prefix v1 and v2 entries share.
    _fields_ = [
        ("flags", ctypes.c_uint16),  # GTF_* flags
        ("domid", domid_t),          # domain that may use this grant
    ]


class grant_entry_v2_full_page(ctypes.LittleEndianStructure):
    _fields_ = [
        ("hdr", grant_entry_header),  # flags and domid
        ("pad0", ctypes.c_uint32),    # padding
        ("frame", ctypes.c_uint64),  # as grant_entry_v1.frame
    ]


class grant_entry_v2_sub_page(ctypes.LittleEndianStructure):
    _fields_ = [
        ("hdr", grant_entry_header),    # flags and domid
        ("page_off", ctypes.c_uint16),  # first byte domid may copy
        ("length", ctypes.c_uint16),    # number of bytes
        ("frame", ctypes.c_uint64),     # frame holding them
    ]


class grant_entry_v2_transitive(ctypes.LittleEndianStructure):
    _fields_ = [
        ("hdr", grant_entry_header),  # flags and domid
        ("trans_domid", domid_t),     # domain that granted the page to us
        ("pad0", ctypes.c_uint16),    # padding
        ("gref", grant_ref_t),        # its grant reference
    ]


class grant_entry_v2(LittleEndianUnion):
    _fields_ = [
        ("hdr", grant_entry_header),                 # common prefix
        ("full_page", grant_entry_v2_full_page),     # whole-page grant or transfer
        ("sub_page", grant_entry_v2_sub_page),       # GTF_permit_access | GTF_sub_page
        ("transitive", grant_entry_v2_transitive),   # GTF_transitive
        ("__spacer", ctypes.c_uint32 * 4),           # pads the entry to 16 bytes
    ]


# ---------------------------------------------------------------------------
# Operations.
# ---------------------------------------------------------------------------

GNTTABOP_map_grant_ref = 0         # map (dom, ref) for the CPU and/or devices
GNTTABOP_unmap_grant_ref = 1       # undo map_grant_ref
GNTTABOP_setup_table = 2           # size the table and get its frames
GNTTABOP_dump_table = 3            # dump a table to the Xen console (debug)
GNTTABOP_transfer = 4              # give a page to another domain
GNTTABOP_copy = 5                  # Xen copies bytes between granted / own frames
GNTTABOP_query_size = 6            # current and maximum table size
GNTTABOP_unmap_and_replace = 7     # unmap, moving another mapping into the PTE
GNTTABOP_set_version = 8           # choose v1 or v2 entries
GNTTABOP_get_status_frames = 9     # v2: frames of the status array
GNTTABOP_get_version = 10          # which version a domain uses
GNTTABOP_swap_grant_ref = 11       # swap two entries
GNTTABOP_cache_flush = 12          # clean / invalidate caches for a grant (ARM)


# gnttab_map_grant_ref.flags
GNTMAP_device_map = 1 << 0       # make the frame reachable by devices (dev_bus_addr)
GNTMAP_host_map = 1 << 1         # map it for the CPU at host_addr
GNTMAP_readonly = 1 << 2         # read-only mapping
GNTMAP_application_map = 1 << 3  # host mapping also usable from guest user mode
GNTMAP_contains_pte = 1 << 4     # host_addr is the machine address of the PTE to
                                 # write, not a virtual address
# Bits 16 and up are copied into the guest-available bits of the PTE
# (if XENFEAT_gnttab_map_avail_bits).
GNTMAP_guest_avail_mask = (0xFFFFFFFF << 16) & 0xFFFFFFFF


class gnttab_map_grant_ref(ctypes.LittleEndianStructure):
    _fields_ = [
        ("host_addr", ctypes.c_uint64),     # IN: virtual address, or PTE machine address
                                            # with GNTMAP_contains_pte
        ("flags", ctypes.c_uint32),         # IN: GNTMAP_* flags
        ("ref", grant_ref_t),               # IN: grant reference in dom's table
        ("dom", domid_t),                   # IN: granting domain
        ("status", ctypes.c_int16),         # OUT: GNTST_* code
        ("handle", grant_handle_t),         # OUT: handle for the unmap
        ("dev_bus_addr", ctypes.c_uint64),  # OUT: bus address for devices (GNTMAP_device_map)
    ]


class gnttab_unmap_grant_ref(ctypes.LittleEndianStructure):
    _fields_ = [
        ("host_addr", ctypes.c_uint64),     # IN: address given to map (0: no host mapping)
        ("dev_bus_addr", ctypes.c_uint64),  # IN: bus address returned by map (0: none)
        ("handle", grant_handle_t),         # IN: handle returned by map
        ("status", ctypes.c_int16),         # OUT: GNTST_* code
    ]


class gnttab_setup_table(ctypes.LittleEndianStructure):
    _fields_ = [
        ("dom", domid_t),                # IN: domain (DOMID_SELF unless privileged)
        ("nr_frames", ctypes.c_uint32),  # IN: number of table frames wanted
        ("status", ctypes.c_int16),      # OUT: GNTST_* code
        ("frame_list", guest_handle),    # OUT: guest array of xen_pfn_t, the table's frames
    ]


class gnttab_dump_table(ctypes.LittleEndianStructure):
    _fields_ = [
        ("dom", domid_t),            # IN: domain
        ("status", ctypes.c_int16),  # OUT: GNTST_* code
    ]


class gnttab_transfer(ctypes.LittleEndianStructure):
    _fields_ = [
        ("mfn", xen_pfn_t),          # IN: frame to give away (lost even on failure,
                                     # except with GNTST_bad_page)
        ("domid", domid_t),          # IN: receiving domain
        ("ref", grant_ref_t),        # IN: its GTF_accept_transfer entry
        ("status", ctypes.c_int16),  # OUT: GNTST_* code
    ]


# gnttab_copy.flags: which ends are grant references (else frames of the caller)
GNTCOPY_source_gref = 1 << 0
GNTCOPY_dest_gref = 1 << 1


class gnttab_copy_ptr_u(LittleEndianUnion):
    _fields_ = [
        ("ref", grant_ref_t),  # grant reference (GNTCOPY_*_gref set)
        ("gmfn", xen_pfn_t),   # or a frame of the caller
    ]


class gnttab_copy_ptr(ctypes.LittleEndianStructure):
    _fields_ = [
        ("u", gnttab_copy_ptr_u),       # the page
        ("domid", domid_t),             # domain owning the grant / frame
        ("offset", ctypes.c_uint16),    # byte offset in the page
    ]


class gnttab_copy(ctypes.LittleEndianStructure):
    _fields_ = [
        ("source", gnttab_copy_ptr),    # IN: where to copy from
        ("dest", gnttab_copy_ptr),      # IN: where to copy to
        ("len", ctypes.c_uint16),       # IN: bytes to copy (may not cross a page)
        ("flags", ctypes.c_uint16),     # IN: GNTCOPY_* flags
        ("status", ctypes.c_int16),     # OUT: GNTST_* code
    ]


class gnttab_query_size(ctypes.LittleEndianStructure):
    _fields_ = [
        ("dom", domid_t),                    # IN: domain
        ("nr_frames", ctypes.c_uint32),      # OUT: current table frames
        ("max_nr_frames", ctypes.c_uint32),  # OUT: limit on table frames
        ("status", ctypes.c_int16),          # OUT: GNTST_* code
    ]


class gnttab_unmap_and_replace(ctypes.LittleEndianStructure):
    _fields_ = [
        ("host_addr", ctypes.c_uint64),  # IN: mapping to remove
        ("new_addr", ctypes.c_uint64),   # IN: mapping whose PTE moves to host_addr (then zapped)
        ("handle", grant_handle_t),      # IN: handle returned by map
        ("status", ctypes.c_int16),      # OUT: GNTST_* code
    ]


class gnttab_set_version(ctypes.LittleEndianStructure):
    _fields_ = [
        ("version", ctypes.c_uint32),  # IN: 1 or 2; OUT: version now in use
    ]


class gnttab_get_status_frames(ctypes.LittleEndianStructure):
    _fields_ = [
        ("nr_frames", ctypes.c_uint32),  # IN: size of frame_list
        ("dom", domid_t),                # IN: domain
        ("status", ctypes.c_int16),      # OUT: GNTST_* code
        ("frame_list", guest_handle),    # OUT: guest array of uint64_t frames
    ]


class gnttab_get_version(ctypes.LittleEndianStructure):
    _fields_ = [
        ("dom", domid_t),              # IN: domain
        ("pad", ctypes.c_uint16),      # padding
        ("version", ctypes.c_uint32),  # OUT: 1 or 2
    ]


class gnttab_swap_grant_ref(ctypes.LittleEndianStructure):
    _fields_ = [
        ("ref_a", grant_ref_t),      # IN: first entry
        ("ref_b", grant_ref_t),      # IN: second entry
        ("status", ctypes.c_int16),  # OUT: GNTST_* code
    ]


# gnttab_cache_flush.op
GNTTAB_CACHE_CLEAN = 1 << 0        # clean (write back)
GNTTAB_CACHE_INVAL = 1 << 1        # invalidate
GNTTAB_CACHE_SOURCE_GREF = 1 << 31 # a.ref is a grant reference, not a bus address


class gnttab_cache_flush_a(LittleEndianUnion):
    _fields_ = [
        ("dev_bus_addr", ctypes.c_uint64),  # bus address of the page
        ("ref", grant_ref_t),               # or a grant reference
    ]


class gnttab_cache_flush(ctypes.LittleEndianStructure):
    _fields_ = [
        ("a", gnttab_cache_flush_a),    # the page
        ("offset", ctypes.c_uint16),    # first byte within it
        ("length", ctypes.c_uint16),    # number of bytes
        ("op", ctypes.c_uint32),        # GNTTAB_CACHE_* flags
    ]


# ---------------------------------------------------------------------------
# Status codes returned in the ops' status fields.
# ---------------------------------------------------------------------------

GNTST_okay = 0                 # success
GNTST_general_error = -1       # unspecified error
GNTST_bad_domain = -2          # no such domain
GNTST_bad_gntref = -3          # bad grant reference
GNTST_bad_handle = -4          # bad mapping handle
GNTST_bad_virt_addr = -5       # bad virtual address to map at
GNTST_bad_dev_addr = -6        # bad device address to unmap
GNTST_no_device_space = -7     # I/O MMU full
GNTST_permission_denied = -8   # not allowed
GNTST_bad_page = -9            # bad page
GNTST_bad_copy_arg = -10       # copy crosses a page boundary
GNTST_address_too_big = -11    # transfer: page address too large
GNTST_eagain = -12             # not done, try again
GNTST_no_space = -13           # out of space (handles etc.)

# Xen's message for each status, indexed by -status.
GNTTABOP_error_msgs = (
    "okay",
    "undefined error",
    "unrecognised domain id",
    "invalid grant reference",
    "invalid mapping handle",
    "invalid virtual address",
    "invalid device address",
    "no spare translation slot in the I/O MMU",
    "permission denied",
    "bad page",
    "copy arguments cross page boundary",
    "page address size too large",
    "operation not done; try again",
    "out of space",
)


def gntst_message(status):
    """Xen's text for a GNTST_* code."""
    if GNTST_no_space <= status <= GNTST_okay:
        return GNTTABOP_error_msgs[-status]
    return "unknown status %d" % status
