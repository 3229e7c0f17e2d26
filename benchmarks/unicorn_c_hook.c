/*
 * The floor of a system call trapped by Unicorn and answered in C: a bare
 * libunicorn (the one in the unicorn wheel), a UC_HOOK_INSN syscall hook
 * that reads the number and five argument registers and writes rax -- the
 * work any hypercall trap must do -- and no hypervisor at all.
 *
 *   unicorn_c_hook N plain    loop of mov $17,%eax; syscall (the case)
 *   unicorn_c_hook N page     loop of call entry, where entry is pyxenon's
 *                             hypercall-page stub: mov $17,%eax; syscall; ret
 *   unicorn_c_hook N xenpage  the same with Xen's stub: push %rcx; push %r11;
 *                             mov $17,%eax; syscall; pop %r11; pop %rcx; ret
 *
 * The engine translates addresses as pyxenon's does (virtual-TLB mode, a
 * C TLB-fill hook): code and stub on an executable page, the stack on a
 * page whose TLB entry is readable and writable only, as a PV guest's stack
 * is a data page under pyxenon.  In Unicorn's default mode every TLB entry
 * is also executable, and Unicorn sends every store through such an entry
 * down its self-modifying-code path (cputlb.c notdirty_write: the entry is
 * never marked dirty while addr_code is set) -- some 30 ns a push that
 * pyxenon's engine does not pay, which made Xen's stub look 1.75x as
 * dear as pyxenon's here.
 *
 * Prints nanoseconds per call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unicorn/unicorn.h>

#define CODE 0x1000
#define STUB 0x1800
#define STACK 0x10000
#define STACK_TOP (STACK + 0xf00)

static const int arg_regs[6] = {UC_X86_REG_RAX, UC_X86_REG_RDI, UC_X86_REG_RSI,
                                UC_X86_REG_RDX, UC_X86_REG_R10, UC_X86_REG_R8};

/* Identity translation; the stack page is data (see the top). */
static bool fill_tlb(uc_engine *uc, uint64_t va, uc_mem_type type, uc_tlb_entry *e, void *data)
{
    e->paddr = va & ~0xfffUL;
    e->perms = va >= STACK ? (UC_PROT_READ | UC_PROT_WRITE) : (UC_PROT_READ | UC_PROT_EXEC);
    return true;
}

static void on_syscall(uc_engine *uc, void *data)
{
    uint64_t a[6];
    void *ptrs[6] = {&a[0], &a[1], &a[2], &a[3], &a[4], &a[5]};
    int64_t rc;
    uc_reg_read_batch(uc, (int *)arg_regs, ptrs, 6);
    rc = a[0] == 17 ? (4 << 16 | 17) : -38;
    uc_reg_write(uc, UC_X86_REG_RAX, &rc);
}

/* mov $n,%ecx; 1: <body>; dec %ecx; jnz 1b; hlt -- returns its length. */
static size_t loop(uint8_t *code, uint32_t n, const uint8_t *body, size_t len)
{
    size_t at = 0;
    code[at++] = 0xb9;
    memcpy(code + at, &n, 4);
    at += 4;
    memcpy(code + at, body, len);
    at += len;
    code[at++] = 0xff;
    code[at++] = 0xc9;
    code[at++] = 0x75;
    code[at++] = (uint8_t)-(int)(len + 4);
    code[at++] = 0xf4;
    return at;
}

int main(int argc, char **argv)
{
    static const uint8_t plain[] = {0xb8, 0x11, 0, 0, 0, 0x0f, 0x05};
    static const uint8_t slim[] = {0xb8, 0x11, 0, 0, 0, 0x0f, 0x05, 0xc3};
    static const uint8_t xen[] = {0x51, 0x41, 0x53, 0xb8, 0x11, 0, 0, 0,
                                  0x0f, 0x05, 0x41, 0x5b, 0x59, 0xc3};
    uint8_t call[5] = {0xe8}, code[64];
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    const char *mode = argc > 2 ? argv[2] : "plain";
    int paged = strcmp(mode, "plain") != 0;
    int32_t rel = STUB - (CODE + 5 + 5);
    uint64_t sp = STACK_TOP;
    struct timespec t0, t1;
    uc_engine *uc;
    uc_hook hook, tlb;
    size_t len;

    memcpy(call + 1, &rel, 4);
    len = paged ? loop(code, n, call, sizeof(call)) : loop(code, n, plain, sizeof(plain));
    if (uc_open(UC_ARCH_X86, UC_MODE_64, &uc))
        return 1;
    uc_mem_map(uc, CODE, 0x1000, UC_PROT_ALL);
    uc_mem_map(uc, STACK, 0x1000, UC_PROT_READ | UC_PROT_WRITE);
    uc_mem_write(uc, CODE, code, len);
    if (!strcmp(mode, "xenpage"))
        uc_mem_write(uc, STUB, xen, sizeof(xen));
    else
        uc_mem_write(uc, STUB, slim, sizeof(slim));
    uc_reg_write(uc, UC_X86_REG_RSP, &sp);
    uc_ctl_tlb_mode(uc, UC_TLB_VIRTUAL);
    uc_hook_add(uc, &tlb, UC_HOOK_TLB_FILL, fill_tlb, NULL, 1, 0);
    uc_hook_add(uc, &hook, UC_HOOK_INSN, on_syscall, NULL, 1, 0, UC_X86_INS_SYSCALL);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uc_emu_start(uc, CODE, CODE + len - 1, 0, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.3f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n);
    uc_close(uc);
    return 0;
}
