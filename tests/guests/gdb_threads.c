/*
 * gdb_threads.c [SPINS] - two workers meet the main thread at a barrier, then each calls
 * work(id) once (a breakpoint for gdb while the main thread waits in pthread_join); work
 * spins SPINS times (default 1000000), so that a worker stopped there has a sibling that is
 * running or waiting. Prints "work 1 work 2 total 30". Used by the gdb tests for threads.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_barrier_t meet;
static volatile int done[3];
static long spins = 1000000;

int work(int id)
{
    int v = id * 10;
    for (volatile long i = 0; i < spins; i++) {
    }
    done[id] = v;
    return v;
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    pthread_barrier_wait(&meet);
    return (void *)(intptr_t)work(id);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        spins = atol(argv[1]);
    pthread_t t[2];
    pthread_barrier_init(&meet, NULL, 3);
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)(i + 1));
    pthread_barrier_wait(&meet);
    long total = 0;
    for (int i = 0; i < 2; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (intptr_t)r;
    }
    printf("work %d work %d total %ld\n", done[1] / 10, done[2] / 10, total);
    return 0;
}
