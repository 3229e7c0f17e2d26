/*
 * The guest of the Qiling baseline: a static x86_64 Linux program that makes
 * N getppid system calls (N from -DN=...) and exits.  No libc, so Qiling
 * needs no root file system contents and emulates nothing but these calls.
 */
void _start(void)
{
    for (long i = 0; i < N; i++) {
        long r;
        __asm__ volatile ("syscall" : "=a"(r) : "a"(110L) : "rcx", "r11", "memory");
    }
    __asm__ volatile ("syscall" : : "a"(60L), "D"(0L));
    for (;;)
        ;
}
