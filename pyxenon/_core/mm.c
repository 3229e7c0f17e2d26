/*
 * Guest virtual -> machine translation, done the way the MMU would do it on
 * a TLB miss: walk the vcpu's four-level tables in machine memory, honour
 * P, RW, NX and PS, and set Accessed/Dirty in the entries as hardware does.
 * Unicorn runs in virtual-TLB mode, so this walk is the only way a guest
 * reaches memory: a frame outside the machine or not owned by anybody is a
 * page fault, never a host access.
 */
#include <string.h>

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

/* A leaf ends the walk: a level-1 entry, or a 2 MiB / 1 GiB superpage. */
static int is_leaf(uint64_t e, int level)
{
    return level == 0 || ((e & _PAGE_PSE) && level <= 2);
}

/* walk()'s access: a guest write, or the debugger's peek, which checks
 * no permission and leaves Accessed and Dirty alone (Xen's dbg_pv_va2mfn). */
#define WALK_WRITE 1
#define WALK_PEEK 2

/* Set Accessed on every level walked and Dirty at the leaf of a write, as
 * the MMU does; a store only when a bit changes, so walks over used entries
 * leave the tables' cache lines clean.  A peek leaves both alone. */
static uint64_t mark_used(uint64_t *pte, uint64_t e, int level, int access)
{
    uint64_t set;
    if (access & WALK_PEEK)
        return e;
    set = _PAGE_ACCESSED | (access & WALK_WRITE && is_leaf(e, level) ? _PAGE_DIRTY : 0);
    if ((e & set) != set)
        *pte = e | set;
    return e | set;
}

/*
 * One level of the walk: check the entry that maps va in table mfn, set
 * Accessed (and Dirty at the leaf on a write).  Returns 1 at the leaf
 * (w->mfn set), 0 to go one level down (*mfn updated), -1 on a fault.
 */
static int walk_level(struct xc_machine *m, uint64_t *mfn, uint64_t va,
                      int level, int access, struct walk *w)
{
    uint64_t *pte, e;
    int write = access & WALK_WRITE;
    if (!frame_usable(m, *mfn))
        return -1;
    pte = table_of(m, *mfn) + ((va >> (PAGE_SHIFT + 9 * level)) & 511);
    e = *pte;
    if (!(e & _PAGE_PRESENT))
        return -1;
    w->writable &= !!(e & _PAGE_RW);
    w->nx |= !!(e & _PAGE_NX);
    if (write && !w->writable) {
        w->pfec |= PFEC_present;
        return -1;
    }
    e = mark_used(pte, e, level, access);
    if (!is_leaf(e, level)) {
        *mfn = (e & PADDR_MASK) >> PAGE_SHIFT;
        return 0;
    }
    w->dirty = !!(e & _PAGE_DIRTY);
    w->mfn = level ? superpage_frame(e, va, level) : (e & PADDR_MASK) >> PAGE_SHIFT;
    return frame_usable(m, w->mfn) ? 1 : -1;
}

/* Walk va; on success fill w and return 0, else w->pfec and return -1. */
static int walk(struct xc_machine *m, uint64_t cr3, uint64_t va, int access,
                struct walk *w)
{
    uint64_t mfn = cr3;
    w->writable = 1;
    w->nx = 0;
    w->pfec = PFEC_user | (access & WALK_WRITE ? PFEC_write : 0);
    for (int level = LEVELS - 1; level >= 0; level--) {
        int r = walk_level(m, &mfn, va, level, access, w);
        if (r)
            return r > 0 ? 0 : -1;
    }
    return -1;
}

/* The frame va reaches through the tables at cr3, for the debugger: no
 * permission checked, nothing in the tables changed.  0, or -1 unmapped. */
int xc_walk_peek(struct xc_machine *m, uint64_t cr3, uint64_t va, uint64_t *mfn)
{
    struct walk w;
    if (walk(m, cr3, va, WALK_PEEK, &w) < 0)
        return -1;
    *mfn = w.mfn;
    return 0;
}

static int current_cpl(uc_engine *uc)
{
    uint64_t cs = 0;
    uc_reg_read(uc, UC_X86_REG_CS, &cs);
    return cs & 3;
}

static int read_only(uc_tlb_entry *e, uint64_t paddr, uc_mem_type type)
{
    e->paddr = paddr;
    e->perms = UC_PROT_READ;
    return type == UC_MEM_READ;
}

/* GDT page n of v: the guest's frames, Xen's reserved page, else zeros. */
uint64_t xc_gdt_frame(struct xc_machine *m, struct xc_vcpu *v, uint64_t page)
{
    if (page < GDT_GUEST_PAGES && v && v->gdt_mfn[page])
        return v->gdt_mfn[page];
    return page == GDT_GUEST_PAGES ? m->xen_gdt_mfn : m->zero_mfn;
}

/* Hypervisor text and stack: only for ring-0 code (the drop to ring 3). */
static int text_fill(struct xc_machine *m, uc_engine *uc, uint64_t va, uc_tlb_entry *e)
{
    int text = va < XEN_VIRT_START + PAGE_SIZE;
    if (va >= XEN_VIRT_START + 2 * PAGE_SIZE || current_cpl(uc) != 0)
        return 0;
    e->paddr = (text ? m->text_mfn : m->stack_mfn) << PAGE_SHIFT;
    e->perms = text ? (UC_PROT_READ | UC_PROT_EXEC) : (UC_PROT_READ | UC_PROT_WRITE);
    return 1;
}

/*
 * The guest-visible part of the reserved range: m2p and GDT, read only.
 * Returns 1 mapped, 0 fault, -1 the run loop's own exit address, which
 * Unicorn looks up when an emulation run ends (not a guest access).
 */
static int hv_fill(struct xc_machine *m, uc_engine *uc, uint64_t va,
                   uc_mem_type type, uc_tlb_entry *e)
{
    if (va >= MACH2PHYS_VIRT_START && va < MACH2PHYS_VIRT_START + m->nr_frames * 8)
        return read_only(e, m->m2p_paddr + (va - MACH2PHYS_VIRT_START), type);
    if (va >= GDT_VIRT_START && va < GDT_VIRT_START + GDT_PAGES * PAGE_SIZE)
        return read_only(e, xc_gdt_frame(m, m->current, (va - GDT_VIRT_START) >> PAGE_SHIFT) << PAGE_SHIFT, type);
    if ((va & ~(PAGE_SIZE - 1)) == XC_EXIT_PAGE) {
        m->exit_lookup = 1;
        return -1;
    }
    return va >= XEN_VIRT_START ? text_fill(m, uc, va, e) : 0;
}

static int guest_readable(struct xc_machine *m, uint64_t va)
{
    return (va >= MACH2PHYS_VIRT_START && va < MACH2PHYS_VIRT_START + m->nr_frames * 8) ||
           (va >= GDT_VIRT_START && va < GDT_VIRT_START + GDT_PAGES * PAGE_SIZE);
}

static void note_fault(struct xc_machine *m, uint32_t vector, uint64_t va, uint32_t code)
{
    struct xc_vcpu *v = m->current;
    if (!v)
        return;
    if (vector == 14)
        v->cr2 = va;
    v->vector = vector;
    v->error_code = code;
    v->stop = XC_STOP_EXCEPTION;
}

static uint32_t access_pfec(uc_mem_type type)
{
    return PFEC_user | (type == UC_MEM_WRITE ? PFEC_write : 0) |
           (type == UC_MEM_FETCH ? PFEC_insn : 0);
}

/*
 * Writable in the TLB only once dirty, so the first write walks again.
 * Executable only once fetched from, so PGF_CODE marks every frame that
 * can have translations (see xc_frame_written).
 */
static uint32_t tlb_perms(struct xc_machine *m, const struct walk *w, uc_mem_type type)
{
    struct page_info *page = &m->frames[w->mfn];
    if (type == UC_MEM_FETCH)
        page->flags |= PGF_CODE;
    return UC_PROT_READ | (w->writable && w->dirty ? UC_PROT_WRITE : 0) |
           (!w->nx && (page->flags & PGF_CODE) ? UC_PROT_EXEC : 0);
}

static bool fill_guest(struct xc_machine *m, uint64_t va, uc_mem_type type, uc_tlb_entry *e)
{
    struct walk w;
    if (!m->current)
        return false;
    if (walk(m, m->current->cr3, va, type == UC_MEM_WRITE, &w) < 0) {
        note_fault(m, 14, va, w.pfec | (type == UC_MEM_FETCH ? PFEC_insn : 0));
        return false;
    }
    if (type == UC_MEM_FETCH && w.nx) {
        note_fault(m, 14, va, PFEC_present | PFEC_user | PFEC_insn);
        return false;
    }
    e->paddr = w.mfn << PAGE_SHIFT;
    e->perms = tlb_perms(m, &w, type);
    m->tlb_misses++;
    /* thrashing: xc_run flushes, and the TLB grows -- but a deterministic
     * run's slices end only by count (fills follow QEMU's TLB, whose
     * size depends on the wall clock) */
    if (++m->tlb_fills > 2 * m->tlb_size && !m->vtsc)
        xc_end_run_at_block(m);
    if (m->shadow)
        xc_shadow_record(m, va, e->paddr, e->perms);
    return true;
}

bool xc_tlb_fill(uc_engine *uc, uint64_t va, uc_mem_type type,
                 uc_tlb_entry *e, void *data)
{
    struct xc_machine *m = data;
    int mapped;
    if (m->hook_fault)
        return false;      /* the run ends at an instruction that faulted (exits.c) */
    if ((uint64_t)((int64_t)(va << 16) >> 16) != va) {
        note_fault(m, 13, va, 0);   /* non-canonical: #GP(0), not #PF */
        if (m->current)             /* or #SS(0) through SS: hypervisor/faults.py */
            m->current->noncanonical = type != UC_MEM_FETCH;
        return false;
    }
    if (va < HYPERVISOR_VIRT_START || va >= HYPERVISOR_VIRT_END)
        return fill_guest(m, va, type, e);
    mapped = hv_fill(m, uc, va, type, e);
    if (!mapped)   /* a write to the read-only m2p or GDT area finds it present */
        note_fault(m, 14, va, access_pfec(type) | (guest_readable(m, va) ? PFEC_present : 0));
    return mapped > 0;
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
    if (write)
        xc_frame_written(m, w.mfn);
    return (int64_t)((w.mfn << PAGE_SHIFT) | (va & (PAGE_SIZE - 1)));
}

/* Copy len bytes in from guest address va, page by page; -1 if any page
 * is not mapped for the guest (the caller's -EFAULT, or its slow path). */
int xc_copy_from_guest(struct xc_machine *m, struct xc_vcpu *v, void *dst,
                       uint64_t va, uint64_t len)
{
    uint8_t *out = dst;
    while (len) {
        uint64_t n = PAGE_SIZE - (va & (PAGE_SIZE - 1));
        int64_t ma = xc_translate(m, v, va, 0);
        if (ma < 0)
            return -1;
        n = n < len ? n : len;
        memcpy(out, m->mem + ma, n);
        out += n;
        va += n;
        len -= n;
    }
    return 0;
}

/* Copy len bytes out to guest address va, page by page, each page checked
 * writable for the guest first; -1 (nothing written) if any is not. */
int xc_copy_to_guest(struct xc_machine *m, struct xc_vcpu *v, uint64_t va,
                     const void *src, uint64_t len)
{
    const uint8_t *in = src;
    for (uint64_t off = 0; off < len; off += PAGE_SIZE - ((va + off) & (PAGE_SIZE - 1)))
        if (xc_translate(m, v, va + off, 1) < 0)
            return -1;
    while (len) {
        uint64_t n = PAGE_SIZE - (va & (PAGE_SIZE - 1));
        n = n < len ? n : len;
        memcpy(m->mem + xc_translate(m, v, va, 1), in, n);
        in += n;
        va += n;
        len -= n;
    }
    return 0;
}

/* What a guest access at va would put in the TLB, without the engine (the
 * property tests' model of a guest touching memory): 1 cached, 0 a fault. */
int xc_tlb_probe(struct xc_machine *m, struct xc_vcpu *v, uint64_t va, int write)
{
    uc_tlb_entry e;
    struct xc_vcpu *was = m->current;
    int cached;
    if (va >= HYPERVISOR_VIRT_START && va < HYPERVISOR_VIRT_END)
        return 0;
    m->current = v;      /* no engine run: only the walk reads it */
    cached = fill_guest(m, va, write ? UC_MEM_WRITE : UC_MEM_READ, &e);
    v->stop = XC_STOP_NONE;
    m->current = was;
    return cached;
}
