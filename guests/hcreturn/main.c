/*
 * hcreturn - how a hypercall returns to a 64-bit PV guest kernel, as on
 * Xen 4.17:
 *
 *   - CS and SS after a hypercall are FLAT_KERNEL_CS64 (0xe033) and
 *     FLAT_KERNEL_SS (0xe02b), whatever flat selectors of its own GDT the
 *     kernel ran with: lstar_enter (x86_64/entry.S) builds the frame with
 *     those two, and restore_all_guest leaves by sysretq, which loads the
 *     same from MSR_STAR.
 *   - an iret entry in a multicall ends the batch (pv_do_multicall_call's
 *     mc_exit in common/multicall.c's do_multicall): the guest resumes where
 *     the iret frame says, with the frame's rax, and the entries after the
 *     iret never run (their result fields stay as they were).
 *
 * One line per check, "hcreturn: [ n] what: as on Xen", then
 * "hcreturn: N/M as on Xen"; then poweroff.
 */
#include "lib.h"
#include "mm.h"
#include "hypercall.h"

#define SEG(type, dpl, flags) \
    (0xffffUL | (0xfUL << 48) | ((uint64_t)(type) << 40) | (1UL << 44) | \
     ((uint64_t)(dpl) << 45) | (1UL << 47) | ((uint64_t)(flags) << 52) | (1UL << 55))
#define L64     0x2
#define D32     0x4
#define CODE    0xb
#define DATA    0x3
#define OWN_CS64    ((2 << 3) | 3)
#define OWN_DS      ((3 << 3) | 3)
#define UNTOUCHED   0x5a5a5a5a5a5a5a5aUL
#define IRET_RAX    0x1234abcdUL

unsigned long sel_before, sel_after;

/* Run one hypercall (xen_version 0) with the selector in rdi loaded into
 * CS (a far return) or SS; record the selector before and after. */
asm ( ".text\n"
      "cs_fn: pushq %rdi\n"
      "\tlea 1f(%rip), %rax\n"
      "\tpushq %rax\n"
      "\tlretq\n"
      "1:\tmovl %cs, %eax\n"
      "\tmov %rax, sel_before(%rip)\n"
      "\txor %edi, %edi\n"
      "\txor %esi, %esi\n"
      "\tcall hypercall_page + 17 * 32\n"
      "\tmovl %cs, %eax\n"
      "\tmov %rax, sel_after(%rip)\n"
      "\tret\n"
      "ss_fn: movl %edi, %ss\n"
      "\tmovl %ss, %eax\n"
      "\tmov %rax, sel_before(%rip)\n"
      "\txor %edi, %edi\n"
      "\txor %esi, %esi\n"
      "\tcall hypercall_page + 17 * 32\n"
      "\tmovl %ss, %eax\n"
      "\tmov %rax, sel_after(%rip)\n"
      "\tret\n"
      /*
       * multicall(rdi, rsi) with an iret_context (rax = r8, r11, rcx,
       * flags, rip, cs, rflags, rsp, ss) on the stack at the syscall: the
       * iret returns to mc_iret_back on this function's own stack.
       */
      "mc_iret_fn: mov %rsp, %r9\n"
      "\tpushq $0xe02b\n"
      "\tpushq %r9\n"
      "\tpushq $0x2\n"
      "\tpushq $0xe030\n"
      "\tlea mc_iret_back(%rip), %rax\n"
      "\tpushq %rax\n"
      "\tpushq $0\n"
      "\tpushq %rcx\n"
      "\tpushq %r11\n"
      "\tpushq %r8\n"
      "\tjmp hypercall_page + 13 * 32\n"
      "mc_iret_back: ret\n" );

static unsigned int checks, as_xen;

static void check(int ok, const char *what)
{
    checks++;
    as_xen += !!ok;
    printk("hcreturn: [%2u] %s: %s (before 0x%lx, after 0x%lx)\n", checks, what,
           ok ? "as on Xen" : "NOT as on Xen", sel_before, sel_after);
}

static void install_gdt(void)
{
    volatile uint64_t *gdt = padding_alloc();
    unsigned long frame = virt_to_mfn((void *)gdt);
    long rc;

    gdt[2] = SEG(CODE, 3, L64);
    gdt[3] = SEG(DATA, 3, D32);
    rc = HYPERVISOR_update_va_mapping((unsigned long)gdt,
                                      ((pte_t)frame << PAGE_SHIFT) | PTE_RO, UVMF_INVLPG);
    if ( !rc )
        rc = _hypercall2(__HYPERVISOR_set_gdt, &frame, 512);
    if ( rc )
    {
        printk("hcreturn: set_gdt failed: %ld\n", rc);
        xen_shutdown(SHUTDOWN_crash);
    }
}

static void with_selector_in(int cs, unsigned long sel)
{
    sel_before = sel_after = 0;
    if ( cs )
        asm volatile ( "call cs_fn" : "+D" (sel) : : "rax", "rsi", "rdx", "rcx", "r8", "r10",
                       "r11", "memory" );
    else
        asm volatile ( "call ss_fn" : "+D" (sel) : : "rax", "rsi", "rdx", "rcx", "r8", "r10",
                       "r11", "memory" );
}

static void selectors(void)
{
    with_selector_in(0, FLAT_KERNEL_SS);
    check(sel_after == FLAT_KERNEL_SS, "SS after a hypercall: FLAT_KERNEL_SS");
    with_selector_in(0, OWN_DS);
    check(sel_before == OWN_DS && sel_after == FLAT_KERNEL_SS,
          "SS of the guest's own GDT: FLAT_KERNEL_SS after the hypercall");
    with_selector_in(1, FLAT_KERNEL_CS);
    check(sel_after == FLAT_KERNEL_CS, "CS after a hypercall: FLAT_KERNEL_CS64");
    with_selector_in(1, OWN_CS64);
    check(sel_before == OWN_CS64 && sel_after == FLAT_KERNEL_CS,
          "CS of the guest's own GDT: FLAT_KERNEL_CS64 after the hypercall");
}

static void multicall_iret(void)
{
    static struct multicall_entry calls[2];
    unsigned long rax;

    memset(calls, 0, sizeof(calls));
    calls[0].op = __HYPERVISOR_iret;
    calls[0].result = UNTOUCHED;
    calls[1].op = __HYPERVISOR_xen_version;
    calls[1].result = UNTOUCHED;
    register unsigned long r8 asm ( "r8" ) = IRET_RAX;   /* set last: no call between */
    asm volatile ( "call mc_iret_fn"
                   : "=a" (rax), "+r" (r8)
                   : "D" (calls), "S" (2UL)
                   : "rcx", "rdx", "r9", "r10", "r11", "memory" );
    sel_before = calls[0].result;
    sel_after = calls[1].result;
    check(rax == IRET_RAX, "iret in a multicall: back at its frame's rip with its rax");
    check(calls[1].result == UNTOUCHED, "the entry after the iret never ran (mc_exit)");
}

void guest_main(start_info_t *si)
{
    install_gdt();
    selectors();
    multicall_iret();
    printk("hcreturn: %u/%u as on Xen\n", as_xen, checks);
    xen_shutdown(SHUTDOWN_poweroff);
}
