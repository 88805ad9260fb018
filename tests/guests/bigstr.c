/*
 * bigstr.c - exercises glibc's vectorised string functions (the AVX2/EVEX
 * variants chosen by ifunc/cpu-feature detection, which depend on what CPUID
 * and XCR0 report) on two 64 MiB malloc'd (so mmap'd) buffers: memset,
 * memcpy, memmove with overlapping ranges in both directions, memcmp, strlen
 * of a 64 MiB string, strchr/memchr/strrchr for a byte near the end, strcpy.
 * Expected output: deterministic lines of lengths, positions and checksums,
 * ending with "bigstr ok"; exit status 0 (1 and "bigstr FAILED" on a check
 * failure).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SZ ((size_t)64 << 20)

static int ok = 1;

static void check(const char *what, int cond)
{
    if (!cond) {
        printf("check failed: %s\n", what);
        ok = 0;
    }
}

static uint64_t sum(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i += 61)
        h = (h ^ p[i]) * 1099511628211ULL;
    h = (h ^ p[n - 1]) * 1099511628211ULL;
    return h;
}

int main(void)
{
    char *a = malloc(SZ), *b = malloc(SZ);
    if (!a || !b) {
        printf("malloc failed\n");
        return 1;
    }

    memset(a, 'x', SZ);
    a[SZ - 1] = '\0';
    size_t len = strlen(a);
    printf("strlen=%zu\n", len);
    check("strlen", len == SZ - 1);

    size_t pos = SZ - 1000;
    a[pos] = 'Q';
    char *c = strchr(a, 'Q');
    char *m = memchr(a, 'Q', SZ);
    char *r = strrchr(a, 'x');
    printf("strchr Q at %td, memchr Q at %td, strrchr x at %td\n", c ? c - a : (ptrdiff_t)-1,
           m ? m - a : (ptrdiff_t)-1, r ? r - a : (ptrdiff_t)-1);
    check("strchr", c == a + pos);
    check("memchr", m == a + pos);
    check("strchr missing", strchr(a, 'Z') == NULL);

    for (size_t i = 0; i < SZ; i += 4096)
        a[i] = (char)('a' + (i >> 12) % 26);
    memcpy(b, a, SZ);
    printf("memcpy sum=%llu\n", (unsigned long long)sum((unsigned char *)b, SZ));
    check("memcmp equal", memcmp(a, b, SZ) == 0);
    b[SZ - 10] = (char)(b[SZ - 10] + 1);
    int cmp = memcmp(a, b, SZ);
    printf("memcmp after change: %s\n", cmp < 0 ? "negative" : cmp > 0 ? "positive" : "zero");
    check("memcmp differ", cmp < 0);
    b[SZ - 10] = a[SZ - 10];

    /* overlapping forward move (dst > src) */
    memmove(b + 4097, b, SZ - 8192);
    check("memmove forward", memcmp(b + 4097, a, SZ - 8192) == 0);
    printf("memmove forward sum=%llu\n", (unsigned long long)sum((unsigned char *)b, SZ));
    /* overlapping backward move (dst < src) */
    memcpy(b, a, SZ);
    memmove(b + 3, b + 12345, SZ - 12345);
    check("memmove backward", memcmp(b + 3, a + 12345, SZ - 12345) == 0);
    printf("memmove backward sum=%llu\n", (unsigned long long)sum((unsigned char *)b, SZ));

    memset(b, 0, SZ);
    char *d = strcpy(b, a);
    size_t blen = strlen(b);
    printf("strcpy len=%zu\n", blen);
    check("strcpy ret", d == b);
    check("strcpy len", blen == SZ - 1);
    check("strcpy content", memcmp(a, b, SZ) == 0);

    free(a);
    free(b);
    printf("%s\n", ok ? "bigstr ok" : "bigstr FAILED");
    return ok ? 0 : 1;
}
