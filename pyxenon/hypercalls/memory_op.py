"""memory_op: what a PV guest may learn about (and map into) its memory.

The reservation never changes here (no ballooning yet); the e820 map is the
one xl gives a PV guest: all of its RAM from address 0.  add_to_physmap, for
a PV (not auto-translated) guest, records where the guest placed the
shared_info or a grant-table frame in its pseudo-physical space, in the
machine-to-phys table.
"""
import struct

from pyxenon.hypervisor.errors import HypercallError, sub_op
from pyxenon.hypervisor.guestmem import copy_to_guest, read_struct, read_u32s, write_struct
from pyxenon.public import errno, memory, xen

from .control import rcu_lock_domain_by_id

CMD_MASK = 0x3F                 # MEMOP_CMD_MASK: the rest is a continuation
MACH2PHYS_VIRT_START = 0xFFFF800000000000
DOMID_SELF = 0x7FF0


def own_domain(vcpu, arg):
    """The domid_t argument must name the caller (no privilege here):
    -ESRCH for no domain (domain 0, the toolstack, exists), then XSM_TARGET's
    -EPERM for another."""
    domid = read_u32s(vcpu, arg, 1)[0] & 0xFFFF
    if domid not in (DOMID_SELF, vcpu.domain.domid):
        exists = domid == 0 or domid in vcpu.domain.machine.domains
        raise HypercallError(errno.EPERM if exists else errno.ESRCH)
    return vcpu.domain


def mem_current_reservation(vcpu, arg):
    return own_domain(vcpu, arg).nr_pages


def mem_maximum_reservation(vcpu, arg):
    return own_domain(vcpu, arg).nr_pages


def mem_maximum_gpfn(vcpu, arg):
    """domain_get_maximum_gpfn for PV: the max_pfn the guest put in its
    shared_info (a count of pfns), less one; 0 if it put none."""
    return (own_domain(vcpu, arg).shared_info.arch.max_pfn or 1) - 1


def mem_maximum_ram_page(vcpu, arg):
    return vcpu.domain.machine.nr_frames - 1


def mem_memory_map(vcpu, arg):
    mmap = read_struct(vcpu, arg, memory.xen_memory_map)
    if mmap.nr_entries < 1:
        raise HypercallError(errno.EINVAL)
    entry = memory.e820entry(addr=0, size=vcpu.domain.nr_pages * 4096, type=memory.E820_RAM)
    write_struct(vcpu, mmap.buffer, entry)
    mmap.nr_entries = 1
    write_struct(vcpu, arg, mmap)
    return 0


def mem_machphys_mapping(vcpu, arg):
    nr = vcpu.domain.machine.nr_frames
    write_struct(vcpu, arg, memory.xen_machphys_mapping(
        v_start=MACH2PHYS_VIRT_START, v_end=MACH2PHYS_VIRT_START + nr * 8, max_mfn=nr - 1))
    return 0


def mem_machphys_mfn_list(vcpu, arg):
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


def mem_add_to_physmap(vcpu, arg):
    xatp = read_struct(vcpu, arg, memory.xen_add_to_physmap)
    if xatp.domid not in (DOMID_SELF, vcpu.domain.domid):
        raise HypercallError(errno.EPERM)
    mfn = physmap_frame(vcpu, xatp.space, xatp.idx)
    vcpu.domain.machine.m2p[mfn] = xatp.gpfn
    return 0


def mem_machine_memory_map(vcpu, arg):
    """Refused: EPERM the host's map is dom0's (arch_memory_op: xsm_machine_memory_map first)"""
    raise HypercallError(errno.EPERM)


def mem_pod_target(vcpu, arg):
    """Refused: EINVAL populate-on-demand is HVM only (arch_memory_op: -EFAULT, -ESRCH, then !is_hvm_domain)"""
    domid = read_struct(vcpu, arg, memory.xen_pod_target).domid
    if domid != DOMID_SELF and domid != 0 and domid not in vcpu.domain.machine.domains:
        raise HypercallError(errno.ESRCH)          # rcu_lock_domain_by_any_id
    raise HypercallError(errno.EINVAL)             # every domain here is PV (dom0 too)


def mem_claim_pages(vcpu, arg):
    """Refused: EPERM claims are the toolstack's (do_memory_op: -EFAULT, -EINVAL for a bad request or no domain, then xsm_claim_pages)"""
    r = read_struct(vcpu, arg, memory.xen_memory_reservation)
    if r.extent_start or r.extent_order or r.mem_flags:
        raise HypercallError(errno.EINVAL)
    if not rcu_lock_domain_by_id(vcpu, r.domid):
        raise HypercallError(errno.EINVAL)
    raise HypercallError(errno.EPERM)


def mem_sharing_pages(vcpu, arg):
    """subarch_memory_op: Xen 4.17 without CONFIG_MEM_SHARING (its default)
    counts no saved or shared frames."""
    return 0


OPS = {
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


def do_memory_op(vcpu, cmd, arg, *_):
    return sub_op(OPS, cmd & CMD_MASK)(vcpu, arg)


HYPERCALLS = {xen.HYPERVISOR_memory_op: do_memory_op}
