"""console_io: the hypervisor's own console (Xen's emergency console).

A guest's writes appear in the host's log of that domain, prefixed by the
toolstack like Xen's "(d1)" lines; reads take what the host typed for it.
"""
from pyxenon.hypervisor.errors import Continuation, preempt_check, spend, sub_op
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import xen

CHUNK = 4096
# What Xen's guest_console_write drops from an unprivileged domain's output:
# everything but printable ASCII, tab and newline.
UNPRINTABLE = bytes(b for b in range(256) if not (32 <= b < 127 or b in b"\t\n"))


def console_write(vcpu, count, buffer):
    """CONSOLEIO_write: copy count bytes a chunk at a time, and continue
    (Xen's "iih" continuation: the rest of count, the buffer advanced) once
    the trap's budget is spent, so a 4 GiB write never holds the engine.
    count is Xen's unsigned int; an unreadable chunk is -EFAULT.  As
    Xen's, only printable characters reach the log."""
    count &= 0xFFFFFFFF
    done = 0
    while done < count:
        if done and preempt_check(vcpu):
            raise Continuation(xen.CONSOLEIO_write, count - done, buffer + done)
        n = min(CHUNK, count - done)
        text = copy_from_guest(vcpu, buffer + done, n).translate(None, UNPRINTABLE)
        if text:
            vcpu.domain.emit(text, source="hypervisor")
        spend(vcpu, n)
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
