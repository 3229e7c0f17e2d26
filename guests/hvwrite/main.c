/*
 * hvwrite - code the hypervisor writes with mmu_update or
 * update_descriptor runs as written, not as an older translation had it.
 *
 * Xen 4.17 lets a guest write any frame of its own that is no page table
 * through these calls: do_mmu_update() (xen/arch/x86/mm.c) on a frame of
 * type PGT_writable_page, or of no type (get_page_type(page,
 * PGT_writable_page) succeeds), does paging_write_guest_entry() -- a plain
 * 8-byte write -- and returns 0; do_update_descriptor()
 * (pv/descriptor-tables.c) writes any frame that can take the writable
 * type, after check_descriptor() (a not-present descriptor always passes).
 * A real CPU runs what memory holds; so after the write the next call must
 * run the new code.  guests/codewrite does the same for MMUEXT_COPY_PAGE
 * and GNTTABOP_copy.
 *
 * Each attempt has a page of its own: the guest writes "return 1" there
 * and calls it (so it is translated), the hypervisor writes "return N",
 * and the call must return N.  "hvwrite: N/M attempts refused".
 */
#include "attempt.h"

#define PAGES 7

static uint8_t code[PAGES][PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));
static uint8_t data[PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));

/* "mov $n, %eax; ret; nop; nop": the first quadword of a page. */
static uint64_t ret_code(uint32_t n)
{
    return 0xb8UL | ((uint64_t)n << 8) | (0xc3UL << 40) | (0x9090UL << 48);
}

/* "xor %eax,%eax; mov $n,%al; nop; rex.W ret; nop": byte 5 (0x48) leaves
 * the descriptor's present bit (47) clear, so check_descriptor() passes it. */
static uint64_t ret_code_desc(uint8_t n)
{
    return 0x31UL | (0xc0UL << 8) | (0xb0UL << 16) | ((uint64_t)n << 24) |
           (0x90UL << 32) | (0x48UL << 40) | (0xc3UL << 48) | (0x90UL << 56);
}

static unsigned int call(uint8_t *page)
{
    unsigned int (*volatile fn)(void) = (unsigned int (*)(void))page;

    return fn();
}

/* The guest's own "return 1", run once: a translation exists. */
static uint8_t *translated(unsigned int i)
{
    *(volatile uint64_t *)code[i] = ret_code(1);
    if ( call(code[i]) != 1 )
        printk("hvwrite: (page %u does not return 1 before the write)\n", i);
    return code[i];
}

/* rc: the write's result; written: the page holds the new code. */
static void verdict(const char *what, long rc, const uint8_t *p, uint64_t code,
                    unsigned int want)
{
    unsigned int got = rc ? 0 : call((uint8_t *)p);

    if ( rc )
        report(DIFFERENT, what, "%s (Xen: 0, then the call returns %u)", rcstr(rc), want);
    else if ( *(const volatile uint64_t *)p != code )
        report(DIFFERENT, what, "0 OK, but the page does not hold the new code "
               "(0x%lx; Xen: written)", *(const volatile uint64_t *)p);
    else if ( got == want )
        report(REFUSED, what, "0 OK, the call returns %u: stale code (1) "
               "refused", got);
    else
        report(BREACH, what, "0 OK, the call returns %u (stale code ran; Xen: %u)",
               got, want);
}

/* Control: the guest's own store (self-modifying code) runs as written. */
static void own_store_code(void)
{
    uint8_t *p = translated(5);

    *(volatile uint64_t *)p = ret_code(7);
    verdict("the guest's own store of \"return 7\" over its code (control)", 0, p,
            ret_code(7), 7);
}

/* do_mmu_update: the frame is PGT_writable_page (mapped writable). */
static void mmu_update_code(void)
{
    uint8_t *p = translated(0);
    long rc = mmu_update1(virt_to_maddr(p), ret_code(2), MMU_NORMAL_PT_UPDATE);

    verdict("mmu_update (one request) writes \"return 2\" over its code", rc, p,
            ret_code(2), 2);
}

/* The same in a batch, after a write to a data page. */
static void mmu_update_batch_code(void)
{
    uint8_t *p = translated(1);
    struct mmu_update req[2] = {
        { .ptr = virt_to_maddr(data) | MMU_NORMAL_PT_UPDATE, .val = 42 },
        { .ptr = virt_to_maddr(p) | MMU_NORMAL_PT_UPDATE, .val = ret_code(3) },
    };
    unsigned int done = 0;
    long rc = HYPERVISOR_mmu_update(req, 2, &done, DOMID_SELF);

    verdict("mmu_update batch (a data page, then \"return 3\" over its code)", rc, p,
            ret_code(3), 3);
}

/* MMU_PT_UPDATE_PRESERVE_AD: on a writable page also a plain write. */
static void mmu_update_preserve_ad_code(void)
{
    uint8_t *p = translated(2);
    long rc = mmu_update1(virt_to_maddr(p), ret_code(4), MMU_PT_UPDATE_PRESERVE_AD);

    verdict("mmu_update (MMU_PT_UPDATE_PRESERVE_AD) writes \"return 4\" over its code",
            rc, p, ret_code(4), 4);
}

/* The same write as a multicall entry. */
static void multicall_mmu_update_code(void)
{
    uint8_t *p = translated(6);
    struct mmu_update req = { .ptr = virt_to_maddr(p) | MMU_NORMAL_PT_UPDATE,
                              .val = ret_code(8) };
    struct multicall_entry call = {
        .op = __HYPERVISOR_mmu_update,
        .args = { (unsigned long)&req, 1, 0, DOMID_SELF },
    };
    long rc = HYPERVISOR_multicall(&call, 1);

    if ( !rc )
        rc = (long)call.result;
    verdict("multicall: mmu_update writes \"return 8\" over its code", rc, p,
            ret_code(8), 8);
}

/* A code frame mapped read-only only (no type): get_page_type(writable)
 * succeeds in do_mmu_update, and the write is made. */
static void mmu_update_readonly_code(void)
{
    uint8_t *p = translated(3);
    long rc = remap_self(p, PTE_RO);

    if ( !rc )
        rc = mmu_update1(virt_to_maddr(p), ret_code(5), MMU_NORMAL_PT_UPDATE);
    verdict("mmu_update writes \"return 5\" over code mapped read-only only", rc, p,
            ret_code(5), 5);
}

/* do_update_descriptor: a not-present "descriptor" that is code. */
static void update_descriptor_code(void)
{
    uint8_t *p = translated(4);
    long rc = HYPERVISOR_update_descriptor(virt_to_maddr(p), ret_code_desc(6));

    verdict("update_descriptor writes \"return 6\" (a not-present descriptor) over its code",
            rc, p, ret_code_desc(6), 6);
}

void guest_main(start_info_t *si)
{
    attempts_init("hvwrite");
    printk("hvwrite: code the hypervisor writes must run as written\n");
    own_store_code();
    mmu_update_code();
    mmu_update_batch_code();
    mmu_update_preserve_ad_code();
    mmu_update_readonly_code();
    multicall_mmu_update_code();
    update_descriptor_code();
    attempts_done();
}
