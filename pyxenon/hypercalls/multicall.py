"""multicall: a batch of hypercalls in one trap, each result written back.

Every entry runs whatever the others returned (as in Xen); a multicall
inside a multicall is refused; an unreadable entry ends the batch with
-EFAULT; an iret ends it with its own result (Xen's mc_exit); a call that
leaves the vcpu outside guest kernel mode ends it too, the rest continued
later (mc_preempt).  Past the trap's budget the batch continues from the
next entry (Xen's do_multicall: hypercall_preempt_check between entries).
"""
import struct

from pyxenon._core import lib
from pyxenon.hypervisor.errors import Continuation, GuestFault, preempt_check, spend
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import errno, xen

ENTRY = struct.Struct("<QQ6Q")     # struct multicall_entry: op, result, args[6]
MASK64 = (1 << 64) - 1


def do_multicall(vcpu, call_list, nr_calls, *_):
    nr_calls &= 0xFFFFFFFF
    for i in range(nr_calls):
        va = call_list + i * ENTRY.size
        if i and preempt_check(vcpu):
            raise Continuation(va, nr_calls - i)
        spend(vcpu, lib.XC_ENTRY_COST)
        op, _result, *args = ENTRY.unpack(copy_from_guest(vcpu, va, ENTRY.size))
        try:
            result = one_call(vcpu, op, args)
        except Continuation as c:
            # As Xen: the entry's arguments become the continuation's, and
            # the multicall itself goes on from this entry.
            copy_to_guest(vcpu, va + 16, struct.pack("<5Q", *(a & MASK64 for a in c.args5)))
            raise Continuation(va, nr_calls - i) from None
        if op == xen.HYPERVISOR_iret:
            return mc_exit(vcpu, va, result)
        copy_to_guest(vcpu, va + 8, struct.pack("<Q", result & MASK64))
        if vcpu.domain.state != "running":
            break
        if not vcpu.core.kernel_mode and i + 1 < nr_calls:
            # pv_do_multicall_call's mc_preempt: do_multicall's "goto
            # preempted" with the entries after this one
            raise Continuation(va + ENTRY.size, nr_calls - i - 1)
    return 0


def mc_exit(vcpu, va, result):
    """An iret ends the batch (pv_do_multicall_call's mc_exit): the guest is
    already back where the iret frame said, so do_multicall writes the
    result only as best effort and returns it, as the guest's restored rax."""
    try:
        copy_to_guest(vcpu, va + 8, struct.pack("<Q", result & MASK64))
    except GuestFault:
        pass
    return result


def one_call(vcpu, op, args):
    if op == xen.HYPERVISOR_multicall:
        return -errno.EINVAL
    vcpu.in_multicall = True
    try:
        return vcpu.domain.dispatch(vcpu, op, *args[:5])
    finally:
        vcpu.in_multicall = False


HYPERCALLS = {xen.HYPERVISOR_multicall: do_multicall}
