/*
 * traps.h - exception handling for a 64-bit PV kernel (lib/entry.S and
 * lib/traps.c; linked in only by the guests that list them).
 *
 * Xen delivers an exception to the handler named in the trap table
 * (HYPERVISOR_set_trap_table), on the guest kernel stack, 16-byte aligned,
 * with this frame (lowest address first; xen/arch/x86/x86_64/entry.S):
 *
 *     rcx, r11, [error code,] rip, cs, rflags, rsp, ss
 *
 * i.e. an iret frame (with the error code for vectors 8, 10-14 and 17)
 * plus the interrupted rcx and r11, which Xen's SYSRET into the handler
 * clobbers.  The cs slot carries the selector in bits 0-15, with RPL 0 when
 * the kernel itself was interrupted (RPL 3: guest user mode), and the
 * vcpu's saved evtchn_upcall_mask in bits 32-39; rflags.IF is the inverse
 * of that saved mask.  If the trap_info entry has flag 4 (TI_SET_IF), Xen
 * masks events (evtchn_upcall_mask = 1) on the way in.  For #PF the
 * faulting address is in shared_info vcpu_info[vcpu].arch.cr2, and the
 * error code's U bit (4) says whether guest *user* mode faulted: Xen
 * clears it for faults of the guest kernel, which really runs in ring 3.
 *
 * The stubs in entry.S pop rcx and r11, push a 0 error code where the CPU
 * has none and the vector, save every register and call do_trap() with a
 * struct cpu_regs.  Afterwards they return with HYPERVISOR_iret.
 */
#ifndef GUEST_TRAPS_H
#define GUEST_TRAPS_H

#include "lib.h"

#define X86_EXC_DE      0
#define X86_EXC_DB      1
#define X86_EXC_NMI     2
#define X86_EXC_BP      3
#define X86_EXC_OF      4
#define X86_EXC_BR      5
#define X86_EXC_UD      6
#define X86_EXC_NM      7
#define X86_EXC_DF      8
#define X86_EXC_TS      10
#define X86_EXC_NP      11
#define X86_EXC_SS      12
#define X86_EXC_GP      13
#define X86_EXC_PF      14
#define X86_EXC_MF      16
#define X86_EXC_AC      17
#define X86_EXC_MC      18
#define X86_EXC_XM      19

/* Vectors for which the CPU (and Xen's frame) has an error code. */
#define X86_EXC_HAVE_EC ((1u << 8) | (1u << 10) | (1u << 11) | (1u << 12) | \
                         (1u << 13) | (1u << 14) | (1u << 17))

/* #PF error code bits. */
#define PFEC_PRESENT    0x01
#define PFEC_WRITE      0x02
#define PFEC_USER       0x04
#define PFEC_RSVD       0x08
#define PFEC_INSN       0x10

#define X86_EFLAGS_IF   0x200

/* What do_trap() gets: the saved registers, then Xen's frame. */
struct cpu_regs {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector;            /* pushed by the stub */
    uint64_t error_code;        /* Xen's, or 0 pushed by the stub */
    uint64_t rip, cs, rflags, rsp, ss;  /* Xen's frame: iret pops these */
};

#define FRAME_CS_SELECTOR(cs)   ((unsigned int)((cs) & 0xffff))
#define FRAME_CS_SAVED_MASK(cs) ((unsigned int)(((cs) >> 32) & 0xff))

/* The stub for each vector (0 if none): the trap_info address to register. */
extern const unsigned long trap_entry[32];

/* Called by do_trap() for every exception; may change regs->rip etc. */
typedef void (*trap_handler_t)(struct cpu_regs *regs);
extern trap_handler_t trap_handler;

/* Enter the stub of each of n vectors in the trap table (FLAT_KERNEL_CS,
 * events left as they are) and make handler the trap_handler: 0 or the
 * set_trap_table error. */
long traps_install(const unsigned int *vectors, unsigned int n, trap_handler_t handler);

/* "#PF" etc. */
const char *trap_name(unsigned int vector);

/*
 * Probes: an instruction expected to fault, with its address, the address
 * to resume at, and %rsp at the fault, recorded by PROBE_ARM (r11 is used
 * and clobbered; labels 1 and 2 are taken).  Write, inside an asm with
 * operands:
 *
 *     PROBE_ARM PROBE_INSN("ud2")
 *
 * A handler checks regs->rip against probe_insn (probe_resume for a trap
 * such as #BP, which Xen reports after the instruction), sets regs->rip =
 * probe_resume, and clears probe_insn.
 */
extern volatile unsigned long probe_insn, probe_resume, probe_sp;

#define PROBE_ARM                                                       \
    "lea 1f(%%rip), %%r11\n\t"                                          \
    "mov %%r11, probe_insn(%%rip)\n\t"                                  \
    "lea 2f(%%rip), %%r11\n\t"                                          \
    "mov %%r11, probe_resume(%%rip)\n\t"                                \
    "mov %%rsp, probe_sp(%%rip)\n\t"
#define PROBE_INSN(insn)    "1:\t" insn "\n2:\n\t"

/*
 * A trap handler for probes: the exception taken at the armed probe is
 * recorded in probe_seen (hits counted), the attempt resumes at
 * probe_resume with its stack undone (probe_sp); an exception with no probe
 * armed is reported with who's name and crashes the domain.
 */
struct probe_seen {
    int hits;
    unsigned long vector, error_code, rip, insn, resume;
};
extern struct probe_seen probe_seen;
extern const char *probe_who;
void probe_trap(struct cpu_regs *regs);

#endif /* GUEST_TRAPS_H */
