/* code_moves: reads the TSC through code whose mapping changes under it — its own text page
 * after mprotect (same rights, then writable too and back), and a generated rdtsc routine after
 * mprotect to read-execute, after mremap moves it, and after an mprotect of its new place; and
 * the routine in a file mapping that was read (so already mapped for the CPU) before it was
 * made executable.
 * Prints "tsc <stage> <value>" per read (values differ from run to run) and "done". Exits 0.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static __attribute__((noinline)) uint64_t tsc(void)
{
    unsigned lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

int main(void)
{
    printf("tsc start %llu\n", (unsigned long long)tsc());
    uintptr_t page = (uintptr_t)tsc & ~0xfffUL;
    if (mprotect((void *)page, 4096, PROT_READ | PROT_EXEC) != 0)
        return 1;
    printf("tsc text-mprotect %llu\n", (unsigned long long)tsc());
    if (mprotect((void *)page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC) != 0)
        return 1;
    printf("tsc text-writable %llu\n", (unsigned long long)tsc());
    if (mprotect((void *)page, 4096, PROT_READ | PROT_EXEC) != 0)
        return 1;
    printf("tsc text-back %llu\n", (unsigned long long)tsc());

    /* rdtsc; shl rdx, 32; or rax, rdx; ret */
    static const unsigned char routine[] = {0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0, 0xc3};
    unsigned char *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (code == MAP_FAILED)
        return 1;
    memcpy(code + 100, routine, sizeof routine);
    if (mprotect(code, 4096, PROT_READ | PROT_EXEC) != 0)
        return 1;
    uint64_t (*gen)(void) = (uint64_t(*)(void))(code + 100);
    printf("tsc generated %llu\n", (unsigned long long)gen());
    /* Reserve a spot elsewhere, then move the routine's page there. */
    unsigned char *to = mmap(NULL, 3 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (to == MAP_FAILED)
        return 1;
    unsigned char *moved = mremap(code, 4096, 2 * 4096, MREMAP_MAYMOVE | MREMAP_FIXED, to + 4096);
    if (moved == MAP_FAILED)
        return 1;
    gen = (uint64_t(*)(void))(moved + 100);
    printf("tsc moved %llu\n", (unsigned long long)gen());
    if (mprotect(moved, 4096, PROT_READ | PROT_EXEC) != 0)
        return 1;
    printf("tsc moved-mprotect %llu\n", (unsigned long long)gen());

    /* The routine in a file, mapped readable and read before it becomes executable. */
    int fd = memfd_create("routine", 0);
    if (fd < 0 || write(fd, routine, sizeof routine) != (ssize_t)sizeof routine || ftruncate(fd, 4096) != 0)
        return 1;
    volatile unsigned char *file = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    if (file == MAP_FAILED || file[0] != 0x0f)
        return 1;
    if (mprotect((void *)file, 4096, PROT_READ | PROT_EXEC) != 0)
        return 1;
    gen = (uint64_t(*)(void))file;
    printf("tsc file-read-then-exec %llu\n", (unsigned long long)gen());
    printf("done\n");
    return 0;
}
