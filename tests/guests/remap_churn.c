/* remap_churn: four odd-sized anonymous mappings per round, filled, checked and unmapped, for
 * eight rounds whose sizes differ, so new mappings land on pages that other mappings just
 * freed. Every byte must read back what was written; a stale translation in the VM would
 * show another block's bytes. Prints "done" (and any bad ranges). Exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
int main(void) {
    unsigned seed = 1;
    for (int r = 0; r < 8; r++) {
        unsigned char *b[4]; size_t len[4];
        for (int j = 0; j < 4; j++) {
            seed = seed * 1103515245 + 12345;
            len[j] = (1u << 20) + ((seed >> 16) % 4) * (1u << 20) + (seed >> 8) % 4096;
            len[j] = (len[j] + 4095) & ~4095ul;
            b[j] = mmap(NULL, len[j], PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
            memset(b[j], 0x10 * r + j + 1, len[j]);
        }
        for (int j = 0; j < 4; j++) {
            size_t first = (size_t)-1, last = 0, cnt = 0; unsigned char seen = 0;
            for (size_t i = 0; i < len[j]; i++) if (b[j][i] != 0x10 * r + j + 1) { if (first == (size_t)-1) { first = i; seen = b[j][i]; } last = i; cnt++; }
            if (cnt) printf("round %d block %d [%p+%#zx): %zu bad bytes in [%#zx, %#zx], first bad value %#x\n", r, j, (void*)b[j], len[j], cnt, first, last, seen);
        }
        for (int j = 0; j < 4; j++) munmap(b[j], len[j]);
    }
    printf("done\n");
    return 0;
}
