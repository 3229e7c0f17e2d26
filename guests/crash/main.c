/*
 * crash - execute a privileged instruction with no trap table registered.
 *
 * The kernel of a 64-bit PV guest runs in ring 3, where HLT raises #GP.
 * Xen's privileged-instruction emulation for PV guests does not handle
 * HLT (unlike reads of %cr3 or WBINVD, which it emulates), and with no
 * trap handler to bounce the fault to, the hypervisor must crash the
 * domain.
 */
#include "lib.h"

void guest_main(start_info_t *si)
{
    printk("crash guest: executing hlt with no trap handler\n");

    asm volatile ("hlt" ::: "memory");

    printk("crash guest: hlt did not fault!\n");
    xen_shutdown(SHUTDOWN_crash);
}
