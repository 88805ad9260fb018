// Syscalls from hot sites (which the in-process engine rewrites) behave as syscalls: every
// register but RAX, RCX and R11 kept, vector registers included (the upper halves of YMM and,
// on AVX-512 machines, ZMM16-31); RCX the address after the instruction, R11 the flags; the
// flags themselves kept. From three threads at once, under a storm of signals sent to them,
// and again in a forked child under a fast interval timer. The direction flag, MXCSR and the x87
// control word a program sets before a hot syscall are its own after it, and trapbox's code never
// runs with them (with DF set, its copies would run backwards).
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROUNDS 20000
#define THREADS 3

static atomic_long signals_seen;
static atomic_long bad;
static atomic_int done;
static long parent;

static void on_signal(int s) {
    (void)s;
    atomic_fetch_add(&signals_seen, 1);
}

static void report(const char *what, long i, long got, long want) {
    if (atomic_fetch_add(&bad, 1) < 5)
        fprintf(stderr, "round %ld: %s is %#lx, not %#lx\n", i, what, got, want);
}

// One getppid from one site, with `LOAD` putting `vin` into a vector register before and
// `STORE` taking it into `vout` after.
#define ONE(NAME, WIDTH, LOAD, STORE, CLOBBER, ATTR)                                              \
    ATTR static void NAME(long i) {                                                               \
        register long r8 asm("r8") = 0x1111 + i, r9 asm("r9") = 0x2222 + i;                       \
        register long r10 asm("r10") = 0x3333 + i, r12 asm("r12") = 0x4444 + i;                   \
        register long r13 asm("r13") = 0x5555 + i, r14 asm("r14") = 0x6666 + i;                   \
        register long r15 asm("r15") = 0x7777 + i, r11 asm("r11");                                \
        long rax = SYS_getppid, rdi = 0x8888 + i, rsi = 0x9999 + i, rdx = 0xaaaa + i, rcx, after;  \
        unsigned char vin[WIDTH], vout[WIDTH];                                                    \
        char cf;                                                                                  \
        for (int k = 0; k < WIDTH; k++) vin[k] = (unsigned char)(k * 7 + i);                      \
        asm volatile(LOAD "\n\t"                                                                  \
                     "lea 1f(%%rip), %[after]\n\t"                                                \
                     "stc\n\t"                                                                    \
                     "syscall\n"                                                                  \
                     "1:\n\t" STORE                                                               \
                     : "+a"(rax), "=c"(rcx), "=r"(r11), "+D"(rdi), "+S"(rsi), "+d"(rdx), "+r"(r8), \
                       "+r"(r9), "+r"(r10), "+r"(r12), "+r"(r13), "+r"(r14), "+r"(r15),            \
                       [after] "=&b"(after), "=@ccc"(cf), [vout] "=m"(vout)                        \
                     : [vin] "m"(vin)                                                             \
                     : CLOBBER, "memory");                                                        \
        if (rax != parent) report("rax", i, rax, parent);                                         \
        if (rcx != after) report("rcx", i, rcx, after);                                           \
        if (!(r11 & 1) || !(r11 & 0x200)) report("r11 (flags: CF, IF)", i, r11, 0x203);          \
        if (!cf) report("CF after the syscall", i, 0, 1);                                         \
        long want[] = {0x8888 + i, 0x9999 + i, 0xaaaa + i, 0x1111 + i, 0x2222 + i, 0x3333 + i,    \
                       0x4444 + i, 0x5555 + i, 0x6666 + i, 0x7777 + i};                           \
        long got[] = {rdi, rsi, rdx, r8, r9, r10, r12, r13, r14, r15};                            \
        for (int k = 0; k < 10; k++)                                                              \
            if (got[k] != want[k]) report("a kept register", i, got[k], want[k]);                 \
        if (memcmp(vin, vout, WIDTH)) report("a vector register", i, vout[WIDTH - 1], vin[WIDTH - 1]); \
    }

ONE(one_sse, 16, "movdqu %[vin], %%xmm9", "movdqu %%xmm9, %[vout]", "xmm9", )
ONE(one_avx, 32, "vmovdqu %[vin], %%ymm9", "vmovdqu %%ymm9, %[vout]", "xmm9", __attribute__((target("avx"))))
ONE(one_avx512, 64, "vmovdqu64 %[vin], %%zmm25", "vmovdqu64 %%zmm25, %[vout]", "xmm25",
    __attribute__((target("avx512f"))))

static void one_state(long i) {
    unsigned mx_in = 0x7f80, mx_out = 0, mx_def = 0x1f80; /* round toward zero */
    unsigned short cw_in = 0x27f, cw_out = 0, cw_def = 0x37f; /* double precision */
    long rax = SYS_getppid, fl;
    asm volatile("ldmxcsr %[mxin]\n\t"
                 "fldcw %[cwin]\n\t"
                 "std\n\t"
                 "syscall\n\t"
                 "lea -128(%%rsp), %%rsp\n\t"
                 "pushfq\n\t"
                 "popq %[fl]\n\t"
                 "lea 128(%%rsp), %%rsp\n\t"
                 "cld\n\t"
                 "stmxcsr %[mxout]\n\t"
                 "fnstcw %[cwout]\n\t"
                 "ldmxcsr %[mxdef]\n\t"
                 "fldcw %[cwdef]"
                 : "+a"(rax), [fl] "=r"(fl), [mxout] "=m"(mx_out), [cwout] "=m"(cw_out)
                 : [mxin] "m"(mx_in), [cwin] "m"(cw_in), [mxdef] "m"(mx_def), [cwdef] "m"(cw_def)
                 : "rcx", "r11", "memory");
    if (rax != parent) report("rax (with DF set)", i, rax, parent);
    if (!(fl & 0x400)) report("DF after the syscall", i, fl, fl | 0x400);
    if (mx_out != mx_in) report("MXCSR", i, mx_out, mx_in);
    if (cw_out != cw_in) report("the x87 control word", i, cw_out, cw_in);
}

static void (*one)(long);

static void *worker(void *arg) {
    long base = (long)arg * ROUNDS;
    for (long i = 0; i < ROUNDS; i++) {
        one(base + i);
        one_state(base + i);
    }
    atomic_fetch_add(&done, 1);
    return NULL;
}

int main(void) {
    parent = getppid();
    __builtin_cpu_init();
    one = __builtin_cpu_supports("avx512f") ? one_avx512 : __builtin_cpu_supports("avx") ? one_avx : one_sse;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);

    pthread_t t[THREADS];
    for (long k = 0; k < THREADS; k++) pthread_create(&t[k], NULL, worker, (void *)k);
    while (atomic_load(&done) < THREADS)
        for (int k = 0; k < THREADS; k++) pthread_kill(t[k], SIGUSR1);
    for (int k = 0; k < THREADS; k++) pthread_join(t[k], NULL);
    long threaded = atomic_load(&signals_seen);

    pid_t child = fork();
    if (child == 0) {
        parent = getppid();
        atomic_store(&bad, 0);
        struct itimerval it = {{0, 50}, {0, 50}};
        setitimer(ITIMER_REAL, &it, NULL);
        for (long i = 0; i < ROUNDS; i++) {
            one(i);
            one_state(i);
        }
        struct itimerval off = {{0, 0}, {0, 0}};
        setitimer(ITIMER_REAL, &off, NULL);
        _exit(atomic_load(&bad) == 0 && atomic_load(&signals_seen) > threaded ? 0 : 1);
    }
    int st = 0;
    waitpid(child, &st, 0);
    int child_ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    printf("%s: %ld bad, %s signals during the threads, child %s\n",
           atomic_load(&bad) == 0 && threaded > 0 && child_ok ? "ok" : "FAILED", atomic_load(&bad),
           threaded > 0 ? "with" : "no", child_ok ? "ok" : "failed");
    return 0;
}
