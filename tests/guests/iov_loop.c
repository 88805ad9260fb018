/*
 * iov_loop.c KIND [N] - a per-call benchmark of the calls whose arguments carry pointers:
 * KIND is writev (two 64-byte buffers to /dev/null), readv (two 64-byte buffers from
 * /dev/zero), sendmsg (two iovecs, no name, over a UNIX datagram socketpair, each message
 * read back with a plain read so that the queue never fills) or recvmsg (two iovecs, after a
 * plain send queued the message). Runs N rounds (default 100000), prints "KIND N rounds" (or
 * "failed after R rounds" and exits 1 at the first error); exit status 0. A round of sendmsg
 * or recvmsg is two calls, the same plain one in every run compared.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *kind = argc > 1 ? argv[1] : "writev";
    long n = argc > 2 ? strtol(argv[2], NULL, 0) : 100000;
    char a[64], b[64];
    memset(a, 'a', sizeof a);
    memset(b, 'b', sizeof b);
    struct iovec iov[2] = {{a, sizeof a}, {b, sizeof b}};
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) != 0)
        return 1;
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    long rounds = 0;
    if (!strcmp(kind, "writev") || !strcmp(kind, "readv")) {
        int w = kind[0] == 'w';
        int fd = open(w ? "/dev/null" : "/dev/zero", w ? O_WRONLY : O_RDONLY);
        for (; rounds < n; rounds++)
            if ((w ? writev(fd, iov, 2) : readv(fd, iov, 2)) != 128)
                goto failed;
    } else if (!strcmp(kind, "sendmsg")) {
        /* Each message is read back at once so that the socket's queue never fills. */
        for (; rounds < n; rounds++)
            if (sendmsg(sv[0], &m, 0) != 128 || read(sv[1], a, sizeof a) < 0)
                goto failed;
    } else if (!strcmp(kind, "recvmsg")) {
        for (; rounds < n; rounds++)
            if (send(sv[0], a, sizeof a, 0) < 0 || recvmsg(sv[1], &m, 0) < 0)
                goto failed;
    } else {
        fprintf(stderr, "usage: %s writev|readv|sendmsg|recvmsg [N]\n", argv[0]);
        return 2;
    }
    printf("%s %ld rounds\n", kind, rounds);
    return 0;
failed:
    printf("failed after %ld rounds\n", rounds);
    return 1;
}
