/*
 * stdin_echo.c - exercises reading stdin and writing stdout with the raw
 * read/write syscalls: reads all of fd 0 with read(0, ..., 4096) until EOF,
 * prints "bytes=N checksum=X" (X is an FNV-1a hash of the data) on stdout,
 * then writes the data back to stdout unchanged with write(1, ...).  With
 * empty stdin it prints "bytes=0 checksum=14695981039346656037".  Exit
 * status 0 (1 if a read or write fails).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
    size_t cap = 1 << 16, len = 0;
    unsigned char *data = malloc(cap);
    if (!data)
        return 1;
    for (;;) {
        if (cap - len < 4096) {
            cap *= 2;
            data = realloc(data, cap);
            if (!data)
                return 1;
        }
        ssize_t n = read(0, data + len, 4096);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "read: %s\n", strerror(errno));
            return 1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ data[i]) * 1099511628211ULL;
    printf("bytes=%zu checksum=%llu\n", len, (unsigned long long)h);
    fflush(stdout);
    for (size_t off = 0; off < len;) {
        ssize_t n = write(1, data + off, len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "write: %s\n", strerror(errno));
            return 1;
        }
        off += (size_t)n;
    }
    free(data);
    return 0;
}
