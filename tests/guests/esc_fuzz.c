/*
 * esc_fuzz.c SEED N - calls N random syscalls with random arguments, then prints
 * "fuzzed N calls" and exits 0 (see esc_common.h for the ESCAPED convention and ESCAPES.md).
 *
 * Syscall numbers are drawn from 0..334 and 424..473 (unknown numbers included). Arguments mix
 * small integers, -1, AT_FDCWD, pointers into a pool of words refilled before every call
 * (pointers into the pools, at trapbox's memory, small integers, lengths and random words, so
 * that iovecs, msghdrs, sigevents and the like read from it point anywhere), pointers to
 * names, pointers at trapbox's own memory (found as esc_common.h describes; natively there is
 * none), descriptor numbers in the 300 just below the soft RLIMIT_NOFILE (where a box may keep
 * its own), non-canonical values and single flag bits. The pools have an inaccessible page on
 * either side. With ESC_VERBOSE=1 every call is printed before it is made; a crash prints the
 * call that was being made.
 *
 * It is meant to be run natively too, where it runs as whoever runs it (often root), so it
 * keeps to a sandbox of its own: it works in a fresh directory under /tmp (removed at the end),
 * every path argument is a relative name of letters and digits in that directory (or trapbox's
 * memory, or an invalid pointer), its standard descriptors are files in that directory, its
 * inherited descriptors are closed, file sizes are limited to 64 MiB, SIGPIPE and SIGXFSZ are
 * ignored, and a 5 ms interval timer interrupts any call that blocks (no handler restarts).
 * It never makes the calls that could end or stop it, reach other processes or the system
 * (signals, ptrace, process_vm_*, pidfd_getfd, exec, clone/vfork, exit, set*id, scheduling and
 * rlimits, mounts, modules, keys, clocks, reboot, swap, syslog, SysV IPC and message queues,
 * io_uring, bpf, perf, seccomp, userfaultfd, fanotify, landlock, chroot, mknod, fallocate, sync,
 * rt_sigaction/procmask/return/suspend/timedwait, sigaltstack, arch_prctl, futex waits), only
 * lets munmap, mprotect, madvise, mremap and brk act on trapbox's memory (the program's own
 * must stay), drops MAP_FIXED unless the address is trapbox's and unmaps what mmap gave,
 * refuses a few prctl options (seccomp, PR_SET_MM, syscall user dispatch, PR_SET_TSC, the
 * capability bounding set, securebits), tty, socket, wireless and file-attribute ioctls,
 * netfilter socket options, fcntl's signal owners, leases and directory notification, signal
 * masks of pselect6/ppoll/epoll_pwait/io_pgetevents (so the timer always gets through),
 * and sockets other than AF_UNIX, AF_INET and AF_INET6 (connect, send* and accept are never
 * called, so nothing leaves the machine). fork is allowed: the child _exits at once.
 * At the end: a descriptor that leads to KVM and that the program can use, or a change of
 * trapbox's argument strings, is an escape.
 */
#include "esc_common.h"
#include <ftw.h>
#include <sys/prctl.h>
#include <sys/time.h>

static uint64_t rng;

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}

static unsigned rndn(unsigned n)
{
    return (unsigned)(rnd() % n);
}

#define POOL 8192
static unsigned char *spool; /* structures */
static char *tpool;          /* names: NUL-terminated [A-Za-z0-9_-]{0,15} every 16 bytes */
static int out_fd = -1;      /* the real stdout */
static int soft_nofile;
static char dir[64];
static volatile unsigned long ticks;

/* The call being made, for the report of a crash. */
static volatile long cur_nr = -1, cur_i;
static uint64_t cur_a[6];

static void on_crash(int sig)
{
    dprintf(out_fd, "crashed (SIG%s) after call %ld: syscall %ld (%#lx, %#lx, %#lx, %#lx, %#lx, %#lx)\n",
            sigabbrev_np(sig), (long)cur_i, (long)cur_nr, (unsigned long)cur_a[0], (unsigned long)cur_a[1],
            (unsigned long)cur_a[2], (unsigned long)cur_a[3], (unsigned long)cur_a[4], (unsigned long)cur_a[5]);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_alarm(int sig)
{
    (void)sig;
    ticks++;
}

static uint64_t foreign_addr(void)
{
    if (!esc_ntg)
        return (uint64_t)(uintptr_t)(spool + 8 * rndn(POOL / 8));
    struct esc_target *t = &esc_tg[rndn((unsigned)esc_ntg)];
    return t->addr + (t->len > 1 ? rnd() % t->len : 0);
}

static uint64_t name_ptr(void)
{
    return (uint64_t)(uintptr_t)(tpool + 16 * rndn(POOL / 16));
}

static void fill_pools(void)
{
    static const char cs[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    for (unsigned i = 0; i < POOL; i += 16) {
        unsigned len = rndn(16);
        for (unsigned k = 0; k < len; k++)
            tpool[i + k] = cs[rndn(sizeof cs - 1)];
        memset(tpool + i + len, 0, 16 - len);
    }
    uint64_t *w = (uint64_t *)spool;
    for (unsigned i = 0; i < POOL / 8; i++) {
        switch (rndn(8)) {
        case 0:
            w[i] = (uint64_t)(uintptr_t)(spool + 8 * rndn(POOL / 8));
            break;
        case 1:
            w[i] = foreign_addr();
            break;
        case 2:
            w[i] = name_ptr();
            break;
        case 3:
        case 4:
            w[i] = rndn(64);
            break;
        case 5:
            w[i] = 0;
            break;
        case 6:
            w[i] = rndn(1u << 20);
            break;
        default:
            w[i] = rnd();
        }
    }
}

static uint64_t fd_near_limit(void)
{
    return (uint64_t)(soft_nofile - 1 - (int)rndn(300));
}

static uint64_t rand_arg(void)
{
    switch (rndn(20)) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4:
        return rndn(64);
    case 5:
        return (uint64_t)-1;
    case 6:
        return (uint64_t)-100; /* AT_FDCWD */
    case 7:
    case 8:
    case 9:
        return (uint64_t)(uintptr_t)(spool + 8 * rndn(POOL / 8));
    case 10:
    case 11:
        return name_ptr();
    case 12:
    case 13:
        return foreign_addr();
    case 14:
    case 15:
        return fd_near_limit();
    case 16:
        return rnd() | (1ULL << 63); /* non-canonical */
    case 17:
        return 1ULL << rndn(32);
    case 18:
        return 0;
    default:
        return rnd() & 0xffff;
    }
}

/* Syscalls never made (see the comment at the top). */
static const short never[] = {
    /* signals, timers that signal, sleeping on signals */
    13, 14, 15, 34, 37, 38, 62, 128, 129, 130, 131, 200, 222, 223, 234, 297, 424,
    /* processes: clone, vfork, exec, exit, ptrace, ids, groups, sessions, capabilities */
    56, 58, 59, 60, 101, 105, 106, 109, 112, 113, 114, 116, 117, 119, 122, 123, 126, 231, 322, 435,
    /* other processes and threads: scheduling, limits, memory, descriptors */
    141, 142, 144, 203, 251, 302, 310, 311, 314, 279, 256, 438, 440, 448,
    /* the system: syslog, hangup, ldt, mounts, clocks, modules, swap, reboot, names, ports */
    103, 135, 153, 154, 155, 156, 158, 159, 160, 161, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172,
    173, 174, 175, 176, 177, 178, 179, 180, 227, 246, 248, 249, 250, 272, 304, 305, 308, 313, 320,
    428, 429, 430, 431, 432, 433, 442, 443, 460,
    /* kernel machinery: bpf, perf, seccomp, userfaultfd, io_uring, fanotify, landlock, rseq */
    298, 300, 301, 317, 321, 323, 324, 334, 425, 426, 427, 444, 445, 446,
    /* memory policy, mlockall, remap_file_pages, futex waits, thread areas, robust lists */
    151, 216, 237, 238, 450, 202, 449, 455, 456, 205, 218, 273, 158,
    /* files: mknod, fallocate, sync, chdir, close_range, io_submit */
    133, 259, 285, 162, 306, 80, 81, 436, 209,
    /* SysV IPC and POSIX message queues (they outlive the program) */
    29, 30, 31, 64, 65, 66, 67, 68, 69, 70, 71, 220, 240, 241, 242, 243, 244, 245,
    /* anything that would send data out or wait for a peer */
    42, 43, 44, 46, 288, 307};
/* Calls whose first argument must be trapbox's memory (the program's own must stay). */
static const short foreign_only[] = {10, 11, 12, 25, 28, 329};
/* Path arguments: syscall number and a bit per argument that names a path. */
static const struct {
    short nr;
    unsigned char mask;
} paths[] = {{2, 1},   {4, 1},   {6, 1},    {21, 1},  {76, 1},   {82, 3},   {83, 1},   {84, 1},   {85, 1},
             {86, 3},  {87, 1},  {88, 3},   {89, 1},  {90, 1},   {92, 1},   {94, 1},   {132, 1},  {134, 1},
             {137, 1}, {188, 1}, {189, 1},  {191, 1}, {192, 1},  {194, 1},  {195, 1},  {197, 1},  {198, 1},
             {235, 1}, {254, 2}, {257, 2},  {258, 2}, {260, 2},  {261, 2},  {262, 2},  {263, 2},  {264, 10},
             {265, 10}, {266, 5}, {267, 2}, {268, 2}, {269, 2},  {280, 2},  {303, 2},  {316, 10}, {332, 2},
             {437, 2}, {439, 2}, {452, 2}};

static int in_list(const short *l, size_t n, long nr)
{
    for (size_t i = 0; i < n; i++)
        if (l[i] == nr)
            return 1;
    return 0;
}

/* Makes the arguments safe to run natively; returns 0 to skip the call. */
static int sanitize(long nr, uint64_t *a)
{
    if (in_list(never, sizeof never / sizeof never[0], nr))
        return 0;
    if (in_list(foreign_only, sizeof foreign_only / sizeof foreign_only[0], nr))
        return esc_ntg && esc_is_foreign(a[0]);
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (paths[i].nr == nr)
            for (int k = 0; k < 6; k++)
                if (paths[i].mask & (1u << k)) {
                    unsigned c = rndn(10);
                    a[k] = c < 7 ? name_ptr() : c < 8 && esc_ntg ? foreign_addr() : c < 9 ? 0 : rnd() | (1ULL << 63);
                }
    switch (nr) {
    case 9: /* mmap */
        if (!(esc_ntg && esc_is_foreign(a[0])))
            a[3] &= ~(uint64_t)MAP_FIXED;
        if (a[1] > (1u << 20))
            a[1] = 1u << 20;
        return 1;
    case 16: { /* ioctl */
        unsigned type = (unsigned)(a[1] >> 8) & 0xff;
        return type != 0x54 && type != 0x89 && type != 0x8b && type != 0x66;
    }
    case 41: /* socket */
    case 53: /* socketpair */
        if (a[0] != 1 && a[0] != 2 && a[0] != 10)
            a[0] = 1;
        return 1;
    case 54: /* setsockopt: no netfilter tables */
        return !((a[1] == 0 || a[1] == 41) && a[2] >= 64 && a[2] < 128);
    case 72: /* fcntl: no signal owners, no leases, no directory notification */
        return a[1] != 8 && a[1] != 10 && a[1] != 15 && a[1] != 1024 && a[1] != 1026;
    case 157: /* prctl */
        return a[0] != 22 && a[0] != 35 && a[0] != 59 && a[0] != 26 && a[0] != 24 && a[0] != 28;
    case 270: /* pselect6: no signal mask */
        a[5] = 0;
        return 1;
    case 271: /* ppoll */
        a[3] = 0;
        return 1;
    case 281: /* epoll_pwait */
    case 441: /* epoll_pwait2 */
        a[4] = 0;
        return 1;
    case 333: /* io_pgetevents */
        a[5] = 0;
        return 1;
    }
    return 1;
}

/* A pool with an inaccessible page on either side, so that a call told to write more than
 * the pool holds stops at the guard (EFAULT) instead of reaching the program's own memory. */
static unsigned char *guarded_pool(void)
{
    unsigned char *m = mmap(NULL, POOL + 8192, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || mprotect(m + 4096, POOL, PROT_READ | PROT_WRITE) != 0)
        return MAP_FAILED;
    return m + 4096;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SEED N\n", argv[0]);
        return 2;
    }
    const char *v = getenv("ESC_VERBOSE");
    esc_verbose = v && *v && strcmp(v, "0") != 0;
    rng = strtoull(argv[1], NULL, 0) * 2654435761ULL + 0x9e3779b97f4a7c15ULL;
    long n = atol(argv[2]);

    esc_find_foreign();
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    soft_nofile = rl.rlim_cur > (1u << 20) ? 1 << 20 : (int)rl.rlim_cur;

    spool = guarded_pool();
    tpool = (char *)guarded_pool();
    snprintf(dir, sizeof dir, "/tmp/esc_fuzz.XXXXXX");
    if (spool == MAP_FAILED || tpool == MAP_FAILED || !mkdtemp(dir) || chdir(dir) != 0) {
        printf("setup failed: %s\n", esc_err(errno));
        return 1;
    }
    /* The real stdout moves to a number no generated argument has (small integers stop at
     * 63, the numbers near the limit start 300 below it, and a value equal to it is replaced
     * by -1); inherited descriptors are closed. */
    fflush(stdout);
    out_fd = fcntl(1, F_DUPFD_CLOEXEC, 150);
    if (out_fd < 0)
        return 1;
    syscall(SYS_close_range, 3, (unsigned)out_fd - 1, 0);
    syscall(SYS_close_range, (unsigned)out_fd + 1, ~0U, 0);
    for (int fd = 0; fd < 3; fd++) {
        int f = open(fd == 0 ? "in" : fd == 1 ? "out" : "err", O_RDWR | O_CREAT, 0600);
        if (f >= 0 && f != fd) {
            dup2(f, fd);
            close(f);
        }
    }
    getrlimit(RLIMIT_FSIZE, &rl);
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (64UL << 20)) {
        rl.rlim_cur = 64UL << 20;
        setrlimit(RLIMIT_FSIZE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGSEGV, on_crash);
    signal(SIGBUS, on_crash);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: a blocked call returns EINTR */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 5000}, {0, 5000}};
    setitimer(ITIMER_REAL, &it, NULL);

    long made = 0;
    for (long i = 0; i < n; i++) {
        long nr;
        uint64_t a[6];
        do {
            unsigned pick = rndn(100);
            nr = pick < 95 ? (long)rndn(335) : (long)(424 + rndn(50));
            for (int k = 0; k < 6; k++)
                a[k] = rand_arg();
        } while (!sanitize(nr, a));
        for (int k = 0; k < 6; k++)
            if (a[k] == (uint64_t)out_fd)
                a[k] = (uint64_t)-1;
        fill_pools();
        cur_nr = nr;
        cur_i = i;
        if (esc_verbose) /* ESC_VERBOSE=1: every call, before it is made, on the real stdout */
            dprintf(out_fd, "call %ld: %ld(%#lx, %#lx, %#lx, %#lx, %#lx, %#lx)\n", i, nr, (unsigned long)a[0],
                    (unsigned long)a[1], (unsigned long)a[2], (unsigned long)a[3], (unsigned long)a[4],
                    (unsigned long)a[5]);
        memcpy(cur_a, a, sizeof cur_a);
        long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        made++;
        if (nr == 57 && r == 0)
            syscall(SYS_exit_group, 0); /* fork's child */
        if (nr == 9 && r != -1 && !(esc_ntg && esc_is_foreign((unsigned long)r)))
            munmap((void *)r, a[1] ? a[1] : 1);
        if ((i & 63) == 0)
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
    }
    it.it_value.tv_usec = it.it_interval.tv_usec = 0;
    setitimer(ITIMER_REAL, &it, NULL);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;

    /* Did the calls leave the program holding something of trapbox's? */
    int escaped = 0;
    for (int fd = 0; fd < soft_nofile - 300 && fd < 4096; fd++) {
        if (fd == out_fd || fcntl(fd, F_GETFD) < 0)
            continue;
        char p[64], t[256];
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        ssize_t k = readlink(p, t, sizeof t - 1);
        t[k > 0 ? k : 0] = '\0';
        if (k > 0 && strncmp(t, "anon_inode:kvm", 14) == 0) {
            dprintf(out_fd, "ESCAPED: the fuzzed calls left descriptor %d leading to %s\n", fd, t);
            escaped = 1;
        }
    }
    if (esc_argw && esc_cmdline_changed()) {
        dprintf(out_fd, "ESCAPED: the fuzzed calls changed trapbox's argument strings\n");
        escaped = 1;
    }
    if (chdir("/") != 0)
        dprintf(out_fd, "chdir /: %s\n", esc_err(errno));
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    dprintf(out_fd, "fuzzed %ld calls\n", made);
    return escaped ? 99 : 0;
}
