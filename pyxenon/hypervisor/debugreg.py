"""A PV vcpu's debug registers as Xen 4.17 keeps them: every write, from
HYPERVISOR_set_debugreg or from `mov %reg, %drN`, goes through Xen's
set_debugreg (pv/misc-hypercalls.c); reads are x86emul_read_dr
(x86_emulate.c).  They start at %dr6 = X86_DR6_DEFAULT and %dr7 =
X86_DR7_DEFAULT (vcpu_initialise).

Every change of %dr0-3 or %dr7 re-arms the engine hooks that raise the
guest's #DB from them (debugtrap.py), as Xen's set_debugreg ends with
activate_debugregs.
"""
from pyxenon.public import arch_x86, errno

from . import debugtrap
from .errors import HypercallError

X86_DR6_DEFAULT, X86_DR7_DEFAULT = 0xFFFF0FF0, 0x00000400
DR_STATUS_RESERVED_ZERO = 0xFFFFEFFF          # ~ of it: reserved, read as zero
DR_STATUS_RESERVED_ONE = 0xFFFF0FF0
DR_CONTROL_RESERVED_ZERO = 0xFFFF27FF         # ~ of it: reserved, read as zero
DR_CONTROL_RESERVED_ONE = 0x00000400
DR_GENERAL_DETECT = 0x00002000
DR7_ACTIVE_MASK = 0xFF                        # the L and G enables of dr0-3
DR_CONTROL_SHIFT, DR_CONTROL_SIZE, DR_IO = 16, 4, 2
X86_CR4_DE = 1 << 3
DR6, DR7 = 6, 7


def reset_values():
    """dr0-3, (4, 5: aliases), dr6, dr7 at vcpu creation."""
    return [0, 0, 0, 0, 0, 0, X86_DR6_DEFAULT, X86_DR7_DEFAULT]


def breakpoint_addr_ok(value):
    """__addr_ok: the lower half, or above Xen's reserved range."""
    return value < 1 << 47 or value >= arch_x86.HYPERVISOR_VIRT_END


def set_debugreg(vcpu, reg, value):
    """Xen's set_debugreg: -ENODEV (#UD from mov), -EINVAL (a reserved
    bit), -EPERM (a valid bit the guest may not use)."""
    if reg < 4:
        if not breakpoint_addr_ok(value):
            raise HypercallError(errno.EPERM)
        vcpu.debugreg[reg] = value
        debugtrap.rearm(vcpu)
    elif reg in (4, 5) and vcpu.cr4 & X86_CR4_DE:
        raise HypercallError(errno.ENODEV)          # aliases only without CR4.DE
    elif reg in (4, DR6):
        vcpu.debugreg[DR6] = (low32(value) & DR_STATUS_RESERVED_ZERO) | DR_STATUS_RESERVED_ONE
    elif reg in (5, DR7):
        set_dr7(vcpu, (low32(value) & DR_CONTROL_RESERVED_ZERO) | DR_CONTROL_RESERVED_ONE)
    else:
        raise HypercallError(errno.ENODEV)


def low32(value):
    if value >> 32:
        raise HypercallError(errno.EINVAL)          # the upper 32 bits are strictly reserved
    return value


def set_dr7(vcpu, value):
    """GD is Xen's; I/O breakpoints (R/W = 10) need CR4.DE and are kept
    apart (pv.dr7_emul): Xen emulates them, the hardware never sees them."""
    if value & DR_GENERAL_DETECT:
        raise HypercallError(errno.EPERM)
    io_enable = 0
    if value & DR7_ACTIVE_MASK:
        for i in range(DR_CONTROL_SHIFT, 32, DR_CONTROL_SIZE):
            if (value >> i) & 3 == DR_IO:
                if not vcpu.cr4 & X86_CR4_DE:
                    raise HypercallError(errno.EPERM)
                io_enable |= value & (3 << ((i - 16) >> 1))
    vcpu.dr7_emul = io_enable
    vcpu.debugreg[DR7] = value & ~io_enable
    debugtrap.rearm(vcpu)


def read_debugreg(vcpu, reg):
    """x86emul_read_dr: dr7 reads back with its emulated I/O enables;
    -ENODEV (#UD) for any other register, and for 4/5 with CR4.DE."""
    if reg < 4:
        return vcpu.debugreg[reg]
    if reg in (4, 5) and vcpu.cr4 & X86_CR4_DE or reg > DR7:
        raise HypercallError(errno.ENODEV)
    if reg in (4, DR6):
        return vcpu.debugreg[DR6]
    return vcpu.debugreg[DR7] | vcpu.dr7_emul
