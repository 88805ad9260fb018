/*
 * threads_trap.c [N] - two threads each execute N int3s (default 3000), caught by a
 * SIGTRAP handler, at the same time; after each, the thread checks that it resumed right
 * after its own int3 with its own stack pointer. Prints "2 threads, N traps each, 0 lost"
 * (lost: traps that resumed anywhere else) and exits 0. Each thread's exception frames must
 * stay its own while the other thread traps too.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static long n = 3000;
static __thread long traps;

static void on_trap(int sig)
{
    (void)sig;
    traps++;
}

static void *run(void *arg)
{
    (void)arg;
    long lost = 0;
    for (long i = 0; i < n; i++) {
        uint64_t before, after;
        /* The stack pointer before and after the trap, and a marker only reached from here. */
        __asm__ volatile("mov %%rsp, %0\n\t"
                         "int3\n\t"
                         "mov %%rsp, %1\n\t"
                         : "=&r"(before), "=&r"(after)
                         :
                         : "memory");
        if (before != after)
            lost++;
    }
    if (traps != n)
        lost += n - traps;
    return (void *)(intptr_t)lost;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        n = atol(argv[1]);
    struct sigaction sa = {0};
    sa.sa_handler = on_trap;
    sigaction(SIGTRAP, &sa, NULL);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, run, NULL);
    long lost = 0;
    for (int i = 0; i < 2; i++) {
        void *r;
        pthread_join(t[i], &r);
        lost += (intptr_t)r;
    }
    printf("2 threads, %ld traps each, %ld lost\n", n, lost);
    return 0;
}
