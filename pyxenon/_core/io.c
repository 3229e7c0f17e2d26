/*
 * Port I/O from a PV guest, as Xen 4.17's PV emulation answers it
 * (arch/x86/pv/emul-priv-op.c read_io/write_io for an unprivileged domU,
 * which owns no ports): the access must pass guest_io_okay (the virtual
 * IOPL, or the guest's I/O bitmap), else it is a #GP.  Then
 * guest_io_read/guest_io_write, byte by byte: the PIT and speaker ports
 * (0x42, 0x43, 0x61) read all-ones because xl gives a PV domain no vPIT
 * (pv_pit_handler without has_vpit); the RTC index (0x70) is latched per
 * domain (rtc_guest_read/write), its data port reads all-ones; a dword at
 * 0xcf8 is the latched CONFIG_ADDRESS; every other port, 0xcfc-0xcff
 * included (pci_cfg_ok is for the hardware domain), reads all-ones, and
 * writes are dropped.  In C because Linux's TSC calibration reads port
 * 0x42 some 50,000 times.
 */
#include "core.h"

#define RTC_INDEX 0x70
#define PCI_CONFIG_ADDRESS 0xcf8

/* iopl_ok: a guest kernel runs at virtual CPL 1 (0 with architectural
 * IOPL), guest user at 3; the access is allowed if CPL <= vIOPL. */
static int iopl_ok(const struct xc_vcpu *v)
{
    uint32_t cpl = v->kernel_mode ? (v->io->arch_iopl ? 0 : 1) : 3;
    return cpl <= v->iopl;
}

/* guest_io_okay's bitmap half: read in guest kernel context (Xen's
 * toggle_guest_pt); an unreadable byte denies. */
static int bitmap_ok(struct xc_machine *m, struct xc_vcpu *v, uint32_t port, int size)
{
    uint8_t bytes[2] = {0xFF, 0xFF};
    uint64_t cr3 = v->cr3;
    if (port + (uint32_t)size > v->iobmp_limit)
        return 0;
    v->cr3 = v->kernel_cr3;
    if (xc_copy_from_guest(m, v, bytes, v->iobmp + (port >> 3), 2))
        if (xc_copy_from_guest(m, v, bytes, v->iobmp + (port >> 3), 1))
            bytes[0] = 0xFF;
    v->cr3 = cr3;
    uint32_t mask = (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8;
    return !(mask & (((1u << size) - 1) << (port & 7)));
}

static int guest_io_okay(struct xc_machine *m, struct xc_vcpu *v, uint32_t port, int size)
{
    return v->io && (iopl_ok(v) || bitmap_ok(m, v, port, size));
}

uint32_t xc_io_read(struct xc_machine *m, struct xc_vcpu *v, uint32_t port, int size, int *ok)
{
    uint32_t data = 0;
    *ok = guest_io_okay(m, v, port, size);
    if (!*ok)
        return 0;
    if (port == PCI_CONFIG_ADDRESS && size == 4)
        return v->io->pci_cf8;
    for (int i = 0; i < size; i++) {
        uint32_t byte = (port + i) == RTC_INDEX ? v->io->cmos_idx : 0xFF;
        data |= (byte & 0xFF) << (8 * i);
    }
    return data;
}

/* 1 if emulated (or dropped), 0 for a #GP. */
int xc_io_write(struct xc_machine *m, struct xc_vcpu *v, uint32_t port, int size, uint32_t value)
{
    if (!guest_io_okay(m, v, port, size))
        return 0;
    if (port == PCI_CONFIG_ADDRESS && size == 4) {
        v->io->pci_cf8 = value;
        return 1;
    }
    for (int i = 0; i < size; i++)
        if (port + i == RTC_INDEX)
            v->io->cmos_idx = (value >> (8 * i)) & 0xFF;
    return 1;
}

/*
 * cli/sti at a #GP (a PV kernel runs them at ring 3): with enough virtual
 * IOPL Xen skips them and leaves the event mask alone (priv_op_validate's
 * "too dangerous" to honour), else the #GP stands.  1 when skipped here;
 * a prefixed form is hypervisor/emulate.py's (emu_cli_sti, the same rule).
 */
int xc_emulate_cli_sti(struct xc_machine *m, struct xc_vcpu *v)
{
    uint64_t rip = 0;
    uint8_t op = 0;
    if (!v->io || !m->fast_paths)
        return 0;
    uc_reg_read(m->uc, UC_X86_REG_RIP, &rip);
    if (xc_copy_from_guest(m, v, &op, rip, 1) || (op != 0xFA && op != 0xFB) || !iopl_ok(v))
        return 0;
    xc_clear_exception(m);   /* taken here, never delivered */
    xc_write_rip(m->uc, rip + 1);
    return 1;
}
