/* vec_state: the widest vector state the CPU has (ZMM8, ZMM24 and opmask K5 with AVX-512;
 * YMM8 with AVX; XMM8 otherwise) survives, bit for bit, everything that saves and restores it
 * behind the program's back:
 *   - the first calls of lazily bound functions (glibc's resolver XSAVECs into a buffer it
 *     sizes from CPUID leaf 0xD) and a syscall, made from assembly with the registers live;
 *   - a signal handler that clobbers them (SIGUSR1 raised by a raw kill with them live): the
 *     frame's XSAVE image holds them at the offsets CPUID gives, and rt_sigreturn restores
 *     them; again on an alternate stack of exactly AT_MINSIGSTKSZ bytes; again in a thread;
 *   - a raw fork: parent and child both still hold them;
 *   - a raw clone of a thread: the new thread starts with them.
 * Prints one `ok` line per check (or what differed) and exits 0 if all held. The output is the
 * same on every CPU.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* ZMM8 (64 bytes), ZMM24 (64), K5 (8): the three pieces a mode uses. */
struct vs {
    uint8_t z8[64];
    uint8_t z24[64];
    uint64_t k5;
};

enum mode { SSE, AVX, AVX512 };
static enum mode mode;
static unsigned off_avx, off_k, off_zhi, off_z16; /* standard-form XSAVE offsets */

static void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) { __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]); }

static void pick_mode(void) {
    unsigned r[4];
    cpuid(1, 0, r);
    mode = SSE;
    if (!(r[2] & (1u << 27)) || !(r[2] & (1u << 28)))
        return;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    cpuid(0xd, 2, r);
    off_avx = r[1];
    if ((lo & 6) == 6)
        mode = AVX;
    cpuid(7, 0, r);
    if ((lo & 0xe6) == 0xe6 && (r[1] & (1u << 16))) {
        mode = AVX512;
        cpuid(0xd, 5, r);
        off_k = r[1];
        cpuid(0xd, 6, r);
        off_zhi = r[1];
        cpuid(0xd, 7, r);
        off_z16 = r[1];
    }
}

static void fill(struct vs *v, uint8_t seed) {
    for (int i = 0; i < 64; i++) {
        v->z8[i] = (uint8_t)(seed + 3 * i);
        v->z24[i] = (uint8_t)(seed ^ (7 * i + 1));
    }
    v->k5 = 0x0123456789abcdefull ^ seed;
}

/* Whether `got` matches `want` in the pieces the mode has. */
static int same(const struct vs *want, const struct vs *got) {
    switch (mode) {
    case AVX512:
        return !memcmp(want, got, sizeof *want);
    case AVX:
        return !memcmp(want->z8, got->z8, 32);
    default:
        return !memcmp(want->z8, got->z8, 16);
    }
}

/* Assembly around an action with the registers live: LOAD from %[in] before, SAVE to %[out]
 * after. Each mode has its own, since the clobbers name its registers. */
#define LOAD512 "vmovdqu64 (%[in]), %%zmm8\n\tvmovdqu64 64(%[in]), %%zmm24\n\tkmovq 128(%[in]), %%k5\n\t"
#define SAVE512 "vmovdqu64 %%zmm8, (%[out])\n\tvmovdqu64 %%zmm24, 64(%[out])\n\tkmovq %%k5, 128(%[out])\n\t"
#define LOAD256 "vmovdqu (%[in]), %%ymm8\n\t"
#define SAVE256 "vmovdqu %%ymm8, (%[out])\n\t"
#define LOAD128 "movdqu (%[in]), %%xmm8\n\t"
#define SAVE128 "movdqu %%xmm8, (%[out])\n\t"

/* A syscall (nr, a1, a2, a3) with the registers live. */
#define SYSCALL_FN(name, LOAD, SAVE, ...)                                                                   \
    static long name(long nr, long a1, long a2, long a3, const struct vs *in, struct vs *out) {             \
        register long rdi __asm__("rdi") = a1;                                                              \
        register long rsi __asm__("rsi") = a2;                                                              \
        register long rdx __asm__("rdx") = a3;                                                              \
        long ret = nr;                                                                                      \
        __asm__ volatile(LOAD "syscall\n\t" SAVE                                                            \
                         : "+a"(ret)                                                                        \
                         : [in] "r"(in), [out] "r"(out), "r"(rdi), "r"(rsi), "r"(rdx)                       \
                         : "rcx", "r11", "memory", "xmm8", ##__VA_ARGS__);                                  \
        return ret;                                                                                         \
    }
__attribute__((target("avx512f"))) SYSCALL_FN(sys512, LOAD512, SAVE512, "xmm24", "k5")
__attribute__((target("avx"))) SYSCALL_FN(sys256, LOAD256, SAVE256)
SYSCALL_FN(sys128, LOAD128, SAVE128)

static long vsys(long nr, long a1, long a2, long a3, const struct vs *in, struct vs *out) {
    switch (mode) {
    case AVX512:
        return sys512(nr, a1, a2, a3, in, out);
    case AVX:
        return sys256(nr, a1, a2, a3, in, out);
    default:
        return sys128(nr, a1, a2, a3, in, out);
    }
}

/* A first call of a lazily bound libc function through its PLT entry, with the registers
 * live; the stack is realigned below the red zone around it. */
#define PLT_FN(name, fn, LOAD, SAVE, ...)                                                                   \
    static void name(const struct vs *in, struct vs *out) {                                                 \
        __asm__ volatile("mov %%rsp, %%rbx\n\tsub $128, %%rsp\n\tand $-16, %%rsp\n\t" LOAD                  \
                         "mov $-5, %%rdi\n\tcall " fn "@PLT\n\t" SAVE "mov %%rbx, %%rsp\n\t"                \
                         :                                                                                  \
                         : [in] "r"(in), [out] "r"(out)                                                     \
                         : "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory",    \
                           "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",  \
                           "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", ##__VA_ARGS__);            \
    }
#define PLT_FNS(fn)                                                                                         \
    __attribute__((target("avx512f"))) PLT_FN(fn##512, #fn, LOAD512, SAVE512, "xmm24", "k5")               \
    __attribute__((target("avx"))) PLT_FN(fn##256, #fn, LOAD256, SAVE256)                                  \
    PLT_FN(fn##128, #fn, LOAD128, SAVE128)                                                                  \
    static void call_##fn(const struct vs *in, struct vs *out) {                                            \
        if (mode == AVX512)                                                                                 \
            fn##512(in, out);                                                                               \
        else if (mode == AVX)                                                                               \
            fn##256(in, out);                                                                               \
        else                                                                                                \
            fn##128(in, out);                                                                               \
    }
PLT_FNS(labs)
PLT_FNS(llabs)
PLT_FNS(getppid)

static int failures;

static void report(const char *what, int ok) {
    printf("%s %s\n", ok ? "ok" : "FAIL", what);
    failures += !ok;
}

static void check_lazy(void) {
    struct vs in, out;
    int ok = 1;
    void (*calls[])(const struct vs *, struct vs *) = {call_labs, call_llabs, call_getppid};
    for (int i = 0; i < 3; i++) {
        fill(&in, (uint8_t)(0x10 + i));
        memset(&out, 0, sizeof out);
        calls[i](&in, &out);
        ok &= same(&in, &out);
    }
    report("lazy binding and a syscall keep the vector registers", ok);
}

/* What the handler saw, per delivery. */
static volatile int frame_ok;
static const struct vs *expect;

__attribute__((target("avx512f"))) static void clobber512(void) {
    __asm__ volatile("vpternlogd $0xff, %%zmm8, %%zmm8, %%zmm8\n\tvpxord %%zmm24, %%zmm24, %%zmm24\n\t"
                     "kxnorq %%k0, %%k0, %%k5" ::: "xmm8", "xmm24", "k5");
}
__attribute__((target("avx"))) static void clobber256(void) {
    __asm__ volatile("vpcmpeqd %%ymm8, %%ymm8, %%ymm8" ::: "xmm8");
}
static void clobber128(void) { __asm__ volatile("pcmpeqd %%xmm8, %%xmm8" ::: "xmm8"); }

static void handler(int sig, siginfo_t *info, void *ucv) {
    (void)sig;
    (void)info;
    ucontext_t *uc = ucv;
    const uint8_t *fp = (const uint8_t *)uc->uc_mcontext.fpregs;
    int ok = fp != 0 && !memcmp(fp + 160 + 8 * 16, expect->z8, 16);
    if (mode != SSE) {
        uint32_t magic1;
        uint64_t xfeatures;
        memcpy(&magic1, fp + 464, 4);
        memcpy(&xfeatures, fp + 464 + 8, 8);
        ok &= magic1 == 0x46505853u && (xfeatures & 7) == 7;
        ok &= !memcmp(fp + off_avx + 8 * 16, expect->z8 + 16, 16);
        if (mode == AVX512) {
            uint64_t k5;
            memcpy(&k5, fp + off_k + 5 * 8, 8);
            ok &= (xfeatures & 0xe0) == 0xe0 && k5 == expect->k5;
            ok &= !memcmp(fp + off_zhi + 8 * 32, expect->z8 + 32, 32);
            ok &= !memcmp(fp + off_z16 + 8 * 64, expect->z24, 64);
        }
    }
    frame_ok = ok;
    if (mode == AVX512)
        clobber512();
    else if (mode == AVX)
        clobber256();
    else
        clobber128();
}

static void check_signal(const char *what, int onstack, uint8_t seed) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | (onstack ? SA_ONSTACK : 0);
    sigaction(SIGUSR1, &sa, 0);
    char *stack = 0;
    size_t size = getauxval(AT_MINSIGSTKSZ), len = 0;
    if (onstack) {
        if (size < (size_t)MINSIGSTKSZ)
            size = MINSIGSTKSZ;
        /* A guard page right below the stack: a frame that needs more than AT_MINSIGSTKSZ
         * faults instead of spilling into memory that happens to be there. */
        len = 4096 + ((size + 4095) & ~(size_t)4095);
        stack = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        mprotect(stack, 4096, PROT_NONE);
        stack_t ss = {.ss_sp = stack + 4096, .ss_size = size, .ss_flags = 0};
        if (sigaltstack(&ss, 0) != 0) {
            report("sigaltstack", 0);
            return;
        }
    }
    struct vs in, out;
    fill(&in, seed);
    memset(&out, 0, sizeof out);
    expect = &in;
    frame_ok = 0;
    vsys(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR1, &in, &out);
    report(what, frame_ok && same(&in, &out));
    if (onstack) {
        stack_t off = {.ss_flags = SS_DISABLE};
        sigaltstack(&off, 0);
        munmap(stack, len);
    }
}

static void *signal_thread(void *arg) {
    (void)arg;
    check_signal("a signal in a thread keeps the vector registers", 0, 0x60);
    return 0;
}

static void check_fork(void) {
    struct vs in, out;
    fill(&in, 0x70);
    memset(&out, 0, sizeof out);
    long pid = vsys(SYS_fork, 0, 0, 0, &in, &out);
    if (pid == 0)
        _exit(same(&in, &out) ? 0 : 1);
    int status = -1;
    waitpid((pid_t)pid, &status, 0);
    report("fork: the parent keeps the vector registers", pid > 0 && same(&in, &out));
    report("fork: the child starts with them", WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A raw thread: clone with the registers live; the child saves them to `child` and leaves
 * with exit, never touching its stack. */
static volatile int child_done;

#define CLONE_FN(name, LOAD, SAVE, ...)                                                                     \
    static long name(const struct vs *in, struct vs *out, struct vs *child, void *stack_top) {              \
        register long rdi __asm__("rdi") =                                                                  \
            CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;               \
        register void *rsi __asm__("rsi") = stack_top;                                                      \
        register long rdx __asm__("rdx") = 0;                                                               \
        register long r10 __asm__("r10") = 0;                                                               \
        register long r8 __asm__("r8") = 0;                                                                 \
        register struct vs *r12 __asm__("r12") = child;                                                     \
        register volatile int *r13 __asm__("r13") = &child_done;                                            \
        long ret = SYS_clone;                                                                               \
        __asm__ volatile(LOAD "syscall\n\ttest %%rax, %%rax\n\tjnz 1f\n\t"                                  \
                              "mov %%r12, %[out]\n\t" SAVE "movl $1, (%%r13)\n\t"                           \
                              "mov $60, %%eax\n\txor %%edi, %%edi\n\tsyscall\n\t"                           \
                              "1:\n\t"                                                                      \
                         : "+a"(ret), [out] "+r"(out)                                                       \
                         : [in] "r"(in), "r"(rdi), "r"(rsi), "r"(rdx), "r"(r10), "r"(r8), "r"(r12),         \
                           "r"(r13)                                                                         \
                         : "rcx", "r11", "memory", "xmm8", ##__VA_ARGS__);                                  \
        return ret;                                                                                         \
    }
__attribute__((target("avx512f"))) CLONE_FN(clone512, LOAD512, SAVE512, "xmm24", "k5")
__attribute__((target("avx"))) CLONE_FN(clone256, LOAD256, SAVE256)
CLONE_FN(clone128, LOAD128, SAVE128)

static void check_clone(void) {
    struct vs in, parent_out, child;
    fill(&in, 0x80);
    memset(&child, 0, sizeof child);
    size_t size = 64 * 1024;
    char *stack = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    long tid;
    /* The parent's registers are checked against `in` elsewhere; here only the child's. */
    (void)parent_out;
    if (mode == AVX512)
        tid = clone512(&in, &parent_out, &child, stack + size);
    else if (mode == AVX)
        tid = clone256(&in, &parent_out, &child, stack + size);
    else
        tid = clone128(&in, &parent_out, &child, stack + size);
    while (tid > 0 && !child_done)
        sched_yield();
    report("a new thread starts with the vector registers", tid > 0 && same(&in, &child));
}

int main(void) {
    pick_mode();
    check_lazy();
    check_signal("a signal keeps the vector registers", 0, 0x40);
    check_signal("a signal on an AT_MINSIGSTKSZ alternate stack keeps them", 1, 0x50);
    pthread_t t;
    pthread_create(&t, 0, signal_thread, 0);
    pthread_join(t, 0);
    check_fork();
    check_clone();
    return failures != 0;
}
