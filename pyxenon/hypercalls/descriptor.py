"""set_gdt and update_descriptor: a guest's descriptor tables, validated.

GDT frames must be the domain's own and become segment-descriptor pages
(so they can no longer be mapped writable); the vcpu's GDT area in Xen's
reserved range then shows them, read-only, below Xen's own entries.
"""
import struct

from pyxenon._core import lib
from pyxenon.hypervisor import descriptors
from pyxenon.hypervisor.errors import HypercallError
from pyxenon.hypervisor.guestmem import read_u64s
from pyxenon.hypervisor.mm import SEG_DESC, WRITABLE
from pyxenon.public import arch_x86, errno, xen

ENTRIES_PER_PAGE = 512


def release_gdt(vcpu, frames):
    for mfn in vcpu.gdt_frames:
        frames.put_page_and_type(mfn, vcpu)
    vcpu.gdt_frames = []


def take_frames(vcpu, frames, mfns):
    taken = []
    try:
        for mfn in mfns:
            frames.get_page_and_type(mfn, vcpu, SEG_DESC)
            taken.append(mfn)
    except HypercallError:
        for mfn in taken:
            frames.put_page_and_type(mfn, vcpu)
        raise
    return taken


def do_set_gdt(vcpu, frame_list, entries, *_):
    if entries > arch_x86.FIRST_RESERVED_GDT_ENTRY:
        raise HypercallError(errno.EINVAL)
    count = -(-entries // ENTRIES_PER_PAGE)
    mfns = read_u64s(vcpu, frame_list, count) if count else ()
    pv_set_gdt(vcpu, mfns, entries)
    lib.xc_request_flush(vcpu.domain.machine.core)
    return 0


def pv_set_gdt(vcpu, mfns, entries):
    """Xen's pv_set_gdt: every frame the domain's and a descriptor page,
    or none is taken; then the old GDT goes (set_gdt, VCPUOP_initialise)."""
    if entries > arch_x86.FIRST_RESERVED_GDT_ENTRY:
        raise HypercallError(errno.EINVAL)
    frames = vcpu.domain.machine.frame_table
    try:
        taken = take_frames(vcpu, frames, mfns)
    except HypercallError:
        raise HypercallError(errno.EINVAL) from None   # any frame refused: its "fail"
    release_gdt(vcpu, frames)
    vcpu.gdt_frames = taken
    for i in range(arch_x86.FIRST_RESERVED_GDT_PAGE):
        vcpu.core.gdt_mfn[i] = taken[i] if i < len(taken) else 0
    vcpu.core.gdt_frames = len(taken)


def do_update_descriptor(vcpu, maddr, desc, *_):
    """Xen's do_update_descriptor: the descriptor as check_descriptor fixes
    it; the frame takes the descriptor-page type if it has it, else the
    writable type, for the write."""
    frames = vcpu.domain.machine.frame_table
    mfn = maddr >> 12
    desc = descriptors.check_descriptor(desc) if not maddr & 7 else None
    if desc is None or not frames.owned(mfn, vcpu.domain):
        raise HypercallError(errno.EINVAL)
    kind = SEG_DESC if frames.frames[mfn].type == SEG_DESC else WRITABLE
    try:
        frames.get_page_and_type(mfn, vcpu, kind)
    except HypercallError:
        raise HypercallError(errno.EINVAL) from None
    struct.pack_into("<Q", frames.mem, maddr, desc)
    lib.xc_frame_written(vcpu.domain.machine.core, mfn)
    frames.put_page_and_type(mfn, vcpu)
    if kind == SEG_DESC:
        lib.xc_request_flush(vcpu.domain.machine.core)
    return 0


HYPERCALLS = {
    xen.HYPERVISOR_set_gdt: do_set_gdt,
    xen.HYPERVISOR_update_descriptor: do_update_descriptor,
}
