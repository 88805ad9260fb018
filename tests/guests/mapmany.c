/* mapmany: maps 20 small anonymous regions (4 KiB to 80 KiB), then one of 16 MiB, then 20
 * more small ones, printing "small" / "large" / "small" progress lines. A stop condition on
 * mmap's length must stop exactly at the large one, before "after large" is printed.
 * Exits 0.
 */
#include <stdio.h>
#include <sys/mman.h>

static void *map(size_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return NULL;
    }
    ((char *)p)[0] = 1;
    return p;
}

int main(void) {
    for (int i = 1; i <= 20; i++) map((size_t)i * 4096);
    printf("small done\n");
    fflush(stdout);
    map(16 << 20);
    printf("after large\n");
    for (int i = 1; i <= 20; i++) map((size_t)i * 4096);
    printf("small done again\n");
    return 0;
}
