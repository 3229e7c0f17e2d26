/*
 * staletlb - a writable translation that outlives the last writable
 * mapping, across a change of the frame's type.
 *
 * Each attempt takes a fresh frame F (its 1:1 mapping made read-only),
 * maps it writable at a scratch address W and writes it there, so the
 * translation is cached writable and dirty; drops that mapping without a
 * flush (update_va_mapping with UVMF_NONE, mmu_update clearing the L1
 * entry -- one request, a batch the C fast path takes, a batch that goes
 * to Python -- or unhooking the private L1 that held it; or in a multicall
 * with the retype); then gives F a
 * type that must not be written (an L1-L4 page table, pinned or hooked
 * in, or a GDT frame); and writes through W again.
 *
 * Xen 4.17 refuses the write: _get_page_type() (xen/arch/x86/mm.c), on a
 * type change of a frame, "check[s] to flush stale TLB entries. It is
 * vital that no other CPUs are left with writeable mappings to a frame
 * which is intending to become pgtable/segdesc": the flush is filtered
 * only by page->tlbflush_timestamp, stamped when the last writable type
 * reference went (_put_page_type), and no flush came since.  So the write
 * through W must #PF (W is not mapped any more) and F keep what it had.
 * The guest writes a harmless non-present entry (descriptor) and reads F
 * back through its read-only mapping.  "staletlb: N/M attempts refused".
 */
#include "attempt.h"

#define BEFORE      0x200UL     /* not present, no address: valid at every level */
#define STALE       0x400UL     /* what the stale write tries to put there */
/* 64-bit code segment, DPL 0: what a stale GDT write would install. */
#define DESC_RING0_CODE64   0x00af9b000000ffffUL

static pte_t *l2;               /* the bootstrap L2 (1:1, read-only) */
static void *spare;             /* the 1:1 page whose address is W */
static unsigned long w_va;      /* W */
static uint64_t w_pte_ma;       /* machine address of W's L1 entry */

static pte_t frame_pte(const void *va, uint64_t flags)
{
    return ((pte_t)virt_to_mfn(va) << PAGE_SHIFT) | flags;
}

static unsigned int empty_l2_slot(void)
{
    unsigned int i;

    for ( i = 1; i < PT_ENTRIES; i++ )
        if ( !(l2[i] & _PAGE_PRESENT) )
            return i;
    printk("staletlb: no empty L2 slot\n");
    xen_shutdown(SHUTDOWN_crash);
    return 0;
}

/* A fresh frame, read-only in the 1:1 map; if map, mapped writable at va
 * and BEFORE written there (the translation cached writable, dirty). */
static pte_t *dirty_at(unsigned long va, int map)
{
    pte_t *f = padding_alloc();
    long rc;

    if ( !f )
    {
        printk("staletlb: out of padding frames\n");
        xen_shutdown(SHUTDOWN_crash);
    }
    rc = remap_self(f, PTE_RO);
    if ( !rc && map )
        rc = HYPERVISOR_update_va_mapping(va, frame_pte(f, PTE_RW), UVMF_INVLPG);
    if ( rc )
        printk("staletlb: (setting up the frame failed: %s)\n", rcstr(rc));
    if ( map )
        *(volatile uint64_t *)va = BEFORE;
    return f;
}

/*
 * The stale write and the verdict.  rc: the drop and retype steps (both
 * must succeed, as on Xen); value: what the stale write writes to slot 0.
 */
static void stale_write(const char *what, unsigned long va, pte_t *f, long rc,
                        uint64_t value)
{
    int faulted = write_faults((uint64_t *)va, value);
    uint64_t now = f[0];

    if ( rc )
        report(DIFFERENT, what, "a step failed: %s (Xen: 0)", rcstr(rc));
    else if ( faulted && now == BEFORE )
        report(REFUSED, what, "the stale write #PF, the frame still holds 0x%lx "
               "(Xen: #PF, flushed on the type change)", now);
    else if ( faulted )
        report(DIFFERENT, what, "#PF, but the frame holds 0x%lx, not 0x%lx", now, BEFORE);
    else
        report(BREACH, what, "the stale write went through: the frame now holds 0x%lx%s "
               "(Xen: #PF, flushed on the type change)", now,
               now == value ? "" : " (written somewhere else)");
}

/* Put W back on the spare page, flushed. */
static void restore_w(void)
{
    HYPERVISOR_update_va_mapping(w_va, frame_pte(spare, PTE_RW), UVMF_INVLPG);
}

/* The common shape: drop W without a flush (update_va_mapping, UVMF_NONE),
 * pin F at a level, write through W, unpin. */
static void drop_then_pin(const char *what, unsigned int pin_cmd)
{
    pte_t *f = dirty_at(w_va, 1);
    long rc = HYPERVISOR_update_va_mapping(w_va, 0, UVMF_NONE);

    if ( !rc )
        rc = mmuext_one(pin_cmd, virt_to_mfn(f));
    stale_write(what, w_va, f, rc, STALE);
    mmuext_one(MMUEXT_UNPIN_TABLE, virt_to_mfn(f));
    restore_w();
}

static void uvm_none_pin_l1(void)
{
    drop_then_pin("update_va_mapping(W, 0, UVMF_NONE), MMUEXT_PIN_L1_TABLE, write W",
                  MMUEXT_PIN_L1_TABLE);
}

static void uvm_none_pin_l2(void)
{
    drop_then_pin("update_va_mapping(W, 0, UVMF_NONE), MMUEXT_PIN_L2_TABLE, write W",
                  MMUEXT_PIN_L2_TABLE);
}

static void uvm_none_pin_l3(void)
{
    drop_then_pin("update_va_mapping(W, 0, UVMF_NONE), MMUEXT_PIN_L3_TABLE, write W",
                  MMUEXT_PIN_L3_TABLE);
}

static void uvm_none_pin_l4(void)
{
    drop_then_pin("update_va_mapping(W, 0, UVMF_NONE), MMUEXT_PIN_L4_TABLE, write W",
                  MMUEXT_PIN_L4_TABLE);
}

/* Control: the guest's own flush (UVMF_INVLPG) -- refused on any code. */
static void uvm_invlpg_pin_l1(void)
{
    pte_t *f = dirty_at(w_va, 1);
    long rc = HYPERVISOR_update_va_mapping(w_va, 0, UVMF_INVLPG);

    if ( !rc )
        rc = mmuext_one(MMUEXT_PIN_L1_TABLE, virt_to_mfn(f));
    stale_write("update_va_mapping(W, 0, UVMF_INVLPG), MMUEXT_PIN_L1_TABLE, write W",
                w_va, f, rc, STALE);
    mmuext_one(MMUEXT_UNPIN_TABLE, virt_to_mfn(f));
    restore_w();
}

/* mmu_update clearing W's L1 entry: one request (the C fast path). */
static void mmu_clear_pin_l1(void)
{
    pte_t *f = dirty_at(w_va, 1);
    long rc = mmu_update1(w_pte_ma, 0, MMU_NORMAL_PT_UPDATE);

    if ( !rc )
        rc = mmuext_one(MMUEXT_PIN_L1_TABLE, virt_to_mfn(f));
    stale_write("mmu_update clearing W's L1 entry, MMUEXT_PIN_L1_TABLE, write W",
                w_va, f, rc, STALE);
    mmuext_one(MMUEXT_UNPIN_TABLE, virt_to_mfn(f));
    restore_w();
}

/* A batch: first (python) a no-op m2p update, which sends the whole batch
 * to Python, or else a second plain L1 update (W's neighbour rewritten as it is),
 * which C does. */
static void mmu_batch_clear_pin_l1(int python)
{
    pte_t *f = dirty_at(w_va, 1);
    const pte_t *pte = (const pte_t *)mfn_to_virt(w_pte_ma >> PAGE_SHIFT) +
                       ((w_pte_ma & (PAGE_SIZE - 1)) >> 3);
    struct mmu_update req[2] = {
        { .ptr = w_pte_ma | MMU_NORMAL_PT_UPDATE, .val = 0 },
        { .ptr = (w_pte_ma ^ 8) | MMU_NORMAL_PT_UPDATE, .val = pte[(w_pte_ma & 8) ? -1 : 1] },
    };
    unsigned int done = 0;
    long rc;

    if ( python )
    {
        req[1] = req[0];
        req[0].ptr = ((uint64_t)virt_to_mfn(spare) << PAGE_SHIFT) | MMU_MACHPHYS_UPDATE;
        req[0].val = virt_to_pfn(spare);
    }
    rc = HYPERVISOR_mmu_update(req, 2, &done, DOMID_SELF);
    if ( !rc )
        rc = mmuext_one(MMUEXT_PIN_L1_TABLE, virt_to_mfn(f));
    stale_write(python ? "mmu_update batch (m2p update, clear W's entry), PIN_L1, write W"
                       : "mmu_update batch (clear W's entry, rewrite its neighbour), PIN_L1, write W",
                w_va, f, rc, STALE);
    mmuext_one(MMUEXT_UNPIN_TABLE, virt_to_mfn(f));
    restore_w();
}

/* W2 mapped only by a private L1 in an L2 slot; unhook that L1 (mmu_update
 * of the L2 entry, no flush), pin F as an L1, write through W2. */
static void unhook_l1_pin_l1(void)
{
    pte_t *p = padding_alloc();
    unsigned int slot = empty_l2_slot();
    unsigned long w2 = GUEST_VIRT_BASE + slot * PT_SPAN(2);
    pte_t *f = dirty_at(0, 0);
    long rc;

    p[0] = frame_pte(f, PTE_RW);
    rc = remap_self(p, PTE_RO);
    if ( !rc )
        rc = mmu_update1(virt_to_maddr(&l2[slot]), frame_pte(p, PTE_TABLE), MMU_NORMAL_PT_UPDATE);
    if ( !rc )
        *(volatile uint64_t *)w2 = BEFORE;   /* cached writable, dirty */
    if ( !rc )
        rc = mmu_update1(virt_to_maddr(&l2[slot]), 0, MMU_NORMAL_PT_UPDATE);
    if ( !rc )
        rc = mmuext_one(MMUEXT_PIN_L1_TABLE, virt_to_mfn(f));
    stale_write("unhook the private L1 mapping W2 (mmu_update of the L2), PIN_L1, write W2",
                w2, f, rc, STALE);
    mmuext_one(MMUEXT_UNPIN_TABLE, virt_to_mfn(f));
    mmuext_one(MMUEXT_TLB_FLUSH_LOCAL, 0);
}

/* Drop W, then F becomes an L1 by being hooked into an L2 entry. */
static void uvm_none_hook_l1(void)
{
    pte_t *f = dirty_at(w_va, 1);
    unsigned int slot = empty_l2_slot();
    long rc = HYPERVISOR_update_va_mapping(w_va, 0, UVMF_NONE);

    if ( !rc )
        rc = mmu_update1(virt_to_maddr(&l2[slot]), frame_pte(f, PTE_TABLE), MMU_NORMAL_PT_UPDATE);
    stale_write("update_va_mapping(W, 0, UVMF_NONE), hook F into an L2 entry, write W",
                w_va, f, rc, STALE);
    mmu_update1(virt_to_maddr(&l2[slot]), 0, MMU_NORMAL_PT_UPDATE);
    restore_w();
}

/* The drop and the pin in one multicall (the first entry is a C fast path). */
static void multicall_drop_pin_l1(void)
{
    pte_t *f = dirty_at(w_va, 1);
    struct mmuext_op pin = { .cmd = MMUEXT_PIN_L1_TABLE, .arg1.mfn = virt_to_mfn(f) };
    struct multicall_entry calls[2] = {
        { .op = __HYPERVISOR_update_va_mapping, .args = { w_va, 0, UVMF_NONE } },
        { .op = __HYPERVISOR_mmuext_op,
          .args = { (unsigned long)&pin, 1, 0, DOMID_SELF } },
    };
    long rc = HYPERVISOR_multicall(calls, 2);

    if ( !rc )
        rc = calls[0].result ? (long)calls[0].result : (long)calls[1].result;
    stale_write("multicall: update_va_mapping(W, 0, UVMF_NONE), PIN_L1, then write W",
                w_va, f, rc, STALE);
    mmuext_one(MMUEXT_UNPIN_TABLE, virt_to_mfn(f));
    restore_w();
}

/* Drop W, then F becomes the GDT (set_gdt: PGT_seg_desc_page), and the
 * stale write installs a ring-0 code segment in it. */
static void uvm_none_set_gdt(void)
{
    pte_t *f = dirty_at(w_va, 1);
    unsigned long frames[1] = { virt_to_mfn(f) };
    long rc = HYPERVISOR_update_va_mapping(w_va, 0, UVMF_NONE);

    if ( !rc )
        rc = _hypercall2(__HYPERVISOR_set_gdt, frames, 512);
    stale_write("update_va_mapping(W, 0, UVMF_NONE), set_gdt(F), write a ring-0 "
                "descriptor at W", w_va, f, rc, DESC_RING0_CODE64);
    _hypercall2(__HYPERVISOR_set_gdt, frames, 0);
    restore_w();
}

void guest_main(start_info_t *si)
{
    const pte_t *l4 = (const pte_t *)si->pt_base;
    const pte_t *l3 = mfn_to_virt(PTE_MFN(l4[PT_INDEX(GUEST_VIRT_BASE, 4)]));

    l2 = mfn_to_virt(PTE_MFN(l3[PT_INDEX(GUEST_VIRT_BASE, 3)]));
    attempts_init("staletlb");
    spare = padding_alloc();
    w_va = (unsigned long)spare;
    w_pte_ma = virt_to_maddr(l1e_of(l4, w_va));
    printk("staletlb: writable translations across a type change; W = 0x%lx\n", w_va);

    uvm_invlpg_pin_l1();
    uvm_none_pin_l1();
    mmu_clear_pin_l1();
    mmu_batch_clear_pin_l1(0);
    mmu_batch_clear_pin_l1(1);
    unhook_l1_pin_l1();
    uvm_none_hook_l1();
    uvm_none_pin_l2();
    uvm_none_pin_l3();
    uvm_none_pin_l4();
    multicall_drop_pin_l1();
    uvm_none_set_gdt();
    attempts_done();
}
