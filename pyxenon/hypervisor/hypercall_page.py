"""The hypercall page of an x86_64 PV guest.

Entry N sits at offset 32*N, as in Xen.  A guest only calls the entries
(arguments in rdi, rsi, rdx, r10, r8; result in rax; every other register
kept), so their bytes are the hypervisor's choice.  Xen's stubs save %rcx
and %r11 around `syscall`, which clobbers them on hardware; pyxenon's
trapped `syscall` leaves them alone, so entry N is just mov $N,%eax;
syscall; ret -- the saves cost a fifth of a hypercall under Unicorn
(measured by benchmarks/unicorn_c_hook.c: 157 ns with them, 90 ns
without).  iret's entry is Xen's: push %rcx; push %r11; push %rax;
mov $N,%eax; syscall, never returning (Xen's iret frame starts with those
three words).  The rest of the page is int3.
"""
import functools
import struct

from pyxenon.public import xen

PAGE = 4096
ENTRY = 32


def entry_bytes(nr):
    if nr == xen.HYPERVISOR_iret:
        return b"\x51\x41\x53\x50\xb8" + struct.pack("<I", nr) + b"\x0f\x05"
    return b"\xb8" + struct.pack("<I", nr) + b"\x0f\x05\xc3"


@functools.lru_cache(maxsize=1)      # the same bytes for every domain
def hypercall_page_bytes():
    page = bytearray(b"\xcc" * PAGE)
    for nr in range(PAGE // ENTRY):
        entry = entry_bytes(nr)
        page[nr * ENTRY:nr * ENTRY + len(entry)] = entry
    return bytes(page)
