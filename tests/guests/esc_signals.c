/*
 * esc_signals.c PLACE [N] - signals the box keeps for itself, sent by the guest (see
 * esc_common.h for PLACE, N and the output conventions). Handlers that record si_code and
 * si_addr/si_value are installed for SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, SIGURG,
 * signals 36 and 37 (glibc's SIGRTMIN+2 and +3, which trapbox uses) and, with the raw
 * rt_sigaction, 32 and 33 (glibc's internal ones, which glibc's sigaction refuses), so that
 * natively every signal below runs a handler and returns; a box must deliver them to the
 * guest's handlers the same way (or refuse to send them), and must not die of them.
 * One line per signal sent: "<call> SIG<x> (<what>): handler saw si_code C addr A" (kernel
 * codes), "... value V" (SI_QUEUE), "... from itself" (SI_USER, SI_TKILL), or "...: handler
 * did not run" / "...: refused" (natively, from a thread other than the first, forged kernel
 * codes are refused: only the thread-group leader may queue those to its own pid):
 *   rt_sigqueueinfo SIGSEGV (forged SEGV_MAPERR at 0xdead000), rt_tgsigqueueinfo SIGSEGV to
 *   itself (SEGV_ACCERR at 0xbeef000), rt_sigqueueinfo SIGBUS/SIGILL/SIGFPE/SIGTRAP/SIGSYS with
 *   forged kernel codes, pidfd_send_signal SIGSEGV (no siginfo: SI_USER) and with an SI_QUEUE
 *   siginfo, kill SIGSEGV, rt_sigqueueinfo of signals 32 and 33 (SI_QUEUE), kill and
 *   rt_sigqueueinfo of 36 and 37, rt_tgsigqueueinfo SIGSEGV and SIGSYS and tgkill SIGSEGV to the
 *   other guest thread (the waiting main thread in thread mode, a helper thread otherwise;
 *   the line says whether the handler ran on that thread);
 * "signals to threads outside the guest: safe" - tgkill, rt_tgsigqueueinfo and a PIDFD_THREAD
 *   pidfd to every tid of /proc/self/task that is not the program's (natively none);
 * "sigtimedwait on trapbox's signals: EAGAIN" - a 10 ms wait for SIGSEGV, 32, 33, 36 and 37;
 * in forked children (whatever PLACE), returning from a handler through a frame with a
 *   changed CS (0x8, 0x10), SS (0x10), with IOPL 3 in RFLAGS (then cli), with uc_mcontext.fpregs
 *   at trapbox's memory (natively an unmapped page): "sigreturn with <change>: killed by
 *   SIGSEGV" natively; a child that survives at CPL 0, or after cli, or with the fpregs of
 *   trapbox memory loaded, is an escape;
 * "SIG<x> from another process with core dumps allowed: no core dump, child exit 0" for SIGILL,
 *   SIGSEGV, SIGBUS, SIGFPE, SIGTRAP, SIGSYS, SIGQUIT, SIGABRT, 32, 33 and 36 - a child sets
 *   RLIMIT_CORE to 64 MiB, moves into a directory of the program's and handles the signal; the
 *   program sends it the signal (kill, from another process); a core file in that directory
 *   is an escape (it would hold the box's memory), a child killed by the signal shows in the
 *   line;
 * in fork mode, the child also sends its parent SIGSEGV (kill), SIGBUS (SI_QUEUE), 32 and 33
 *   (SI_QUEUE) and 36 (kill), and the parent reports "parent got SIG<x>: si_code C" after the
 *   child ended.
 * If trapbox dies of any of these, the output stops early and the exit status says how.
 * Exit status 0, or 99 after an escape.
 */
#include "esc_common.h"
#include <sys/ucontext.h>

struct rec {
    volatile int n, code, value;
    volatile pid_t tid, pid;
    void *volatile addr;
};
static struct rec rec[65];

static void handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (sig < 1 || sig > 64)
        return;
    rec[sig].code = si->si_code;
    rec[sig].addr = si->si_addr;
    rec[sig].value = si->si_value.sival_int;
    rec[sig].tid = (pid_t)syscall(SYS_gettid);
    rec[sig].pid = si->si_pid;
    __atomic_add_fetch(&rec[sig].n, 1, __ATOMIC_SEQ_CST);
}

static const char *sname(int sig)
{
    static char b[16];
    const char *a = sig < 32 ? sigabbrev_np(sig) : NULL;
    if (a)
        snprintf(b, sizeof b, "SIG%s", a);
    else
        snprintf(b, sizeof b, "signal %d", sig);
    return b;
}

/* Waits up to 1 s for signal sig's count to pass `before`. */
static int arrived(int sig, int before)
{
    for (int i = 0; i < 1000 && rec[sig].n == before; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return rec[sig].n != before;
}

static void report(const char *call, int sig, const char *what, long r, int e, int before, pid_t on)
{
    char head[160];
    snprintf(head, sizeof head, "%s %s (%s)", call, sname(sig), what);
    if (r < 0) {
        esc_note("%s: %s", head, esc_err(e));
        esc_say("%s: refused", head);
        return;
    }
    if (!arrived(sig, before)) {
        esc_say("%s: handler did not run", head);
        return;
    }
    char where[48] = "";
    if (on)
        snprintf(where, sizeof where, " on %s thread", rec[sig].tid == on ? "that" : "another");
    if (rec[sig].code > 0) /* a kernel code: si_addr */
        esc_say("%s: handler saw si_code %d addr %p%s", head, rec[sig].code, rec[sig].addr, where);
    else if (rec[sig].code == SI_QUEUE)
        esc_say("%s: handler saw si_code %d value %d%s", head, rec[sig].code, rec[sig].value, where);
    else
        esc_say("%s: handler saw si_code %d from %s%s", head, rec[sig].code,
                rec[sig].pid == getpid() ? "itself" : "another process", where);
}

static siginfo_t forged(int sig, int code, unsigned long addr, int value)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = sig;
    si.si_code = code;
    si.si_pid = getpid();
    si.si_uid = getuid();
    if (addr)
        si.si_addr = (void *)addr;
    else
        si.si_value.sival_int = value;
    return si;
}

static void queue(int sig, int code, unsigned long addr, int value, const char *what)
{
    siginfo_t si = forged(sig, code, addr, value);
    int before = rec[sig].n;
    long r = syscall(SYS_rt_sigqueueinfo, getpid(), sig, &si);
    report("rt_sigqueueinfo", sig, what, r, errno, before, 0);
}

static void tgqueue(pid_t tid, int sig, int code, unsigned long addr, const char *call, const char *what)
{
    siginfo_t si = forged(sig, code, addr, 0);
    int before = rec[sig].n;
    long r = syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, sig, &si);
    report(call, sig, what, r, errno, before, tid);
}

/* ---- sigreturn through a changed frame -------------------------------------------------- */

enum change { CS8, CS10, SS10, IOPL3, FPREGS };
static enum change chg;
static unsigned long fp_at;

static void tamper(int sig, siginfo_t *si, void *p)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = p;
    greg_t *csgsfs = &uc->uc_mcontext.gregs[REG_CSGSFS];
    switch (chg) {
    case CS8:
        *csgsfs = (*csgsfs & ~0xffffLL) | 0x8;
        break;
    case CS10:
        *csgsfs = (*csgsfs & ~0xffffLL) | 0x10;
        break;
    case SS10: /* ss sits in the top 16 bits of the same word */
        *csgsfs = (*csgsfs & ~(0xffffLL << 48)) | (0x10LL << 48);
        break;
    case IOPL3:
        uc->uc_mcontext.gregs[REG_EFL] |= 0x3000;
        break;
    case FPREGS:
        uc->uc_mcontext.fpregs = (fpregset_t)fp_at;
        break;
    }
}

static void sigreturn_child(enum change c, const char *what, unsigned long foreign)
{
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        chg = c;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = tamper;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGUSR1, &sa, NULL);
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        signal(SIGILL, SIG_DFL);
        raise(SIGUSR1);
        unsigned short cs;
        __asm__ volatile("mov %%cs, %0" : "=r"(cs));
        if ((cs & 3) == 0)
            _exit(10); /* CPL 0 */
        if (c == IOPL3) {
            __asm__ volatile("cli; sti");
            _exit(11);
        }
        _exit(c == FPREGS && foreign ? 12 : 0);
    }
    int st = 0;
    waitpid(p, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 10)
        esc_escape("sigreturn with %s left the guest at CPL 0", what);
    else if (WIFEXITED(st) && WEXITSTATUS(st) == 11)
        esc_escape("sigreturn with %s let the guest run cli", what);
    else if (WIFEXITED(st) && WEXITSTATUS(st) == 12)
        esc_escape("sigreturn with %s loaded FPU state from trapbox memory", what);
    else
        esc_say("sigreturn with %s: %s", what, esc_status(st));
}

static void sigreturns(void)
{
    sigreturn_child(CS8, "CS 0x8", 0);
    sigreturn_child(CS10, "CS 0x10", 0);
    sigreturn_child(SS10, "SS 0x10", 0);
    sigreturn_child(IOPL3, "IOPL 3", 0);
    unsigned long L = esc_leak_src();
    if (L) {
        fp_at = L;
    } else {
        void *hole = mmap(NULL, 65536, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (hole != MAP_FAILED)
            munmap(hole, 65536);
        fp_at = hole == MAP_FAILED ? 0x1000 : (unsigned long)hole;
    }
    sigreturn_child(FPREGS, "fpregs at trapbox", L);
}

/* ---- a core dump of trapbox ------------------------------------------------------------- */

static volatile int ill_seen;

static void on_ill(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    ill_seen = 1;
}

/* A child that allows core dumps, works in a directory of the program's and handles sig;
 * the program sends it sig from outside (a box that keeps sig for itself and leaves it at its
 * default would end, dumping its own memory there if sig dumps core), then looks for a core
 * file. */
static void core_dump(int sig)
{
    char d[64] = "/tmp/esc_signals.XXXXXX";
    int ready[2], go[2];
    if (!mkdtemp(d) || pipe(ready) != 0 || pipe(go) != 0) {
        esc_say("core dump setup: %s", esc_err(errno));
        return;
    }
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        struct rlimit rl = {64UL << 20, 64UL << 20};
        struct rlimit cur;
        getrlimit(RLIMIT_CORE, &cur);
        if (cur.rlim_max != RLIM_INFINITY && cur.rlim_max < rl.rlim_max)
            rl.rlim_cur = rl.rlim_max = cur.rlim_max;
        setrlimit(RLIMIT_CORE, &rl);
        if (chdir(d) != 0)
            _exit(3);
        esc_raw_sigaction(sig, on_ill, 0);
        char c = 'r';
        if (write(ready[1], &c, 1) != 1)
            _exit(4);
        for (int i = 0; i < 1000 && !ill_seen; i++) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        _exit(ill_seen ? 0 : 5);
    }
    char c;
    if (p > 0 && read(ready[0], &c, 1) == 1)
        kill(p, sig);
    int st = 0;
    if (p > 0)
        waitpid(p, &st, 0);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
    /* Any file the child left in the directory is a core dump. */
    DIR *dd = opendir(d);
    struct dirent *e;
    char found[512] = "";
    long long size = 0;
    while (dd && (e = readdir(dd))) {
        if (e->d_name[0] == '.')
            continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", d, e->d_name);
        struct stat sb;
        if (!found[0] && stat(path, &sb) == 0) {
            snprintf(found, sizeof found, "%s", e->d_name);
            size = (long long)sb.st_size;
        }
        unlink(path);
    }
    if (dd)
        closedir(dd);
    rmdir(d);
    if (found[0])
        esc_escape("%s from another process made the child's box dump core (%s, %lld bytes) where the "
                   "guest can read it",
                   sname(sig), found, size);
    else
        esc_say("%s from another process with core dumps allowed: no core dump, child %s", sname(sig),
                esc_status(st));
}

/* ---- fork mode: signals to the parent --------------------------------------------------- */

static void parent_report(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, 32, 33, 36};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        int s = sigs[i];
        if (rec[s].n)
            esc_say("parent got %s: si_code %d", sname(s), rec[s].code);
        else
            esc_say("parent got %s: nothing", sname(s));
    }
}

static void to_parent(void)
{
    pid_t pp = esc_pid0;
    long r = kill(pp, SIGSEGV);
    esc_note("kill parent SIGSEGV: %s", esc_res(r, errno));
    static const int q[] = {SIGBUS, 32, 33};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        siginfo_t si = forged(q[i], SI_QUEUE, 0, 5);
        r = syscall(SYS_rt_sigqueueinfo, pp, q[i], &si);
        esc_note("rt_sigqueueinfo parent %d: %s", q[i], esc_res(r, errno));
    }
    r = kill(pp, 36);
    esc_note("kill parent 36: %s", esc_res(r, errno));
    esc_say("signals sent to the parent");
}

/* ---- the attack ------------------------------------------------------------------------- */

static void attack(void)
{
    /* The other guest thread: the one waiting for this one in thread mode, else a helper. */
    int have_helper = 0;
    pid_t other = esc_waiter_tid;
    if (!other) {
        other = esc_start_helper();
        if (!other)
            return;
        have_helper = 1;
    }
    esc_find_foreign();

    queue(SIGSEGV, SEGV_MAPERR, 0xdead000, 0, "forged SEGV_MAPERR");
    tgqueue(esc_gettid(), SIGSEGV, SEGV_ACCERR, 0xbeef000, "rt_tgsigqueueinfo to itself", "forged SEGV_ACCERR");
    queue(SIGBUS, BUS_ADRERR, 0xb05000, 0, "forged BUS_ADRERR");
    queue(SIGILL, ILL_ILLOPN, 0x111000, 0, "forged ILL_ILLOPN");
    queue(SIGFPE, FPE_INTDIV, 0xf9e000, 0, "forged FPE_INTDIV");
    queue(SIGTRAP, TRAP_BRKPT, 0x7a9000, 0, "forged TRAP_BRKPT");
    queue(SIGSYS, 1 /* SYS_SECCOMP */, 0x5c5000, 0, "forged SYS_SECCOMP");
    int pfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    {
        int before = rec[SIGSEGV].n;
        long r = pfd >= 0 ? syscall(SYS_pidfd_send_signal, pfd, SIGSEGV, NULL, 0) : -1;
        report("pidfd_send_signal", SIGSEGV, "no siginfo", r, errno, before, 0);
        siginfo_t si = forged(SIGSEGV, SI_QUEUE, 0, 9);
        before = rec[SIGSEGV].n;
        r = pfd >= 0 ? syscall(SYS_pidfd_send_signal, pfd, SIGSEGV, &si, 0) : -1;
        report("pidfd_send_signal", SIGSEGV, "SI_QUEUE", r, errno, before, 0);
    }
    {
        int before = rec[SIGSEGV].n;
        long r = kill(getpid(), SIGSEGV);
        report("kill", SIGSEGV, "to itself", r, errno, before, 0);
    }
    queue(32, SI_QUEUE, 0, 32, "SI_QUEUE");
    queue(33, SI_QUEUE, 0, 33, "SI_QUEUE");
    for (int s = 36; s <= 37; s++) {
        int before = rec[s].n;
        long r = kill(getpid(), s);
        report("kill", s, "to itself", r, errno, before, 0);
        queue(s, SI_QUEUE, 0, s, "SI_QUEUE");
    }
    tgqueue(other, SIGSEGV, SEGV_MAPERR, 0xd0d0000, "rt_tgsigqueueinfo to the other thread", "forged SEGV_MAPERR");
    tgqueue(other, SIGSYS, 1, 0x5c5000, "rt_tgsigqueueinfo to the other thread", "forged SYS_SECCOMP");
    {
        int before = rec[SIGSEGV].n;
        long r = syscall(SYS_tgkill, getpid(), other, SIGSEGV);
        report("tgkill to the other thread", SIGSEGV, "SI_TKILL", r, errno, before, other);
    }

    /* Threads that are not the guest's. */
    pid_t guest[4] = {getpid(), esc_gettid(), other, esc_waiter_tid}, others[64];
    int n = esc_foreign_tids(guest, 4, others, 64), esc = 0;
    for (int i = 0; i < n; i++) {
        siginfo_t si = forged(SIGURG, SI_QUEUE, 0, 1);
        long a = syscall(SYS_tgkill, getpid(), others[i], SIGURG);
        long b = syscall(SYS_rt_tgsigqueueinfo, getpid(), others[i], SIGURG, &si);
        int tfd = (int)syscall(SYS_pidfd_open, others[i], 0x80 /* PIDFD_THREAD = O_EXCL */);
        long c = tfd >= 0 ? syscall(SYS_pidfd_send_signal, tfd, SIGURG, NULL, 0) : -1;
        if (tfd >= 0)
            close(tfd);
        esc_note("tid %d: tgkill %ld, rt_tgsigqueueinfo %ld, pidfd %d/%ld", (int)others[i], a, b, tfd, c);
        if (a == 0 || b == 0 || c == 0) {
            esc_escape("signalled thread %d (%s), which is not the guest's (%s)", (int)others[i],
                       esc_tid_name(others[i]), a == 0 ? "tgkill" : b == 0 ? "rt_tgsigqueueinfo" : "pidfd_send_signal");
            esc = 1;
        }
    }
    if (!esc)
        esc_say("signals to threads outside the guest: safe");

    {
        sigset_t set, old;
        sigemptyset(&set);
        static const int s[] = {SIGSEGV, 32, 33, 36, 37};
        for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
            sigaddset(&set, s[i]);
        struct timespec ts = {0, 10000000};
        /* Blocked while waited for, as sigtimedwait wants; 32/33 through the raw call. */
        uint64_t raw = 0;
        for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
            raw |= 1ULL << (s[i] - 1);
        uint64_t oldraw = 0;
        syscall(SYS_rt_sigprocmask, SIG_BLOCK, &raw, &oldraw, 8);
        (void)old;
        long r = syscall(SYS_rt_sigtimedwait, &raw, NULL, &ts, 8);
        int e = errno;
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &oldraw, NULL, 8);
        if (r > 0)
            esc_say("sigtimedwait on trapbox's signals: got %s", sname((int)r));
        else
            esc_say("sigtimedwait on trapbox's signals: %s", esc_err(e));
    }

    sigreturns();
    static const int dumped[] = {SIGILL, SIGSEGV, SIGBUS, SIGFPE, SIGTRAP, SIGSYS, SIGQUIT, SIGABRT, 32, 33, 36};
    for (size_t i = 0; i < sizeof dumped / sizeof dumped[0]; i++)
        core_dump(dumped[i]);

    if (strcmp(esc_where, "fork") == 0)
        to_parent();

    if (have_helper)
        esc_stop_helper();
    if (pfd >= 0)
        close(pfd);
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, SIGURG, 36, 37};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    esc_own_internal_signals(handler);
    esc_parent_report = parent_report;
    return esc_main(argc, argv, 1, attack);
}
