/*
 * head.S - entry point, hypercall page, boot stack and Xen ELF notes.
 *
 * Xen (or pyxenon) starts the guest at XEN_ELFNOTE_ENTRY in 64-bit mode
 * with %rsi = virtual address of start_info and %rsp on a valid boot
 * stack, event delivery masked.
 */
#include "xen.h"

/*
 * One ELF note: namesz, descsz, type, "Xen\0", descriptor, each part
 * padded to 4 bytes.
 */
.macro ELFNOTE type, directive, value:vararg
        .pushsection .note.Xen, "a", @note
        .p2align 2
        .long   2f - 1f                 /* namesz, including the NUL */
        .long   4f - 3f                 /* descsz */
        .long   \type
1:      .asciz  "Xen"
2:      .p2align 2
3:      \directive \value
4:      .p2align 2
        .popsection
.endm

        ELFNOTE XEN_ELFNOTE_GUEST_OS,       .asciz, "pyxenon-toy"
        ELFNOTE XEN_ELFNOTE_GUEST_VERSION,  .asciz, "1"
        ELFNOTE XEN_ELFNOTE_XEN_VERSION,    .asciz, "xen-3.0"
        ELFNOTE XEN_ELFNOTE_VIRT_BASE,      .quad,  GUEST_VIRT_BASE
        ELFNOTE XEN_ELFNOTE_PADDR_OFFSET,   .quad,  GUEST_VIRT_BASE
        ELFNOTE XEN_ELFNOTE_ENTRY,          .quad,  _start
        ELFNOTE XEN_ELFNOTE_HYPERCALL_PAGE, .quad,  hypercall_page
        ELFNOTE XEN_ELFNOTE_LOADER,         .asciz, "generic"
        ELFNOTE XEN_ELFNOTE_FEATURES,       .asciz, "!writable_page_tables"
        ELFNOTE XEN_ELFNOTE_PAE_MODE,       .asciz, "yes"
        ELFNOTE XEN_ELFNOTE_SUSPEND_CANCEL, .long,  1

/* ---- Entry ------------------------------------------------------------ */

        .section .text.head, "ax", @progbits
        .code64
        .globl  _start
        .type   _start, @function
_start:
        cld
        mov     %rsi, start_info(%rip)
        lea     boot_stack_top(%rip), %rsp      /* our own 16 KiB stack */
        xor     %ebp, %ebp
        mov     %rsi, %rdi                      /* guest_main(start_info) */
        call    guest_main

        mov     $SHUTDOWN_poweroff, %edi        /* returned: power off */
        call    xen_shutdown
1:      ud2                                     /* not reached */
        jmp     1b
        .size   _start, . - _start

/* ---- Hypercall page --------------------------------------------------- */

/*
 * Filled in by the hypervisor: the stub for hypercall N starts at
 * hypercall_page + 32 * N.  Until then it is all int3, so calling an
 * unfilled stub traps instead of sliding along.
 */
        .section .text.page_aligned, "ax", @progbits
        .p2align PAGE_SHIFT
        .globl  hypercall_page
        .type   hypercall_page, @function
hypercall_page:
        .fill   PAGE_SIZE, 1, 0xcc
        .size   hypercall_page, PAGE_SIZE

/* ---- Boot stack ------------------------------------------------------- */

        .section .bss.stack, "aw", @nobits
        .p2align PAGE_SHIFT
        .globl  boot_stack, boot_stack_top
boot_stack:
        .skip   16384
boot_stack_top:

        .section .note.GNU-stack, "", @progbits
