/*
 * bigcall - hypercalls big enough to hold the host for minutes if one trap
 * could do them all at once, each checked for the result Xen gives:
 *
 *   1. one multicall of 1 + N console writes (N: the cmdline's writes=,
 *      2048 by default): first the 512 KiB start-of-day padding (returns
 *      0), then N writes of 4 MiB starting 64 KiB before the end of the
 *      mapped region, so each copies 256 KiB and then faults (-EFAULT, as
 *      Xen's copy_from_guest);
 *   2. the same 4 MiB write on its own (-EFAULT);
 *   3. one multicall of CHEAP xen_version(XENVER_version) entries, each
 *      result the version.
 *
 * The padding is zeros, which Xen's console drops (it keeps printable
 * characters only), so all this prints nothing.  The hypervisor must split
 * every one of these into bounded pieces (continuations) and let the other
 * domains run between them.  The last line is "bigcall: ok" or
 * "bigcall: FAILED"; the guest powers off either way.
 */
#include "lib.h"
#include "cmdline.h"
#include "mm.h"

#define CONSOLEIO_write_ 0
#define EFAULT_ 14
#define BIG_WRITE (4UL << 20)
#define TAIL (256UL << 10)         /* mapped bytes a big write reads before its fault */
#define MAX_WRITES 4096
#define CHEAP 16384

static struct multicall_entry writes[1 + MAX_WRITES];
static struct multicall_entry cheap[CHEAP];

static long multicall(struct multicall_entry *list, unsigned long nr)
{
    return HYPERVISOR_multicall(list, nr);
}

static void console_entry(struct multicall_entry *e, unsigned long count, unsigned long buf)
{
    e->op = __HYPERVISOR_console_io;
    e->args[0] = CONSOLEIO_write_;
    e->args[1] = count;
    e->args[2] = buf;
    e->result = 1;                 /* overwritten by the hypervisor */
}

/* 1: returns how many entries did not get the result expected. */
static unsigned long big_writes(unsigned long n, unsigned long pad, unsigned long tail)
{
    unsigned long i, wrong = 0;
    long rc;

    console_entry(&writes[0], SOD_PADDING, pad);
    for ( i = 1; i <= n; i++ )
        console_entry(&writes[i], BIG_WRITE, tail);
    rc = multicall(writes, n + 1);
    wrong += writes[0].result != 0;
    for ( i = 1; i <= n; i++ )
        wrong += writes[i].result != (unsigned long)-EFAULT_;
    printk("bigcall: multicall of %lu console writes (%lu of 4 MiB): rc %ld, %lu wrong\n",
           n + 1, n, rc, wrong);
    return wrong + (rc != 0);
}

/* 3 */
static unsigned long cheap_calls(void)
{
    long ver = HYPERVISOR_xen_version(XENVER_version, NULL), rc;
    unsigned long i, wrong = 0;

    for ( i = 0; i < CHEAP; i++ )
    {
        cheap[i].op = __HYPERVISOR_xen_version;
        cheap[i].args[0] = XENVER_version;
        cheap[i].result = 0;
    }
    rc = multicall(cheap, CHEAP);
    for ( i = 0; i < CHEAP; i++ )
        wrong += cheap[i].result != (unsigned long)ver;
    printk("bigcall: multicall of %d xen_version calls: rc %ld, %lu wrong\n", CHEAP, rc, wrong);
    return wrong + (rc != 0);
}

void guest_main(start_info_t *si)
{
    struct sod_layout sod;
    unsigned long n = cmdline_num("writes", 2048), wrong;
    unsigned long pad, tail;
    long rc;

    if ( n > MAX_WRITES )
        n = MAX_WRITES;
    sod_layout(&sod);
    pad = (unsigned long)pfn_to_virt(sod.pad_pfn);
    tail = (unsigned long)pfn_to_virt(sod.end_pfn) - TAIL;

    wrong = big_writes(n, pad, tail);
    rc = HYPERVISOR_console_io(CONSOLEIO_write_, BIG_WRITE, (char *)tail);
    printk("bigcall: one console write of 4 MiB: rc %ld\n", rc);
    wrong += rc != -EFAULT_;
    wrong += cheap_calls();
    printk("bigcall: %s\n", wrong ? "FAILED" : "ok");
}
