/* fuzz_target: a libFuzzer-style harness with bugs for `trapbox fuzz` to find.
 *   - "FUZZ!" crashes with a write through a null pointer, reached only through five nested
 *     byte comparisons (each its own block, so coverage guides the fuzzer there);
 *   - "HANG" spins forever;
 *   - "OPEN" opens a file after the snapshot (the fuzzer must refuse it);
 *   - every call counts itself in a global, allocates, and blocks SIGUSR1: a reset that
 *     missed a page would see the count at 2, and one that missed the signal mask SIGUSR1
 *     blocked; either aborts. Every call also checks a page filled before the snapshot,
 *     which an input starting with "D" drops (MADV_DONTNEED, no write): a reset that did not
 *     bring it back leaves it zero, and the next call aborts.
 * `fuzz_target FILE` runs the function once on FILE's bytes (how a saved crash reproduces). */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "planted.h"

static int calls;
static char *keep;
static char filled[2 * 4096] __attribute__((aligned(4096)));

__attribute__((constructor)) static void fill(void)
{
    memset(filled, 'S', sizeof filled);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (++calls != 1 || filled[4096] != 'S')
        abort();
    /* Not read again in this call: a page read after it is dropped would be there again. */
    if (size >= 1 && data[0] == 'D' && madvise(filled + 4096, 4096, MADV_DONTNEED) != 0)
        abort();
    sigset_t usr1, before;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &usr1, &before) != 0 || sigismember(&before, SIGUSR1))
        abort();
    /* A fresh allocation each time: the heap must come back as it was. */
    keep = malloc(64 + size);
    if (!keep)
        abort();
    memcpy(keep, data, size);
    if (size >= 4 && memcmp(data, "HANG", 4) == 0)
        for (volatile int spin = 1; spin;)
            ;
    if (size >= 4 && memcmp(data, "OPEN", 4) == 0) {
        int fd = open("/etc/hostname", O_RDONLY);
        if (fd >= 0)
            close(fd);
    }
    planted(data, size);
    return 0;
}

#include "fuzz_main.h"
