/*
 * esc_limits.c PLACE [SECONDS] - resource limits the guest sets, which on the host are
 * trapbox's limits too (see esc_common.h for PLACE and the output conventions). Each limit
 * is lowered, the program checks that it still works the way it would natively, and the
 * limit is restored:
 *   "RLIMIT_NOFILE 32: thread created, /bin/true exit 0, open ok" - soft limit 32 (a box
 *     that keeps its descriptors just below the soft limit has no room left), then a thread is
 *     created and joined, /bin/true is run (fork + exec) and a file is opened;
 *   "RLIMIT_NOFILE restored: thread created, /bin/true exit 0";
 *   "RLIMIT_SIGPENDING 0: SIGUSR1 handled, thread created, /bin/true exit 0" - with no room
 *     for queued real-time signals (a box that kicks its vCPU threads with one cannot); with
 *     SECONDS > 0 the program then spins that long without a syscall ("spinning N s", then
 *     "spun N s"), for a test that runs it with --timeout and expects the run to end promptly;
 *   "RLIMIT_FSIZE 0: survived" - SIGXFSZ left at its default, then a call a box refuses (and
 *     may warn about on its stderr, which may be a regular file) is made;
 *   "RLIMIT_AS 1 GiB: malloc ok, thread created, /bin/true exit 0" - an address-space limit
 *     that is plenty for the program (natively) but less than a box that reserves memory
 *     for itself may already use;
 *   in fork mode, the child also lowers its parent's RLIMIT_NOFILE to 16 and RLIMIT_AS to
 *     1 GiB with prlimit, and the parent reports after the child ended "parent with the
 *     limits its child set: thread created, /bin/true exit 0" (then restores them).
 * If trapbox dies of its own limits, the output stops early. Exit status 0.
 */
#include "esc_common.h"
#include <sys/prctl.h>

static char *const true_argv[] = {"/bin/true", NULL};

static void *noop(void *arg)
{
    return arg;
}

static const char *thread_result(void)
{
    static char r[48];
    pthread_t t;
    int e = pthread_create(&t, NULL, noop, NULL);
    if (e) {
        snprintf(r, sizeof r, "pthread_create %s", esc_err(e));
        return r;
    }
    pthread_join(t, NULL);
    return "thread created";
}

static char true_result[64];

static const char *run_true(void)
{
    snprintf(true_result, sizeof true_result, "/bin/true %s", esc_status(esc_run_prog(true_argv)));
    return true_result;
}

static volatile int usr1;

static void on_usr1(int sig)
{
    (void)sig;
    usr1++;
}

static void limit_nofile(void)
{
    struct rlimit old, low;
    getrlimit(RLIMIT_NOFILE, &old);
    low = old;
    low.rlim_cur = 32;
    if (setrlimit(RLIMIT_NOFILE, &low) != 0) {
        esc_say("RLIMIT_NOFILE 32: setrlimit %s", esc_err(errno));
        return;
    }
    const char *t = thread_result();
    const char *p = run_true();
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    esc_say("RLIMIT_NOFILE 32: %s, %s, open %s", t, p, esc_res(fd, errno));
    if (fd >= 0)
        close(fd);
    setrlimit(RLIMIT_NOFILE, &old);
    t = thread_result();
    esc_say("RLIMIT_NOFILE restored: %s, %s", t, run_true());
}

static void limit_sigpending(int seconds)
{
    struct rlimit old, zero;
    getrlimit(RLIMIT_SIGPENDING, &old);
    zero = old;
    zero.rlim_cur = 0;
    if (setrlimit(RLIMIT_SIGPENDING, &zero) != 0) {
        esc_say("RLIMIT_SIGPENDING 0: setrlimit %s", esc_err(errno));
        return;
    }
    signal(SIGUSR1, on_usr1);
    usr1 = 0;
    raise(SIGUSR1);
    const char *t = thread_result();
    esc_say("RLIMIT_SIGPENDING 0: SIGUSR1 %s, %s, %s", usr1 ? "handled" : "not handled", t, run_true());
    if (seconds > 0) {
        esc_say("spinning %d s", seconds);
        double end = esc_now() + seconds;
        volatile unsigned long turns = 0;
        while (esc_now() < end) /* clock_gettime through the vDSO: no syscall */
            turns++;
        esc_say("spun %d s", seconds);
    }
    setrlimit(RLIMIT_SIGPENDING, &old);
}

static void limit_fsize(void)
{
    struct rlimit old, zero;
    getrlimit(RLIMIT_FSIZE, &old);
    zero = old;
    zero.rlim_cur = 0;
    if (setrlimit(RLIMIT_FSIZE, &zero) != 0) {
        esc_say("RLIMIT_FSIZE 0: setrlimit %s", esc_err(errno));
        return;
    }
    /* personality(0xffffffff) only asks, natively; a box may refuse it with a warning. */
    long r = syscall(SYS_personality, 0xffffffffUL);
    int e = errno;
    setrlimit(RLIMIT_FSIZE, &old);
    esc_note("personality query: %s", esc_res(r, e)); /* not before: stderr may be a file */
    esc_say("RLIMIT_FSIZE 0: survived");
}

static void limit_as(void)
{
    struct rlimit old, low;
    getrlimit(RLIMIT_AS, &old);
    low = old;
    low.rlim_cur = 1UL << 30;
    if (setrlimit(RLIMIT_AS, &low) != 0) {
        esc_say("RLIMIT_AS 1 GiB: setrlimit %s", esc_err(errno));
        return;
    }
    void *m = malloc(1 << 20);
    const char *mr = m ? "malloc ok" : "malloc failed";
    free(m);
    const char *t = thread_result();
    const char *p = run_true();
    setrlimit(RLIMIT_AS, &old);
    esc_say("RLIMIT_AS 1 GiB: %s, %s, %s", mr, t, p);
}

/* Fork mode: the child lowers its parent's limits. */
static struct rlimit parent_nofile, parent_as;

static void parent_report(void)
{
    const char *t = thread_result();
    esc_say("parent with the limits its child set: %s, %s", t, run_true());
    setrlimit(RLIMIT_NOFILE, &parent_nofile);
    setrlimit(RLIMIT_AS, &parent_as);
}

static int spin_seconds;

static void attack(void)
{
    limit_nofile();
    limit_sigpending(spin_seconds);
    limit_fsize();
    limit_as();
    if (strcmp(esc_where, "fork") == 0) {
        struct rlimit n = parent_nofile, a = parent_as;
        n.rlim_cur = 16;
        a.rlim_cur = 1UL << 30;
        long r1 = syscall(SYS_prlimit64, esc_pid0, RLIMIT_NOFILE, &n, NULL);
        long r2 = syscall(SYS_prlimit64, esc_pid0, RLIMIT_AS, &a, NULL);
        esc_note("prlimit on the parent: %s, %s", esc_res(r1, errno), esc_res(r2, errno));
        esc_say("parent's limits lowered");
    }
}

int main(int argc, char **argv)
{
    getrlimit(RLIMIT_NOFILE, &parent_nofile);
    getrlimit(RLIMIT_AS, &parent_as);
    esc_parent_report = parent_report;
    spin_seconds = argc > 2 ? atoi(argv[2]) : 0;
    return esc_main(argc, argv, 0, attack);
}
