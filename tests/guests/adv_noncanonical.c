/* adv_noncanonical: loads and stores through non-canonical addresses (bit 47 set, upper bits
 * clear) with a plain mov, an SSE movdqu and AVX vmovdqu loads and stores. Each must raise
 * SIGSEGV with si_code SI_KERNEL and si_addr 0, as the CPU's #GP does natively; the handler
 * prints them and jumps back. Exits 0.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>

static sigjmp_buf back;

static void on_segv(int sig, siginfo_t *si, void *ctx) {
    (void)ctx;
    printf("  signal %d code %d addr %p\n", sig, si->si_code, si->si_addr);
    siglongjmp(back, 1);
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *names[] = {"mov load", "sse load", "avx load", "avx store"};
    for (int i = 0; i < 4; i++) {
        volatile uintptr_t p = 0x800000001000ull + 0x1000ull * i;
        printf("%s\n", names[i]);
        if (sigsetjmp(back, 1)) continue;
        switch (i) {
        case 0: __asm__ volatile("mov (%0), %%rax" ::"r"(p) : "rax", "memory"); break;
        case 1: __asm__ volatile("movdqu (%0), %%xmm0" ::"r"(p) : "xmm0", "memory"); break;
        case 2: __asm__ volatile("vmovdqu (%0), %%ymm0" ::"r"(p) : "xmm0", "memory"); break;
        case 3: __asm__ volatile("vmovdqu %%ymm0, (%0)" ::"r"(p) : "memory"); break;
        }
        printf("  no fault\n");
    }
    return 0;
}
