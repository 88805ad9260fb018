/* memhog: maps argv[1] MiB of anonymous memory in 1 MiB steps and touches each page, then
 * grows the heap with sbrk by the same amount. Prints how many MiB each way succeeded and
 * the errno name of the first failure ("mmap: 64 MiB ok" / "mmap: failed at 16 MiB: ENOMEM").
 * Used with `trapbox run --memory-limit`. Exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long want = argc > 1 ? atol(argv[1]) : 64;
    long got = 0;
    for (; got < want; got++) {
        char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) break;
        for (int i = 0; i < (1 << 20); i += 4096) p[i] = 1;
    }
    if (got == want) printf("mmap: %ld MiB ok\n", got);
    else printf("mmap: failed at %ld MiB: %s\n", got, errno == ENOMEM ? "ENOMEM" : strerror(errno));
    long heap = 0;
    for (; heap < want; heap++) {
        char *p = sbrk(1 << 20);
        if (p == (char *)-1) break;
        memset(p, 1, 1 << 20);
    }
    if (heap == want) printf("sbrk: %ld MiB ok\n", heap);
    else printf("sbrk: failed at %ld MiB: %s\n", heap, errno == ENOMEM ? "ENOMEM" : strerror(errno));
    return 0;
}
