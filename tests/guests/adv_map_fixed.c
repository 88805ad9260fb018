/*
 * adv_map_fixed.c - adversarial: tries to replace, unmap, re-protect or
 * discard the trapbox host's own memory through the guest's memory-management
 * syscalls.  It scans /proc/self/maps for the first mapping whose file name
 * contains "trapbox" (under trapbox the maps seen are the host's; natively
 * there is none and the guest's own executable is ignored); if none is found
 * it prints "no trapbox mapping" and exits 0 without touching anything.
 * Otherwise, for A = that mapping's start (and then for the start of the
 * "[heap]" mapping, i.e. the host heap, if listed), it calls mmap(A, 4096,
 * RW, MAP_FIXED|MAP_PRIVATE|MAP_ANONYMOUS), munmap(A, 4096),
 * mprotect(A, 4096, RWX) and madvise(A, 4096, MADV_DONTNEED), printing for
 * each "<call> <target>: ok" or the errno name, then "still alive"; exit
 * status 0.  Under trapbox these addresses are guest addresses and the host
 * must be unaffected.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>
#define ADV_NEED_MAPS
#include "adv_common.h"


static void attack(const char *what, unsigned long a)
{
    void *p = (void *)a;
    errno = 0;
    void *m = mmap(p, 4096, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mmap fixed over %s: %s\n", what, m != MAP_FAILED ? "ok" : errname(errno));
    fflush(stdout);
    errno = 0;
    int r = munmap(p, 4096);
    printf("munmap %s: %s\n", what, r == 0 ? "ok" : errname(errno));
    fflush(stdout);
    errno = 0;
    r = mprotect(p, 4096, PROT_READ | PROT_WRITE | PROT_EXEC);
    printf("mprotect %s: %s\n", what, r == 0 ? "ok" : errname(errno));
    fflush(stdout);
    errno = 0;
    r = madvise(p, 4096, MADV_DONTNEED);
    printf("madvise %s: %s\n", what, r == 0 ? "ok" : errname(errno));
    fflush(stdout);
}

int main(void)
{
    unsigned long heap = 0;
    unsigned long a = find_trapbox_mapping(&heap);
    if (!a) {
        printf("no trapbox mapping\n");
        return 0;
    }
    printf("found trapbox mapping\n");
    fflush(stdout);
    attack("trapbox", a);
    if (heap)
        attack("host heap", heap);
    else
        printf("no [heap] mapping\n");
    printf("still alive\n");
    return 0;
}
