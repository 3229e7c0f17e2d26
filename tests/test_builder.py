"""The start of day a domain sees, field by field, as Xen's builder lays it out."""
import struct

import pytest

from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
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
    assert entry[:8] == b"\xb8" + struct.pack("<I", 17) + b"\x0f\x05\xc3"   # mov; syscall; ret
    assert entry[8:] == b"\xcc" * 24
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


def test_a_hypercall_through_the_page_keeps_rcx_and_r11(guests, host):
    """Xen's stubs save rcx/r11 around syscall (hardware clobbers them);
    pyxenon's trapped syscall leaves them, and the page's entries rely on it."""
    dom = host.create(str(guests / "hello.cfg"), paused=True)
    vcpu = dom.vcpus[0]
    va = dom.layout.stack + PAGE
    code = (b"\x48\xb9" + struct.pack("<Q", 0x1111111111111111)      # mov rcx, imm64
            + b"\x49\xbb" + struct.pack("<Q", 0x2222222222222222)    # mov r11, imm64
            + b"\x31\xff\x31\xf6")                                   # xor edi, esi
    entry = 0xFFFFFFFF80000000 + xen.HYPERVISOR_xen_version * 32
    code += b"\xe8" + struct.pack("<i", entry - (va + len(code) + 5)) + b"\x0f\x0b"   # call; ud2
    copy_to_guest(vcpu, va, code)
    vcpu.set_regs(rip=va, rsp=dom.layout.stack + 3 * PAGE - 64)
    dom.unpause()
    host.run(timeout=10)
    assert "unhandled #UD" in dom.crash_report            # it came back to the ud2
    assert "rcx=1111111111111111" in dom.crash_report
    assert "r11=2222222222222222" in dom.crash_report
    assert "rax=0000000000040011" in dom.crash_report      # xen_version: 4.17
