"""physdev_op: what Xen 4.17's do_physdev_op (arch/x86/physdev.c) answers
an unprivileged PV domU, which has no physical devices.

The virtual IOPL and the I/O bitmap are the vcpu's (the C core checks
in/out against them, `_core/io.c`); PIRQ queries answer as for a domain
with no PIRQ bound; everything XSM reserves for a privileged domain is
-EPERM; anything else -ENOSYS (pci_physdev_op's default).
"""
import struct

from pyxenon.hypervisor.errors import HypercallError
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest, guest_handle_okay
from pyxenon.hypervisor.mm import WRITABLE
from pyxenon.public import errno, physdev as ph, xen

# Xen's domU nr_pirqs: nr_static_irqs (the host's GSIs; one 24-pin IO-APIC
# assumed) plus extra_domU_irqs (32).
NR_PIRQS = 24 + 32
XENIRQSTAT_needs_eoi = 1
MAX_PORTS = 65536


def read(vcpu, arg, fmt):
    return struct.unpack(fmt, copy_from_guest(vcpu, arg, struct.calcsize(fmt)))


def set_iopl(vcpu, arg):
    (iopl,) = read(vcpu, arg, "<I")
    if iopl > 3:
        raise HypercallError(errno.EINVAL)
    vcpu.core.iopl = iopl
    return 0


def set_iobitmap(vcpu, arg):
    bitmap, nr_ports = read(vcpu, arg, "<QI")
    if not guest_handle_okay(bitmap) or nr_ports > MAX_PORTS:
        raise HypercallError(errno.EINVAL)
    vcpu.core.iobmp, vcpu.core.iobmp_limit = bitmap, nr_ports
    return 0


def irq_status_query(vcpu, arg):
    (irq,) = read(vcpu, arg, "<i")
    if not 0 <= irq < NR_PIRQS:
        raise HypercallError(errno.EINVAL)
    copy_to_guest(vcpu, arg, struct.pack("<iI", irq, XENIRQSTAT_needs_eoi))
    return 0


def eoi(vcpu, arg):
    """No PIRQ is ever bound here, so pirq_info finds none: -EINVAL."""
    read(vcpu, arg, "<I")
    raise HypercallError(errno.EINVAL)


def pirq_eoi_gmfn(vcpu, arg):
    """The EOI bitmap page: a frame of the domain that can be writable;
    -EBUSY once one is registered.  Xen keeps a writable reference on it
    and writes the bits of bound PIRQs there; with no PIRQ ever bound
    nothing is written, so no reference is held here."""
    (gmfn,) = read(vcpu, arg, "<Q")
    frames = vcpu.domain.machine.frame_table
    if not frames.owned(gmfn, vcpu.domain):
        raise HypercallError(errno.EINVAL)
    try:
        frames.get_page_and_type(gmfn, vcpu, WRITABLE)
    except HypercallError:
        raise HypercallError(errno.EINVAL) from None
    frames.put_page_and_type(gmfn, vcpu)
    if getattr(vcpu.domain, "pirq_eoi_mfn", None) is not None:
        raise HypercallError(errno.EBUSY)
    vcpu.domain.pirq_eoi_mfn = gmfn
    return 0


def unmask_notify(vcpu, arg):
    return 0            # pirq_guest_unmask: nothing bound, nothing to unmask


def privileged(size):
    """An op XSM keeps for privileged domains: its argument is read (-EFAULT)
    before the check refuses it."""
    def op(vcpu, arg):
        copy_from_guest(vcpu, arg, size)
        raise HypercallError(errno.EPERM)
    return op


OPS = {
    ph.PHYSDEVOP_set_iopl: set_iopl,
    ph.PHYSDEVOP_set_iobitmap: set_iobitmap,
    ph.PHYSDEVOP_irq_status_query: irq_status_query,
    ph.PHYSDEVOP_eoi: eoi,
    ph.PHYSDEVOP_pirq_eoi_gmfn_v1: pirq_eoi_gmfn,
    ph.PHYSDEVOP_pirq_eoi_gmfn_v2: pirq_eoi_gmfn,
    ph.PHYSDEVOP_IRQ_UNMASK_NOTIFY: unmask_notify,
    ph.PHYSDEVOP_apic_read: privileged(16),
    ph.PHYSDEVOP_apic_write: privileged(16),
    ph.PHYSDEVOP_alloc_irq_vector: privileged(8),
    ph.PHYSDEVOP_map_pirq: privileged(40),
    ph.PHYSDEVOP_unmap_pirq: privileged(8),
    ph.PHYSDEVOP_dbgp_op: privileged(16),
    ph.PHYSDEVOP_setup_gsi: privileged(16),
}


def do_physdev_op(vcpu, cmd, arg, *_):
    op = OPS.get(cmd)
    if op is None:
        raise HypercallError(errno.ENOSYS)
    return op(vcpu, arg)


HYPERCALLS = {xen.HYPERVISOR_physdev_op: do_physdev_op}
