/*
 * rmw.h - the memory benchmark's inner loop, compiled into the memwalk
 * guest and into the native baseline (benchmarks/memwalk_native.c) from
 * this one source, so both run the same machine code.
 *
 * One pass adds 1 to the 64-bit word at every stride bytes of the region:
 * a read-modify-write.  stride 64 walks the region in order (one word a
 * cache line); stride 4096 touches a new page at every access.
 */
#ifndef MEMWALK_RMW_H
#define MEMWALK_RMW_H

static inline void rmw_passes(volatile unsigned long *base, unsigned long bytes,
                              unsigned long stride, unsigned long passes)
{
    unsigned long step = stride / sizeof(*base), words = bytes / sizeof(*base);

    while ( passes-- )
        for ( unsigned long i = 0; i < words; i += step )
            base[i] += 1;
}

#endif /* MEMWALK_RMW_H */
