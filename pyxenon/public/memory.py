"""HYPERVISOR_memory_op(cmd, arg): memory.h.

Plus the e820 entry layout used by XENMEM_memory_map (Xen documents the
buffer as "as returned by BIOS INT 15h, EAX=E820h"; libxc's xenctrl.h spells
it out as struct e820entry).
"""

import ctypes

from ._compat import LittleEndianUnion
from .xen import domid_t, guest_handle, xen_pfn_t, xen_ulong_t


# ---------------------------------------------------------------------------
# Operations.  Ops that return a count or a frame number return it as the
# hypercall result; negative is an error.
# ---------------------------------------------------------------------------

XENMEM_increase_reservation = 0  # allocate extents; arg -> xen_memory_reservation;
                                 # returns extents done
XENMEM_decrease_reservation = 1  # free extents; arg -> xen_memory_reservation
XENMEM_maximum_ram_page = 2      # returns the highest machine frame of the host
XENMEM_current_reservation = 3   # returns a domain's pages; arg -> xen_memory_domain
XENMEM_maximum_reservation = 4   # returns a domain's page limit; arg -> xen_memory_domain
XENMEM_machphys_mfn_list = 5     # frames backing the M2P table; arg -> xen_machphys_mfn_list
XENMEM_populate_physmap = 6      # back guest frames with memory; arg -> xen_memory_reservation
XENMEM_add_to_physmap = 7        # map a Xen page (shared info, grant table ...) at a guest
                                 # frame; arg -> xen_add_to_physmap
# 8 was XENMEM_translate_gpfn_list (removed).
XENMEM_memory_map = 9            # the domain's pseudo-physical e820 map; arg -> xen_memory_map
XENMEM_machine_memory_map = 10   # the host's e820 map (privileged); arg -> xen_memory_map
XENMEM_exchange = 11             # swap extents for others; arg -> xen_memory_exchange
XENMEM_machphys_mapping = 12     # where the M2P table is mapped; arg -> xen_machphys_mapping
XENMEM_set_memory_map = 13       # set a domain's e820 map; arg -> xen_foreign_memory_map
XENMEM_maximum_gpfn = 14         # returns the highest guest frame; arg -> xen_memory_domain
XENMEM_remove_from_physmap = 15  # unmap a guest frame; arg -> xen_remove_from_physmap
XENMEM_set_pod_target = 16       # populate-on-demand target; arg -> xen_pod_target
XENMEM_get_pod_target = 17       # arg -> xen_pod_target
XENMEM_get_sharing_freed_pages = 18   # toolstack only
XENMEM_get_sharing_shared_pages = 19  # toolstack only
XENMEM_paging_op = 20            # toolstack only
XENMEM_access_op = 21            # toolstack only
XENMEM_sharing_op = 22           # toolstack only
XENMEM_add_to_physmap_batch = 23 # batched add_to_physmap; arg -> xen_add_to_physmap_batch
XENMEM_claim_pages = 24          # reserve pages for a domain (privileged)
XENMEM_machphys_compat_mfn_list = 25  # frames of the 32-bit compat M2P table
XENMEM_get_vnumainfo = 26        # virtual NUMA layout; arg -> xen_vnuma_topology_info
XENMEM_reserved_device_memory_map = 27  # toolstack only
XENMEM_acquire_resource = 28     # map a domain resource; arg -> xen_mem_acquire_resource


# ---------------------------------------------------------------------------
# Reservations.
# ---------------------------------------------------------------------------

# xen_memory_reservation.mem_flags: bits 0-7 = address bits (0: no limit),
# bits 8-15 = NUMA node + 1, and the flags below.
XENMEMF_populate_on_demand = 1 << 16  # populate with populate-on-demand entries
XENMEMF_exact_node_request = 1 << 17  # only from the given node
XENMEMF_vnode = 1 << 18               # the node is a virtual node


def XENMEMF_address_bits(x):
    """mem_flags value limiting frames to x address bits."""
    return x


def XENMEMF_get_address_bits(x):
    return x & 0xFF


def XENMEMF_node(x):
    """mem_flags value asking for NUMA node x."""
    return (x + 1) << 8


def XENMEMF_get_node(x):
    return ((x >> 8) - 1) & 0xFF


def XENMEMF_exact_node(n):
    return XENMEMF_node(n) | XENMEMF_exact_node_request


class xen_memory_reservation(ctypes.LittleEndianStructure):
    _fields_ = [
        ("extent_start", guest_handle),      # guest array of xen_pfn_t: increase: OUT machine
                                             # frames; decrease: IN frames to free;
                                             # populate: IN guest frames, OUT backing frames
        ("nr_extents", xen_ulong_t),         # number of extents
        ("extent_order", ctypes.c_uint32),   # each extent is 2^order pages
        ("mem_flags", ctypes.c_uint32),      # XENMEMF_* flags
        ("domid", domid_t),                  # domain (unprivileged: DOMID_SELF)
    ]


class xen_memory_exchange(ctypes.LittleEndianStructure):
    _fields_ = [
        ("in", xen_memory_reservation),     # IN: extents to give up (address bits ignored)
        ("out", xen_memory_reservation),    # IN/OUT: extents wanted (same total size)
        ("nr_exchanged", xen_ulong_t),      # OUT: input extents exchanged; caller zeroes it
    ]


class xen_memory_domain(ctypes.LittleEndianStructure):
    _fields_ = [
        ("domid", domid_t),  # IN: domain being asked about
    ]


# ---------------------------------------------------------------------------
# Machine-to-phys table.
# ---------------------------------------------------------------------------

class xen_machphys_mfn_list(ctypes.LittleEndianStructure):
    _fields_ = [
        ("max_extents", ctypes.c_uint32),  # IN: size of extent_start
        ("extent_start", guest_handle),    # OUT: guest array of xen_pfn_t, first frame of each
                                           # 2 MiB chunk of the M2P (0 for holes)
        ("nr_extents", ctypes.c_uint32),   # OUT: entries written
    ]


class xen_machphys_mapping(ctypes.LittleEndianStructure):
    _fields_ = [
        ("v_start", xen_ulong_t),  # OUT: first virtual address of the M2P table
        ("v_end", xen_ulong_t),    # OUT: end of it
        ("max_mfn", xen_ulong_t),  # OUT: highest machine frame it covers
    ]


# ---------------------------------------------------------------------------
# Physmap.
# ---------------------------------------------------------------------------

# xen_add_to_physmap.space
XENMAPSPACE_shared_info = 0   # the shared info page (idx 0)
XENMAPSPACE_grant_table = 1   # grant table frame idx (| XENMAPIDX_grant_table_status)
XENMAPSPACE_gmfn = 2          # move guest frame idx to gpfn
XENMAPSPACE_gmfn_range = 3    # same for size frames (add_to_physmap only)
XENMAPSPACE_gmfn_foreign = 4  # frame of another domain (add_to_physmap_batch only)
XENMAPSPACE_dev_mmio = 5      # device MMIO (ARM only)

# Set in idx to map a v2 status frame instead of a grant table frame.
XENMAPIDX_grant_table_status = 0x80000000


class xen_add_to_physmap(ctypes.LittleEndianStructure):
    _fields_ = [
        ("domid", domid_t),          # domain whose physmap changes
        ("size", ctypes.c_uint16),   # number of frames (XENMAPSPACE_gmfn_range)
        ("space", ctypes.c_uint32),  # XENMAPSPACE_* source
        ("idx", xen_ulong_t),        # index in that space
        ("gpfn", xen_pfn_t),         # guest frame where it should appear
    ]


class xen_add_to_physmap_batch_extra(LittleEndianUnion):
    _fields_ = [
        ("foreign_domid", domid_t),  # XENMAPSPACE_gmfn_foreign: the source domain
        ("res0", ctypes.c_uint16),   # other spaces: must be 0
    ]


class xen_add_to_physmap_batch(ctypes.LittleEndianStructure):
    _fields_ = [
        ("domid", domid_t),                    # IN: domain whose physmap changes
        ("space", ctypes.c_uint16),            # IN: XENMAPSPACE_* source
        ("size", ctypes.c_uint16),             # IN: number of entries
        ("u", xen_add_to_physmap_batch_extra), # IN: space-specific extra
        ("idxs", guest_handle),                # IN: guest array of xen_ulong_t indexes
        ("gpfns", guest_handle),               # IN: guest array of xen_pfn_t destinations
        ("errs", guest_handle),                # OUT: guest array of int, error per entry
    ]


class xen_remove_from_physmap(ctypes.LittleEndianStructure):
    _fields_ = [
        ("domid", domid_t),   # domain whose physmap changes
        ("gpfn", xen_pfn_t),  # guest frame to unmap
    ]


# ---------------------------------------------------------------------------
# Memory maps.
# ---------------------------------------------------------------------------

class xen_memory_map(ctypes.LittleEndianStructure):
    _fields_ = [
        ("nr_entries", ctypes.c_uint32),  # IN: room in buffer; OUT: entries written
        ("buffer", guest_handle),         # guest array of e820entry
    ]


class xen_foreign_memory_map(ctypes.LittleEndianStructure):
    _fields_ = [
        ("domid", domid_t),        # domain whose map is set
        ("map", xen_memory_map),   # the map
    ]


class e820entry(ctypes.LittleEndianStructure):
    # One entry of an e820 map: packed, 20 bytes.
    _pack_ = 1
    _fields_ = [
        ("addr", ctypes.c_uint64),  # start of the range
        ("size", ctypes.c_uint64),  # length of the range in bytes
        ("type", ctypes.c_uint32),  # E820_* type
    ]


# e820entry.type
E820_RAM = 1        # usable RAM
E820_RESERVED = 2   # reserved
E820_ACPI = 3       # ACPI tables, reclaimable
E820_NVS = 4        # ACPI non-volatile storage
E820_UNUSABLE = 5   # broken memory
E820MAX = 128       # entries the classic BIOS table holds


# ---------------------------------------------------------------------------
# Populate-on-demand, resources, vNUMA.
# ---------------------------------------------------------------------------

class xen_pod_target(ctypes.LittleEndianStructure):
    _fields_ = [
        ("target_pages", ctypes.c_uint64),     # IN: wanted memory size in pages
        ("tot_pages", ctypes.c_uint64),        # OUT: pages now allocated
        ("pod_cache_pages", ctypes.c_uint64),  # OUT: pages in the PoD cache
        ("pod_entries", ctypes.c_uint64),      # OUT: PoD entries outstanding
        ("domid", domid_t),                    # IN: domain
    ]


# xen_mem_acquire_resource.type and .id
XENMEM_resource_ioreq_server = 0           # id = ioreq server id
XENMEM_resource_grant_table = 1            # id = XENMEM_resource_grant_table_id_*
XENMEM_resource_vmtrace_buf = 2            # id = vCPU
XENMEM_resource_grant_table_id_shared = 0  # the grant entries
XENMEM_resource_grant_table_id_status = 1  # the v2 status frames
XENMEM_resource_ioreq_server_frame_bufioreq = 0  # frame 0 of an ioreq server


class xen_mem_acquire_resource(ctypes.LittleEndianStructure):
    _fields_ = [
        ("domid", domid_t),              # IN: domain owning the resource
        ("type", ctypes.c_uint16),       # IN: XENMEM_resource_*
        ("id", ctypes.c_uint32),         # IN: which resource of that type
        ("nr_frames", ctypes.c_uint32),  # IN/OUT: frames to map (0 with no list: query size)
        ("pad", ctypes.c_uint32),        # must be 0
        ("frame", ctypes.c_uint64),      # IN: first frame of the resource to map
        ("frame_list", guest_handle),    # IN/OUT: guest array of xen_pfn_t
    ]


class xen_vmemrange(ctypes.LittleEndianStructure):
    _fields_ = [
        ("start", ctypes.c_uint64),   # first guest physical address of the range
        ("end", ctypes.c_uint64),     # end of it
        ("flags", ctypes.c_uint32),   # reserved
        ("nid", ctypes.c_uint32),     # virtual node it belongs to
    ]


class xen_vnuma_topology_info_vdistance(LittleEndianUnion):
    _fields_ = [
        ("h", guest_handle),          # guest array of uint, nr_vnodes^2 distances
        ("pad", ctypes.c_uint64),     # widens the handle to 64 bits for all guests
    ]


class xen_vnuma_topology_info_vcpu_to_vnode(LittleEndianUnion):
    _fields_ = [
        ("h", guest_handle),          # guest array of uint, node of each vCPU
        ("pad", ctypes.c_uint64),     # widens the handle to 64 bits for all guests
    ]


class xen_vnuma_topology_info_vmemrange(LittleEndianUnion):
    _fields_ = [
        ("h", guest_handle),          # guest array of xen_vmemrange
        ("pad", ctypes.c_uint64),     # widens the handle to 64 bits for all guests
    ]


class xen_vnuma_topology_info(ctypes.LittleEndianStructure):
    _fields_ = [
        ("domid", domid_t),                     # IN: domain
        ("pad", ctypes.c_uint16),               # padding
        ("nr_vnodes", ctypes.c_uint32),         # IN: room; OUT: count
        ("nr_vcpus", ctypes.c_uint32),          # IN: room; OUT: count
        ("nr_vmemranges", ctypes.c_uint32),     # IN: room; OUT: count
        ("vdistance", xen_vnuma_topology_info_vdistance),          # OUT: distance table
        ("vcpu_to_vnode", xen_vnuma_topology_info_vcpu_to_vnode),  # OUT: vCPU -> node
        ("vmemrange", xen_vnuma_topology_info_vmemrange),          # OUT: memory ranges
    ]
