"""The start of day a domain sees, field by field, as Xen's builder lays it out."""
import struct

import pytest

from pyxenon.hypervisor.guestmem import copy_from_guest
from pyxenon.public import xen
from pyxenon.toolstack import builder

PAGE = 4096
VIRT_BASE = 0xFFFFFFFF80000000


@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"), overrides=['cmdline="console=hvc0 quiet"'])


def start_info(dom):
    raw = copy_from_guest(dom.vcpus[0], dom.layout.start_info, PAGE)
    return xen.start_info.from_buffer_copy(raw)


def test_registers_at_entry(dom):
    regs = dom.vcpus[0].regs()
    lay = dom.layout
    assert regs["rip"] == 0xFFFFFFFF80001000           # XEN_ELFNOTE_ENTRY
    assert regs["rsi"] == lay.start_info
    assert regs["rsp"] == lay.stack + PAGE
    assert regs["cs"] == 0xE033 and regs["ss"] == 0xE02B   # FLAT_KERNEL_CS/SS
    assert regs["rflags"] & 0x200


def test_layout_order_and_alignment(dom):
    lay = dom.layout
    order = [lay.p2m, lay.start_info, lay.xenstore, lay.console, lay.pt_base, lay.stack]
    assert order == sorted(order) and all(va % PAGE == 0 for va in order)
    assert lay.virt_base == VIRT_BASE
    assert lay.virt_end % (4 << 20) == 0
    assert lay.virt_end - (lay.stack + PAGE) >= 512 << 10


def test_start_info_fields(dom):
    si = start_info(dom)
    lay = dom.layout
    assert si.magic == b"xen-3.0-x86_64"
    assert si.nr_pages == dom.nr_pages == 16 * 256
    assert si.shared_info == dom.shared_info_mfn * PAGE
    assert si.flags == 0
    assert si.store_mfn == dom.pfn_to_mfn(lay.pfn(lay.xenstore))
    assert si.store_evtchn == dom.store_port
    assert si.console.domU.mfn == dom.pfn_to_mfn(lay.pfn(lay.console))
    assert si.console.domU.evtchn == dom.console.port
    assert si.pt_base == lay.pt_base and si.nr_pt_frames == lay.nr_pt
    assert si.mfn_list == lay.p2m
    assert si.mod_start == 0 and si.mod_len == 0
    assert bytes(si.cmd_line).split(b"\0")[0] == b"console=hvc0 quiet"
    assert si.first_p2m_pfn == lay.pfn(lay.p2m)
    assert si.nr_p2m_frames == (dom.nr_pages * 8 + PAGE - 1) // PAGE


def test_p2m_and_m2p_agree(dom, host):
    si = start_info(dom)
    p2m = struct.unpack(f"<{si.nr_pages}Q",
                        copy_from_guest(dom.vcpus[0], si.mfn_list, 8 * si.nr_pages))
    assert p2m[0] == dom.first_mfn and p2m[-1] == dom.first_mfn + dom.nr_pages - 1
    for pfn in (0, 17, si.nr_pages - 1):
        assert host.machine.m2p[p2m[pfn]] == pfn


def test_whole_region_mapped_one_to_one(dom, host):
    lib = __import__("pyxenon._core", fromlist=["lib"]).lib
    lay = dom.layout
    for va in range(lay.virt_base, lay.virt_end, 64 * PAGE):
        ma = lib.xc_translate(host.machine.core, dom.vcpus[0].core, va, 0)
        assert ma == dom.pfn_to_mfn(lay.pfn(va)) * PAGE
    assert lib.xc_translate(host.machine.core, dom.vcpus[0].core, lay.virt_end, 0) == -1


def test_page_tables_read_only_rest_writable(dom, host):
    lib = __import__("pyxenon._core", fromlist=["lib"]).lib
    core, vcpu = host.machine.core, dom.vcpus[0].core
    lay = dom.layout
    assert lib.xc_translate(core, vcpu, lay.pt_base, 1) == -1
    assert lib.xc_translate(core, vcpu, lay.pt_base + (lay.nr_pt - 1) * PAGE, 1) == -1
    for va in (lay.start_info, lay.console, lay.xenstore, lay.stack, lay.p2m):
        assert lib.xc_translate(core, vcpu, va, 1) >= 0


def test_hypercall_page_entries(dom):
    page = copy_from_guest(dom.vcpus[0], 0xFFFFFFFF80000000, PAGE)  # the guest's hypercall_page
    entry = page[17 * 32:18 * 32]
    assert entry[:14] == b"\x51\x41\x53\xb8" + struct.pack("<I", 17) + b"\x0f\x05\x41\x5b\x59\xc3"
    assert entry[14:] == b"\xcc" * 18
    iret = page[xen.HYPERVISOR_iret * 32:][:11]
    assert iret == b"\x51\x41\x53\x50\xb8" + struct.pack("<I", xen.HYPERVISOR_iret) + b"\x0f\x05"


def test_shared_info_at_start(dom):
    shared = dom.shared_info
    assert all(info.evtchn_upcall_mask == 1 for info in shared.vcpu_info)
    assert shared.arch.max_pfn == dom.nr_pages
    assert shared.wc_sec > 1_600_000_000


def test_ramdisk_is_loaded_after_kernel(guests, host, tmp_path):
    rd = tmp_path / "initrd"
    rd.write_bytes(b"RAMDISK!" * 1000)
    dom = host.create(kernel=str(guests / "hello" / "hello.elf"), ramdisk=str(rd))
    si = start_info(dom)
    assert si.mod_len == 8000 and si.mod_start % PAGE == 0
    assert si.mod_start < si.mfn_list
    assert copy_from_guest(dom.vcpus[0], si.mod_start, 16) == b"RAMDISK!RAMDISK!"


@pytest.mark.parametrize("start, end, count", [
    (VIRT_BASE, VIRT_BASE + (4 << 20), 1 + 1 + 1 + 2),
    (0, 1 << 30, 1 + 1 + 1 + 512),
    (0, (1 << 30) + (2 << 20), 1 + 1 + 2 + 513),
])
def test_tables_needed(start, end, count):
    assert builder.tables_needed(start, end) == count
