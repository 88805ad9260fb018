/*
 * adv_fds.c - adversarial: probes for and tries to close or clobber file
 * descriptors the host (trapbox) might have leaked into the guest's fd space.
 * Prints "open fds 3..4095: N" (fcntl(F_GETFD) succeeding; 0 when started
 * with only stdin/stdout/stderr), "successful closes: N" after close() on
 * every fd 3..4095, then "dup2(1, FD): ok|ERRNO" for FD in 3, 10, 100, 1000,
 * 1023, 4000 (closing those that worked; natively 4000 gives EBADF when
 * RLIMIT_NOFILE <= 4000), "close_range(3, ~0U, 0): ok|ERRNO", and finally
 * "still alive" via printf (so stdout must still work); exit status 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "adv_common.h"


int main(void)
{
    int open_count = 0;
    for (int fd = 3; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) != -1)
            open_count++;
    printf("open fds 3..4095: %d\n", open_count);
    fflush(stdout);

    int closed = 0;
    for (int fd = 3; fd < 4096; fd++)
        if (close(fd) == 0)
            closed++;
    printf("successful closes: %d\n", closed);
    fflush(stdout);

    static const int targets[] = {3, 10, 100, 1000, 1023, 4000};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        int fd = targets[i];
        errno = 0;
        int r = dup2(1, fd);
        printf("dup2(1, %d): %s\n", fd, r == fd ? "ok" : r >= 0 ? "wrong fd" : errname(errno));
        fflush(stdout);
        if (r >= 0)
            close(r);
    }

    errno = 0;
    long r = syscall(SYS_close_range, 3, ~0U, 0);
    printf("close_range(3, ~0U, 0): %s\n", r == 0 ? "ok" : errname(errno));

    printf("still alive\n");
    return 0;
}
