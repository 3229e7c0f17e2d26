"""copy_from_guest / copy_to_guest: the only way handlers touch guest memory.

Each address is translated through the vcpu's own page tables by the C
walker, one page at a time, so a handler can reach exactly what the guest
itself could reach, and a bad address becomes -EFAULT.
"""
import ctypes
import struct

from pyxenon._core import lib

from .errors import GuestFault

PAGE = 4096


def _chunks(vcpu, va, size, write, translate=lib.xc_translate):
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


def copy_from_guest(vcpu, va, size, translate=lib.xc_translate):
    """Bytes at guest virtual address va, or GuestFault."""
    mem = vcpu.domain.machine.mem
    return b"".join(bytes(mem[ma:ma + n]) for ma, n in _chunks(vcpu, va, size, 0, translate))


def copy_to_guest(vcpu, va, data, translate=lib.xc_translate):
    """Write data at guest virtual address va, or GuestFault (nothing partial
    is undone: Xen's copy_to_guest does not roll back either)."""
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
    """Every page is checked before any byte is written."""
    for _ in _chunks(vcpu, va, len(data), 0, lib.xc_dbg_translate):
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
