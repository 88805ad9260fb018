/* planted.h: the fuzz targets' planted bug: "FUZZ!" reaches a write through a null pointer
 * through five nested byte comparisons, each its own block (the barriers keep the compiler
 * from merging them), so block coverage leads a fuzzer there one byte at a time. */
#include <stddef.h>

static inline void planted(const unsigned char *d, size_t n) {
    if (n >= 5 && d[0] == 'F') {
        __asm__ volatile("" ::: "memory");
        if (d[1] == 'U') {
            __asm__ volatile("" ::: "memory");
            if (d[2] == 'Z') {
                __asm__ volatile("" ::: "memory");
                if (d[3] == 'Z') {
                    __asm__ volatile("" ::: "memory");
                    if (d[4] == '!') {
                        volatile int *p = 0;
                        *p = 1;
                    }
                }
            }
        }
    }
}
