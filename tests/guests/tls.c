/*
 * tls.c - exercises thread-local storage set up at start-up (PT_TLS, the
 * FS base via arch_prctl, static TLS in static, static-pie and dynamic
 * builds): an initialised __thread int, a zero-initialised one, a 4 KiB
 * __thread array, and a function-local static __thread counter called several
 * times.  Expected output: "a=42 z=0", "a=43 z=7", "buf sum=...", "counter 1"
 * .. "counter 5", "tls ok"; exit status 0.
 */
#include <stdio.h>
#include <string.h>

__thread int a = 42;
__thread int z;
__thread char buf[4096];
__thread long big_init[4] = {1, 2, 3, 4};

__attribute__((noinline)) static int counter(void)
{
    static __thread int calls;
    return ++calls;
}

__attribute__((noinline)) static int *addr_of_a(void)
{
    return &a;
}

int main(void)
{
    int ok = 1;
    printf("a=%d z=%d\n", a, z);
    a++;
    z += 7;
    printf("a=%d z=%d\n", a, z);
    if (*addr_of_a() != 43)
        ok = 0;

    for (size_t i = 0; i < sizeof buf; i++)
        if (buf[i] != 0)
            ok = 0;
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (char)(i * 3 + 1);
    unsigned sum = 0;
    for (size_t i = 0; i < sizeof buf; i++)
        sum = sum * 33 + (unsigned char)buf[i];
    printf("buf sum=%u\n", sum);
    if (big_init[0] + big_init[1] + big_init[2] + big_init[3] != 10)
        ok = 0;

    for (int i = 0; i < 5; i++)
        printf("counter %d\n", counter());
    printf("%s\n", ok ? "tls ok" : "tls BROKEN");
    return ok ? 0 : 1;
}
