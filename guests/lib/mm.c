/*
 * mm.c - start-of-day layout, a padding-page allocator, a page-table walk
 * and a few memory hypercall helpers (see mm.h).
 */
#include "mm.h"

void sod_layout(struct sod_layout *sod)
{
    unsigned long pad_end;

    sod->pt_pfn = virt_to_pfn((void *)start_info->pt_base);
    sod->nr_pt = start_info->nr_pt_frames;
    sod->stack_pfn = sod->pt_pfn + sod->nr_pt;     /* the page after the tables */
    sod->pad_pfn = sod->stack_pfn + 1;
    sod->pad_end_pfn = sod->pad_pfn + (SOD_PADDING >> PAGE_SHIFT);

    /*
     * The region ends on a 4 MiB boundary at least 512 KiB past the stack.
     * VIRT_BASE is 4 MiB aligned, so pfns and addresses align alike.
     */
    pad_end = sod->pad_end_pfn << PAGE_SHIFT;
    sod->end_pfn = ((pad_end + SOD_ALIGN - 1) & ~(SOD_ALIGN - 1)) >> PAGE_SHIFT;
}

void *padding_alloc(void)
{
    static unsigned long next, end;
    void *va;

    if ( !next )
    {
        struct sod_layout sod;

        sod_layout(&sod);
        next = sod.pad_pfn;
        end = sod.pad_end_pfn;
    }
    if ( next >= end )
        return NULL;
    va = pfn_to_virt(next++);
    memset(va, 0, PAGE_SIZE);
    return va;
}

pte_t *entry_of(const pte_t *l4, unsigned long va, int level)
{
    const pte_t *table = l4;

    for ( int at = 4; at > level; at-- )
    {
        pte_t e = table[PT_INDEX(va, at)];

        if ( !(e & _PAGE_PRESENT) || (e & _PAGE_PSE) )
            return NULL;
        table = mfn_to_virt(PTE_MFN(e));
    }
    return (pte_t *)&table[PT_INDEX(va, level)];
}

pte_t *l1e_of(const pte_t *l4, unsigned long va)
{
    return entry_of(l4, va, 1);
}

long map_shared_info(unsigned long va, shared_info_t **out)
{
    long rc = HYPERVISOR_update_va_mapping(va, start_info->shared_info | PTE_RW,
                                           UVMF_INVLPG);

    *out = rc ? NULL : (shared_info_t *)va;
    return rc;
}

long mmuext_one(unsigned int cmd, unsigned long arg1)
{
    struct mmuext_op op = { .cmd = cmd, .arg1.mfn = arg1 };

    return HYPERVISOR_mmuext_op(&op, 1, NULL, DOMID_SELF);
}

const char *xen_errname(long rc)
{
    static const struct { int err; const char *name; } names[] = {
        { XEN_EPERM, "EPERM" },     { XEN_ENOENT, "ENOENT" },
        { XEN_ESRCH, "ESRCH" },     { XEN_EIO, "EIO" },
        { XEN_ENXIO, "ENXIO" },     { XEN_E2BIG, "E2BIG" },
        { XEN_EBADF, "EBADF" },     { XEN_EAGAIN, "EAGAIN" },
        { XEN_ENOMEM, "ENOMEM" },   { XEN_EACCES, "EACCES" },
        { XEN_EFAULT, "EFAULT" },   { XEN_EBUSY, "EBUSY" },
        { XEN_EEXIST, "EEXIST" },   { XEN_ENODEV, "ENODEV" },
        { XEN_EINVAL, "EINVAL" },   { XEN_ENOSPC, "ENOSPC" },
        { XEN_ERANGE, "ERANGE" },   { XEN_ENOSYS, "ENOSYS" },
        { XEN_EOPNOTSUPP, "EOPNOTSUPP" },
    };
    unsigned int i;

    if ( rc == 0 )
        return "OK";
    for ( i = 0; i < ARRAY_SIZE(names); i++ )
        if ( rc == -names[i].err )
            return names[i].name;
    return "?";
}
