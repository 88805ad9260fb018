/*
 * random_clock.c - exercises getrandom, clock_gettime (CLOCK_MONOTONIC and
 * CLOCK_REALTIME, normally via the vDSO), time, gettimeofday and nanosleep.
 * Expected output, one line each: "getrandom ok", "monotonic ok",
 * "realtime ok", "gettimeofday ok", "nanosleep ok"; exit status 0.  A failed
 * check prints "... FAILED" instead and the exit status becomes 1.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>

static long long ns(const struct timespec *t)
{
    return (long long)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static int report(const char *name, int ok)
{
    printf("%s %s\n", name, ok ? "ok" : "FAILED");
    return ok;
}

int main(void)
{
    int ok = 1;

    unsigned char buf[32];
    memset(buf, 0, sizeof buf);
    ssize_t n = getrandom(buf, sizeof buf, 0);
    int nonzero = 0;
    for (size_t i = 0; i < sizeof buf; i++)
        nonzero |= buf[i];
    ok &= report("getrandom", n == 32 && nonzero);

    struct timespec m1, m2;
    int r1 = clock_gettime(CLOCK_MONOTONIC, &m1);
    int r2 = clock_gettime(CLOCK_MONOTONIC, &m2);
    ok &= report("monotonic", r1 == 0 && r2 == 0 && ns(&m2) >= ns(&m1));

    struct timespec rt;
    int r3 = clock_gettime(CLOCK_REALTIME, &rt);
    time_t now = time(NULL);
    long long d = (long long)rt.tv_sec - (long long)now;
    ok &= report("realtime", r3 == 0 && d >= -5 && d <= 5);

    struct timeval tv;
    int r4 = gettimeofday(&tv, NULL);
    d = (long long)tv.tv_sec - (long long)rt.tv_sec;
    ok &= report("gettimeofday", r4 == 0 && d >= -5 && d <= 5 && tv.tv_usec >= 0 && tv.tv_usec < 1000000);

    struct timespec s1, s2, req = {0, 10 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &s1);
    int r5 = nanosleep(&req, NULL);
    clock_gettime(CLOCK_MONOTONIC, &s2);
    ok &= report("nanosleep", r5 == 0 && ns(&s2) - ns(&s1) >= 10 * 1000 * 1000);

    return ok ? 0 : 1;
}
