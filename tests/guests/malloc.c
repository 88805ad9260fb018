/*
 * malloc.c - allocation churn exercising the memory-management syscalls glibc
 * malloc uses: brk (many small malloc/free), mmap (blocks >= 1 MiB), munmap
 * (freeing them) and mremap (realloc growing one large block 1 -> 4 -> 16 ->
 * 64 MiB, checking the old contents survive each move).  It also drives the
 * program break directly: sbrk(0), grow by 1 MiB with sbrk, touch every page,
 * shrink back with brk and check the break returned.  All data comes from a
 * fixed-seed LCG, so the printed checksums are deterministic.  Expected output:
 * lines "small: ...", "large: ...", "realloc N MiB: ok", "sbrk: ok" and a final
 * "checksum=..." line; exit status 0 (1 with a message on any mismatch).
 */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t lcg_state = 12345;

static uint32_t lcg(void)
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(lcg_state >> 33);
}

static uint64_t total;

static void fail(const char *msg)
{
    printf("FAIL: %s\n", msg);
    exit(1);
}

static uint64_t fill(unsigned char *p, size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        p[i] = (unsigned char)lcg();
        sum = sum * 31 + p[i];
    }
    return sum;
}

static uint64_t sum_of(const unsigned char *p, size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum = sum * 31 + p[i];
    return sum;
}

int main(void)
{
    /* 1. small allocations: brk-backed heap churn */
    enum { SLOTS = 4096 };
    static unsigned char *slot[SLOTS];
    static size_t slot_len[SLOTS];
    uint64_t small_sum = 0;
    for (int round = 0; round < 200000; round++) {
        int i = lcg() % SLOTS;
        if (slot[i]) {
            small_sum += sum_of(slot[i], slot_len[i]);
            free(slot[i]);
            slot[i] = NULL;
        } else {
            size_t len = 1 + lcg() % 2048;
            slot[i] = malloc(len);
            if (!slot[i])
                fail("small malloc");
            slot_len[i] = len;
            fill(slot[i], len);
        }
    }
    for (int i = 0; i < SLOTS; i++) {
        if (slot[i]) {
            small_sum += sum_of(slot[i], slot_len[i]);
            free(slot[i]);
        }
    }
    printf("small: sum=%llu\n", (unsigned long long)small_sum);
    total += small_sum;

    /* 2. large allocations: mmap/munmap */
    uint64_t large_sum = 0;
    for (int r = 0; r < 8; r++) {
        unsigned char *big[4];
        size_t len[4];
        uint64_t want[4];
        for (int j = 0; j < 4; j++) {
            len[j] = (1u << 20) + (lcg() % 4) * (1u << 20) + lcg() % 4096;
            big[j] = malloc(len[j]);
            if (!big[j])
                fail("large malloc");
            want[j] = fill(big[j], len[j]);
        }
        for (int j = 0; j < 4; j++) {
            if (sum_of(big[j], len[j]) != want[j])
                fail("large block content changed");
            large_sum += want[j];
            free(big[j]);
        }
    }
    printf("large: sum=%llu\n", (unsigned long long)large_sum);
    total += large_sum;

    /* 3. realloc growth: mremap */
    size_t cur = 1u << 20;
    unsigned char *p = malloc(cur);
    if (!p)
        fail("realloc base malloc");
    uint64_t want = fill(p, cur);
    for (size_t next = 4u << 20; next <= (64u << 20); next *= 4) {
        p = realloc(p, next);
        if (!p)
            fail("realloc");
        if (sum_of(p, cur) != want)
            fail("realloc lost content");
        fill(p + cur, next - cur);
        want = sum_of(p, next);
        cur = next;
        printf("realloc %zu MiB: ok\n", cur >> 20);
    }
    total += want;
    free(p);

    /* 4. the program break directly */
    void *brk0 = sbrk(0);
    if (brk0 == (void *)-1)
        fail("sbrk(0)");
    unsigned char *q = sbrk(1u << 20);
    if (q == (void *)-1)
        fail("sbrk grow");
    if (q != brk0)
        fail("sbrk did not return the old break");
    if (sbrk(0) != (void *)(q + (1u << 20)))
        fail("break did not move by 1 MiB");
    long page = sysconf(_SC_PAGESIZE);
    uint64_t brk_sum = 0;
    for (size_t off = 0; off < (1u << 20); off += page) {
        q[off] = (unsigned char)lcg();
        q[off + page - 1] = q[off] ^ 0x5a;
    }
    for (size_t off = 0; off < (1u << 20); off += page)
        brk_sum = brk_sum * 31 + q[off] + q[off + page - 1];
    if (brk(q) != 0)
        fail("brk shrink");
    if (sbrk(0) != (void *)q)
        fail("break not restored");
    printf("sbrk: ok sum=%llu\n", (unsigned long long)brk_sum);
    total += brk_sum;

    printf("checksum=%llu\n", (unsigned long long)total);
    return 0;
}
