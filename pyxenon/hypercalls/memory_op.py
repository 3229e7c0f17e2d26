"""memory_op: what a PV guest may learn about (and map into) its memory.

A domain's memory is a fixed partition: its reservation is its maximum
(current_reservation and maximum_reservation both answer nr_pages), frames
never leave it (decrease_reservation and exchange are left out), so it is
always at its limit and increase_reservation / populate_physmap get the
answer Xen gives a domain there.  The e820 map is the one xl gives a PV
guest, all of its RAM from address 0, until the guest sets its own.
add_to_physmap, for a PV (not auto-translated) guest, records where the
guest placed the shared_info or a grant-table frame in its
pseudo-physical space, in the machine-to-phys table.
"""
import ctypes
import struct

from pyxenon.hypervisor.errors import HypercallError, sub_op
from pyxenon.hypervisor.guestmem import (copy_from_guest, copy_to_guest, guest_handle_okay,
                                         read_struct, read_u32s, write_struct)
from pyxenon.public import errno, memory, xen

from .control import rcu_lock_domain_by_id

CMD_MASK = 0x3F                 # MEMOP_CMD_MASK: the rest is a continuation
MEMOP_EXTENT_SHIFT = 6
XEN_E820MAX = 1024              # asm/e820.h: set_memory_map's limit
E820ENTRY_SIZE = ctypes.sizeof(memory.e820entry)
XENMEM_RDM_ALL = 1
# What each copy_from_guest reads: xen_mem_access_op, xen_vnuma_topology_info,
# xen_reserved_device_memory_map, xen_mem_acquire_resource (memory.h).
ACCESS_OP_SIZE, VNUMA_TOPOLOGY_SIZE, RDM_MAP_SIZE, ACQUIRE_RESOURCE_SIZE = 32, 40, 24, 32
MACH2PHYS_VIRT_START = 0xFFFF800000000000
DOMID_SELF = 0x7FF0


def own_domain(vcpu, arg):
    """The domid_t argument must name the caller (no privilege here)."""
    return target_domain(vcpu, read_u32s(vcpu, arg, 1)[0] & 0xFFFF)


def target_domain(vcpu, domid):
    """rcu_lock_domain_by_any_id, then XSM_TARGET: -ESRCH for no domain
    (domain 0, the toolstack, exists), -EPERM for another than the caller."""
    if domid not in (DOMID_SELF, vcpu.domain.domid):
        raise HypercallError(errno.EPERM if rcu_lock_domain_by_id(vcpu, domid) else errno.ESRCH)
    return vcpu.domain


def mem_current_reservation(vcpu, arg, *_):
    return own_domain(vcpu, arg).nr_pages


def mem_maximum_reservation(vcpu, arg, *_):
    return own_domain(vcpu, arg).nr_pages


def mem_maximum_gpfn(vcpu, arg, *_):
    """domain_get_maximum_gpfn for PV: the max_pfn the guest put in its
    shared_info (a count of pfns), less one; 0 if it put none."""
    return (own_domain(vcpu, arg).shared_info.arch.max_pfn or 1) - 1


def mem_maximum_ram_page(vcpu, arg, *_):
    return vcpu.domain.machine.nr_frames - 1


def domain_e820(domain):
    """The domain's e820 entries as Xen keeps them (d->arch.e820): what
    set_memory_map last gave, else the one xl sets for a PV guest."""
    e820 = domain.e820
    if e820 is None:
        e820 = bytes(memory.e820entry(addr=0, size=domain.nr_pages * 4096, type=memory.E820_RAM))
    return e820


def mem_memory_map(vcpu, arg, *_):
    """arch_memory_op: at most nr_entries of the domain's entries; -ENOSYS
    if it set an empty map ("backwards compatibility")."""
    mmap = read_struct(vcpu, arg, memory.xen_memory_map)
    e820 = domain_e820(vcpu.domain)
    if not e820:
        raise HypercallError(errno.ENOSYS)
    mmap.nr_entries = min(mmap.nr_entries, len(e820) // E820ENTRY_SIZE)
    copy_to_guest(vcpu, mmap.buffer, e820[:mmap.nr_entries * E820ENTRY_SIZE])
    write_struct(vcpu, arg, mmap)
    return 0


def mem_set_memory_map(vcpu, arg, *_):
    """arch_memory_op's XENMEM_set_memory_map: XSM_TARGET lets a domain set
    its own map, which only its own memory_map answers with; up to
    E820MAX (1024) entries, so the host keeps at most 20 KiB of it."""
    fmap = read_struct(vcpu, arg, memory.xen_foreign_memory_map)
    if fmap.map.nr_entries > XEN_E820MAX:
        raise HypercallError(errno.EINVAL)
    domain = target_domain(vcpu, fmap.domid)
    domain.e820 = copy_from_guest(vcpu, fmap.map.buffer, fmap.map.nr_entries * E820ENTRY_SIZE)
    return 0


def mem_machphys_mapping(vcpu, arg, *_):
    nr = vcpu.domain.machine.nr_frames
    write_struct(vcpu, arg, memory.xen_machphys_mapping(
        v_start=MACH2PHYS_VIRT_START, v_end=MACH2PHYS_VIRT_START + nr * 8, max_mfn=nr - 1))
    return 0


def mem_machphys_mfn_list(vcpu, arg, *_):
    """The 2 MiB chunks of the m2p table, as the frames that back them."""
    req = read_struct(vcpu, arg, memory.xen_machphys_mfn_list)
    machine = vcpu.domain.machine
    first = machine.nr_frames            # the m2p sits just above machine memory
    chunks = -(-machine.nr_frames * 8 // (2 << 20))
    mfns = [first + i * 512 for i in range(min(req.max_extents, chunks))]
    copy_to_guest(vcpu, req.extent_start, struct.pack(f"<{len(mfns)}Q", *mfns))
    req.nr_extents = len(mfns)
    write_struct(vcpu, arg, req)
    return 0


def physmap_frame(vcpu, space, idx):
    domain = vcpu.domain
    if space == memory.XENMAPSPACE_shared_info and idx == 0:
        return domain.shared_info_mfn
    if space == memory.XENMAPSPACE_grant_table and getattr(domain, "grant_table", None):
        return domain.grant_table.frame_mfn(idx)
    raise HypercallError(errno.EINVAL)


def mem_add_to_physmap(vcpu, arg, *_):
    xatp = read_struct(vcpu, arg, memory.xen_add_to_physmap)
    if xatp.domid not in (DOMID_SELF, vcpu.domain.domid):
        raise HypercallError(errno.EPERM)
    mfn = physmap_frame(vcpu, xatp.space, xatp.idx)
    vcpu.domain.machine.m2p[mfn] = xatp.gpfn
    return 0


def mem_machine_memory_map(vcpu, arg, *_):
    """Refused: EPERM the host's map is dom0's (arch_memory_op: xsm_machine_memory_map first)"""
    raise HypercallError(errno.EPERM)


def mem_pod_target(vcpu, arg, *_):
    """Refused: EINVAL populate-on-demand is HVM only (arch_memory_op: -EFAULT, -ESRCH, then !is_hvm_domain)"""
    domid = read_struct(vcpu, arg, memory.xen_pod_target).domid
    if domid != DOMID_SELF and domid != 0 and domid not in vcpu.domain.machine.domains:
        raise HypercallError(errno.ESRCH)          # rcu_lock_domain_by_any_id
    raise HypercallError(errno.EINVAL)             # every domain here is PV (dom0 too)


def mem_claim_pages(vcpu, arg, *_):
    """Refused: EPERM claims are the toolstack's (do_memory_op: -EFAULT, -EINVAL for a bad request or no domain, then xsm_claim_pages)"""
    r = read_struct(vcpu, arg, memory.xen_memory_reservation)
    if r.extent_start or r.extent_order or r.mem_flags:
        raise HypercallError(errno.EINVAL)
    if not rcu_lock_domain_by_id(vcpu, r.domid):
        raise HypercallError(errno.EINVAL)
    raise HypercallError(errno.EPERM)


def mem_sharing_pages(vcpu, arg, *_):
    """subarch_memory_op: Xen 4.17 without CONFIG_MEM_SHARING (its default)
    counts no saved or shared frames."""
    return 0


def mem_reservation(vcpu, arg, start):
    """Note: no extents for a domain at its fixed reservation (do_memory_op: every path returns start_extent)

    increase_reservation and populate_physmap: a request that cannot be
    copied or encoded, no such domain, XSM_TARGET's refusal, and the first
    extent's alloc_domheap_pages -- which assign_pages refuses, as
    tot_pages + 2^order exceeds max_pages -- all end with the extents done
    so far: start_extent (cmd >> MEMOP_EXTENT_SHIFT).  Populate-on-demand
    on oneself is refused the same way."""
    return start


def rcu_lock_remote_domain_by_id(vcpu, domid):
    """-ESRCH for no domain (DOMID_SELF is none), -EPERM for the caller's own."""
    if not rcu_lock_domain_by_id(vcpu, domid):
        raise HypercallError(errno.ESRCH)
    if domid == vcpu.domain.domid:
        raise HypercallError(errno.EPERM)


def mem_remove_from_physmap(vcpu, arg, *_):
    """Refused: EACCES a PV domain has no physmap (after -EFAULT, -ESRCH; do_memory_op: !paging_mode_translate)"""
    target_domain_exists(vcpu, read_struct(vcpu, arg, memory.xen_remove_from_physmap).domid)
    raise HypercallError(errno.EACCES)


def target_domain_exists(vcpu, domid):
    if domid != DOMID_SELF and not rcu_lock_domain_by_id(vcpu, domid):
        raise HypercallError(errno.ESRCH)


def mem_access_op(vcpu, arg, *_):
    """Refused: EINVAL mem_access is for HVM (after -EFAULT, -ESRCH, -EPERM; mem_access_memop: p2m_mem_access_sanity_check)"""
    (domid,) = struct.unpack_from("<H", copy_from_guest(vcpu, arg, ACCESS_OP_SIZE), 2)
    rcu_lock_remote_domain_by_id(vcpu, domid)     # rcu_lock_live_remote_domain_by_id
    raise HypercallError(errno.EINVAL)            # every domain here is PV


def mem_machphys_compat_mfn_list(vcpu, arg, *_):
    """Refused: EOPNOTSUPP no 32-bit PV guests: as Xen with pv32 off (subarch_memory_op, before the copy)"""
    raise HypercallError(errno.EOPNOTSUPP)


def mem_get_vnumainfo(vcpu, arg, *_):
    """Refused: EOPNOTSUPP no vNUMA (after -EFAULT, -EINVAL for pad, -ESRCH, -EPERM; do_memory_op: d->vnuma NULL)"""
    domid, pad = struct.unpack_from("<HH", copy_from_guest(vcpu, arg, VNUMA_TOPOLOGY_SIZE))
    if pad:
        raise HypercallError(errno.EINVAL)
    target_domain(vcpu, domid)                    # xsm_get_vnumainfo(XSM_TARGET)
    raise HypercallError(errno.EOPNOTSUPP)


def mem_reserved_device_memory_map(vcpu, arg, *_):
    """The host has no IOMMU, so iommu_get_reserved_device_memory finds no
    region: no entries, for any domain (Xen asks XSM nothing here)."""
    grdm = bytearray(copy_from_guest(vcpu, arg, RDM_MAP_SIZE))
    flags, _nr, buffer = struct.unpack_from("<IIQ", grdm)
    if not guest_handle_okay(buffer):
        raise HypercallError(errno.EFAULT)
    if flags & ~XENMEM_RDM_ALL:
        raise HypercallError(errno.EINVAL)
    grdm[4:8] = bytes(4)                          # nr_entries = used_entries
    copy_to_guest(vcpu, arg, bytes(grdm))
    return 0


def mem_acquire_resource(vcpu, arg, *_):
    """Refused: EPERM resources are the device model's (after -EFAULT, -EINVAL, -ESRCH, -EPERM for oneself; acquire_resource: XSM_DM_PRIV)"""
    domid, _type, _id, nr_frames, pad, frame = struct.unpack_from(
        "<HHIIIQ", copy_from_guest(vcpu, arg, ACQUIRE_RESOURCE_SIZE))
    if pad or frame >> 32 or (frame + nr_frames) >> 32:
        raise HypercallError(errno.EINVAL)
    rcu_lock_remote_domain_by_id(vcpu, domid)
    raise HypercallError(errno.EPERM)             # xsm_domain_resource_map(XSM_DM_PRIV)


OPS = {
    memory.XENMEM_increase_reservation: mem_reservation,
    memory.XENMEM_populate_physmap: mem_reservation,
    memory.XENMEM_set_memory_map: mem_set_memory_map,
    memory.XENMEM_remove_from_physmap: mem_remove_from_physmap,
    memory.XENMEM_access_op: mem_access_op,
    memory.XENMEM_machphys_compat_mfn_list: mem_machphys_compat_mfn_list,
    memory.XENMEM_get_vnumainfo: mem_get_vnumainfo,
    memory.XENMEM_reserved_device_memory_map: mem_reserved_device_memory_map,
    memory.XENMEM_acquire_resource: mem_acquire_resource,
    memory.XENMEM_get_sharing_freed_pages: mem_sharing_pages,
    memory.XENMEM_get_sharing_shared_pages: mem_sharing_pages,
    memory.XENMEM_machine_memory_map: mem_machine_memory_map,
    memory.XENMEM_claim_pages: mem_claim_pages,
    memory.XENMEM_set_pod_target: mem_pod_target,
    memory.XENMEM_get_pod_target: mem_pod_target,
    memory.XENMEM_current_reservation: mem_current_reservation,
    memory.XENMEM_maximum_reservation: mem_maximum_reservation,
    memory.XENMEM_maximum_ram_page: mem_maximum_ram_page,
    memory.XENMEM_maximum_gpfn: mem_maximum_gpfn,
    memory.XENMEM_memory_map: mem_memory_map,
    memory.XENMEM_machphys_mapping: mem_machphys_mapping,
    memory.XENMEM_machphys_mfn_list: mem_machphys_mfn_list,
    memory.XENMEM_add_to_physmap: mem_add_to_physmap,
}


# do_memory_op's cases that take no continuation: -EINVAL with one.
SINGLE_SHOT = {memory.XENMEM_exchange, memory.XENMEM_maximum_ram_page,
               memory.XENMEM_current_reservation, memory.XENMEM_maximum_reservation,
               memory.XENMEM_maximum_gpfn, memory.XENMEM_remove_from_physmap,
               memory.XENMEM_claim_pages, memory.XENMEM_get_vnumainfo,
               memory.XENMEM_reserved_device_memory_map}
# arch_memory_op and subarch_memory_op switch on the whole cmd, so with
# continuation bits none of their cases matches: -ENOSYS.
ARCH_OPS = {memory.XENMEM_set_memory_map, memory.XENMEM_memory_map,
            memory.XENMEM_machine_memory_map, memory.XENMEM_machphys_mapping,
            memory.XENMEM_set_pod_target, memory.XENMEM_get_pod_target,
            memory.XENMEM_machphys_mfn_list, memory.XENMEM_machphys_compat_mfn_list,
            memory.XENMEM_get_sharing_freed_pages, memory.XENMEM_get_sharing_shared_pages}


def do_memory_op(vcpu, cmd, arg, *_):
    op, start = cmd & CMD_MASK, cmd >> MEMOP_EXTENT_SHIFT
    if start and op in ARCH_OPS:
        raise HypercallError(errno.ENOSYS)
    if start and op in SINGLE_SHOT:
        raise HypercallError(errno.EINVAL)
    return sub_op(OPS, op)(vcpu, arg, start)


HYPERCALLS = {xen.HYPERVISOR_memory_op: do_memory_op}
