/* adv_vdso ATTACK: attacks the vDSO the guest was given (AT_SYSINFO_EHDR), then reads the
 * clock through libc. Under `trapbox record`/`replay` that is trapbox's own vDSO, whose buffer
 * page follows the image:
 *   scribble  fills the buffer's header with huge counts, then calls clock_gettime: the
 *             guest faults (SIGSEGV, status 139) on the entry it computed;
 *   unmap     munmaps the image and its buffer, makes ordinary syscalls, then calls time():
 *             the guest faults on the missing code (139);
 *   code      makes the image writable, overwrites clock_gettime with `mov eax, -1; ret`,
 *             and prints what clock_gettime now returns (-1), then exits 0.
 * Prints each step first. Only meaningful under trapbox (natively the kernel's vDSO differs).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *attack = argc > 1 ? argv[1] : "scribble";
    uintptr_t base = getauxval(AT_SYSINFO_EHDR);
    struct timespec ts;
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!base) {
        printf("no vDSO\n");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (!strcmp(attack, "scribble")) {
        printf("scribbling\n");
        uint64_t *hdr = (uint64_t *)(base + 0x1000);
        for (int i = 0; i < 8; i++) hdr[i] = 0x4141414141414141ull;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        printf("survived\n");
    } else if (!strcmp(attack, "unmap")) {
        printf("unmapping: %d\n", munmap((void *)base, 0x11000));
        printf("pid is positive: %d\n", getpid() > 0);
        printf("time %ld\n", (long)time(NULL));
    } else if (!strcmp(attack, "code")) {
        printf("mprotect: %d\n", mprotect((void *)base, 0x1000, PROT_READ | PROT_WRITE | PROT_EXEC));
        /* The image's own symbol table names clock_gettime; walk it as a loader would. */
        const unsigned char *img = (const unsigned char *)base;
        uint64_t phoff = *(const uint64_t *)(img + 32);
        uint16_t phnum = *(const uint16_t *)(img + 56);
        const uint64_t *dyn = 0;
        for (int i = 0; i < phnum; i++) {
            const unsigned char *ph = img + phoff + 56 * i;
            if (*(const uint32_t *)ph == 2) dyn = (const uint64_t *)(img + *(const uint64_t *)(ph + 16));
        }
        const unsigned char *symtab = 0;
        const char *strtab = 0;
        const uint32_t *hash = 0;
        for (; dyn && dyn[0]; dyn += 2) {
            if (dyn[0] == 6) symtab = img + dyn[1];
            if (dyn[0] == 5) strtab = (const char *)img + dyn[1];
            if (dyn[0] == 4) hash = (const uint32_t *)(img + dyn[1]);
        }
        unsigned char *fn = 0;
        for (uint32_t i = 1; symtab && strtab && hash && i < hash[1]; i++) {
            const unsigned char *s = symtab + 24 * i;
            if (!strcmp(strtab + *(const uint32_t *)s, "__vdso_clock_gettime")) fn = (unsigned char *)img + *(const uint64_t *)(s + 8);
        }
        if (!fn) {
            printf("no clock_gettime\n");
            return 3;
        }
        static const unsigned char fail[] = {0xb8, 0xff, 0xff, 0xff, 0xff, 0xc3};
        memcpy(fn, fail, sizeof fail);
        printf("clock_gettime now returns %d\n", clock_gettime(CLOCK_MONOTONIC, &ts));
    }
    return 0;
}
