/*
 * gnttab.c - grant table v1 helpers (see gnttab.h).
 */
#include "gnttab.h"
#include "mm.h"

grant_entry_v1_t *gnttab;

long gnttab_init(void)
{
    unsigned long frame = 0;
    struct gnttab_setup_table op = {
        .dom = DOMID_SELF, .nr_frames = 1, .frame_list = &frame,
    };
    void *va = padding_alloc();
    long rc;

    if ( !va )
        return -XEN_ENOMEM;
    rc = HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &op, 1);
    if ( rc )
        return rc;
    if ( op.status != GNTST_okay )
        return op.status;
    rc = HYPERVISOR_update_va_mapping((unsigned long)va,
                                      ((uint64_t)frame << PAGE_SHIFT) | PTE_RW,
                                      UVMF_INVLPG);
    if ( !rc )
        gnttab = va;
    return rc;
}

void gnttab_grant(grant_ref_t ref, domid_t domid, unsigned long mfn, int readonly)
{
    grant_entry_v1_t *e = &gnttab[ref];

    e->domid = domid;
    e->frame = mfn;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);    /* Xen reads flags first */
    __atomic_store_n(&e->flags, GTF_permit_access | (readonly ? GTF_readonly : 0),
                     __ATOMIC_SEQ_CST);
}

long gnttab_end(grant_ref_t ref)
{
    uint16_t *flags = &gnttab[ref].flags;
    uint16_t old = __atomic_load_n(flags, __ATOMIC_SEQ_CST);

    do {
        if ( old & (GTF_reading | GTF_writing) )
            return -XEN_EBUSY;
    } while ( !__atomic_compare_exchange_n(flags, &old, 0, 0, __ATOMIC_SEQ_CST,
                                           __ATOMIC_SEQ_CST) );
    return 0;
}

int gnttab_map(domid_t dom, grant_ref_t ref, void *va, int readonly,
               grant_handle_t *handle)
{
    struct gnttab_map_grant_ref op = {
        .host_addr = (unsigned long)va,
        .flags = GNTMAP_host_map | (readonly ? GNTMAP_readonly : 0),
        .ref = ref, .dom = dom,
    };
    long rc;

    /* The grant PTE goes into an existing L1 entry that is not present. */
    rc = HYPERVISOR_update_va_mapping((unsigned long)va, 0, UVMF_INVLPG);
    if ( rc )
        return rc;
    rc = HYPERVISOR_grant_table_op(GNTTABOP_map_grant_ref, &op, 1);
    if ( rc )
        return rc;
    *handle = op.handle;
    return op.status;
}

int gnttab_unmap(void *va, grant_handle_t handle)
{
    struct gnttab_unmap_grant_ref op = {
        .host_addr = (unsigned long)va, .handle = handle,
    };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_unmap_grant_ref, &op, 1);

    return rc ? rc : op.status;
}

int gnttab_copy_one(struct gnttab_copy *op)
{
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_copy, op, 1);

    return rc ? rc : op->status;
}

const char *gntst_name(long status)
{
    static const char *const names[] = {
        "GNTST_okay", "GNTST_general_error", "GNTST_bad_domain",
        "GNTST_bad_gntref", "GNTST_bad_handle", "GNTST_bad_virt_addr",
        "GNTST_bad_dev_addr", "GNTST_no_device_space",
        "GNTST_permission_denied", "GNTST_bad_page", "GNTST_bad_copy_arg",
    };

    if ( status <= 0 && -status < (long)ARRAY_SIZE(names) )
        return names[-status];
    return "GNTST_?";
}
