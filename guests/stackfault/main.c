/*
 * stackfault - a non-canonical memory reference faults #SS(0) when it goes
 * through the stack segment and #GP(0) otherwise, as the CPU raises them
 * and Xen passes them on (do_trap).  Through SS: an rsp or rbp base, or
 * an implicit stack operation.  In 64-bit mode the ES/CS/SS/DS override
 * prefixes are ignored (Xen's x86_decode), so only FS and GS take a
 * reference off SS.  (Implicit stack operations with a non-canonical rsp
 * cannot be checked from inside: the guest kernel's own exception frame
 * goes on that stack; tests/test_stack_faults.py checks them from the host.)
 *
 * One line per attempt, "stackfault: [ n] what: #XX(0x0): as on Xen", then
 * "stackfault: N/M as on Xen"; then poweroff.
 */
#include "lib.h"
#include "traps.h"

#define BAD 0x8000000000000000UL        /* non-canonical */

enum kind { RBP, RSP_INDEX, DS_RBP, ES_RBP, SS_RBP, RAX, SS_RAX, FS_RBP, GS_RBP,
            RBP_INDEX_RAX, RAX_INDEX_RBP, PUSH_RAX_MEM, RBP_WRITE };

struct attempt {
    enum kind kind;
    int expect;
    const char *what;
};

static const struct attempt attempts_list[] = {
    { RBP, X86_EXC_SS, "mov (%rbp), %rax" },
    { RSP_INDEX, X86_EXC_SS, "mov (%rsp,%rcx), %rax" },
    { DS_RBP, X86_EXC_SS, "mov %ds:(%rbp), %rax (override ignored)" },
    { ES_RBP, X86_EXC_SS, "mov %es:(%rbp), %rax (override ignored)" },
    { SS_RBP, X86_EXC_SS, "mov %ss:(%rbp), %rax" },
    { RAX, X86_EXC_GP, "mov (%rax), %rax" },
    { SS_RAX, X86_EXC_GP, "mov %ss:(%rax), %rax (override ignored)" },
    { FS_RBP, X86_EXC_GP, "mov %fs:(%rbp), %rax" },
    { GS_RBP, X86_EXC_GP, "mov %gs:(%rbp), %rax" },
    { RBP_INDEX_RAX, X86_EXC_SS, "mov (%rbp,%rax), %rcx" },
    { RAX_INDEX_RBP, X86_EXC_GP, "mov (%rax,%rbp), %rcx" },
    { PUSH_RAX_MEM, X86_EXC_GP, "push (%rax)" },
    { RBP_WRITE, X86_EXC_SS, "mov %rax, 8(%rbp)" },
};

/* One probe with rbp, rax and rcx set; rbp (gcc's frame pointer, maybe)
 * is saved and restored around it. */
static void probe(unsigned int kind, unsigned long rbp, unsigned long rax, unsigned long rcx)
{
#define CASE(k, insn)                                                         \
    case k:                                                                   \
        asm volatile ( "push %%rbp\n\t"                                       \
                       "mov %[rbp], %%rbp\n\t"                                \
                       PROBE_ARM PROBE_INSN(insn)                             \
                       "pop %%rbp"                                            \
                       : "+a" (rax), "+c" (rcx) : [rbp] "r" (rbp)             \
                       : "r11", "memory" );                                   \
        break
    switch ( kind )
    {
    CASE(RBP, "mov (%%rbp), %%rax");
    CASE(DS_RBP, "mov %%ds:(%%rbp), %%rax");
    CASE(ES_RBP, "mov %%es:(%%rbp), %%rax");
    CASE(SS_RBP, "mov %%ss:(%%rbp), %%rax");
    CASE(FS_RBP, "mov %%fs:(%%rbp), %%rax");
    CASE(GS_RBP, "mov %%gs:(%%rbp), %%rax");
    CASE(RAX_INDEX_RBP, "mov (%%rax,%%rbp), %%rcx");
    CASE(RBP_WRITE, "mov %%rax, 8(%%rbp)");
    CASE(RBP_INDEX_RAX, "mov (%%rbp,%%rax), %%rcx");
    CASE(RSP_INDEX, "mov (%%rsp,%%rcx), %%rax");
    CASE(RAX, "mov (%%rax), %%rax");
    CASE(SS_RAX, "mov %%ss:(%%rax), %%rax");
    CASE(PUSH_RAX_MEM, "pushq (%%rax)");
    }
#undef CASE
}

/* The non-canonical value goes where the attempt's name puts it. */
static void attempt(enum kind kind)
{
    switch ( kind )
    {
    case RBP_INDEX_RAX: case RAX: case SS_RAX: case PUSH_RAX_MEM:
        probe(kind, 0, BAD, 0);
        break;
    case RSP_INDEX:
        probe(kind, 0, 0, BAD);
        break;
    default:
        probe(kind, BAD, 0, 0);
    }
}

static void install_traps(void)
{
    static const unsigned int vectors[] = { X86_EXC_SS, X86_EXC_GP, X86_EXC_PF, X86_EXC_UD };

    if ( traps_install(vectors, ARRAY_SIZE(vectors), probe_trap) )
    {
        printk("stackfault: set_trap_table failed\n");
        xen_shutdown(SHUTDOWN_crash);
    }
}

void guest_main(start_info_t *si)
{
    unsigned int i, as_xen = 0;

    probe_who = "stackfault";
    install_traps();
    for ( i = 0; i < ARRAY_SIZE(attempts_list); i++ )
    {
        const struct attempt *a = &attempts_list[i];
        int ok;

        memset(&probe_seen, 0, sizeof(probe_seen));
        attempt(a->kind);
        ok = probe_seen.hits == 1 && probe_seen.rip == probe_seen.insn && (int)probe_seen.vector == a->expect &&
             probe_seen.error_code == 0;
        as_xen += ok;
        printk("stackfault: [%2u] %s: %s(0x%lx)%s: %s%s\n", i + 1, a->what,
               probe_seen.hits ? trap_name(probe_seen.vector) : "no fault", probe_seen.error_code,
               probe_seen.hits && probe_seen.rip != probe_seen.insn ? " elsewhere" : "",
               ok ? "as on Xen" : "NOT as on Xen, expected ", ok ? "" : trap_name(a->expect));
    }
    printk("stackfault: %u/%u as on Xen\n", as_xen, (unsigned int)ARRAY_SIZE(attempts_list));
    xen_shutdown(SHUTDOWN_poweroff);
}
