/*
 * mprotect.c - exercises mmap, mprotect, munmap and msync, and delivery of a
 * fatal page fault.  Maps 3 anonymous RW pages, fills them, makes the middle
 * page PROT_READ, reads all three and prints "checksum=...", munmaps the
 * first page and checks msync on it fails with ENOMEM ("first page gone"),
 * then prints "writing to read-only page" and writes to the read-only page.
 * No signal handler is installed, so the process must die of SIGSEGV (exit
 * status 139 in a shell); the final "unexpectedly survived" line must never
 * appear.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *p = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        printf("mmap failed: %s\n", strerror(errno));
        return 1;
    }
    for (long i = 0; i < 3 * page; i++)
        p[i] = (unsigned char)(i * 7 + (i >> 12));
    if (mprotect(p + page, page, PROT_READ) != 0) {
        printf("mprotect failed: %s\n", strerror(errno));
        return 1;
    }
    unsigned long sum = 0;
    for (long i = 0; i < 3 * page; i++)
        sum = sum * 131 + p[i];
    printf("checksum=%lu\n", sum);

    if (munmap(p, page) != 0) {
        printf("munmap failed: %s\n", strerror(errno));
        return 1;
    }
    if (msync(p, page, MS_ASYNC) == -1 && errno == ENOMEM)
        printf("first page gone\n");
    else
        printf("first page still mapped?\n");
    if (msync(p + page, page, MS_ASYNC) == 0)
        printf("middle page still mapped\n");
    else
        printf("middle page msync failed: %s\n", strerror(errno));

    printf("writing to read-only page\n");
    fflush(stdout);
    volatile unsigned char *ro = p + page;
    ro[10] = 1;
    printf("unexpectedly survived\n");
    return 0;
}
