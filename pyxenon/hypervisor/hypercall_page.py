"""The hypercall page Xen writes for an x86_64 PV guest.

Entry N sits at offset 32*N: push %rcx; push %r11; mov $N,%eax; syscall;
pop %r11; pop %rcx; ret.  iret's entry also pushes %rax and never returns
(the guest jumps to it with an iret frame on its stack).  The rest is int3.
"""
import struct

from pyxenon.public import xen

PAGE = 4096
ENTRY = 32


def entry_bytes(nr):
    if nr == xen.HYPERVISOR_iret:
        return b"\x51\x41\x53\x50\xb8" + struct.pack("<I", nr) + b"\x0f\x05"
    return b"\x51\x41\x53\xb8" + struct.pack("<I", nr) + b"\x0f\x05\x41\x5b\x59\xc3"


def hypercall_page_bytes():
    page = bytearray(b"\xcc" * PAGE)
    for nr in range(PAGE // ENTRY):
        entry = entry_bytes(nr)
        page[nr * ENTRY:nr * ENTRY + len(entry)] = entry
    return bytes(page)
