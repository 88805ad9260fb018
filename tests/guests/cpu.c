/* cpu: what the CPU looks like to user code — the features glibc and libgcc pick string and
 * math routines by (__builtin_cpu_supports, which reads CPUID and XCR0), the OSXSAVE bit and
 * XCR0's x87/SSE/AVX bits. In the box these must equal the native values so glibc takes the
 * same AVX2/SSE4 paths. Exits 0.
 */
#include <cpuid.h>
#include <stdio.h>

int main(void) {
    __builtin_cpu_init();
    printf("sse4.2 %d\n", __builtin_cpu_supports("sse4.2") != 0);
    printf("avx %d\n", __builtin_cpu_supports("avx") != 0);
    printf("avx2 %d\n", __builtin_cpu_supports("avx2") != 0);
    printf("bmi2 %d\n", __builtin_cpu_supports("bmi2") != 0);
    printf("popcnt %d\n", __builtin_cpu_supports("popcnt") != 0);
    unsigned a = 0, b = 0, c = 0, d = 0;
    __get_cpuid(1, &a, &b, &c, &d);
    int osxsave = (c >> 27) & 1;
    printf("osxsave %d\n", osxsave);
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        printf("xcr0 x87/sse/avx %u\n", lo & 7);
    }
    return 0;
}
