/*
 * adv_proc_mem.c - adversarial: tries to obtain a writable handle on the
 * process memory file, which under trapbox would be the host's memory.  It
 * opens /proc/self/mem O_RDWR and prints "open /proc/self/mem: " + "ok" or
 * the errno name; if that worked it pwrite()s 8 bytes over one of its own
 * local variables through it ("pwrite own variable: ok, value updated").  It
 * then tries /proc/<getpid()>/mem, /proc/thread-self/mem and
 * openat(open("/proc/self", O_DIRECTORY), "mem", O_RDWR), one result line
 * each, and finally prints "still alive"; exit status 0.  Natively all opens
 * succeed; under trapbox they must fail with EACCES.  Output is printed
 * honestly either way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "adv_common.h"


static void report_open(const char *label, int fd)
{
    printf("open %s: %s\n", label, fd >= 0 ? "ok" : errname(errno));
    fflush(stdout);
    if (fd >= 0)
        close(fd);
}

int main(void)
{
    volatile uint64_t target = 0x1111111111111111ULL;

    errno = 0;
    int fd = open("/proc/self/mem", O_RDWR);
    printf("open /proc/self/mem: %s\n", fd >= 0 ? "ok" : errname(errno));
    fflush(stdout);
    if (fd >= 0) {
        uint64_t v = 0x2222222222222222ULL;
        errno = 0;
        ssize_t n = pwrite(fd, &v, sizeof v, (off_t)(uintptr_t)&target);
        if (n == (ssize_t)sizeof v)
            printf("pwrite own variable: ok, value %s\n",
                   target == 0x2222222222222222ULL ? "updated" : "NOT updated");
        else if (n >= 0)
            printf("pwrite own variable: short write %zd\n", n);
        else
            printf("pwrite own variable: %s\n", errname(errno));
        fflush(stdout);
        close(fd);
    }

    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", (int)getpid());
    errno = 0;
    report_open("/proc/<pid>/mem", open(path, O_RDWR));

    errno = 0;
    report_open("/proc/thread-self/mem", open("/proc/thread-self/mem", O_RDWR));

    errno = 0;
    int dfd = open("/proc/self", O_RDONLY | O_DIRECTORY);
    if (dfd < 0) {
        printf("open /proc/self dir: %s\n", errname(errno));
    } else {
        errno = 0;
        report_open("mem via openat(/proc/self)", openat(dfd, "mem", O_RDWR));
        close(dfd);
    }

    printf("still alive\n");
    return 0;
}
