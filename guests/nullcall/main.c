/*
 * nullcall - the null-hypercall benchmark: "loops=N" on the command line
 * makes N xen_version(XENVER_version) calls, then powers off.
 */
#include "lib.h"

static unsigned long parse_loops(const char *cmdline)
{
    static const char key[] = "loops=";
    unsigned long n = 0;
    const char *p = cmdline;

    for ( ; *p; p++ )
        if ( !memcmp(p, key, sizeof(key) - 1) )
            break;
    for ( p += *p ? sizeof(key) - 1 : 0; *p >= '0' && *p <= '9'; p++ )
        n = n * 10 + (*p - '0');
    return n;
}

void guest_main(start_info_t *si)
{
    unsigned long n = parse_loops((const char *)si->cmd_line);

    while ( n-- )
        HYPERVISOR_xen_version(XENVER_version, NULL);
    xen_shutdown(SHUTDOWN_poweroff);
}
