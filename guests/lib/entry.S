/*
 * entry.S - exception entry stubs for a 64-bit PV kernel, and the return
 * through HYPERVISOR_iret.  See traps.h for the frame Xen builds.
 */
#include "xen.h"

#define X86_EXC_HAVE_EC ((1 << 8) | (1 << 10) | (1 << 11) | (1 << 12) | \
                         (1 << 13) | (1 << 14) | (1 << 17))

/* The vectors with a stub (no NMI: that comes through a callback). */
#define STUB_VECTORS 0, 1, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19

        .text
        .code64

.macro TRAP_STUB vec
        .p2align 4
trap_stub_\vec:
        pop     %rcx                    /* Xen put the interrupted rcx and */
        pop     %r11                    /* r11 above its iret frame */
        .if !((1 << \vec) & X86_EXC_HAVE_EC)
        push    $0                      /* no error code: keep one layout */
        .endif
        push    $\vec
        jmp     trap_common
.endm

        .irp vec, STUB_VECTORS
        TRAP_STUB \vec
        .endr

/*
 * Stack here (lowest first): vector, error code, rip, cs, rflags, rsp, ss.
 * Save everything, call do_trap(struct cpu_regs *), restore, and return:
 * drop vector and error code, leaving Xen's frame (rip, cs, rflags, rsp,
 * ss), push iret_context.flags = 0 (not a SYSCALL return: rcx and r11 are
 * restored too) and jump to the iret entry of the hypercall page, which
 * pushes rcx, r11 and rax and issues the hypercall.  It does not return.
 */
        .p2align 4
trap_common:
        push    %rax
        push    %rbx
        push    %rcx
        push    %rdx
        push    %rsi
        push    %rdi
        push    %rbp
        push    %r8
        push    %r9
        push    %r10
        push    %r11
        push    %r12
        push    %r13
        push    %r14
        push    %r15

        mov     %rsp, %rdi              /* struct cpu_regs * */
        mov     %rsp, %rbp
        and     $~0xf, %rsp             /* the ABI's call alignment */
        cld
        call    do_trap
        mov     %rbp, %rsp

        pop     %r15
        pop     %r14
        pop     %r13
        pop     %r12
        pop     %r11
        pop     %r10
        pop     %r9
        pop     %r8
        pop     %rbp
        pop     %rdi
        pop     %rsi
        pop     %rdx
        pop     %rcx
        pop     %rbx
        pop     %rax
        add     $16, %rsp               /* vector, error code */

        push    $0                      /* iret_context.flags */
        jmp     hypercall_page + __HYPERVISOR_iret * HYPERCALL_STUB_SIZE
        .size   trap_common, . - trap_common

/* trap_entry[vector]: the stub's address, 0 where there is none. */
        .section .rodata
        .p2align 3
        .globl  trap_entry
        .type   trap_entry, @object
trap_entry:
        .irp vec, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, \
                  16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
        .ifdef trap_stub_\vec
        .quad   trap_stub_\vec
        .else
        .quad   0
        .endif
        .endr
        .size   trap_entry, . - trap_entry

        .section .note.GNU-stack, "", @progbits
