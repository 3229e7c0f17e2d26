"""The PV domain builder: a kernel image and a config become a bootable domain.

It lays out the start of day as Xen's builder does for an x86_64 PV guest
(xen.h, "Start-of-day memory layout"): the kernel at its virtual addresses,
then the ramdisk, the phys-to-machine list, start_info, the xenstore and
console rings, the bootstrap page tables and the boot stack, each
page-aligned, all mapped 1:1 from VIRT_BASE to the first pseudo-physical
pages, the region ending on a 4 MiB boundary at least 512 KiB past the last
element.  The page tables themselves are mapped read-only.
"""
import array
import struct
from dataclasses import dataclass

from pyxenon.errors import UserInputError
from pyxenon.hypervisor.hypercall_page import hypercall_page_bytes
from pyxenon.hypervisor.mm import L4
from pyxenon.public import grant_table as gt, xen

PAGE = 4096
MB4 = 4 << 20
PADDING = 512 << 10
L1_PROT = 0x67   # present, rw, user, accessed, dirty
L1_RO = 0x65     # the same without rw: for page-table pages
UPPER_PROT = 0x67
SPAN = {1: 1 << 21, 2: 1 << 30, 3: 1 << 39, 4: 1 << 48}  # bytes one table of a level maps
START_INFO_MAGIC = b"xen-3.0-x86_64"


def up(value, align=PAGE):
    return (value + align - 1) // align * align


@dataclass
class Layout:
    """Where each start-of-day element sits, as guest virtual addresses."""
    virt_base: int
    mod_start: int
    mod_len: int
    p2m: int
    start_info: int
    xenstore: int
    console: int
    pt_base: int
    nr_pt: int
    stack: int
    virt_end: int

    def pfn(self, va):
        return (va - self.virt_base) // PAGE


def table_key(level, va):
    """The table of this level that maps va: (level, its first address)."""
    return level, va // SPAN[level] * SPAN[level]


def tables_needed(start, end):
    """Page-table pages (L4..L1) needed to map [start, end)."""
    return 1 + sum((end - 1) // SPAN[level] - start // SPAN[level] + 1 for level in (3, 2, 1))


def plan(image, nr_pages, ramdisk_len):
    """Compute the layout; the page-table count depends on the region's
    end, which depends on the count, so iterate to the fixed point."""
    cursor = up(image.virt_kend)
    mod_start, cursor = cursor, cursor + up(ramdisk_len)
    p2m, cursor = cursor, cursor + up(nr_pages * 8)
    start_info, xenstore, console = cursor, cursor + PAGE, cursor + 2 * PAGE
    pt_base = cursor + 3 * PAGE
    nr_pt = 0
    while True:
        stack = pt_base + nr_pt * PAGE
        virt_end = up(stack + PAGE + PADDING, MB4)
        need = tables_needed(image.virt_base, virt_end)
        if need <= nr_pt:
            break
        nr_pt = need
    return Layout(image.virt_base, mod_start if ramdisk_len else 0, ramdisk_len, p2m,
                  start_info, xenstore, console, pt_base, nr_pt, stack, virt_end)


class Builder:
    """Writes one domain's start of day into its memory."""

    def __init__(self, domain, image, layout):
        self.domain = domain
        self.image = image
        self.layout = layout

    def write(self, va, data):
        """Copy data to a bootstrap virtual address (host side)."""
        pos = 0
        while pos < len(data):
            pfn, off = divmod(va + pos - self.layout.virt_base, PAGE)
            n = min(len(data) - pos, PAGE - off)
            self.domain.page(pfn)[off:off + n] = data[pos:pos + n]
            pos += n

    def mfn_of(self, va):
        return self.domain.pfn_to_mfn(self.layout.pfn(va))

    def load_kernel(self):
        for seg in self.image.segments:
            self.write(seg.vaddr, seg.data)
            self.write(seg.vaddr + len(seg.data), bytes(seg.memsz - len(seg.data)))

    def write_p2m(self):
        dom = self.domain
        self.write(self.layout.p2m, array.array("Q", range(dom.first_mfn, dom.first_mfn
                                                          + dom.nr_pages)).tobytes())

    def write_page_tables(self):
        """L4, then L3s, L2s, L1s, mapping [virt_base, virt_end) 1:1 to pfns."""
        lay = self.layout
        start, end = lay.virt_base, lay.virt_end
        pt_end = lay.pt_base + lay.nr_pt * PAGE
        pages = iter(range(lay.pt_base, pt_end, PAGE))
        tables = {table_key(4, start): next(pages)}  # (level, base) -> table va
        for level in (3, 2, 1):
            for base in range(table_key(level, start)[1], end, SPAN[level]):
                tables[(level, base)] = next(pages)
                parent = tables[table_key(level + 1, base)]
                self.set_entry(parent, base, level + 1, self.mfn_of(tables[(level, base)]), UPPER_PROT)
        for base in range(table_key(1, start)[1], end, SPAN[1]):
            self.fill_l1(tables[(1, base)], range(max(base, start), min(base + SPAN[1], end), PAGE))
        self.domain.pt_frames = [self.mfn_of(va) for va in range(lay.pt_base, pt_end, PAGE)]

    def fill_l1(self, table_va, vas):
        """One L1's entries for the pages vas, written at once: each maps its
        own pfn, read-only for the page tables themselves.  The region is
        contiguous in pfns and mfns, so the entries are an arithmetic run
        (a domain's build writes a few thousand of them)."""
        lay = self.layout
        pt_end = lay.pt_base + lay.nr_pt * PAGE
        first = self.mfn_of(vas[0]) << 12
        ptes = array.array("Q", range(first | L1_PROT, first + len(vas) * PAGE, PAGE))
        low, high = max(lay.pt_base, vas[0]), min(pt_end, vas[-1] + PAGE)
        for i in range((low - vas[0]) // PAGE, (high - vas[0]) // PAGE):
            ptes[i] = ptes[i] & ~0xFFF | L1_RO
        self.write(table_va + ((vas[0] >> 12) & 511) * 8, ptes.tobytes())

    def set_entry(self, table_va, va, level, mfn, prot):
        index = (va >> (12 + 9 * (level - 1))) & 511
        self.write(table_va + index * 8, struct.pack("<Q", mfn << 12 | prot))

    def write_hypercall_page(self):
        """32-byte entries, mov $nr,%eax; syscall; ret (see hypervisor/
        hypercall_page.py); iret's is Xen's.  A kernel without the
        HYPERCALL_PAGE note asks for the page later (CPUID leaf 2 and MSR)."""
        if self.image.hypercall_page is not None:
            self.write(self.image.hypercall_page, hypercall_page_bytes())

    def write_start_info(self, cmdline, store_port, console_port):
        lay, dom = self.layout, self.domain
        info = xen.start_info()
        info.magic = START_INFO_MAGIC
        info.nr_pages = dom.nr_pages
        info.shared_info = dom.shared_info_mfn * PAGE
        info.store_mfn = self.mfn_of(lay.xenstore)
        info.store_evtchn = store_port
        info.console.domU.mfn = self.mfn_of(lay.console)
        info.console.domU.evtchn = console_port
        info.pt_base = lay.pt_base
        info.nr_pt_frames = lay.nr_pt
        info.mfn_list = lay.p2m
        info.mod_start = lay.mod_start
        info.mod_len = lay.mod_len
        raw = cmdline.encode()[:xen.MAX_GUEST_CMDLINE - 1]
        info.cmd_line[:len(raw)] = list(raw)
        info.first_p2m_pfn = lay.pfn(lay.p2m)
        info.nr_p2m_frames = up(dom.nr_pages * 8) // PAGE
        self.write(lay.start_info, bytes(info))

    def seed_grants(self):
        """xc_dom_gnttab_seed (libs/guest/xg_dom_boot.c): entry 0 grants the
        console ring and entry 1 the xenstore ring to domain 0, whose
        daemons map them (the host's ring_maps)."""
        table, mem = self.domain.grant_table, self.domain.machine.mem
        for ref, ring in ((gt.GNTTAB_RESERVED_CONSOLE, self.layout.console),
                          (gt.GNTTAB_RESERVED_XENSTORE, self.layout.xenstore)):
            struct.pack_into("<HHI", mem, table.entry_offset(ref), gt.GTF_permit_access, 0,
                             self.mfn_of(ring))

    def init_shared_info(self, wallclock_ns):
        shared = self.domain.shared_info
        for info in shared.vcpu_info:
            info.evtchn_upcall_mask = 1   # vcpus start with events masked
        shared.arch.max_pfn = self.domain.nr_pages
        shared.wc_sec, shared.wc_nsec = divmod(wallclock_ns, 10 ** 9)
        shared.wc_sec_hi = (wallclock_ns // 10 ** 9) >> 32

    def start_vcpu(self):
        """Pin the bootstrap L4 (validating every table under it) and make
        it the vcpu's base pointer, as Xen's builder does."""
        lay, vcpu = self.layout, self.domain.vcpus[0]
        vcpu.set_regs(rip=self.image.entry, rsi=lay.start_info, rsp=lay.stack + PAGE,
                      rflags=0x202)
        frames = self.domain.machine.frame_table
        l4 = self.mfn_of(lay.pt_base)
        frames.unpreempted(frames.pin, l4, vcpu, L4)
        frames.unpreempted(frames.set_base, vcpu, l4)


def check_fits(image, layout, nr_pages):
    need = (layout.virt_end - layout.virt_base) // PAGE
    if need > nr_pages:
        raise UserInputError(image.path, f"the start-of-day region needs {need * PAGE >> 20} MiB "
                             f"but the domain has {nr_pages * PAGE >> 20} MiB")


def build(domain, image, cmdline="", ramdisk=b"", ports=(0, 0), wallclock_ns=0):
    """Lay out and write the start of day; the vcpu is ready to run."""
    layout = plan(image, domain.nr_pages, len(ramdisk))
    check_fits(image, layout, domain.nr_pages)
    b = Builder(domain, image, layout)
    b.load_kernel()
    if ramdisk:
        b.write(layout.mod_start, ramdisk)
    b.write_p2m()
    b.write_page_tables()
    b.write_hypercall_page()
    b.write_start_info(cmdline, *ports)
    b.seed_grants()
    b.init_shared_info(wallclock_ns)
    b.start_vcpu()
    domain.start_info_va = layout.start_info
    domain.layout = layout
    return layout

