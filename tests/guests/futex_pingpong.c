/*
 * futex_pingpong.c [M] - two threads hand a token back and forth M times (default
 * 1000) through one futex word with raw SYS_futex FUTEX_WAIT/FUTEX_WAKE (private):
 * the main thread sets it to 1 and wakes, the partner sets it to 0 and wakes.
 * Prints "ping-pong M rounds, partner saw M" and exits 0. The process benchmark
 * divides its time by M for the cost of one round trip.
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int word; /* 0: main's turn, 1: partner's turn, 2: stop */
static long rounds;

static void wait_while(int val)
{
    while (__atomic_load_n(&word, __ATOMIC_ACQUIRE) == val)
        syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void set_and_wake(int val)
{
    __atomic_store_n(&word, val, __ATOMIC_RELEASE);
    syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static long seen;

static void *partner(void *arg)
{
    (void)arg;
    for (;;) {
        wait_while(0);
        if (__atomic_load_n(&word, __ATOMIC_ACQUIRE) == 2)
            return NULL;
        seen++;
        set_and_wake(0);
    }
}

int main(int argc, char **argv)
{
    rounds = argc > 1 ? atol(argv[1]) : 1000;
    pthread_t t;
    int e = pthread_create(&t, NULL, partner, NULL);
    if (e) {
        printf("pthread_create: %s\n", strerror(e));
        return 1;
    }
    for (long i = 0; i < rounds; i++) {
        set_and_wake(1);
        wait_while(1);
    }
    set_and_wake(2);
    pthread_join(t, NULL);
    printf("ping-pong %ld rounds, partner saw %ld\n", rounds, seen);
    return 0;
}
