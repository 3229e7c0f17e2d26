"""physdev_op: what Xen 4.17's do_physdev_op (arch/x86/physdev.c) answers
an unprivileged PV domU, which has no physical devices.

The virtual IOPL and the I/O bitmap are the vcpu's (the C core checks
in/out against them, `_core/io.c`); get_free_pirq hands out PIRQ numbers as
Xen does, though no IRQ ever stands behind one; PIRQ queries answer from
that set; everything XSM reserves for a privileged domain is -EPERM, in
Xen's order of checks; anything else -ENOSYS (pci_physdev_op's default).
"""
import itertools
import struct

from pyxenon.hypervisor.errors import HypercallError
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest, guest_handle_okay
from pyxenon.hypervisor.mm import WRITABLE
from pyxenon.public import errno, physdev as ph, xen

from .control import rcu_lock_domain_by_id

# nr_irqs_gsi, the host's GSIs (one 24-pin IO-APIC assumed); the first 16
# are the legacy ISA IRQs, which get_free_pirq never hands out.
NR_IRQS_GSI = 24
NR_LEGACY_IRQS = 16
# Xen's domU nr_pirqs: nr_static_irqs (nr_irqs_gsi) plus extra_domU_irqs (32).
NR_PIRQS = NR_IRQS_GSI + 32
XENIRQSTAT_needs_eoi = 1
MAX_PORTS = 65536
DOMID_SELF = 0x7FF0
# struct physdev_map_pirq: domid, type, index, pirq, bus, devfn, entry_nr, table_base
MAP_PIRQ = "<HxxiiiiiixxxxQ"
MAP_PIRQ_SIZE = struct.calcsize(MAP_PIRQ)


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
    """pirq_info finds only the PIRQs get_free_pirq allocated: -EINVAL for
    the rest.  Behind an allocated one there is no IRQ (PIRQ_ALLOCATED), so
    pirq_guest_eoi finds no descriptor, and its event channel is port 0,
    reserved, which the v1 auto-unmask (evtchn_unmask) leaves alone."""
    (irq,) = read(vcpu, arg, "<I")
    if irq >= NR_PIRQS or irq not in vcpu.domain.pirqs:
        raise HypercallError(errno.EINVAL)
    return 0


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


def free_pirq(allocated, kind):
    """get_free_pirq (arch/x86/irq.c): a GSI asks first for the lowest free
    non-legacy GSI number, then, as every other type does, for the highest
    free number above the GSIs; -ENOSPC when none is free."""
    gsis = range(NR_LEGACY_IRQS, NR_IRQS_GSI) if kind == ph.MAP_PIRQ_TYPE_GSI else ()
    for pirq in itertools.chain(gsis, range(NR_PIRQS - 1, NR_IRQS_GSI - 1, -1)):
        if pirq not in allocated:
            return pirq
    raise HypercallError(errno.ENOSPC)


def get_free_pirq(vcpu, arg):
    """PHYSDEVOP_get_free_pirq: the number is the domain's (its pirq is
    marked PIRQ_ALLOCATED) even if the copy back then faults, as in Xen."""
    kind, _ = read(vcpu, arg, "<iI")
    pirq = free_pirq(vcpu.domain.pirqs, kind)
    vcpu.domain.pirqs.add(pirq)
    copy_to_guest(vcpu, arg, struct.pack("<iI", kind, pirq))
    return 0


def domain_exists(vcpu, domid):
    """rcu_lock_domain_by_any_id: DOMID_SELF, or a live domain's id."""
    return domid == DOMID_SELF or rcu_lock_domain_by_id(vcpu, domid)


def map_pirq(vcpu, arg):
    """Refused: EPERM no IRQ access (after -EFAULT, -EINVAL for a multi-MSI table_base, -ESRCH; physdev_map_pirq)

    XSM_DM_PRIV passes a domU only for the domain it is device model of
    (none here).  do_physdev_op copies the request back after any answer
    from physdev_map_pirq, so a read-only one turns that into -EFAULT."""
    raw = copy_from_guest(vcpu, arg, MAP_PIRQ_SIZE)
    domid, kind, *_, table_base = struct.unpack(MAP_PIRQ, raw)
    if kind == ph.MAP_PIRQ_TYPE_MULTI_MSI and table_base:
        raise HypercallError(errno.EINVAL)
    error = errno.EPERM if domain_exists(vcpu, domid) else errno.ESRCH
    copy_to_guest(vcpu, arg, raw)
    raise HypercallError(error)                     # xsm_map_domain_pirq(XSM_DM_PRIV)


def unmap_pirq(vcpu, arg):
    """Refused: EPERM no IRQ access (after -EFAULT, -ESRCH; physdev_unmap_pirq)"""
    domid, _ = read(vcpu, arg, "<Hxxi")
    if not domain_exists(vcpu, domid):
        raise HypercallError(errno.ESRCH)
    raise HypercallError(errno.EPERM)               # xsm_unmap_domain_pirq(XSM_DM_PRIV)


def refuse_after_copy(name, size, error, doc):
    """A handler that copies its argument in (-EFAULT) and then refuses,
    as Xen does for ops whose check follows copy_from_guest."""
    def op(vcpu, arg):
        copy_from_guest(vcpu, arg, size)
        raise HypercallError(error)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return op


PCI = "Refused: EPERM privileged: dom0's PCI (after -EFAULT; "
APIC = "Refused: EPERM privileged: the IO-APIC is dom0's (after -EFAULT; xsm_apic)"
NO_PDEV = ("Refused: ENODEV no PCI devices "
           "(after -EFAULT; pci_get_pdev, before pci_restore_msi_state's XSM check)")
apic_op = refuse_after_copy("apic_op", 16, errno.EPERM, APIC)
alloc_irq_vector = refuse_after_copy("alloc_irq_vector", 8, errno.EPERM, APIC)
msix_op = refuse_after_copy("msix_op", 4, errno.EPERM, PCI + "xsm_resource_setup_pci)")
manage_pci_add = refuse_after_copy("manage_pci_add", 2, errno.EPERM,
                                   PCI + "pci_add_device: xsm_resource_plug_pci)")
manage_pci_remove = refuse_after_copy("manage_pci_remove", 2, errno.EPERM,
                                      PCI + "pci_remove_device: xsm_resource_unplug_pci)")
pci_device_remove = refuse_after_copy("pci_device_remove", 4, errno.EPERM,
                                      PCI + "pci_physdev_op, pci_remove_device)")
# The machine has no PCI device, so pci_get_pdev finds none.
restore_msi = refuse_after_copy("restore_msi", 2, errno.ENODEV, NO_PDEV)
restore_msi_ext = refuse_after_copy("restore_msi_ext", 4, errno.ENODEV, NO_PDEV)


def manage_pci_add_ext(vcpu, arg):
    """Refused: EPERM privileged: dom0's PCI (after -EFAULT, -EINVAL for bad flags; pci_add_device)"""
    is_extfn, is_virtfn = read(vcpu, arg, "<xxxxIIxxxx")
    if is_extfn > 1 or is_virtfn > 1:
        raise HypercallError(errno.EINVAL)
    raise HypercallError(errno.EPERM)               # xsm_resource_plug_pci(XSM_PRIV)


def pci_device_add(vcpu, arg):
    """Refused: EPERM privileged: dom0's PCI (after -EFAULT, also for the PXM; pci_physdev_op, pci_add_device)

    A virtual function's physical function is looked up and added first;
    that inner pci_add_device fails XSM too, and its answer is dropped."""
    (flags,) = read(vcpu, arg, "<xxxxIxxxx")
    if flags & ph.XEN_PCI_DEV_PXM:                  # optarr[0], with CONFIG_NUMA (x86's)
        copy_from_guest(vcpu, arg + 12, 4)
    raise HypercallError(errno.EPERM)


def setup_gsi(vcpu, arg):
    """Refused: EPERM privileged: dom0's GSIs (after -EFAULT, -EINVAL past nr_irqs_gsi; xsm_resource_setup_gsi)"""
    gsi, _triggering, _polarity = read(vcpu, arg, "<iBBxx")
    if not 0 <= gsi < NR_IRQS_GSI:
        raise HypercallError(errno.EINVAL)
    raise HypercallError(errno.EPERM)


def xsm_first(vcpu, arg):
    """Refused: EPERM privileged: dom0 only (XSM first: pci_mmcfg_reserved's xsm_resource_setup_misc)"""
    raise HypercallError(errno.EPERM)


def dbgp_op(vcpu, arg):
    """Refused: EPERM hardware domain only (before the copy: do_physdev_op)"""
    raise HypercallError(errno.EPERM)


OPS = {
    ph.PHYSDEVOP_set_iopl: set_iopl,
    ph.PHYSDEVOP_set_iobitmap: set_iobitmap,
    ph.PHYSDEVOP_irq_status_query: irq_status_query,
    ph.PHYSDEVOP_eoi: eoi,
    ph.PHYSDEVOP_pirq_eoi_gmfn_v1: pirq_eoi_gmfn,
    ph.PHYSDEVOP_pirq_eoi_gmfn_v2: pirq_eoi_gmfn,
    ph.PHYSDEVOP_IRQ_UNMASK_NOTIFY: unmask_notify,
    ph.PHYSDEVOP_get_free_pirq: get_free_pirq,
    ph.PHYSDEVOP_apic_read: apic_op,
    ph.PHYSDEVOP_apic_write: apic_op,
    ph.PHYSDEVOP_alloc_irq_vector: alloc_irq_vector,
    ph.PHYSDEVOP_map_pirq: map_pirq,
    ph.PHYSDEVOP_unmap_pirq: unmap_pirq,
    ph.PHYSDEVOP_dbgp_op: dbgp_op,
    ph.PHYSDEVOP_setup_gsi: setup_gsi,
    ph.PHYSDEVOP_manage_pci_add: manage_pci_add,
    ph.PHYSDEVOP_manage_pci_remove: manage_pci_remove,
    ph.PHYSDEVOP_manage_pci_add_ext: manage_pci_add_ext,
    ph.PHYSDEVOP_pci_device_add: pci_device_add,
    ph.PHYSDEVOP_pci_device_remove: pci_device_remove,
    ph.PHYSDEVOP_prepare_msix: msix_op,
    ph.PHYSDEVOP_release_msix: msix_op,
    ph.PHYSDEVOP_pci_mmcfg_reserved: xsm_first,
    ph.PHYSDEVOP_restore_msi: restore_msi,
    ph.PHYSDEVOP_restore_msi_ext: restore_msi_ext,
}


def do_physdev_op(vcpu, cmd, arg, *_):
    op = OPS.get(cmd)
    if op is None:
        raise HypercallError(errno.ENOSYS)
    return op(vcpu, arg)


HYPERCALLS = {xen.HYPERVISOR_physdev_op: do_physdev_op}
