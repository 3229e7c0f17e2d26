"""copy_from_guest / copy_to_guest: the only way handlers touch guest memory.

Each address is translated through the vcpu's own page tables by the C
walker, one page at a time, so a handler can reach exactly what the guest
itself could reach, and a bad address becomes -EFAULT.  A copy is one call
into C (xc_copy_from_guest / xc_copy_to_guest); only when it fails does the
page-by-page path here run, to find the faulting page and to write what
precedes it, as Xen's copy_to_guest leaves a partial copy.
"""
import ctypes
import struct

from pyxenon._core import ffi, lib
from pyxenon.public import arch_x86

from .errors import GuestFault

PAGE = 4096


GUEST_WALK = lib.xc_translate     # the guest's own permissions, Accessed/Dirty set


def _chunks(vcpu, va, size, write, translate=GUEST_WALK):
    """Yield (machine address, length) pieces covering [va, va+size)."""
    machine = vcpu.domain.machine
    while size > 0:
        if va < 0 or va >= 1 << 64:
            raise GuestFault(va)
        ma = translate(machine.core, vcpu.core, va, write)
        if ma < 0:
            raise GuestFault(va)
        n = min(size, PAGE - (va & (PAGE - 1)))
        yield ma, n
        va += n
        size -= n


def _in_c(translate, va, size):
    """The one-call copy in C walks as the guest does: not for the debugger's
    walk (its own permissions, no Accessed/Dirty)."""
    return translate is GUEST_WALK and size > 0 and 0 <= va and va + size <= 1 << 64


def _live(vcpu):
    if vcpu.core == ffi.NULL:    # its domain was destroyed: its frames are gone too
        raise ValueError(f"vcpu {vcpu.vcpu_id} of a destroyed domain")


def copy_from_guest(vcpu, va, size, translate=GUEST_WALK):
    """Bytes at guest virtual address va, or GuestFault."""
    _live(vcpu)
    if _in_c(translate, va, size):
        out = bytearray(size)
        machine = vcpu.domain.machine
        if lib.xc_copy_from_guest(machine.core, vcpu.core, ffi.from_buffer(out), va, size) == 0:
            return bytes(out)
    mem = vcpu.domain.machine.mem
    return b"".join(bytes(mem[ma:ma + n]) for ma, n in _chunks(vcpu, va, size, 0, translate))


def copy_to_guest(vcpu, va, data, translate=GUEST_WALK):
    """Write data at guest virtual address va, or GuestFault (nothing partial
    is undone: Xen's copy_to_guest does not roll back either)."""
    _live(vcpu)
    if _in_c(translate, va, len(data)):
        machine = vcpu.domain.machine
        if lib.xc_copy_to_guest(machine.core, vcpu.core, va, ffi.from_buffer(data), len(data)) == 0:
            return
    mem = vcpu.domain.machine.mem
    off = 0
    for ma, n in _chunks(vcpu, va, len(data), 1, translate):
        mem[ma:ma + n] = data[off:off + n]
        off += n


# The host debugger's accesses (Xen's gdbsx, dbg_rw_guest_mem): through the
# vcpu's tables, else its kernel's, without the guest's permissions and
# without touching Accessed/Dirty; a write only to the domain's own frames
# that are no page table or descriptor page in use (_core/debug.c).

def debug_read(vcpu, va, size):
    return copy_from_guest(vcpu, va, size, lib.xc_dbg_translate)


def debug_write(vcpu, va, data):
    """Every page is checked, as a write, before any byte is written: a
    write the debugger may not make (a page table, another domain's frame)
    changes nothing, even when the pages before it were writable."""
    for _ in _chunks(vcpu, va, len(data), 1, lib.xc_dbg_translate):
        pass
    copy_to_guest(vcpu, va, data, lib.xc_dbg_translate)


def read_struct(vcpu, va, ctype):
    """A ctypes structure copied in from the guest."""
    return ctype.from_buffer_copy(copy_from_guest(vcpu, va, ctypes.sizeof(ctype)))


def write_struct(vcpu, va, value):
    copy_to_guest(vcpu, va, bytes(value))


def read_u64s(vcpu, va, count):
    return struct.unpack(f"<{count}Q", copy_from_guest(vcpu, va, 8 * count))


def read_u32s(vcpu, va, count):
    return struct.unpack(f"<{count}I", copy_from_guest(vcpu, va, 4 * count))


def guest_handle_okay(va):
    """access_ok (x86_64/uaccess.h __addr_ok): the handle starts outside
    Xen's reserved range and below the non-canonical hole."""
    return va < 1 << 47 or va >= arch_x86.HYPERVISOR_VIRT_END
