/* fuzz_stacks: one bug reached by two paths, for crash buckets by stack. An input starting
 * with 'A' aborts from one function, 'B' from another: both die at the same instruction (in
 * libc's raise), and only the stack above it tells them apart. 'H' spins forever (a hang).
 * Any other byte returns. */
#include <stdint.h>
#include <stdlib.h>

__attribute__((noinline)) static void check_a(const uint8_t *d) {
    if (d[0] == 'A')
        abort();
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void check_b(const uint8_t *d) {
    if (d[0] == 'B')
        abort();
    __asm__ volatile("" ::: "memory");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    if (data[0] == 'H')
        for (volatile int spin = 1; spin;)
            ;
    check_a(data);
    check_b(data);
    return 0;
}

int main(void) {
    return 0;
}
