/*
 * cpuloop.c - a CPU-bound integer loop with no syscalls inside it, used to
 * measure the cost of running guest code (and timer/preemption exits) in the
 * box.  argv[1] = iteration count (default 300000000).  Runs an xorshift64*
 * generator that many times and prints "iterations=N result=X", where X
 * depends only on N; exit status 0.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    unsigned long long n = argc > 1 ? strtoull(argv[1], NULL, 0) : 300000000ULL;
    uint64_t x = 88172645463325252ULL, acc = 0;
    for (unsigned long long i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc += x * 2685821657736338717ULL;
    }
    printf("iterations=%llu result=%llu\n", n, (unsigned long long)(acc ^ x));
    return 0;
}
