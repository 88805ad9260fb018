/*
 * adv_badptr.c - adversarial: passes invalid user pointers (small addresses,
 * a kernel-half address, the top page) to syscalls, which must fail cleanly
 * with EFAULT rather than fault or corrupt anything.  Calls and prints one
 * "<call>: <result>" line each for read(/dev/zero, 1, 10), write(1, 0x10, 10),
 * open(0x20), stat("/", 0x30), the raw clock_gettime syscall (avoiding the
 * vDSO) with 0x40, readv with its iovec array at 0x50, writev whose first
 * iovec has length 0 and second has base 0x60 and length 10, getrandom into
 * 0xffff800000000000 and uname(-4096); the result is the errno name on
 * failure (all EFAULT natively) or the return value.  Then prints "still
 * alive"; exit status 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include "adv_common.h"


/* Launder constant addresses so the compiler cannot reason about them. */
static void *bad(uintptr_t v)
{
    volatile uintptr_t x = v;
    return (void *)x;
}

static void report(const char *label, long r, int e)
{
    if (r < 0)
        printf("%s: %s\n", label, errname(e));
    else
        printf("%s: returned %ld\n", label, r);
    fflush(stdout);
}

#define TRY(label, expr)                                                                           \
    do {                                                                                           \
        errno = 0;                                                                                 \
        long r_ = (long)(expr);                                                                    \
        report(label, r_, errno);                                                                  \
    } while (0)

int main(void)
{
    int fd = open("/dev/zero", O_RDONLY);
    if (fd < 0) {
        printf("open /dev/zero: %s\n", errname(errno));
        return 1;
    }
    TRY("read(/dev/zero, 0x1, 10)", read(fd, bad(1), 10));
    TRY("write(1, 0x10, 10)", write(1, bad(0x10), 10));
    TRY("open(0x20)", open((const char *)bad(0x20), O_RDONLY));
    TRY("stat(\"/\", 0x30)", stat("/", (struct stat *)bad(0x30)));
    TRY("clock_gettime syscall(MONOTONIC, 0x40)",
        syscall(SYS_clock_gettime, CLOCK_MONOTONIC, bad(0x40)));
    TRY("readv(/dev/zero, iov at 0x50, 2)", readv(fd, (const struct iovec *)bad(0x50), 2));

    struct iovec iov[2];
    static char first[1] = "x";
    iov[0].iov_base = first;
    iov[0].iov_len = 0;
    iov[1].iov_base = bad(0x60);
    iov[1].iov_len = 10;
    TRY("writev(1, {valid len 0, 0x60 len 10})", writev(1, iov, 2));

    TRY("getrandom(0xffff800000000000, 8)", getrandom(bad(0xffff800000000000ULL), 8, 0));
    TRY("uname(-4096)", uname((struct utsname *)bad((uintptr_t)-4096L)));

    close(fd);
    printf("still alive\n");
    return 0;
}
