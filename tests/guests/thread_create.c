/*
 * thread_create.c [N] - creates and joins N threads one after another (default 100),
 * each returning its index; prints "created and joined N threads, sum S" where S is
 * the sum of 0..N-1. Exit status 0. Used by the process benchmark (per-thread cost)
 * and as a quick differential test.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *body(void *arg)
{
    return arg;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100;
    long sum = 0;
    for (long i = 0; i < n; i++) {
        pthread_t t;
        int e = pthread_create(&t, NULL, body, (void *)(intptr_t)i);
        if (e) {
            printf("pthread_create %ld: %s\n", i, strerror(e));
            return 1;
        }
        void *r;
        if ((e = pthread_join(t, &r))) {
            printf("pthread_join %ld: %s\n", i, strerror(e));
            return 1;
        }
        sum += (intptr_t)r;
    }
    printf("created and joined %ld threads, sum %ld\n", n, sum);
    return 0;
}
