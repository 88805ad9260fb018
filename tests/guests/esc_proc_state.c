/*
 * esc_proc_state.c PLACE [N] - process-wide state the guest changes, which on the host is
 * trapbox's state too (see esc_common.h for PLACE and the output conventions). Lines:
 *   "PR_SET_DUMPABLE 0: /proc/self/mem same as before, /proc/self/status readable" and the
 *     same for 1 (whether /proc/self/mem opens must not change, nor a box stop working);
 *   "pdeathsig SIGUSR1: handler ran, grandchild exit 0" and the same for SIGSEGV - a
 *     grandchild sets PR_SET_PDEATHSIG, its parent exits, the program (a child subreaper)
 *     reaps it; natively its handler runs for either signal;
 *   "PR_SET_MDWE: consistent, /bin/true exit 0" - in a child: PR_SET_MDWE(refuse exec gain)
 *     either works and mprotect of a written page to PROT_EXEC then fails, or it is refused and
 *     the mprotect works; then /bin/true must still run;
 *   "after chdir / and umask 0777: /bin/true exit 0", "with a deleted cwd: /bin/true exit 0";
 *   "setpriority 19: /bin/true exit 0", "sched_setaffinity to no CPU: EINVAL",
 *     "sched_setaffinity to CPU 0: /bin/true exit 0" (the affinity is restored);
 *   "scheduling of threads outside the guest: safe" - sched_setaffinity, setpriority,
 *     sched_setscheduler(SCHED_IDLE) and ioprio_set aimed at each tid of /proc/self/task that
 *     is not the program's (natively none);
 *   "mlockall then munlockall: survived";
 *   "after dropping root: /bin/true exit 0" - in a child that setresuid()s to 65534 (natively
 *     refused for other users, which runs /bin/true all the same).
 * Exit status 0, or 99 after an escape.
 */
#include "esc_common.h"
#include <sched.h>
#include <sys/prctl.h>

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#endif

static char *const true_argv[] = {"/bin/true", NULL};

static const char *run_true(void)
{
    static char r[64];
    snprintf(r, sizeof r, "/bin/true %s", esc_status(esc_run_prog(true_argv)));
    return r;
}

static int mem_opens(void)
{
    int fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        close(fd);
    return fd >= 0;
}

static void dumpable(void)
{
    int before = mem_opens();
    int was = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    for (int v = 0; v <= 1; v++) {
        int r = prctl(PR_SET_DUMPABLE, v, 0, 0, 0);
        esc_note("PR_SET_DUMPABLE %d: %s", v, esc_res(r, errno));
        int after = mem_opens();
        char st[4096];
        ssize_t n = esc_slurp("/proc/self/status", st, sizeof st);
        esc_say("PR_SET_DUMPABLE %d: /proc/self/mem %s, /proc/self/status %s", v,
                after == before ? "same as before" : after ? "opens now" : "refused now",
                n > 0 ? "readable" : "unreadable");
        if (after && !before)
            esc_escape("PR_SET_DUMPABLE %d made /proc/self/mem open", v);
    }
    if (was >= 0)
        prctl(PR_SET_DUMPABLE, was, 0, 0, 0);
}

/* ---- the parent-death signal ------------------------------------------------------------ */

static volatile int pd_got, pd_code;

static void pd_handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    pd_got = sig;
    pd_code = si->si_code;
}

static void pdeath(int sig)
{
    int res[2], ready[2];
    if (pipe(res) != 0 || pipe(ready) != 0) {
        esc_say("pipe: %s", esc_err(errno));
        return;
    }
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    fflush(stdout);
    pid_t m = fork();
    if (m == 0) {
        pid_t g = fork();
        if (g == 0) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = pd_handler;
            sa.sa_flags = SA_SIGINFO;
            sigaction(sig, &sa, NULL);
            prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0);
            if (write(ready[1], "r", 1) != 1)
                _exit(3);
            for (int i = 0; i < 2000 && !pd_got; i++) {
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, NULL);
            }
            char msg[64];
            if (pd_got)
                snprintf(msg, sizeof msg, "handler ran");
            else
                snprintf(msg, sizeof msg, "handler did not run");
            if (write(res[1], msg, strlen(msg)) < 0)
                _exit(4);
            _exit(0);
        }
        char c;
        if (g < 0 || read(ready[0], &c, 1) != 1)
            _exit(2);
        _exit(0); /* the grandchild's parent dies */
    }
    close(res[1]);
    close(ready[1]);
    int st = 0;
    if (m > 0)
        waitpid(m, &st, 0);
    char msg[64] = "";
    ssize_t n = 0, k;
    while ((k = read(res[0], msg + n, sizeof msg - 1 - (size_t)n)) > 0)
        n += k;
    msg[n > 0 ? n : 0] = '\0';
    int gst = 0;
    pid_t g = -1;
    for (int i = 0; i < 3000 && g <= 0; i++) { /* the grandchild is ours now (subreaper) */
        g = waitpid(-1, &gst, WNOHANG);
        if (g == 0) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        } else if (g < 0) {
            break;
        }
    }
    prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
    close(res[0]);
    close(ready[0]);
    char gs[64];
    snprintf(gs, sizeof gs, "%s", g > 0 ? esc_status(gst) : "not reaped");
    esc_say("pdeathsig SIG%s: %s, grandchild %s", sigabbrev_np(sig), msg[0] ? msg : "no report", gs);
}

/* ---- memory-deny-write-execute ---------------------------------------------------------- */

static void mdwe(void)
{
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        int r = prctl(PR_SET_MDWE, 1, 0, 0, 0);
        int re = errno;
        char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        page[0] = (char)0xc3;
        int m = mprotect(page, 4096, PROT_READ | PROT_EXEC);
        int me = errno;
        esc_note("PR_SET_MDWE: %s, mprotect to exec: %s", esc_res(r, re), esc_res(m, me));
        int consistent = (r == 0 && m != 0) || (r != 0 && m == 0);
        esc_say("PR_SET_MDWE: %s, %s", consistent ? "consistent" : "inconsistent", run_true());
        fflush(stdout);
        _exit(0);
    }
    int st = 0;
    waitpid(p, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        esc_say("PR_SET_MDWE child: %s", esc_status(st));
}

/* ---- working directory, umask, scheduling ------------------------------------------------ */

static void cwd_umask(void)
{
    int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    mode_t old = umask(0777);
    if (chdir("/") != 0)
        esc_note("chdir /: %s", esc_err(errno));
    esc_say("after chdir / and umask 0777: %s", run_true());
    umask(old);
    char d[64] = "/tmp/esc_proc_state.XXXXXX";
    if (mkdtemp(d) && chdir(d) == 0 && rmdir(d) == 0)
        esc_say("with a deleted cwd: %s", run_true());
    else
        esc_say("with a deleted cwd: setup failed (%s)", esc_err(errno));
    if (cwd >= 0) {
        if (fchdir(cwd) != 0)
            esc_note("fchdir back: %s", esc_err(errno));
        close(cwd);
    }
}

static void scheduling(void)
{
    int old = getpriority(PRIO_PROCESS, 0);
    setpriority(PRIO_PROCESS, 0, 19);
    esc_say("setpriority 19: %s", run_true());
    setpriority(PRIO_PROCESS, 0, old);

    cpu_set_t all, none, zero;
    sched_getaffinity(0, sizeof all, &all);
    CPU_ZERO(&none);
    int r = sched_setaffinity(0, sizeof none, &none);
    esc_say("sched_setaffinity to no CPU: %s", esc_res(r, errno));
    CPU_ZERO(&zero);
    CPU_SET(0, &zero);
    r = sched_setaffinity(0, sizeof zero, &zero);
    esc_note("sched_setaffinity to CPU 0: %s", esc_res(r, errno));
    esc_say("sched_setaffinity to CPU 0: %s", run_true());
    sched_setaffinity(0, sizeof all, &all);

    pid_t guest[3] = {getpid(), esc_gettid(), esc_waiter_tid}, others[64];
    int n = esc_foreign_tids(guest, 3, others, 64), esc = 0;
    for (int i = 0; i < n; i++) {
        pid_t t = others[i];
        cpu_set_t cur;
        int had = sched_getaffinity(t, sizeof cur, &cur) == 0;
        if (sched_setaffinity(t, sizeof zero, &zero) == 0) {
            if (had)
                sched_setaffinity(t, sizeof cur, &cur);
            esc_escape("sched_setaffinity moved thread %d (%s), which is not the guest's", (int)t, esc_tid_name(t));
            esc = 1;
        }
        errno = 0;
        int prio = getpriority(PRIO_PROCESS, (id_t)t);
        if (setpriority(PRIO_PROCESS, (id_t)t, 19) == 0) {
            if (errno == 0)
                setpriority(PRIO_PROCESS, (id_t)t, prio);
            esc_escape("setpriority reniced thread %d (%s), which is not the guest's", (int)t, esc_tid_name(t));
            esc = 1;
        }
        struct sched_param sp = {0};
        int pol = sched_getscheduler(t);
        if (sched_setscheduler(t, SCHED_IDLE, &sp) == 0) {
            if (pol >= 0)
                sched_setscheduler(t, pol, &sp);
            esc_escape("sched_setscheduler made thread %d (%s), which is not the guest's, SCHED_IDLE", (int)t,
                       esc_tid_name(t));
            esc = 1;
        }
        long io = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, t);
        if (syscall(SYS_ioprio_set, 1, t, (3 << 13) /* IOPRIO_CLASS_IDLE */) == 0) {
            if (io >= 0)
                syscall(SYS_ioprio_set, 1, t, io);
            esc_escape("ioprio_set changed thread %d (%s), which is not the guest's", (int)t, esc_tid_name(t));
            esc = 1;
        }
    }
    if (!esc)
        esc_say("scheduling of threads outside the guest: safe");
}

static void mlock_all(void)
{
    double t0 = esc_now();
    int r = mlockall(MCL_CURRENT | MCL_FUTURE);
    int e = errno;
    void *m = malloc(4 << 20);
    if (m)
        memset(m, 1, 4 << 20);
    free(m);
    munlockall();
    esc_note("mlockall: %s, %.3f s", esc_res(r, e), esc_now() - t0);
    esc_say("mlockall then munlockall: survived");
}

static void drop_root(void)
{
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        int r = setresgid(65534, 65534, 65534) == 0 && setresuid(65534, 65534, 65534) == 0;
        esc_note("setresuid 65534: %s", r ? "ok" : esc_err(errno));
        esc_say("after dropping root: %s", run_true());
        fflush(stdout);
        _exit(0);
    }
    int st = 0;
    waitpid(p, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        esc_say("dropping root: child %s", esc_status(st));
}

static void attack(void)
{
    dumpable();
    pdeath(SIGUSR1);
    pdeath(SIGSEGV);
    mdwe();
    cwd_umask();
    scheduling();
    mlock_all();
    drop_root();
}

int main(int argc, char **argv)
{
    return esc_main(argc, argv, 1, attack);
}
