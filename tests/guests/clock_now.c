/* clock_now: prints CLOCK_REALTIME and time(NULL) in whole seconds (through libc, which uses
 * the vDSO when the kernel offers one), then 1000 more clock_gettime calls' monotonic spread
 * in whole seconds (0). The test compares the seconds with the host clock. Exits 0.
 */
#include <stdio.h>
#include <time.h>

int main(void) {
    struct timespec r, a, b;
    clock_gettime(CLOCK_REALTIME, &r);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < 1000; i++) clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%lld %lld %lld\n", (long long)r.tv_sec, (long long)time(NULL), (long long)(b.tv_sec - a.tv_sec));
    return 0;
}
