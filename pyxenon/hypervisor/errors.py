"""How a hypercall handler reports failure: raise, and the guest gets -errno."""
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
