/*
 * baseptr - base pointer switches against the page-type counts.
 *
 * A PV Linux switches its kernel and user top-level tables on every
 * context switch (one mmuext_op: NEW_BASEPTR + NEW_USER_BASEPTR), and
 * pyxenon answers the plain batches in C.  Each attempt here is a batch
 * that C may take or must leave to Python -- a frame that is no L4, one
 * past the machine, both slots on one table, two switches of one slot,
 * the last pin dropped while the table is only a base -- and after each the
 * L4 must still be a page table: mapping it writable is -EBUSY, as Xen's
 * get_page_from_l1e answers when get_page_type refuses the writable type
 * (xen/arch/x86/mm.c; new_guest_cr3 takes and puts the L4's type references).
 * "baseptr: N/M attempts refused".
 */
#include "attempt.h"

static unsigned long l4;        /* the bootstrap L4's frame (cr3) */
static void *probe;             /* a padding page whose mapping the probes move */

static long batch2(unsigned int c1, unsigned long m1, unsigned int c2, unsigned long m2,
                   unsigned int n)
{
    struct mmuext_op ops[2] = {{.cmd = c1, .arg1.mfn = m1}, {.cmd = c2, .arg1.mfn = m2}};
    unsigned int done = 0;

    return HYPERVISOR_mmuext_op(ops, n, &done, DOMID_SELF);
}

/* The L4 is still typed: a writable mapping of it is -EBUSY. */
static void still_a_table(const char *what, long rc, long want)
{
    long map = HYPERVISOR_update_va_mapping((unsigned long)probe,
                                            ((pte_t)l4 << PAGE_SHIFT) | PTE_RW, UVMF_INVLPG);

    if ( map == 0 )
        report(BREACH, what, "%s, then the L4 mapped writable (Xen: -EBUSY)", rcstr(rc));
    else if ( rc != want || map != -XEN_EBUSY )
        report(DIFFERENT, what, "%s, writable map %s (Xen: %s, -16 EBUSY)", rcstr(rc),
               rcstr(map), rcstr(want));
    else
        report(want ? REFUSED : ALLOWED, what,
               "%s, and the L4 stays a table (writable map %s)", rcstr(rc), rcstr(map));
}

static void refused_switches(void)
{
    void *data = padding_alloc();

    still_a_table("NEW_BASEPTR to a writable data frame",
                  batch2(MMUEXT_NEW_BASEPTR, virt_to_mfn(data), 0, 0, 1), -XEN_EINVAL);
    still_a_table("NEW_USER_BASEPTR to a writable data frame",
                  batch2(MMUEXT_NEW_USER_BASEPTR, virt_to_mfn(data), 0, 0, 1), -XEN_EINVAL);
    still_a_table("NEW_BASEPTR past the machine's frames",
                  batch2(MMUEXT_TLB_FLUSH_LOCAL, 0, MMUEXT_NEW_BASEPTR, 0xFFFFFFFUL, 2),
                  -XEN_EINVAL);
    still_a_table("NEW_BASEPTR to frame 0", batch2(MMUEXT_NEW_BASEPTR, 0, 0, 0, 1), -XEN_EINVAL);
}

static void allowed_switches(void)
{
    still_a_table("kernel and user base on the L4 in one batch",
                  batch2(MMUEXT_NEW_BASEPTR, l4, MMUEXT_NEW_USER_BASEPTR, l4, 2), 0);
    still_a_table("the user base dropped again",
                  batch2(MMUEXT_TLB_FLUSH_LOCAL, 0, MMUEXT_NEW_USER_BASEPTR, 0, 2), 0);
    still_a_table("two user switches in one batch",
                  batch2(MMUEXT_NEW_USER_BASEPTR, l4, MMUEXT_NEW_USER_BASEPTR, 0, 2), 0);
    still_a_table("user base on the L4, then its pin dropped",
                  batch2(MMUEXT_NEW_USER_BASEPTR, l4, MMUEXT_UNPIN_TABLE, l4, 2), 0);
    still_a_table("the user base dropped with the kernel's the only other reference",
                  batch2(MMUEXT_NEW_BASEPTR, l4, MMUEXT_NEW_USER_BASEPTR, 0, 2), 0);
    still_a_table("the L4 pinned again", batch2(MMUEXT_PIN_L4_TABLE, l4, 0, 0, 1), 0);
}

void guest_main(start_info_t *si)
{
    attempts_init("baseptr");
    l4 = virt_to_mfn((const void *)si->pt_base);
    probe = padding_alloc();
    refused_switches();
    allowed_switches();
    attempts_done();
}
