/*
 * The memory benchmark's native baseline: the memwalk guest's loop
 * (guests/memwalk/rmw.h, the same source and optimisation level) over a
 * region of the same size on this host.  Usage: memwalk_native MIB STRIDE
 * PASSES; prints the seconds the passes took.  The region is touched once
 * before timing, as the guest's is mapped (and its frames faulted in by
 * the host) before its passes start.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../guests/memwalk/rmw.h"

int main(int argc, char **argv)
{
    unsigned long mib, stride, passes, bytes;
    struct timespec t0, t1;
    unsigned long *region;

    if (argc != 4)
        return 2;
    mib = strtoul(argv[1], NULL, 0);
    stride = strtoul(argv[2], NULL, 0);
    passes = strtoul(argv[3], NULL, 0);
    bytes = mib << 20;
    region = aligned_alloc(4096, bytes);
    if (!region || stride < 8 || stride % 8)
        return 2;
    memset(region, 0, bytes);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rmw_passes(region, bytes, stride, passes);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.9f\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return region[0] == passes ? 0 : 1;
}
