"""Frames and page types: the rule that keeps a guest inside its memory.

Every machine frame has an owner, a general reference count (mappings,
pins, base pointers) and a type with its own count, as in Xen:

    writable            mapped writable by some L1 entry
    L1 .. L4            validated as a page table of that level
    seg_desc            a GDT/LDT page

A frame changes type only when its type count is zero; becoming a page
table validates every entry (each takes references on what it names), and
losing the last type reference drops them again.  So a page table is never
mapped writable, an L2-L4 entry names only a validated next-lower table,
and every present entry names a frame the domain owns.  The state lives in
the C frame table (struct page_info) so the C walker can trust it.
"""
import struct

from pyxenon._core import lib
from pyxenon.public import errno

from . import descriptors
from .errors import HypercallError

PAGE = 4096
# Frame types: the C core's values (core.h), one definition for both.
NONE, L1, L2, L3, L4, SEG_DESC, WRITABLE = (lib.PGT_NONE, lib.PGT_L1, lib.PGT_L2, lib.PGT_L3,
                                            lib.PGT_L4, lib.PGT_SEG_DESC, lib.PGT_WRITABLE)
PINNED = 1

PRESENT, RW, USER, ACCESSED, DIRTY, PSE = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80
GNTTAB = lib._PAGE_GNTTAB   # marks a grant mapping: set by the hypervisor only
ADDR_MASK = 0x000FFFFFFFFFF000
# Bits a guest may not set in an L2-L4 entry: cache attributes, PSE (no
# superpages), GLOBAL, the software/protection-key bits 52-62.  (The L1 rule,
# which also refuses the grant bit, is in C: pagetype.c.)
UPPER_DISALLOW = 0x198 | (0x7FF << 52)
# L4 slots that belong to Xen's reserved range (256-271): never the guest's.
XEN_L4_SLOTS = range(256, 272)


def entry_mfn(entry):
    return (entry & ADDR_MASK) >> 12


class FrameTable:
    """The type/count discipline over the machine's frames for one domain's
    operations (owner checks are against that domain)."""

    def __init__(self, machine):
        self.machine = machine
        self.frames = machine.core.frames
        self.mem = machine.mem

    # -- raw access ------------------------------------------------------------

    def read_entry(self, mfn, index):
        off = mfn * PAGE + index * 8
        return struct.unpack_from("<Q", self.mem, off)[0]

    def write_entry(self, mfn, index, value):
        struct.pack_into("<Q", self.mem, mfn * PAGE + index * 8, value)

    def owned(self, mfn, domain):
        return 0 <= mfn < self.machine.nr_frames and self.frames[mfn].owner == domain.domid

    # -- general references ----------------------------------------------------

    def get_page(self, mfn, domain):
        if not self.owned(mfn, domain):
            raise HypercallError(errno.EINVAL)
        self.frames[mfn].count += 1

    def put_page(self, mfn):
        page = self.frames[mfn]
        if page.count:
            page.count -= 1

    # -- type references -------------------------------------------------------

    def get_type(self, mfn, domain, want):
        """Take a type reference; validate when the frame becomes a table."""
        page = self.frames[mfn]
        if page.type_count and page.type != want:
            raise HypercallError(errno.EINVAL)
        if page.type_count == 0:
            self.retype(mfn, domain, page.type, want)
        page.type_count += 1

    def retype(self, mfn, domain, old, want):
        if old == WRITABLE and want != WRITABLE:
            lib.xc_request_flush(self.machine.core)  # no stale writable TLB entry
        if L1 <= want <= L4:
            self.validate_table(mfn, domain, want)
        if want == SEG_DESC and not descriptors.page_ok(self.mem[mfn * PAGE:(mfn + 1) * PAGE]):
            raise HypercallError(errno.EINVAL)
        self.frames[mfn].type = want

    def put_type(self, mfn, domain):
        page = self.frames[mfn]
        if page.type_count == 0:
            return
        page.type_count -= 1
        if page.type_count == 0:
            if L1 <= page.type <= L4:
                self.devalidate_table(mfn, domain, page.type)
            page.type = NONE

    def get_page_and_type(self, mfn, domain, want):
        self.get_page(mfn, domain)
        try:
            self.get_type(mfn, domain, want)
        except HypercallError:
            self.put_page(mfn)
            raise

    def put_page_and_type(self, mfn, domain):
        self.put_type(mfn, domain)
        self.put_page(mfn)

    # -- tables ----------------------------------------------------------------

    def guest_slots(self, level):
        return [i for i in range(512) if level != L4 or i not in XEN_L4_SLOTS]

    def validate_table(self, mfn, domain, level):
        """Take the references every present entry needs; all or nothing.
        An L1 is checked in C (pagetype.c)."""
        if level == L1:
            return self.check(lib.xc_l1_validate(self.machine.core, domain.domid, mfn))
        taken = []
        try:
            for index in self.guest_slots(level):
                entry = self.read_entry(mfn, index)
                if entry & PRESENT:
                    self.get_entry(entry, level, mfn, domain)
                    taken.append(entry)
        except HypercallError:
            for entry in taken:
                self.put_entry(entry, level, mfn, domain)
            raise

    @staticmethod
    def check(rc):
        if rc < 0:
            raise HypercallError(-rc)

    def devalidate_table(self, mfn, domain, level):
        if level == L1:
            return lib.xc_l1_devalidate(self.machine.core, mfn)
        for index in self.guest_slots(level):
            entry = self.read_entry(mfn, index)
            if entry & PRESENT:
                self.put_entry(entry, level, mfn, domain)

    # -- one entry ----------------------------------------------------------------

    def get_entry(self, entry, level, table_mfn, domain):
        """References for one present entry of an L2-L4 table: the next
        level down, validated (L1 entries are checked in C, pagetype.c)."""
        target = entry_mfn(entry)
        if entry & UPPER_DISALLOW:
            raise HypercallError(errno.EINVAL)
        if target >= self.machine.nr_frames:
            raise HypercallError(errno.EPERM)
        if target == table_mfn and self.is_linear(entry, level, table_mfn, domain):
            self.get_page(target, domain)         # a self-map takes no type reference
            return
        want = level if self.is_linear(entry, level, table_mfn, domain) else level - 1
        self.get_page_and_type(target, domain, want)

    def put_entry(self, entry, level, table_mfn, domain):
        target = entry_mfn(entry)
        if target >= self.machine.nr_frames:
            return
        if target == table_mfn:
            self.put_page(target)
        else:
            self.put_page_and_type(target, domain)

    def is_linear(self, entry, level, table_mfn, domain):
        """Xen's linear page tables: a read-only entry naming a table of its
        own level (itself, or another validated one of the domain)."""
        target = entry_mfn(entry)
        if entry & RW or not self.owned(target, domain):
            return False
        page = self.frames[target]
        return target == table_mfn or (page.type == level and page.type_count > 0)

    def mod_entry(self, table_mfn, index, new, domain, preserve_ad=False):
        """Replace one entry of a validated table: new references first,
        then the write, then the old references go.  No TLB flush: as on
        hardware the guest flushes (UVMF_*, MMUEXT_*); what isolation needs
        flushed (a retype away from writable, frames leaving the domain, a
        grant unmapped) is flushed where that happens."""
        level = self.frames[table_mfn].type
        if level == L1:
            return self.check(lib.xc_l1_update(self.machine.core, domain.domid, table_mfn,
                                               index, new, preserve_ad))
        old = self.read_entry(table_mfn, index)
        self.check_replaceable(level, index, old)
        new = self.adjust_new(level, old, new, preserve_ad)
        if new & PRESENT:
            self.get_entry(new, level, table_mfn, domain)
        self.write_entry(table_mfn, index, new)
        if old & PRESENT:
            self.put_entry(old, level, table_mfn, domain)

    @staticmethod
    def check_replaceable(level, index, old):
        """Xen's L4 slots are not the guest's."""
        if level == L4 and index in XEN_L4_SLOTS:
            raise HypercallError(errno.EINVAL)

    @staticmethod
    def adjust_new(level, old, new, preserve_ad):
        if preserve_ad:
            new = (new & ~(ACCESSED | DIRTY)) | (old & (ACCESSED | DIRTY))
        return new

    def l1_slot(self, cr3, va):
        """(L1 frame, index) of the entry that maps va under cr3, or -EINVAL."""
        mfn = cr3
        for level in (4, 3, 2):
            entry = self.read_entry(mfn, (va >> (12 + 9 * (level - 1))) & 511)
            if not entry & PRESENT or entry & PSE:
                raise HypercallError(errno.EINVAL)
            mfn = entry_mfn(entry)
        return mfn, (va >> 12) & 511

    # -- pins and base pointers ---------------------------------------------------

    def pin(self, mfn, domain, level):
        if not self.owned(mfn, domain) or self.frames[mfn].flags & PINNED:
            raise HypercallError(errno.EINVAL)
        self.get_page_and_type(mfn, domain, level)
        self.frames[mfn].flags |= PINNED

    def unpin(self, mfn, domain):
        if not self.owned(mfn, domain) or not self.frames[mfn].flags & PINNED:
            raise HypercallError(errno.EINVAL)
        self.frames[mfn].flags &= ~PINNED
        self.put_page_and_type(mfn, domain)

    def set_base(self, vcpu, mfn, user=False):
        """Switch a vcpu's kernel (or user) top-level table; 0 clears the user one."""
        core = vcpu.core
        old = core.user_cr3 if user else core.kernel_cr3
        if mfn or not user:
            self.get_page_and_type(mfn, vcpu.domain, L4)
        if old:
            self.put_page_and_type(old, vcpu.domain)
        if user:
            core.user_cr3 = mfn
        else:
            core.kernel_cr3 = core.cr3 = mfn
            lib.xc_request_flush(self.machine.core)

