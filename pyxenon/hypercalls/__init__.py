"""Hypercall handlers, one module per hypercall family, and the table.

Every family module exports ``HYPERCALLS = {number: handler}``; a handler is
``handler(vcpu, a1, a2, a3, a4, a5) -> int`` and fails by raising
HypercallError (the guest gets -errno).  A number with no handler returns
-ENOSYS and is counted on the domain.  ``SUPPORTED`` lists the families,
which is what the interface table in the README is generated from.
"""
import traceback

from pyxenon.hypervisor.errors import Continuation, HypercallError
from pyxenon.public import errno, xen

from . import (compat, console_io, control, descriptor, event_channel_op, grant_table_op, hvm_op,
               memory_op, mmu, multicall, physdev_op, sched_op, traps, vcpu_op, vm_assist, xen_version,
               xenpmu_op)

FAMILIES = (console_io, sched_op, xen_version, event_channel_op, mmu, traps, descriptor,
            memory_op, vm_assist, multicall, vcpu_op, grant_table_op, physdev_op, xenpmu_op,
            control, compat, hvm_op)
TABLE_SIZE = 64

TABLE = [None] * TABLE_SIZE
for _family in FAMILIES:
    for _nr, _handler in _family.HYPERCALLS.items():
        TABLE[_nr] = _handler

ENOSYS = -errno.ENOSYS
EFAULT = -errno.EFAULT


def dispatch(vcpu, nr, a1, a2, a3, a4, a5):
    """The hypercall path's Python half: called from the C syscall hook."""
    handler = TABLE[nr] if nr < TABLE_SIZE else None
    if handler is None:
        vcpu.domain.unsupported[nr if nr < TABLE_SIZE else TABLE_SIZE] += 1   # bounded keys
        return ENOSYS
    try:
        rc = handler(vcpu, a1, a2, a3, a4, a5)
        return rc - (1 << 64) if rc >= 1 << 63 else rc    # rax is 64 bits, signed here
    except HypercallError as e:
        return -e.errno
    except Continuation as c:
        if vcpu.in_multicall:
            raise                      # multicall turns it into its own continuation
        return continue_later(vcpu, nr, c.args5)
    except Exception:  # a hypervisor bug must not take the host down
        vcpu.domain.crash("hypervisor error in hypercall "
                          f"{name_of(nr)}:\n{traceback.format_exc()}")
        return EFAULT


def continue_later(vcpu, nr, args):
    """Make the guest issue the hypercall again: arguments in their
    registers, rip back on the syscall, and rax (our result) the number."""
    regs = vcpu.regs()
    vcpu.set_regs(rdi=args[0], rsi=args[1], rdx=args[2], r10=args[3], r8=args[4],
                  rip=regs["rip"] if vcpu.domain.machine.in_engine else regs["rip"] - 2)
    return nr


def name_of(nr):
    return xen.HYPERCALL_NAMES.get(nr, f"hypercall_{nr}")


def traced(sink):
    """A dispatch that reports every call and its result to sink(line)."""
    def dispatch_traced(vcpu, nr, a1, a2, a3, a4, a5):
        rc = dispatch(vcpu, nr, a1, a2, a3, a4, a5)
        args = ", ".join(f"{a:#x}" for a in (a1, a2, a3, a4, a5))
        sink(f"(d{vcpu.domain.domid}) {name_of(nr)}({args}) = {rc}")
        return rc
    return dispatch_traced
