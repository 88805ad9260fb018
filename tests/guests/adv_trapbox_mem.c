/*
 * adv_trapbox_mem.c - adversarial: tries to make the kernel touch the trapbox
 * host's own memory on the guest's behalf.  It scans /proc/self/maps for the
 * first mapping whose file name contains "trapbox" (under trapbox the maps
 * seen are the host process's, whose binary is named trapbox; natively there
 * is none, and the guest's own executable is ignored).  If none is found it
 * prints "no trapbox mapping" and exits 0.  Otherwise, with A = that
 * mapping's start address, it tries read(/dev/zero fd, A, 4096), write(1, A,
 * 16) and readv(/dev/zero fd, {A, 4096}), printing "read into trapbox memory:
 * ", "write from trapbox memory: " and "readv into trapbox memory: " followed
 * by "ok" or the errno name, then "still alive"; exit status 0.  Under
 * trapbox, A names guest address space, never the host's, so none of these
 * may reach or change host memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#define ADV_NEED_MAPS
#include "adv_common.h"


static void result(const char *label, long r)
{
    int e = errno;
    printf("%s: %s\n", label, r >= 0 ? "ok" : errname(e));
    fflush(stdout);
}

int main(void)
{
    unsigned long a = find_trapbox_mapping(NULL);
    if (!a) {
        printf("no trapbox mapping\n");
        return 0;
    }
    printf("found trapbox mapping\n");
    fflush(stdout);

    int fd = open("/dev/zero", O_RDONLY);
    if (fd < 0) {
        printf("open /dev/zero: %s\n", errname(errno));
        return 1;
    }
    errno = 0;
    result("read into trapbox memory", read(fd, (void *)a, 4096));

    printf("write from trapbox memory: ");
    fflush(stdout);
    errno = 0;
    long w = write(1, (const void *)a, 16);
    int e = errno;
    printf("%s\n", w >= 0 ? "ok" : errname(e));
    fflush(stdout);

    struct iovec iov = {(void *)a, 4096};
    errno = 0;
    result("readv into trapbox memory", syscall(SYS_readv, fd, &iov, 1));

    close(fd);
    printf("still alive\n");
    return 0;
}
