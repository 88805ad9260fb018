/*
 * cpu_threads.c T N - T threads each run the same xorshift loop of N iterations
 * (seeded by thread index) with no syscalls; prints "threads T iterations N
 * checksum C" (C: XOR of every thread's result) and exits 0. The process benchmark
 * uses it for parallel scaling: the same total work on 1 and on 2 threads.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long iters;

static void *spin(void *arg)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)arg;
    for (long i = 0; i < iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return (void *)(uintptr_t)x;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: cpu_threads THREADS ITERATIONS\n");
        return 2;
    }
    int nt = atoi(argv[1]);
    iters = atol(argv[2]);
    if (nt < 1 || nt > 64)
        return 2;
    pthread_t th[64];
    for (int i = 0; i < nt; i++) {
        int e = pthread_create(&th[i], NULL, spin, (void *)(uintptr_t)(i + 1));
        if (e) {
            printf("pthread_create: %s\n", strerror(e));
            return 1;
        }
    }
    uint64_t sum = 0;
    for (int i = 0; i < nt; i++) {
        void *r;
        pthread_join(th[i], &r);
        sum ^= (uint64_t)(uintptr_t)r;
    }
    printf("threads %d iterations %ld checksum %016llx\n", nt, iters, (unsigned long long)sum);
    return 0;
}
