"""Frames and page types: the rule that keeps a guest inside its memory.

Every machine frame has an owner, a general reference count (mappings,
pins, base pointers) and a type with its own count, as in Xen:

    writable            mapped writable by some L1 entry
    L1 .. L4            validated as a page table of that level
    seg_desc            a GDT/LDT page

The rules are Xen's and live in C (_core/pagetype.c, _core/ptlevels.c),
where the TLB fill and the fast paths read the same frame table: a type
is recorded before the frame is validated, kept when its count reaches 0,
and a change of type flushes translations that may be stale; a page
table is never mapped writable, an L2-L4 entry names only a validated
next-lower table (or, read-only, a linear one), and every present entry
names a frame the domain owns.  This class turns the C results into
HypercallError; -ERESTART (an operation preempted part-way) is left to the
caller, which continues the hypercall (hypercalls/mmu.py).
"""
import struct

from pyxenon._core import lib
from pyxenon.public import errno

from .errors import HypercallError

PAGE = 4096
# Frame types: the C core's values (core.h), one definition for both.
NONE, L1, L2, L3, L4, SEG_DESC, WRITABLE = (lib.PGT_NONE, lib.PGT_L1, lib.PGT_L2, lib.PGT_L3,
                                            lib.PGT_L4, lib.PGT_SEG_DESC, lib.PGT_WRITABLE)
PINNED, VALIDATED = lib.PGF_PINNED, lib.PGF_VALIDATED
ERESTART = lib.ERESTART

PRESENT, RW, USER, ACCESSED, DIRTY, PSE = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80
GNTTAB = lib._PAGE_GNTTAB   # bit 62 marks a grant mapping: set by the hypervisor only
ADDR_MASK = 0x000FFFFFFFFFF000
# L4 slots that belong to Xen's reserved range (256-271): never the guest's.
XEN_L4_SLOTS = range(256, 272)


def entry_mfn(entry):
    return (entry & ADDR_MASK) >> 12


def check(rc):
    """A C result: 0, or -errno raised as the guest's error."""
    if rc < 0:
        raise HypercallError(-rc)
    return rc


class FrameTable:
    """The type/count discipline over the machine's frames.  Operations
    take the vcpu they act for: an interrupted put is finished through
    that vcpu's old_guest_table, as in Xen."""

    def __init__(self, machine):
        self.machine = machine
        self.frames = machine.core.frames
        self.mem = machine.mem

    # -- raw access ------------------------------------------------------------

    def read_entry(self, mfn, index):
        return struct.unpack_from("<Q", self.mem, mfn * PAGE + index * 8)[0]

    def write_entry(self, mfn, index, value):
        struct.pack_into("<Q", self.mem, mfn * PAGE + index * 8, value)

    def owned(self, mfn, domain):
        return 0 <= mfn < self.machine.nr_frames and self.frames[mfn].owner == domain.domid

    def is_table(self, mfn, level):
        """A validated page table of that level."""
        page = self.frames[mfn]
        return page.type == level and page.type_count > 0 and bool(page.flags & VALIDATED)

    def writable_now(self, mfn):
        """Could the frame take a writable type (not a page table or descriptor page)?"""
        page = self.frames[mfn]
        return page.type_count == 0 or page.type == WRITABLE

    # -- references --------------------------------------------------------------

    def get_page_and_type(self, mfn, vcpu, want, preemptible=False):
        if not 0 <= mfn < self.machine.nr_frames:
            raise HypercallError(errno.EINVAL)
        flags = lib.PTF_PREEMPTIBLE if preemptible else 0
        check(lib.xc_get_page_and_type(self.machine.core, vcpu.core, mfn, vcpu.domain.domid,
                                       want, flags))

    def put_page_and_type(self, mfn, vcpu):
        check(lib.xc_put_page_and_type(self.machine.core, vcpu.core, mfn, 0))

    # -- tables --------------------------------------------------------------------

    def mod_entry(self, table_mfn, index, new, vcpu, preserve_ad=False):
        """Replace one entry of a validated table (Xen's mod_lN_entry): new
        references first, then the write, then the old ones go.  No TLB
        flush: the guest flushes, as on hardware; what isolation needs
        flushed (a type change, frames leaving, a grant unmapped) is
        flushed where that happens."""
        check(lib.xc_mod_entry(self.machine.core, vcpu.core, table_mfn, index, new,
                               int(preserve_ad)))

    def normal_update(self, vcpu, ma, val, preserve_ad=False):
        """mmu_update's MMU_NORMAL_PT_UPDATE (a table entry, or a plain write)."""
        check(lib.xc_mmu_normal_update(self.machine.core, vcpu.core, ma, val, int(preserve_ad)))

    def l1_slot(self, cr3, va):
        """(L1 frame, index) of the entry that maps va under cr3, or -EINVAL."""
        mfn = cr3
        for level in (4, 3, 2):
            entry = self.read_entry(mfn, (va >> (12 + 9 * (level - 1))) & 511)
            if not entry & PRESENT or entry & PSE or entry_mfn(entry) >= self.machine.nr_frames:
                raise HypercallError(errno.EINVAL)
            mfn = entry_mfn(entry)
        return mfn, (va >> 12) & 511

    # -- pins and base pointers -----------------------------------------------------

    def pin(self, mfn, vcpu, level):
        check(lib.xc_pin(self.machine.core, vcpu.core, mfn, level))

    def unpin(self, mfn, vcpu):
        check(lib.xc_unpin(self.machine.core, vcpu.core, mfn))

    def set_base(self, vcpu, mfn, user=False):
        """Switch a vcpu's kernel (or user) top-level table; 0 clears the user one."""
        check(lib.xc_new_baseptr(self.machine.core, vcpu.core, mfn, int(user)))

    def put_old_guest_table(self, vcpu):
        """Finish a put that was preempted (0), or -ERESTART raised."""
        check(lib.xc_put_old_guest_table(self.machine.core, vcpu.core))

    def unpreempted(self, op, *args):
        """Run a preemptible operation to its end (the toolstack's own use:
        nothing waits for it)."""
        core = self.machine.core
        while True:
            core.work = 0
            try:
                return op(*args)
            except HypercallError as e:
                if e.errno != ERESTART:
                    raise
