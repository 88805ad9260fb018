/* fuzz_file: a file-reading parser with a planted bug, for `trapbox fuzz` in file mode.
 * `fuzz_file FILE` learns the file's size with stat, then opens and reads it; without an
 * argument it reads stdin. "FUZZ!" reaches a write through a null pointer through five nested
 * comparisons; a static counter traps (SIGILL) if a reset missed its page. Before it names its
 * input (the fuzzer's snapshot) it opens its own executable; after reading the input it reads
 * that file's first bytes and closes it: a reset that missed the descriptor aborts the next run
 * (SIGABRT), one that missed its offset raises SIGBUS. Distinct signals, so that a saved crash
 * says which part of the reset went wrong. Prints what it read. */
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "planted.h"

static int runs;

__attribute__((noinline)) static void parse(const unsigned char *d, size_t n) {
    planted(d, n);
}


int main(int argc, char **argv) {
    static unsigned char buf[4096];
    size_t n = 0;
    if (++runs != 1)
        __builtin_trap();
    int self = open("/proc/self/exe", O_RDONLY);
    if (self < 0)
        return 2;
    if (argc > 1) {
        struct stat st;
        if (stat(argv[1], &st) != 0)
            return 2;
        int fd = open(argv[1], O_RDONLY);
        if (fd < 0)
            return 2;
        size_t want = (size_t)st.st_size < sizeof buf ? (size_t)st.st_size : sizeof buf;
        while (n < want) {
            ssize_t r = read(fd, buf + n, want - n);
            if (r <= 0)
                break;
            n += (size_t)r;
        }
        close(fd);
    } else {
        ssize_t r;
        while (n < sizeof buf && (r = read(0, buf + n, sizeof buf - n)) > 0)
            n += (size_t)r;
    }
    char magic[4];
    if (read(self, magic, 4) != 4)
        abort();
    if (magic[0] != 0x7f || magic[1] != 'E')
        raise(SIGBUS);
    close(self);
    parse(buf, n);
    printf("read %zu bytes\n", n);
    return 0;
}
