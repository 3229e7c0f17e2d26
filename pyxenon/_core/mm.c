/*
 * Guest virtual -> machine translation, done the way the MMU would do it on
 * a TLB miss: walk the vcpu's four-level tables in machine memory, honour
 * P, RW, NX and PS, and set Accessed/Dirty in the entries as hardware does.
 * Unicorn runs in virtual-TLB mode, so this walk is the only way a guest
 * reaches memory: a frame outside the machine or not owned by anybody is a
 * page fault, never a host access.
 */
#include "core.h"

#define LEVELS 4

struct walk {
    uint64_t mfn;   /* machine frame of the 4 KiB page reached */
    int writable;   /* every level allowed writes */
    int nx;         /* some level forbade execution */
    int dirty;      /* leaf already dirty */
    uint32_t pfec;  /* #PF error code when the walk fails */
};

static inline int frame_usable(struct xc_machine *m, uint64_t mfn)
{
    return mfn < m->nr_frames && m->frames[mfn].owner != OWNER_FREE;
}

static inline uint64_t *table_of(struct xc_machine *m, uint64_t mfn)
{
    return (uint64_t *)(m->mem + (mfn << PAGE_SHIFT));
}

/* Offset of va inside a superpage ending the walk at this level. */
static uint64_t superpage_frame(uint64_t pte, uint64_t va, int level)
{
    uint64_t span = 1UL << (PAGE_SHIFT + 9 * level);
    uint64_t base = (pte & PADDR_MASK) & ~(span - 1);
    return (base + (va & (span - 1))) >> PAGE_SHIFT;
}

/* Walk va; on success fill w and return 0, else w->pfec and return -1. */
static int walk(struct xc_machine *m, uint64_t cr3, uint64_t va, int write,
                struct walk *w)
{
    uint64_t mfn = cr3;
    w->writable = 1;
    w->nx = 0;
    w->pfec = PFEC_user | (write ? PFEC_write : 0);
    for (int level = LEVELS - 1; level >= 0; level--) {
        if (!frame_usable(m, mfn))
            return -1;
        uint64_t *pte = table_of(m, mfn) + ((va >> (PAGE_SHIFT + 9 * level)) & 511);
        uint64_t e = *pte;
        if (!(e & _PAGE_PRESENT))
            return -1;
        w->writable &= !!(e & _PAGE_RW);
        w->nx |= !!(e & _PAGE_NX);
        if (write && !w->writable) {
            w->pfec |= PFEC_present;
            return -1;
        }
        *pte = e | _PAGE_ACCESSED;
        mfn = (e & PADDR_MASK) >> PAGE_SHIFT;
        if (level == 0 || ((e & _PAGE_PSE) && level <= 2)) {
            if (level)
                mfn = superpage_frame(e, va, level);
            if (write)
                *pte |= _PAGE_DIRTY;
            w->dirty = !!(*pte & _PAGE_DIRTY);
            w->mfn = mfn;
            return frame_usable(m, mfn) ? 0 : -1;
        }
    }
    return -1;
}

static int current_cpl(uc_engine *uc)
{
    uint64_t cs = 0;
    uc_reg_read(uc, UC_X86_REG_CS, &cs);
    return cs & 3;
}

/*
 * The guest-visible part of the reserved range: m2p and GDT, read only.
 * Returns 1 mapped, 0 fault, -1 the run loop's own exit address, which
 * Unicorn looks up when an emulation run ends (not a guest access).
 */
static int hv_fill(struct xc_machine *m, uc_engine *uc, uint64_t va,
                   uc_mem_type type, uc_tlb_entry *e)
{
    struct xc_vcpu *v = m->current;
    if (va >= MACH2PHYS_VIRT_START && va < MACH2PHYS_VIRT_START + m->nr_frames * 8) {
        e->paddr = m->m2p_paddr + (va - MACH2PHYS_VIRT_START);
        e->perms = UC_PROT_READ;
        return type == UC_MEM_READ;
    }
    if (va >= GDT_VIRT_START && va < GDT_VIRT_START + GDT_PAGES * PAGE_SIZE) {
        uint64_t page = (va - GDT_VIRT_START) >> PAGE_SHIFT;
        uint64_t mfn = m->zero_mfn;
        if (page < GDT_GUEST_PAGES && v && v->gdt_mfn[page])
            mfn = v->gdt_mfn[page];
        else if (page == GDT_GUEST_PAGES)
            mfn = m->xen_gdt_mfn;
        e->paddr = mfn << PAGE_SHIFT;
        e->perms = UC_PROT_READ;
        return type == UC_MEM_READ;
    }
    if ((va & ~(PAGE_SIZE - 1)) == XC_EXIT_PAGE) {
        m->exit_lookup = 1;
        return -1;
    }
    /* Hypervisor text and stack: only for ring-0 code (the drop to ring 3). */
    if (va >= XEN_VIRT_START && va < XEN_VIRT_START + 2 * PAGE_SIZE && current_cpl(uc) == 0) {
        int text = va < XEN_VIRT_START + PAGE_SIZE;
        e->paddr = (text ? m->text_mfn : m->stack_mfn) << PAGE_SHIFT;
        e->perms = text ? (UC_PROT_READ | UC_PROT_EXEC) : (UC_PROT_READ | UC_PROT_WRITE);
        return 1;
    }
    return 0;
}

static void note_page_fault(struct xc_machine *m, uint64_t va, uint32_t pfec)
{
    struct xc_vcpu *v = m->current;
    if (!v)
        return;
    v->cr2 = va;
    v->vector = 14;
    v->error_code = pfec;
    v->stop = XC_STOP_EXCEPTION;
}

bool xc_tlb_fill(uc_engine *uc, uint64_t va, uc_mem_type type,
                 uc_tlb_entry *e, void *data)
{
    struct xc_machine *m = data;
    struct walk w;
    int write = type == UC_MEM_WRITE;
    if ((uint64_t)((int64_t)(va << 16) >> 16) != va) {
        /* Non-canonical: the CPU raises #GP(0), not a page fault. */
        if (m->current) {
            m->current->vector = 13;
            m->current->error_code = 0;
            m->current->stop = XC_STOP_EXCEPTION;
        }
        return false;
    }
    if (va >= HYPERVISOR_VIRT_START && va < HYPERVISOR_VIRT_END) {
        int mapped = hv_fill(m, uc, va, type, e);
        if (mapped)
            return mapped > 0;
        note_page_fault(m, va, PFEC_user | (write ? PFEC_write : 0) |
                                   (type == UC_MEM_FETCH ? PFEC_insn : 0));
        return false;
    }
    if (!m->current || walk(m, m->current->cr3, va, write, &w) < 0) {
        w.pfec |= type == UC_MEM_FETCH ? PFEC_insn : 0;
        note_page_fault(m, va, m->current ? w.pfec : PFEC_user);
        return false;
    }
    if (type == UC_MEM_FETCH && w.nx) {
        note_page_fault(m, va, PFEC_present | PFEC_user | PFEC_insn);
        return false;
    }
    e->paddr = w.mfn << PAGE_SHIFT;
    /* Writable in the TLB only once dirty, so the first write walks again. */
    e->perms = UC_PROT_READ | (w.writable && w.dirty ? UC_PROT_WRITE : 0) |
               (w.nx ? 0 : UC_PROT_EXEC);
    return true;
}

/* Machine address of va for the hypervisor's own accesses, or -1. */
int64_t xc_translate(struct xc_machine *m, struct xc_vcpu *v, uint64_t va,
                     int write)
{
    struct walk w;
    if (va >= HYPERVISOR_VIRT_START && va < HYPERVISOR_VIRT_END)
        return -1;
    if (walk(m, v->cr3, va, write, &w) < 0)
        return -1;
    return (int64_t)((w.mfn << PAGE_SHIFT) | (va & (PAGE_SIZE - 1)));
}
