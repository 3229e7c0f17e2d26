/*
 * deputy - the hypervisor as a confused deputy: hypercalls whose output
 * lands where the guest itself may not write.
 *
 * A guest that cannot write its page tables may ask Xen to: every
 * hypercall with an OUT field is a write by Xen at an address the guest
 * chose.  Xen 4.17 makes those writes with the guest's own permissions
 * (copy_to_guest -> __copy_to_user_ll with CR0.WP set, access_ok keeping
 * Xen's own range out), and frames it writes by frame number only once
 * they take the writable type (get_page_type(PGT_writable_page)).  So each
 * output aimed at a read-only view of the guest's L1, its L4, its GDT,
 * Xen's m2p, or a writable leaf under a read-only L2 entry must leave the
 * target as it was, with Xen's answer:
 *   copy_to_guest failing: -EFAULT (do_xen_version, arch_memory_op's
 *     XENMEM_memory_map, subarch_memory_op's machphys_mfn_list,
 *     do_vcpu_op's get_runstate_info, gnttab_query_size, do_multicall),
 *     after the work for alloc_unbound ("cleaning up here would be a mess");
 *   a byte copy stopping at the first unwritable byte (__copy_to_user_ll);
 *   ignored: mmu_update's and mmuext_op's done count (do_mmu_update,
 *     do_mmuext_op), GNTTABOP_setup_table's list (GNTST_bad_virt_addr),
 *     the runstate and time areas (registered, then written best effort);
 *   refused by type: map_vcpu_info -EINVAL, MMUEXT_CLEAR_PAGE and
 *     COPY_PAGE -EINVAL, GNTTABOP_copy GNTST_general_error
 *     (gnttab_copy_claim_buf).
 * "deputy: N/M attempts refused".
 */
#include "attempt.h"
#include "evtchn.h"
#include "gnttab.h"

#define XENVER_extraversion     1
#define XENVER_compile_info     2
#define XENVER_capabilities     3
#define XENMEM_machphys_mfn_list 5
#define XENMEM_memory_map       9
#define VCPUOP_get_runstate_info        4
#define VCPUOP_register_runstate_memory_area 5
#define VCPUOP_register_vcpu_info       10
#define VCPUOP_register_vcpu_time_memory_area 13
#define GNTTABOP_query_size     6
#define EVTCHNSTAT_unbound      1
#define COMPILE_INFO_SIZE       140     /* xen_compile_info_t */
#define STRADDLE                64      /* bytes before the page boundary */

struct memory_map { uint32_t nr_entries, pad; uint64_t buffer; };
struct machphys_mfn_list { uint32_t max_extents, pad; uint64_t extent_start;
                           uint32_t nr_extents, pad2; };
struct query_size { domid_t dom; uint32_t nr_frames, max_nr_frames; int16_t status; };
struct vcpu_info_area { uint64_t mfn; uint32_t offset, rsvd; };

static uint8_t before[PAGE_SIZE];
static pte_t *l4, *l1;          /* read-only views of live tables */
static uint8_t *gdt;            /* a read-only view of the GDT frame */
static uint8_t *ro;             /* a read-only data page */
static uint8_t *data;           /* a writable data page */

static long vcpu_op(unsigned int cmd, void *arg)
{
    return _hypercall3(__HYPERVISOR_vcpu_op, cmd, 0, arg);
}

static long memory_op(unsigned int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_memory_op, cmd, arg);
}

/* After the hypercall: Xen's answer, and the target page as it was. */
static void unchanged(const char *what, const void *page, long rc, long want)
{
    if ( memcmp(before, page, PAGE_SIZE) )
        report(BREACH, what, "%s, and the page changed (Xen: %s, nothing written)",
               rcstr(rc), rcstr(want));
    else if ( rc != want )
        report(DIFFERENT, what, "%s, page unchanged (Xen: %s)", rcstr(rc), rcstr(want));
    else
        report(want ? REFUSED : ALLOWED, what, "%s, page unchanged", rcstr(rc));
}

static const void *snap(const void *page)
{
    memcpy(before, page, PAGE_SIZE);
    return page;
}

/* ---- outputs copied to the guest ------------------------------------- */

static void version_outputs(void)
{
    unchanged("XENVER_extraversion into its L1 (read-only view)", snap(l1),
              HYPERVISOR_xen_version(XENVER_extraversion, l1), -XEN_EFAULT);
    unchanged("XENVER_capabilities into its L4 (read-only view)", snap(l4),
              HYPERVISOR_xen_version(XENVER_capabilities, l4), -XEN_EFAULT);
    unchanged("XENVER_extraversion into its GDT frame (read-only view)", snap(gdt),
              HYPERVISOR_xen_version(XENVER_extraversion, gdt), -XEN_EFAULT);
    unchanged("XENVER_compile_info into Xen's m2p", snap((void *)MACH2PHYS_VIRT_START),
              HYPERVISOR_xen_version(XENVER_compile_info, (void *)MACH2PHYS_VIRT_START),
              -XEN_EFAULT);
}

/* compile_info from 64 bytes before a page that maps the L1 read-only:
 * Xen writes those 64 bytes, then faults (-EFAULT). */
static void straddling_output(void)
{
    const char *what = "XENVER_compile_info across a writable page into its L1";
    uint8_t *w = padding_alloc(), *next = padding_alloc(), *start = next - STRADDLE;
    uint8_t info[COMPILE_INFO_SIZE];
    long rc, map;

    if ( next != w + PAGE_SIZE )
    {
        report(WRONG, what, "padding pages not adjacent");
        return;
    }
    HYPERVISOR_xen_version(XENVER_compile_info, info);
    map = HYPERVISOR_update_va_mapping((unsigned long)next,
                                       ((pte_t)virt_to_mfn(l1) << PAGE_SHIFT) | PTE_RO,
                                       UVMF_INVLPG);
    memset(start, 0, STRADDLE);
    snap(next);
    rc = map ? map : HYPERVISOR_xen_version(XENVER_compile_info, start);
    if ( !map && memcmp(start, info, STRADDLE) )
        report(DIFFERENT, what, "%s, the 64 bytes before the L1 not written (Xen: "
               "-14 EFAULT after writing them)", rcstr(rc));
    else
        unchanged(what, next, rc, -XEN_EFAULT);
    remap_self(next, PTE_RW);
}

static void memory_outputs(void)
{
    struct memory_map map = { .nr_entries = 8, .buffer = (uint64_t)l1 };
    struct machphys_mfn_list list = { .max_extents = 4, .extent_start = (uint64_t)l1 };

    unchanged("XENMEM_memory_map with its buffer in its L1", snap(l1),
              memory_op(XENMEM_memory_map, &map), -XEN_EFAULT);
    unchanged("XENMEM_machphys_mfn_list with its extents in its L1", snap(l1),
              memory_op(XENMEM_machphys_mfn_list, &list), -XEN_EFAULT);
}

static void vcpu_outputs(void)
{
    unchanged("VCPUOP_get_runstate_info into its L1", snap(l1),
              vcpu_op(VCPUOP_get_runstate_info, l1), -XEN_EFAULT);
}

/* The struct is readable (Xen reads its IN fields), not writable. */
static void read_only_structs(void)
{
    struct query_size *q = (struct query_size *)ro;
    struct evtchn_alloc_unbound *a = (struct evtchn_alloc_unbound *)(ro + 64);
    struct evtchn_status st = { .dom = DOMID_SELF };
    evtchn_port_t first = 0, next = 0;
    long rc;

    unchanged("GNTTABOP_query_size with its struct read-only", snap(ro),
              HYPERVISOR_grant_table_op(GNTTABOP_query_size, q, 1), -XEN_EFAULT);
    evtchn_alloc_unbound(DOMID_SELF, &first);
    rc = _hypercall2(__HYPERVISOR_event_channel_op, EVTCHNOP_alloc_unbound, a);
    evtchn_alloc_unbound(DOMID_SELF, &next);
    st.port = first + 1;
    _hypercall2(__HYPERVISOR_event_channel_op, EVTCHNOP_status, &st);
    if ( rc == -XEN_EFAULT && (next != first + 2 || st.status != EVTCHNSTAT_unbound) )
        report(DIFFERENT, "EVTCHNOP_alloc_unbound with its struct read-only",
               "-14 EFAULT, but port %u not allocated (Xen: allocated, then -EFAULT)",
               first + 1);
    else
        unchanged("EVTCHNOP_alloc_unbound with its struct read-only", ro, rc, -XEN_EFAULT);
}

/* One multicall entry in the L1: its op is a PTE (-ENOSYS), and the
 * result cannot be stored: -EFAULT. */
static void multicall_in_table(void)
{
    unchanged("multicall with its entry in its L1", snap(l1),
              HYPERVISOR_multicall((struct multicall_entry *)l1, 1), -XEN_EFAULT);
}

/* ---- outputs Xen drops ----------------------------------------------- */

static void done_counts(void)
{
    struct mmu_update req = { .ptr = virt_to_maddr(data) | MMU_NORMAL_PT_UPDATE, .val = 42 };
    struct mmuext_op op = { .cmd = MMUEXT_TLB_FLUSH_LOCAL };
    long rc;

    snap(l1);
    rc = HYPERVISOR_mmu_update(&req, 1, (unsigned int *)l1, DOMID_SELF);
    if ( !rc && *(volatile uint64_t *)data != 42 )
        report(WRONG, "mmu_update with its done count in its L1", "0, but the "
               "request was not done");
    else
        unchanged("mmu_update with its done count in its L1", l1, rc, 0);
    unchanged("mmuext_op with its done count in its L1", snap(l1),
              HYPERVISOR_mmuext_op(&op, 1, (unsigned int *)l1, DOMID_SELF), 0);
}

static void setup_table_list(void)
{
    struct gnttab_setup_table op = { .dom = DOMID_SELF, .nr_frames = 1,
                                     .frame_list = (unsigned long *)l1 };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &op, 1);

    snap(l1);
    if ( !rc && op.status != GNTST_bad_virt_addr )
        report(DIFFERENT, "GNTTABOP_setup_table with its frame list in its L1",
               "status %d (Xen: GNTST_bad_virt_addr)", op.status);
    else
        unchanged("GNTTABOP_setup_table with its frame list in its L1", l1, rc, 0);
}

/* Areas Xen writes at each context switch or time update. */
static void registered_area(const char *what, unsigned int cmd)
{
    uint64_t area = (uint64_t)l1;
    long rc;

    snap(l1);
    rc = vcpu_op(cmd, &area);
    for ( int i = 0; i < 64; i++ )
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    unchanged(what, l1, rc, 0);
    area = 0;
    vcpu_op(cmd, &area);
}

static void registered_areas(void)
{
    registered_area("runstate area registered in its L1, then 64 yields",
                    VCPUOP_register_runstate_memory_area);
    registered_area("time area registered in its L1, then 64 yields",
                    VCPUOP_register_vcpu_time_memory_area);
}

/* ---- frames Xen writes by number ------------------------------------- */

static void by_frame(void)
{
    struct vcpu_info_area vi = { .mfn = virt_to_mfn(l1) };
    struct vcpu_info_area vg = { .mfn = virt_to_mfn(gdt) };
    struct mmuext_op clear = { .cmd = MMUEXT_CLEAR_PAGE, .arg1.mfn = virt_to_mfn(l1) };
    struct mmuext_op copy = { .cmd = MMUEXT_COPY_PAGE, .arg1.mfn = virt_to_mfn(l4),
                              .arg2.src_mfn = virt_to_mfn(data) };
    unsigned int done;

    unchanged("VCPUOP_register_vcpu_info in its L1's frame", snap(l1),
              vcpu_op(VCPUOP_register_vcpu_info, &vi), -XEN_EINVAL);
    unchanged("VCPUOP_register_vcpu_info in its GDT frame", snap(gdt),
              vcpu_op(VCPUOP_register_vcpu_info, &vg), -XEN_EINVAL);
    unchanged("MMUEXT_CLEAR_PAGE of its L1", snap(l1),
              HYPERVISOR_mmuext_op(&clear, 1, &done, DOMID_SELF), -XEN_EINVAL);
    unchanged("MMUEXT_COPY_PAGE of a data page over its L4", snap(l4),
              HYPERVISOR_mmuext_op(&copy, 1, &done, DOMID_SELF), -XEN_EINVAL);
}

static void grant_copy_over(const char *what, const void *target)
{
    struct gnttab_copy op = {
        .source = { .u.gmfn = virt_to_mfn(data), .domid = DOMID_SELF },
        .dest = { .u.gmfn = virt_to_mfn(target), .domid = DOMID_SELF },
        .len = 8,
    };
    int st;

    snap(target);
    st = gnttab_copy_one(&op);
    if ( memcmp(before, target, PAGE_SIZE) )
        report(BREACH, what, "%d, and the page changed (Xen: GNTST_general_error)", st);
    else
        report(st == GNTST_general_error ? REFUSED : DIFFERENT, what,
               "%d, page unchanged (Xen: -1 GNTST_general_error)", st);
}

static void grant_copies(void)
{
    grant_copy_over("GNTTABOP_copy of a data page over its L1", l1);
    grant_copy_over("GNTTABOP_copy of a data page over its L4", l4);
    grant_copy_over("GNTTABOP_copy of a data page over its GDT frame", gdt);
}

/* ---- a writable leaf under a read-only L2 entry ---------------------- */

/* Bit 1 of every level must allow a write (CR0.WP): a private L1 maps a
 * data page writable, hooked into the region's last L2 slot without
 * _PAGE_RW; Xen's write through it faults, and so does the guest's. */
static void read_only_upper_level(void)
{
    const char *what = "XENVER_extraversion through a read-only L2 entry over a writable L1e";
    unsigned long slot = GUEST_VIRT_BASE + (PT_ENTRIES - 1) * PT_SPAN(2);
    pte_t *pl1 = padding_alloc(), *l2e = entry_of(l4, slot, 2);
    long rc = *l2e ? -XEN_EEXIST : remap_self(pl1, PTE_RO);

    if ( !rc )
    {
        /* pl1 is read-only now: write its entry through mmu_update */
        rc = mmu_update1(virt_to_maddr(pl1),
                         ((pte_t)virt_to_mfn(data) << PAGE_SHIFT) | PTE_RW,
                         MMU_NORMAL_PT_UPDATE);
    }
    if ( !rc )
        rc = mmu_update1(virt_to_maddr(l2e), ((pte_t)virt_to_mfn(pl1) << PAGE_SHIFT) | PTE_RO,
                         MMU_NORMAL_PT_UPDATE);
    if ( rc )
    {
        report(WRONG, what, "%s hooking the L1 (Xen: 0)", rcstr(rc));
        return;
    }
    snap(data);
    rc = HYPERVISOR_xen_version(XENVER_extraversion, (void *)slot);
    if ( !write_faults((volatile uint64_t *)slot, 7) )
        report(BREACH, what, "%s, and the guest's own write went through", rcstr(rc));
    else
        unchanged(what, data, rc, -XEN_EFAULT);
    mmu_update1(virt_to_maddr(l2e), 0, MMU_NORMAL_PT_UPDATE);
}

static void make_gdt(void)
{
    unsigned long frames[1];
    long rc;

    gdt = padding_alloc();
    frames[0] = virt_to_mfn(gdt);
    rc = remap_self(gdt, PTE_RO);
    if ( !rc )
        rc = _hypercall2(__HYPERVISOR_set_gdt, frames, 512);
    if ( rc )
        printk("deputy: (set_gdt on a read-only padding frame: %s)\n", rcstr(rc));
}

void guest_main(start_info_t *si)
{
    struct query_size *q;
    struct evtchn_alloc_unbound *a;

    attempts_init("deputy");
    l4 = (pte_t *)si->pt_base;
    l1 = (pte_t *)((unsigned long)l1e_of(l4, GUEST_VIRT_BASE) & ~(PAGE_SIZE - 1));
    data = padding_alloc();
    ro = padding_alloc();
    q = (struct query_size *)ro;
    q->dom = DOMID_SELF;
    a = (struct evtchn_alloc_unbound *)(ro + 64);
    a->dom = a->remote_dom = DOMID_SELF;
    remap_self(ro, PTE_RO);
    make_gdt();

    version_outputs();
    straddling_output();
    memory_outputs();
    vcpu_outputs();
    read_only_structs();
    multicall_in_table();
    done_counts();
    setup_table_list();
    registered_areas();
    by_frame();
    grant_copies();
    read_only_upper_level();
    _hypercall2(__HYPERVISOR_set_gdt, (unsigned long[]){ 0 }, 0);
    attempts_done();
}
