/*
 * hello - say hello both ways, report what Xen tells us, power off.
 */
#include "lib.h"

static xen_extraversion_t extra;
static xen_capabilities_info_t caps;

void guest_main(start_info_t *si)
{
    long ver;

    printk("Hello from pyxenon hello guest\n");
    ring_printk("Hello from the pyxenon hello guest's console ring\n");

    ver = HYPERVISOR_xen_version(XENVER_version, NULL);
    printk("Xen version %d.%d\n", (int)(ver >> 16), (int)(ver & 0xffff));

    if ( HYPERVISOR_xen_version(XENVER_extraversion, extra) >= 0 )
        printk("Xen extraversion: %.*s\n", (int)sizeof(extra), extra);
    if ( HYPERVISOR_xen_version(XENVER_capabilities, caps) >= 0 )
        printk("Xen capabilities: %.*s\n", (int)sizeof(caps), caps);

    printk("start_info magic: %.*s, nr_pages: %lu\n",
           (int)sizeof(si->magic), si->magic, si->nr_pages);

    xen_shutdown(SHUTDOWN_poweroff);
}
