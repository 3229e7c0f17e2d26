"""How a hypercall handler reports failure (raise, and the guest gets
-errno) and when it must stop and continue later (its trap's budget)."""
from pyxenon._core import lib
from pyxenon.public import errno


class HypercallError(Exception):
    """A hypercall fails with the Xen error number ``errno``."""

    def __init__(self, err):
        super().__init__(err)
        self.errno = err


class GuestFault(HypercallError):
    """A guest address could not be read or written (Xen's -EFAULT)."""

    def __init__(self, va):
        super().__init__(errno.EFAULT)
        self.va = va


class GrantError(Exception):
    """A grant operation fails with status GNTST_* (the batch goes on)."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


class Continuation(Exception):
    """A long hypercall stops here and is made again with these arguments
    (Xen's hypercall continuation): the guest re-executes the syscall, so a
    guest's batch never holds the host for long."""

    def __init__(self, *args):
        super().__init__(*args)
        self.args5 = (list(args) + [0] * 5)[:5]


def spend(vcpu, units):
    """Count work done in this trap (units: bytes copied; XC_ENTRY_COST a
    multicall entry).  The C trap entry starts each trap at zero."""
    vcpu.domain.machine.core.work += units


def preempt_check(vcpu):
    """Xen's hypercall_preempt_check, by work rather than wall time, so a
    --deterministic run repeats: True once this trap has used its budget."""
    core = vcpu.domain.machine.core
    return core.work >= core.work_budget


def sub_op(ops, cmd):
    """A family's handler for sub-operation cmd; -ENOSYS, as from Xen, if none."""
    op = ops.get(cmd)
    if op is None:
        raise HypercallError(errno.ENOSYS)
    return op
