/* fuzz_counts: a libFuzzer-style harness whose bug only a hit count leads to: 32 'A's in the
 * input write through a null pointer. Inputs with an 'A' all take the same edges; only how often
 * the 'A' edge runs tells them apart (AFL's count buckets: 1, 2, 3, 4-7, 8-15, 16-31, 32-127),
 * so a fuzzer that keeps an input for a new bucket climbs there a bucket at a time.
 * `fuzz_counts FILE` runs the function once on FILE's bytes and prints "no crash". */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int a = 0;
    for (size_t i = 0; i < size; i++)
        if (data[i] == 'A')
            a++;
    if (a >= 32) {
        volatile int *p = 0;
        *p = 1;
    }
    return 0;
}

#include "fuzz_main.h"
