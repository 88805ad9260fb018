/*
 * sig_ucontext.c - signal frames: siginfo, ucontext registers and FPU/SSE state,
 * masks and flags. One line per check, booleans only:
 *   ud2 -> SIGILL: ILL_ILLOPN, si_addr and gregs[REG_RIP] point at the 0f 0b bytes;
 *     the handler advances RIP by 2 and execution continues after it.
 *   int3 -> SIGTRAP: SI_KERNEL, RIP just past the 0xcc; returning continues.
 *   idiv by zero -> SIGFPE: FPE_INTDIV; the handler skips the 3-byte idiv and sets
 *     RAX in the ucontext, which the interrupted code then sees.
 *   kill(self, SIGUSR1) from inline asm: delivered on return from the syscall;
 *     the ucontext holds RAX 0 (the syscall's result) and R12 as set before; the
 *     handler changes R12 and XMM9 (through uc_mcontext.fpregs) and both changes
 *     are visible after the handler returns; XMM8 read from fpregs is the value
 *     set before; the handler clobbers xmm0-15 and MXCSR, and the interrupted
 *     code finds its other xmm registers and MXCSR intact.
 *   si_code SI_USER with si_pid == getpid for kill(), SI_TKILL for raise().
 *   sa_mask: SIGUSR2 raised inside a SIGUSR1 handler whose sa_mask holds it runs
 *     after that handler returns ("usr1-in usr1-out usr2").
 *   SA_NODEFER: a handler raising its own signal nests ("in1 in2 out2 out1");
 *     without it the second delivery waits ("in1 out1 in2 out2").
 *   SA_RESETHAND: after one delivery the disposition is SIG_DFL.
 *   SA_RESTART: a read() on an empty pipe interrupted by SIGALRM (whose handler
 *     writes one byte into the pipe) restarts and returns 1; without SA_RESTART
 *     it fails with EINTR.
 * Exit status 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>

static const char *yes(int b)
{
    return b ? "yes" : "no";
}

static void on(int sig, void (*h)(int, siginfo_t *, void *), int flags, int masked)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    if (masked)
        sigaddset(&sa.sa_mask, masked);
    sigaction(sig, &sa, NULL);
}

/* ---- synchronous faults ---- */
static volatile int ill_ok, trap_ok, fpe_ok;

static void on_ill(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    unsigned char *rip = (unsigned char *)uc->uc_mcontext.gregs[REG_RIP];
    ill_ok = sig == SIGILL && si->si_code == ILL_ILLOPN && si->si_addr == (void *)rip && rip[0] == 0x0f &&
             rip[1] == 0x0b;
    uc->uc_mcontext.gregs[REG_RIP] += 2;
}

static void on_trap(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    unsigned char *rip = (unsigned char *)uc->uc_mcontext.gregs[REG_RIP];
    trap_ok = sig == SIGTRAP && si->si_code == SI_KERNEL && rip[-1] == 0xcc;
}

static void on_fpe(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    unsigned char *rip = (unsigned char *)uc->uc_mcontext.gregs[REG_RIP];
    /* idiv %rcx = 48 f7 f9 */
    fpe_ok = sig == SIGFPE && si->si_code == FPE_INTDIV && rip[0] == 0x48 && rip[1] == 0xf7 && rip[2] == 0xf9;
    uc->uc_mcontext.gregs[REG_RIP] += 3;
    uc->uc_mcontext.gregs[REG_RAX] = 1234;
}

static void faults(void)
{
    on(SIGILL, on_ill, 0, 0);
    on(SIGTRAP, on_trap, 0, 0);
    on(SIGFPE, on_fpe, 0, 0);
    volatile int after = 0;
    __asm__ volatile("ud2" ::: "memory");
    after = 1;
    printf("ud2 -> SIGILL: handler saw ILL_ILLOPN at the ud2 bytes %s, continued after it %s\n", yes(ill_ok),
           yes(after));
    after = 0;
    __asm__ volatile("int3" ::: "memory");
    after = 1;
    printf("int3 -> SIGTRAP: SI_KERNEL with RIP past the 0xcc %s, continued %s\n", yes(trap_ok), yes(after));
    long rax = 77, rdx = 0, divisor = 0;
    __asm__ volatile(".byte 0x48, 0xf7, 0xf9" /* idiv %rcx */ : "+a"(rax), "+d"(rdx) : "c"(divisor) : "memory");
    printf("idiv by zero -> SIGFPE: FPE_INTDIV at the idiv %s, RAX set by the handler %s\n", yes(fpe_ok),
           yes(rax == 1234));
}

/* ---- ucontext registers and FPU state at a syscall return ---- */
static volatile int usr1_rax0, usr1_r12, usr1_xmm8, usr1_code_user, usr1_pid;

static void on_usr1_regs(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    ucontext_t *uc = ucv;
    usr1_rax0 = uc->uc_mcontext.gregs[REG_RAX] == 0;
    usr1_r12 = uc->uc_mcontext.gregs[REG_R12] == 0x1111;
    usr1_code_user = si->si_code == SI_USER;
    usr1_pid = si->si_pid == getpid();
    uc->uc_mcontext.gregs[REG_R12] = 0x2222;
    /* _xmm[i].element[0..3] are 32-bit lanes. */
    usr1_xmm8 = uc->uc_mcontext.fpregs->_xmm[8].element[0] == 0x88888888u;
    uc->uc_mcontext.fpregs->_xmm[9].element[0] = 0x99990000u;
    /* Clobber every xmm register and MXCSR; the kernel must restore them from the frame. */
    unsigned int mx = 0x1f80 | (3u << 13); /* round toward zero */
    __asm__ volatile("pcmpeqd %%xmm0, %%xmm0\n\t"
                     "movdqa %%xmm0, %%xmm1\n\tmovdqa %%xmm0, %%xmm2\n\tmovdqa %%xmm0, %%xmm3\n\t"
                     "movdqa %%xmm0, %%xmm4\n\tmovdqa %%xmm0, %%xmm5\n\tmovdqa %%xmm0, %%xmm6\n\t"
                     "movdqa %%xmm0, %%xmm7\n\tmovdqa %%xmm0, %%xmm8\n\tmovdqa %%xmm0, %%xmm9\n\t"
                     "movdqa %%xmm0, %%xmm10\n\tmovdqa %%xmm0, %%xmm11\n\tmovdqa %%xmm0, %%xmm12\n\t"
                     "movdqa %%xmm0, %%xmm13\n\tmovdqa %%xmm0, %%xmm14\n\tmovdqa %%xmm0, %%xmm15\n\t"
                     "ldmxcsr %0" ::"m"(mx)
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
                       "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

static void registers(void)
{
    on(SIGUSR1, on_usr1_regs, 0, 0);
    unsigned int mx_set = 0x1f80 | (1u << 13), mx_after = 0; /* round down */
    uint32_t x8 = 0x88888888u, x9 = 0x99999999u, x15 = 0xf1f1f1f1u, r8 = 0, r9 = 0, r15 = 0;
    long r12 = 0;
    __asm__ volatile("ldmxcsr %[mxs]\n\t"
                     "movd %[x8], %%xmm8\n\t"
                     "movd %[x9], %%xmm9\n\t"
                     "movd %[x15], %%xmm15\n\t"
                     "mov $0x1111, %%r12\n\t"
                     "syscall\n\t"
                     "mov %%r12, %[r12]\n\t"
                     "movd %%xmm8, %[r8]\n\t"
                     "movd %%xmm9, %[r9]\n\t"
                     "movd %%xmm15, %[r15]\n\t"
                     "stmxcsr %[mxa]"
                     : [r12] "=m"(r12), [r8] "=m"(r8), [r9] "=m"(r9), [r15] "=m"(r15), [mxa] "=m"(mx_after)
                     : "a"((long)SYS_kill), "D"((long)getpid()), "S"((long)SIGUSR1), [mxs] "m"(mx_set),
                       [x8] "r"(x8), [x9] "r"(x9), [x15] "r"(x15)
                     : "rcx", "r11", "r12", "xmm8", "xmm9", "xmm15", "memory");
    unsigned int mx_default = 0x1f80;
    __asm__ volatile("ldmxcsr %0" ::"m"(mx_default));
    printf("kill from asm -> SIGUSR1: ucontext RAX 0 %s, R12 as set %s, SI_USER %s, si_pid self %s\n",
           yes(usr1_rax0), yes(usr1_r12), yes(usr1_code_user), yes(usr1_pid));
    printf("handler's R12 change seen %s, XMM8 in fpregs %s, XMM9 change seen %s\n", yes(r12 == 0x2222),
           yes(usr1_xmm8), yes(r9 == 0x99990000u));
    printf("xmm8/xmm15 survive the handler's clobbering %s, MXCSR survives %s\n", yes(r8 == x8 && r15 == x15),
           yes((mx_after & 0xffc0) == (mx_set & 0xffc0)));
}

/* ---- si_code of raise ---- */
static volatile int tkill_ok;
static void on_usr1_tkill(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    tkill_ok = si->si_code == SI_TKILL && si->si_pid == getpid();
}

/* ---- masks and flags ---- */
static char order[128];
static void note(const char *s)
{
    if (order[0])
        strcat(order, " ");
    strcat(order, s);
}

static void on_usr2_plain(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    note("usr2");
}

static void on_usr1_masking(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    note("usr1-in");
    raise(SIGUSR2);
    note("usr1-out");
}

static volatile int nest;
static void on_usr2_nesting(int sig, siginfo_t *si, void *uc)
{
    (void)si, (void)uc;
    int me = ++nest;
    note(me == 1 ? "in1" : "in2");
    if (me == 1)
        raise(sig);
    note(me == 1 ? "out1" : "out2");
}

static volatile int reset_ran;
static void on_reset(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    reset_ran++;
}

static void masks(void)
{
    on(SIGUSR1, on_usr1_tkill, 0, 0);
    raise(SIGUSR1);
    printf("raise -> SI_TKILL with si_pid self %s\n", yes(tkill_ok));

    order[0] = 0;
    on(SIGUSR2, on_usr2_plain, 0, 0);
    on(SIGUSR1, on_usr1_masking, 0, SIGUSR2);
    raise(SIGUSR1);
    printf("sa_mask holds SIGUSR2 during the SIGUSR1 handler: %s\n", order);

    order[0] = 0;
    nest = 0;
    on(SIGUSR2, on_usr2_nesting, SA_NODEFER, 0);
    raise(SIGUSR2);
    printf("SA_NODEFER: %s\n", order);
    order[0] = 0;
    nest = 0;
    on(SIGUSR2, on_usr2_nesting, 0, 0);
    raise(SIGUSR2);
    printf("without SA_NODEFER: %s\n", order);

    on(SIGUSR2, on_reset, SA_RESETHAND, 0);
    raise(SIGUSR2);
    struct sigaction now;
    sigaction(SIGUSR2, NULL, &now);
    printf("SA_RESETHAND: ran %d, disposition now SIG_DFL %s\n", (int)reset_ran, yes(now.sa_handler == SIG_DFL));
}

/* ---- SA_RESTART ---- */
static int pfd[2];
static void on_alrm(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    write(pfd[1], "z", 1);
}

static void restart(int flags, const char *label)
{
    if (pipe(pfd) != 0)
        return;
    on(SIGALRM, on_alrm, flags, 0);
    struct itimerval once = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &once, NULL);
    char c;
    errno = 0;
    ssize_t r = read(pfd[0], &c, 1);
    printf("%s: read returned %zd%s\n", label, r, r < 0 ? (errno == EINTR ? " EINTR" : " other error") : "");
    close(pfd[0]);
    close(pfd[1]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    faults();
    registers();
    masks();
    restart(SA_RESTART, "SA_RESTART");
    restart(0, "without SA_RESTART");
    return 0;
}
