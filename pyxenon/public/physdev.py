"""HYPERVISOR_physdev_op(cmd, arg) numbers: physdev.h.

Physical device access (IRQs, I/O ports, PCI, MSI).  pyxenon gives guests
no physical devices, so it only needs the numbers, to name and refuse them.
"""

PHYSDEVOP_IRQ_UNMASK_NOTIFY = 4     # obsolete: PIRQ event channels were unmasked
PHYSDEVOP_irq_status_query = 5      # query an IRQ line's status
PHYSDEVOP_set_iopl = 6              # set this vCPU's I/O privilege level
PHYSDEVOP_set_iobitmap = 7          # set this vCPU's I/O-port permission bitmap
PHYSDEVOP_apic_read = 8             # read an IO-APIC register
PHYSDEVOP_apic_write = 9            # write an IO-APIC register
PHYSDEVOP_alloc_irq_vector = 10     # allocate a vector for an IRQ line
PHYSDEVOP_free_irq_vector = 11      # free it
PHYSDEVOP_eoi = 12                  # end-of-interrupt for a PIRQ
PHYSDEVOP_map_pirq = 13             # map an IRQ / MSI to a PIRQ
PHYSDEVOP_unmap_pirq = 14           # undo map_pirq
PHYSDEVOP_manage_pci_add = 15       # announce a PCI device
PHYSDEVOP_manage_pci_remove = 16    # withdraw a PCI device
PHYSDEVOP_pirq_eoi_gmfn_v1 = 17     # register the PIRQ-needs-EOI bitmap page (v1)
PHYSDEVOP_restore_msi = 19          # restore a device's MSI state
PHYSDEVOP_manage_pci_add_ext = 20   # announce a PCI device, with extra info
PHYSDEVOP_setup_gsi = 21            # configure a GSI's trigger and polarity
PHYSDEVOP_get_free_pirq = 23        # allocate a free PIRQ
PHYSDEVOP_pci_mmcfg_reserved = 24   # report an MMCFG region as reserved
PHYSDEVOP_pci_device_add = 25       # announce a PCI device (current form)
PHYSDEVOP_pci_device_remove = 26    # withdraw a PCI device (current form)
PHYSDEVOP_restore_msi_ext = 27      # restore MSI state (segment-aware)
PHYSDEVOP_pirq_eoi_gmfn_v2 = 28     # register the PIRQ-needs-EOI bitmap page (v2)
PHYSDEVOP_dbgp_op = 29              # USB debug port reset coordination
PHYSDEVOP_prepare_msix = 30         # MSI-X resources about to stay fixed
PHYSDEVOP_release_msix = 31         # MSI-X resources may change again
# Current name of the bitmap registration op.
PHYSDEVOP_pirq_eoi_gmfn = PHYSDEVOP_pirq_eoi_gmfn_v2

# physdev_dbgp_op.op and .bus
PHYSDEVOP_DBGP_RESET_PREPARE = 1
PHYSDEVOP_DBGP_RESET_DONE = 2
PHYSDEVOP_DBGP_BUS_UNKNOWN = 0
PHYSDEVOP_DBGP_BUS_PCI = 1

# physdev_map_pirq.type / physdev_get_free_pirq.type
MAP_PIRQ_TYPE_MSI = 0x0
MAP_PIRQ_TYPE_GSI = 0x1
MAP_PIRQ_TYPE_UNKNOWN = 0x2
MAP_PIRQ_TYPE_MSI_SEG = 0x3
MAP_PIRQ_TYPE_MULTI_MSI = 0x4

# physdev_pci_device_add.flags
XEN_PCI_DEV_EXTFN = 0x1
XEN_PCI_DEV_VIRTFN = 0x2
XEN_PCI_DEV_PXM = 0x4

# op number -> name without the prefix (the current name for aliased numbers).
PHYSDEVOP_NAMES = {
    value: name[len("PHYSDEVOP_"):]
    for name, value in globals().items()
    if name.startswith("PHYSDEVOP_") and isinstance(value, int)
    and not name.startswith("PHYSDEVOP_DBGP_")
}
