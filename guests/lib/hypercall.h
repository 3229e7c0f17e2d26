/*
 * hypercall.h - calling into the hypervisor through the hypercall page.
 *
 * The hypervisor fills hypercall_page (see head.S) with one 32-byte stub
 * per hypercall.  A 64-bit PV guest calls stub N with the arguments in
 * rdi, rsi, rdx, r10, r8 and gets the result back in rax.
 *
 * Clobbers: rcx and r11 (SYSCALL), guest memory (the hypervisor reads and
 * writes our buffers), and all five argument registers.  A debug Xen
 * scribbles over the argument registers a hypercall uses.  Like Linux, we
 * assume that of every argument register, whether or not this hypercall
 * takes it, so a hypervisor that trashes all of them is harmless too.
 */
#ifndef GUEST_HYPERCALL_H
#define GUEST_HYPERCALL_H

#include "xen.h"

extern char hypercall_page[PAGE_SIZE];

#define HYPERCALL_INSN "call hypercall_page + %c[off]"
#define HYPERCALL_OFF(nr) [off] "i" ((nr) * HYPERCALL_STUB_SIZE)

#define HYPERCALL_CLOBBERS "rcx", "r11", "memory"

/*
 * rdi/rsi/rdx have their own constraint letters.  r10 and r8 do not, so
 * they use local register variables, initialised only from already
 * evaluated temporaries (so no argument expression can disturb them).
 */
#define _hypercall0(nr)                                                 \
({                                                                      \
    long res_;                                                          \
    asm volatile (HYPERCALL_INSN                                        \
                  : "=a" (res_)                                         \
                  : HYPERCALL_OFF(nr)                                   \
                  : "rdi", "rsi", "rdx", "r10", "r8", HYPERCALL_CLOBBERS); \
    res_;                                                               \
})

#define _hypercall1(nr, a1)                                             \
({                                                                      \
    long res_, a1_ = (long)(a1);                                        \
    asm volatile (HYPERCALL_INSN                                        \
                  : "=a" (res_), "+D" (a1_)                             \
                  : HYPERCALL_OFF(nr)                                   \
                  : "rsi", "rdx", "r10", "r8", HYPERCALL_CLOBBERS);     \
    res_;                                                               \
})

#define _hypercall2(nr, a1, a2)                                         \
({                                                                      \
    long res_, a1_ = (long)(a1), a2_ = (long)(a2);                      \
    asm volatile (HYPERCALL_INSN                                        \
                  : "=a" (res_), "+D" (a1_), "+S" (a2_)                 \
                  : HYPERCALL_OFF(nr)                                   \
                  : "rdx", "r10", "r8", HYPERCALL_CLOBBERS);            \
    res_;                                                               \
})

#define _hypercall3(nr, a1, a2, a3)                                     \
({                                                                      \
    long res_, a1_ = (long)(a1), a2_ = (long)(a2), a3_ = (long)(a3);    \
    asm volatile (HYPERCALL_INSN                                        \
                  : "=a" (res_), "+D" (a1_), "+S" (a2_), "+d" (a3_)     \
                  : HYPERCALL_OFF(nr)                                   \
                  : "r10", "r8", HYPERCALL_CLOBBERS);                   \
    res_;                                                               \
})

#define _hypercall4(nr, a1, a2, a3, a4)                                 \
({                                                                      \
    long res_, a1_ = (long)(a1), a2_ = (long)(a2), a3_ = (long)(a3);    \
    long t4_ = (long)(a4);                                              \
    register long a4_ asm("r10") = t4_;                                 \
    asm volatile (HYPERCALL_INSN                                        \
                  : "=a" (res_), "+D" (a1_), "+S" (a2_), "+d" (a3_),    \
                    "+r" (a4_)                                          \
                  : HYPERCALL_OFF(nr)                                   \
                  : "r8", HYPERCALL_CLOBBERS);                          \
    res_;                                                               \
})

#define _hypercall5(nr, a1, a2, a3, a4, a5)                             \
({                                                                      \
    long res_, a1_ = (long)(a1), a2_ = (long)(a2), a3_ = (long)(a3);    \
    long t4_ = (long)(a4), t5_ = (long)(a5);                            \
    register long a4_ asm("r10") = t4_;                                 \
    register long a5_ asm("r8")  = t5_;                                 \
    asm volatile (HYPERCALL_INSN                                        \
                  : "=a" (res_), "+D" (a1_), "+S" (a2_), "+d" (a3_),    \
                    "+r" (a4_), "+r" (a5_)                              \
                  : HYPERCALL_OFF(nr)                                   \
                  : HYPERCALL_CLOBBERS);                                \
    res_;                                                               \
})

/* Typed wrappers for the hypercalls the guests use. */

static inline long HYPERVISOR_console_io(unsigned int cmd, unsigned int count,
                                         const char *buf)
{
    return _hypercall3(__HYPERVISOR_console_io, cmd, count, buf);
}

static inline long HYPERVISOR_xen_version(unsigned int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_xen_version, cmd, arg);
}

static inline long HYPERVISOR_sched_op(unsigned int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_sched_op, cmd, arg);
}

static inline long HYPERVISOR_event_channel_op(unsigned int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_event_channel_op, cmd, arg);
}

/* traps: the virtual IDT, ended by an entry with address 0 (NULL clears it). */
static inline long HYPERVISOR_set_trap_table(const struct trap_info *traps)
{
    return _hypercall1(__HYPERVISOR_set_trap_table, traps);
}

/* reqs[count]; *done gets how many were applied; foreigndom: DOMID_SELF. */
static inline long HYPERVISOR_mmu_update(const struct mmu_update *reqs,
                                         unsigned int count,
                                         unsigned int *done,
                                         unsigned int foreigndom)
{
    return _hypercall4(__HYPERVISOR_mmu_update, reqs, count, done, foreigndom);
}

static inline long HYPERVISOR_mmuext_op(const struct mmuext_op *ops,
                                        unsigned int count,
                                        unsigned int *done,
                                        unsigned int foreigndom)
{
    return _hypercall4(__HYPERVISOR_mmuext_op, ops, count, done, foreigndom);
}

/* Set the L1 entry that maps va to val (a PTE naming a machine frame). */
static inline long HYPERVISOR_update_va_mapping(unsigned long va, uint64_t val,
                                                unsigned long flags)
{
    return _hypercall3(__HYPERVISOR_update_va_mapping, va, val, flags);
}

/* calls[nr]: each entry's result is written back into it. */
static inline long HYPERVISOR_multicall(struct multicall_entry *calls, unsigned int nr)
{
    return _hypercall2(__HYPERVISOR_multicall, calls, nr);
}

/* maddr: machine address of a descriptor slot; desc: the 8-byte descriptor. */
static inline long HYPERVISOR_update_descriptor(uint64_t maddr, uint64_t desc)
{
    return _hypercall2(__HYPERVISOR_update_descriptor, maddr, desc);
}

/*
 * HYPERVISOR_iret is not called but jumped to, with an iret_context on the
 * stack: see lib/entry.S.
 */

#endif /* GUEST_HYPERCALL_H */
