/*
 * threads_nondet.c [ROUNDS] - threads whose output depends on how they interleave and on
 * nondeterministic inputs, for record/replay.  Two waves of 4 workers (the second created
 * after the first has been joined, so a host thread may run a second guest thread); each
 * worker runs ROUNDS rounds (default 200): it takes a mutex, appends its number to a shared
 * log with a value from getrandom, the TSC (rdtsc) and CLOCK_MONOTONIC, sometimes yields or
 * sleeps 50 us, and hands a token on through a condition variable every 16th round.  The
 * main thread also reads /dev/urandom while the workers run.  Prints, per wave, the order in
 * which the workers took the mutex (as a string of digits, a run-length summary) and a hash
 * of every value, then each worker's gettid() rank and "done".  All of it varies from run to
 * run natively; a replay must print the recording's output byte for byte.  Exit status 0.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#define WORKERS 4

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t token_cv = PTHREAD_COND_INITIALIZER;
static int token;
static long rounds;
static char order[WORKERS * 4096];
static size_t order_len;
static uint64_t hash = 1469598103934665603ull;
static pid_t tids[WORKERS];

static void mix(uint64_t v)
{
    hash = (hash ^ v) * 1099511628211ull;
}

static void *worker(void *arg)
{
    int n = (int)(intptr_t)arg;
    tids[n] = gettid();
    for (long i = 0; i < rounds; i++) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, 0) != sizeof r)
            abort();
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        pthread_mutex_lock(&lock);
        if (order_len < sizeof order)
            order[order_len++] = (char)('0' + n);
        mix(r);
        mix(__rdtsc());
        mix((uint64_t)ts.tv_nsec);
        pthread_mutex_unlock(&lock);
        if (i % 7 == 0)
            sched_yield();
        if (i % 29 == 0)
            usleep(50);
        if (i % 16 == 0) {
            pthread_mutex_lock(&lock);
            token = (token + 1) % WORKERS;
            pthread_cond_broadcast(&token_cv);
            pthread_mutex_unlock(&lock);
        }
    }
    return NULL;
}

static void wave(int w)
{
    pthread_t t[WORKERS];
    order_len = 0;
    for (int n = 0; n < WORKERS; n++)
        if (pthread_create(&t[n], NULL, worker, (void *)(intptr_t)n) != 0) {
            printf("pthread_create failed\n");
            exit(1);
        }
    int fd = open("/dev/urandom", O_RDONLY);
    unsigned char b[16];
    if (fd < 0 || read(fd, b, sizeof b) != (ssize_t)sizeof b)
        abort();
    close(fd);
    for (size_t i = 0; i < sizeof b; i++)
        mix(b[i]);
    for (int n = 0; n < WORKERS; n++)
        pthread_join(t[n], NULL);
    /* Run-length summary of who took the mutex when: its switches show the interleaving. */
    int switches = 0;
    for (size_t i = 1; i < order_len; i++)
        switches += order[i] != order[i - 1];
    printf("wave %d: %zu entries, %d switches, first %.40s\n", w, order_len, switches, order);
    int rank[WORKERS];
    for (int n = 0; n < WORKERS; n++) {
        rank[n] = 0;
        for (int m = 0; m < WORKERS; m++)
            rank[n] += tids[m] < tids[n];
    }
    printf("wave %d: tid ranks %d %d %d %d, hash %016llx\n", w, rank[0], rank[1], rank[2], rank[3],
           (unsigned long long)hash);
}

int main(int argc, char **argv)
{
    rounds = argc > 1 ? atol(argv[1]) : 200;
    wave(1);
    wave(2);
    printf("done\n");
    return 0;
}
