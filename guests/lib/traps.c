/*
 * traps.c - the C side of exception handling (see traps.h).
 */
#include "traps.h"

trap_handler_t trap_handler;
volatile unsigned long probe_insn, probe_resume, probe_sp;

const char *trap_name(unsigned int vector)
{
    static const char *const names[32] = {
        [X86_EXC_DE] = "#DE", [X86_EXC_DB] = "#DB", [X86_EXC_NMI] = "NMI",
        [X86_EXC_BP] = "#BP", [X86_EXC_OF] = "#OF", [X86_EXC_BR] = "#BR",
        [X86_EXC_UD] = "#UD", [X86_EXC_NM] = "#NM", [X86_EXC_DF] = "#DF",
        [X86_EXC_TS] = "#TS", [X86_EXC_NP] = "#NP", [X86_EXC_SS] = "#SS",
        [X86_EXC_GP] = "#GP", [X86_EXC_PF] = "#PF", [X86_EXC_MF] = "#MF",
        [X86_EXC_AC] = "#AC", [X86_EXC_MC] = "#MC", [X86_EXC_XM] = "#XM",
    };

    return vector < 32 && names[vector] ? names[vector] : "#??";
}

struct probe_seen probe_seen;
const char *probe_who = "guest";

void probe_trap(struct cpu_regs *regs)
{
    if ( !probe_insn )
    {
        printk("%s: unexpected %s at rip 0x%lx (error code 0x%lx)\n", probe_who,
               trap_name(regs->vector), regs->rip, regs->error_code);
        xen_shutdown(SHUTDOWN_crash);
    }
    probe_seen.hits++;
    probe_seen.vector = regs->vector;
    probe_seen.error_code = regs->error_code;
    probe_seen.rip = regs->rip;
    probe_seen.insn = probe_insn;
    probe_seen.resume = probe_resume;
    regs->rip = probe_resume;           /* past the attempt, its stack undone */
    regs->rsp = probe_sp;
    probe_insn = 0;
}

long traps_install(const unsigned int *vectors, unsigned int n, trap_handler_t handler)
{
    static struct trap_info table[33];      /* 32 vectors and the terminator */
    unsigned int i;

    if ( n > 32 )
        return -22;                         /* -EINVAL */
    memset(table, 0, sizeof(table));
    for ( i = 0; i < n; i++ )
    {
        table[i].vector = vectors[i];
        table[i].cs = FLAT_KERNEL_CS;
        table[i].address = trap_entry[vectors[i]];
    }
    trap_handler = handler;
    return HYPERVISOR_set_trap_table(table);
}

/* Called from entry.S for every exception. */
void do_trap(struct cpu_regs *regs)
{
    if ( trap_handler )
    {
        trap_handler(regs);
        return;
    }

    printk("unexpected trap %s (vector %lu) at rip 0x%lx, error code 0x%lx\n",
           trap_name(regs->vector), regs->vector, regs->rip, regs->error_code);
    xen_shutdown(SHUTDOWN_crash);
}
