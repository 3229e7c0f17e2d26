/*
 * attempt.c - lines, counts and faulting probes for the hostile guests
 * (see attempt.h).
 */
#include <stdarg.h>
#include "attempt.h"
#include "traps.h"

static const char *guest;
static unsigned int attempts, refused;
static shared_info_t *shinfo;
static int faulted;

static void on_trap(struct cpu_regs *regs)
{
    if ( !probe_insn || regs->vector != X86_EXC_PF || regs->rip != probe_insn )
    {
        printk("%s: unexpected %s at rip 0x%lx (error code 0x%lx, cr2 0x%lx)\n",
               guest, trap_name(regs->vector), regs->rip, regs->error_code,
               shinfo ? shinfo->vcpu_info[0].arch.cr2 : 0);
        xen_shutdown(SHUTDOWN_crash);
    }
    faulted = 1;
    regs->rip = probe_resume;
    probe_insn = 0;
}

void attempts_init(const char *name)
{
    struct trap_info table[2];
    long rc;

    guest = name;
    rc = map_shared_info((unsigned long)padding_alloc(), &shinfo);
    if ( rc )
        printk("%s: map shared_info: %s\n", guest, rcstr(rc));
    memset(table, 0, sizeof(table));
    table[0].vector = X86_EXC_PF;
    table[0].cs = FLAT_KERNEL_CS;
    table[0].address = trap_entry[X86_EXC_PF];
    trap_handler = on_trap;
    rc = HYPERVISOR_set_trap_table(table);
    if ( rc )
    {
        printk("%s: set_trap_table(#PF): %s: cannot probe, giving up\n", guest, rcstr(rc));
        xen_shutdown(SHUTDOWN_crash);
    }
}

void report(enum verdict v, const char *what, const char *fmt, ...)
{
    static const char *const words[] = {
        [REFUSED] = "refused as Xen does",
        [BREACH] = "NOT REFUSED",
        [DIFFERENT] = "refused, but not as Xen does",
        [ALLOWED] = "allowed as Xen does",
        [WRONG] = "NOT AS XEN DOES",
    };
    char buf[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    attempts++;
    refused += v == REFUSED || v == ALLOWED;
    printk("%s: [%2u] %s: %s: %s\n", guest, attempts, what, buf, words[v]);
}

void attempts_done(void)
{
    printk("%s: %u/%u attempts refused\n", guest, refused, attempts);
    xen_shutdown(SHUTDOWN_poweroff);
    for ( ;; )
        ;
}

int write_faults(volatile uint64_t *va, uint64_t val)
{
    faulted = 0;
    asm volatile ( PROBE_ARM PROBE_INSN("movq %%rsi, (%%rdx)")
                   :: "d" (va), "S" (val) : "r11", "memory" );
    return faulted;
}

int read_faults(volatile const uint64_t *va, uint64_t *out)
{
    uint64_t v = 0;

    faulted = 0;
    asm volatile ( PROBE_ARM PROBE_INSN("movq (%%rdx), %%rsi")
                   : "+S" (v) : "d" (va) : "r11", "memory" );
    *out = v;
    return faulted;
}

const char *rcstr(long rc)
{
    static char buf[4][24];
    static unsigned int n;
    char *b = buf[n++ % 4];

    snprintf(b, sizeof(buf[0]), "%ld %s", rc, xen_errname(rc));
    return b;
}

long mmu_update1(uint64_t ptr, uint64_t val, unsigned int cmd)
{
    struct mmu_update req = { .ptr = ptr | cmd, .val = val };
    unsigned int done = 0;

    return HYPERVISOR_mmu_update(&req, 1, &done, DOMID_SELF);
}

long remap_self(const void *va, uint64_t flags)
{
    return HYPERVISOR_update_va_mapping((unsigned long)va,
                                        ((pte_t)virt_to_mfn(va) << PAGE_SHIFT) | flags,
                                        UVMF_INVLPG);
}
