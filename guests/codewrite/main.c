/*
 * codewrite - code the hypervisor writes into a guest page runs as written.
 *
 * The emulator notices a guest's own stores into code it has translated,
 * not the hypervisor's writes through its own mapping of machine memory;
 * pyxenon drops the translations of a frame it writes once code has been
 * fetched from that frame.  Each step calls page A after a write to it:
 *
 *  1. The guest writes "mov $1, %eax; ret" into A: the call returns 1.
 *  2. The guest rewrites A's immediate to 3: 3 (self-modifying code).
 *  3. MMUEXT_COPY_PAGE copies page B ("return 2") over A: 2.
 *  4. GNTTABOP_copy, frame to frame (a PV guest names frames by mfn), copies page C ("return 4") over A: 4.
 *
 * Success: "codewrite: all steps passed", SHUTDOWN_poweroff.  A wrong
 * result is reported and the guest shuts down with SHUTDOWN_crash.
 */
#include "lib.h"
#include "mm.h"
#include "gnttab.h"

#define DOMID_SELF_ 0x7ff0

static uint8_t page_a[4096] __attribute__((aligned(4096)));
static uint8_t page_b[4096] __attribute__((aligned(4096)));
static uint8_t page_c[4096] __attribute__((aligned(4096)));

/* "mov $value, %eax; ret" at the start of page. */
static void put_code(uint8_t *page, uint32_t value)
{
    page[0] = 0xb8;
    memcpy(page + 1, &value, 4);
    page[5] = 0xc3;
}

static void check(const char *step, unsigned int want)
{
    unsigned int (*code)(void) = (unsigned int (*)(void))page_a;
    unsigned int got = code();

    printk("codewrite: %s: page A returns %u\n", step, got);
    if ( got != want )
    {
        printk("codewrite: FAILED: %s: wanted %u (stale code ran)\n", step, want);
        xen_shutdown(SHUTDOWN_crash);
    }
}

static void copy_page_b(void)
{
    struct mmuext_op op = {
        .cmd = MMUEXT_COPY_PAGE,
        .arg1.mfn = virt_to_mfn(page_a),
        .arg2.src_mfn = virt_to_mfn(page_b),
    };
    long rc = HYPERVISOR_mmuext_op(&op, 1, NULL, DOMID_SELF_);

    if ( rc )
        printk("codewrite: MMUEXT_COPY_PAGE: %ld\n", rc);
}

static void grant_copy_page_c(void)
{
    struct gnttab_copy op = {
        .source = { .u.gmfn = virt_to_mfn(page_c), .domid = DOMID_SELF_ },
        .dest = { .u.gmfn = virt_to_mfn(page_a), .domid = DOMID_SELF_ },
        .len = 4096,
    };
    int status = gnttab_copy_one(&op);

    if ( status )
        printk("codewrite: GNTTABOP_copy: %d %s\n", status, gntst_name(status));
}

void guest_main(start_info_t *si)
{
    put_code(page_a, 1);
    check("written by the guest", 1);
    put_code(page_a, 3);
    check("rewritten by the guest", 3);
    put_code(page_b, 2);
    copy_page_b();
    check("after MMUEXT_COPY_PAGE", 2);
    put_code(page_c, 4);
    grant_copy_page_c();
    check("after GNTTABOP_copy", 4);
    printk("codewrite: all steps passed\n");
    xen_shutdown(SHUTDOWN_poweroff);
}
