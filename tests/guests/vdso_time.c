/* vdso_time N [vdso-only]: makes N rounds of time calls through libc (the vDSO when there is one):
 * clock_gettime on CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID (a clock the
 * kernel's vDSO hands to the syscall) and an invalid clock, gettimeofday with and without a
 * time zone, time(NULL) and time(&t), with no other syscall in between (with `vdso-only`, just the calls
 * the kernel's vDSO answers itself: thousands in a row). Prints how many calls
 * failed, whether the monotonic clock never went back, an FNV hash of every value read and the
 * first realtime second; the hash differs from run to run natively. Exits 0.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static uint64_t h = 1469598103934665603ull;

static void mix(uint64_t v) {
    for (int i = 0; i < 8; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= 1099511628211ull;
    }
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    int kernel_too = !(argc > 2 && !strcmp(argv[2], "vdso-only"));
    int failed = 0, backwards = 0;
    long long first = -1;
    struct timespec last = {0, 0};
    for (int i = 0; i < n; i++) {
        struct timespec ts;
        struct timeval tv;
        struct timezone tz;
        time_t t = 0;
        if (clock_gettime(CLOCK_REALTIME, &ts) != 0) failed++;
        if (first < 0) first = ts.tv_sec;
        mix(ts.tv_sec), mix(ts.tv_nsec);
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) failed++;
        if (ts.tv_sec < last.tv_sec || (ts.tv_sec == last.tv_sec && ts.tv_nsec < last.tv_nsec)) backwards++;
        last = ts;
        mix(ts.tv_sec), mix(ts.tv_nsec);
        if (kernel_too && i % 16 == 0) {
            if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) failed++;
            mix(ts.tv_nsec);
            if (clock_gettime((clockid_t)9999, &ts) == 0) failed++;
            if (gettimeofday(&tv, &tz) != 0) failed++;
            mix(tv.tv_usec);
        }
        if (gettimeofday(&tv, NULL) != 0) failed++;
        mix(tv.tv_sec), mix(tv.tv_usec);
        mix(time(NULL));
        time(&t);
        mix(t);
    }
    printf("calls failed %d, monotonic went back %d times\n", failed, backwards);
    printf("hash %016llx first second %lld\n", (unsigned long long)h, first);
    return 0;
}
