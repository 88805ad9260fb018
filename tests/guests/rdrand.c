/* rdrand: reads hardware random numbers with rdrand and rdseed directly, without asking
 * CPUID (as a program that assumes them would), into 64-, 32- and 16-bit registers including
 * r9, and prints each value with its carry flag. A 16-bit read leaves the register's upper bits
 * alone (they are set first and printed). Natively the values differ from run to run; a
 * replay must print the recorded ones. Exits 0.
 */
#include <stdint.h>
#include <stdio.h>

int main(void) {
    for (int i = 0; i < 4; i++) {
        uint64_t v64, r9;
        uint32_t v32;
        uint64_t v16 = 0x1122334455660000ull;
        unsigned char c1, c2, c3, c4;
        __asm__ volatile("rdrand %0; setc %1" : "=r"(v64), "=qm"(c1)::"cc");
        __asm__ volatile("rdseed %0; setc %1" : "=r"(v32), "=qm"(c2)::"cc");
        __asm__ volatile("rdrand %w0; setc %1" : "+r"(v16), "=qm"(c3)::"cc");
        __asm__ volatile("rdseed %%r9; setc %1; mov %%r9, %0" : "=r"(r9), "=qm"(c4)::"r9", "cc");
        printf("rdrand64 %016llx cf %d, rdseed32 %08x cf %d, rdrand16 %016llx cf %d, rdseed r9 %016llx cf %d\n",
               (unsigned long long)v64, c1, v32, c2, (unsigned long long)v16, c3, (unsigned long long)r9, c4);
    }
    return 0;
}
