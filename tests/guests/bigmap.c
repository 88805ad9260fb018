// Maps a large file (stored whole in a recording), then makes small anonymous mappings while
// the recorder's and replayer's helper threads handle that file: their own large buffers
// must not take addresses the guest's mmaps get (a replay would diverge with EEXIST).
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    size_t size = 48u << 20;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return 3;
    char *block = malloc(1 << 20);
    for (size_t i = 0; i < size; i += 1 << 20) {
        for (int j = 0; j < 1 << 20; j++) block[j] = (char)((i >> 20) * 7 + j * 13);
        if (write(fd, block, 1 << 20) != 1 << 20) return 4;
    }
    unsigned char *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) return 5;
    unsigned long sum = 0;
    for (int k = 0; k < 64; k++) {
        size_t len = 4096u << (k % 5);
        unsigned char *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (a == MAP_FAILED) return 6;
        memset(a, k, len);
        for (size_t i = (size_t)k * 4096 * 97 % size; i < size; i += 1 << 19) sum = sum * 31 + m[i] + a[len - 1];
    }
    printf("bigmap %lu\n", sum);
    unlink(argv[1]);
    return 0;
}
