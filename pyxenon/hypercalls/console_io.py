"""console_io: the hypervisor's own console (Xen's emergency console).

A guest's writes appear in the host's log of that domain, prefixed by the
toolstack like Xen's "(d1)" lines; reads take what the host typed for it.
"""
from pyxenon.hypervisor.errors import sub_op
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import xen

CHUNK = 4096


def console_write(vcpu, count, buffer):
    """CONSOLEIO_write: copy count bytes a chunk at a time (count is Xen's
    unsigned int, so a hostile size costs the guest time, not host memory)."""
    count &= 0xFFFFFFFF
    done = 0
    while done < count:
        n = min(CHUNK, count - done)
        vcpu.domain.emit(copy_from_guest(vcpu, buffer + done, n), source="hypervisor")
        done += n
    return 0


def console_read(vcpu, count, buffer):
    """CONSOLEIO_read: bytes the host queued for this domain; returns how many."""
    pending = vcpu.domain.console_input
    data = bytes(pending[:count & 0xFFFFFFFF])
    copy_to_guest(vcpu, buffer, data)
    del pending[:len(data)]
    return len(data)


OPS = {xen.CONSOLEIO_write: console_write, xen.CONSOLEIO_read: console_read}


def do_console_io(vcpu, cmd, count, buffer, *_):
    return sub_op(OPS, cmd)(vcpu, count, buffer)


HYPERCALLS = {xen.HYPERVISOR_console_io: do_console_io}
