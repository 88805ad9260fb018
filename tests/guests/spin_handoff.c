/*
 * spin_handoff.c [N [clock]] - two threads hand a token back and forth N times (default 20)
 * by spinning on a shared word, with no syscall while they wait (a `pause` loop, as spinlocks
 * do; with `clock`, each turn of the loop reads CLOCK_MONOTONIC through the vDSO, as a spin
 * with a deadline does, then pauses 1024 times counting in an SSE register: the general
 * registers are the same at every pause of every turn, and only the number of clock reads
 * tells the turns apart). Whoever holds the token mixes something nondeterministic into a hash: the main thread
 * getrandom bytes, the partner the TSC and CLOCK_MONOTONIC. Prints the hash and the rounds
 * each side saw; exits 0. Under a recording each wait is a spin the holder must be
 * preempted in, since the turn never changes at a syscall there.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <x86intrin.h>

static volatile int token; /* 0: main's, 1: partner's */
static uint64_t hash = 1469598103934665603ull;
static long rounds, partner_saw;
static int use_clock;

static void mix(uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        hash ^= (v >> (8 * i)) & 0xff;
        hash *= 1099511628211ull;
    }
}

/* 1024 pauses, counted down in xmm1 (the flags, from ptest, are the only other state). */
static void pause_1024(void)
{
    static const int n = 1024, one = 1;
    __asm__ volatile("movd %0, %%xmm1\n"
                     "movd %1, %%xmm2\n"
                     "1: pause\n"
                     "psubd %%xmm2, %%xmm1\n"
                     "ptest %%xmm1, %%xmm1\n"
                     "jnz 1b\n"
                     :
                     : "m"(n), "m"(one)
                     : "xmm1", "xmm2", "cc");
}

static void wait_for(int mine)
{
    struct timespec ts;
    while (token != mine) {
        if (use_clock) {
            clock_gettime(CLOCK_MONOTONIC, &ts);
            pause_1024();
        } else {
            _mm_pause();
        }
    }
}

static void *partner(void *arg)
{
    (void)arg;
    for (long i = 0; i < rounds; i++) {
        wait_for(1);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        mix(__rdtsc() ^ (uint64_t)ts.tv_nsec);
        partner_saw++;
        __atomic_store_n(&token, 0, __ATOMIC_RELEASE);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    rounds = argc > 1 ? atol(argv[1]) : 20;
    use_clock = argc > 2 && argv[2][0] == 'c';
    pthread_t t;
    if (pthread_create(&t, NULL, partner, NULL) != 0)
        return 1;
    for (long i = 0; i < rounds; i++) {
        wait_for(0);
        uint64_t r;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            return 1;
        mix(r);
        __atomic_store_n(&token, 1, __ATOMIC_RELEASE);
    }
    wait_for(0);
    pthread_join(t, NULL);
    printf("spin hand-off %ld rounds, partner saw %ld, hash %016llx\n", rounds, partner_saw,
           (unsigned long long)hash);
    return 0;
}
