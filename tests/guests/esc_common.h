/* esc_common.h: shared by the esc_* guests, which try to escape the box (see ESCAPES.md).
 *
 * Every esc_* program is run as `esc_NAME PLACE [N]`: PLACE is `main` (the attacks run on the
 * main thread), `thread` (on a second thread while the main thread waits in pthread_join) or
 * `fork` (in a forked child; the parent waits, prints `child exited N` and passes an escape
 * on); N bounds the tries of racing attacks (a default per program). Output lines read the
 * same natively and in a sound box: natively there is no trapbox, so nothing of trapbox can be
 * reached, and every attack reports what the safe outcome is. An escape prints a line starting
 * `ESCAPED: ` and makes the exit status 99. Details (errno values, addresses, what was found)
 * go to stderr only when ESC_VERBOSE=1 is set, so that they never enter a comparison.
 * ESC_SELFTEST=1 (for native runs) makes a page of the program's own and its own argument
 * strings count as trapbox's, so that the attacks and their detection can be tried natively.
 *
 * What counts as trapbox memory ("foreign" memory) is found without trusting names alone:
 *   - /proc/self/maps lines whose file is named `trapbox` (its ELF header is the mapping at
 *     file offset 0) or `anon_inode:kvm*`;
 *   - every mapping /proc/self/maps lists as readable whose first byte the program cannot read
 *     itself (natively every readable mapping can be read; in the box the host's mappings are
 *     not in the guest's page tables and fault);
 *   - addresses /proc/self/stat (start of code, of the argument and environment strings) and
 *     /proc/self/auxv (AT_PHDR, AT_ENTRY, AT_BASE, ...) give that the program cannot read
 *     (in the box those files describe the trapbox process unless trapbox emulates them).
 * The argument strings of the trapbox process (stat's arg_start..arg_end) are a place that
 * can be written without harming trapbox (it parsed its arguments long before) and whose
 * change /proc/self/cmdline shows: attacks that would write host memory aim there, and
 * esc_cmdline_changed() sees whether they did.
 */
#ifndef ESC_COMMON_H
#define ESC_COMMON_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Helpers a program may leave unused. */
#define ESC_FN static __attribute__((unused))

static int esc_verbose;
static int esc_iters;
static const char *esc_where = "main";
static volatile int esc_escaped;
/* The process the program started as (the parent in fork mode). */
static pid_t esc_pid0;
/* The thread that waits while the attack runs on another (thread mode), else 0. */
static pid_t esc_waiter_tid;
/* Called in the parent after the child of fork mode ended (may be NULL). */
static void (*esc_parent_report)(void);

/* ---- output ---------------------------------------------------------------------------- */

ESC_FN void esc_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
ESC_FN void esc_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* A detail for ESC_VERBOSE=1 runs (stderr). */
ESC_FN void esc_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
ESC_FN void esc_note(const char *fmt, ...)
{
    if (!esc_verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "esc[%s %d]: ", esc_where, (int)getpid());
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

ESC_FN void esc_escape(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
ESC_FN void esc_escape(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("ESCAPED: ");
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    esc_escaped = 1;
}

ESC_FN const char *esc_err(int e)
{
    static __thread char other[32];
    const char *n = strerrorname_np(e);
    if (n)
        return n;
    snprintf(other, sizeof other, "errno %d", e);
    return other;
}

/* "ok" or the errno name of a call's result (r < 0 means failure with errno). */
ESC_FN const char *esc_res(long r, int e)
{
    return r >= 0 ? "ok" : esc_err(e);
}

ESC_FN void esc_hex(const char *label, const void *p, size_t n)
{
    if (!esc_verbose)
        return;
    char line[3 * 64 + 1] = "";
    const unsigned char *b = p;
    for (size_t i = 0; i < n && i < 64; i++)
        snprintf(line + 3 * i, 4, "%02x ", b[i]);
    esc_note("%s: %s", label, line);
}

/* ---- reading small files --------------------------------------------------------------- */

/* Reads all of `path` (at most cap-1 bytes) into buf, NUL-terminated; returns the length or -1. */
ESC_FN ssize_t esc_slurp(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}

/* ---- guarded access -------------------------------------------------------------------- */

static __thread sigjmp_buf esc_jb;
static __thread volatile int esc_in_probe;

ESC_FN void esc_probe_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    (void)uc;
    if (esc_in_probe)
        siglongjmp(esc_jb, sig);
    signal(sig, SIG_DFL); /* a real crash: fault again with the default action */
}

/* Whether the program itself can access the byte at addr: 1 yes, 0 SIGSEGV, 2 SIGBUS. */
ESC_FN int esc_probe(unsigned long addr, int write)
{
    struct sigaction sa, old_segv, old_bus;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = esc_probe_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    int r = sigsetjmp(esc_jb, 1);
    if (r == 0) {
        esc_in_probe = 1;
        volatile unsigned char *p = (volatile unsigned char *)addr;
        unsigned char c = *p;
        if (write)
            *p = c;
        r = 1;
    } else {
        r = r == SIGSEGV ? 0 : 2;
    }
    esc_in_probe = 0;
    sigaction(SIGSEGV, &old_segv, NULL);
    sigaction(SIGBUS, &old_bus, NULL);
    return r;
}

/* ---- the address space as /proc/self/maps shows it ------------------------------------- */

struct esc_map {
    unsigned long start, end, off;
    char perm[8];
    char path[256];
};
#define ESC_MAXMAPS 1024
static struct esc_map esc_maps[ESC_MAXMAPS];
static int esc_nmaps;
static char esc_mapsbuf[1 << 18];

ESC_FN void esc_read_maps(void)
{
    esc_nmaps = 0;
    if (esc_slurp("/proc/self/maps", esc_mapsbuf, sizeof esc_mapsbuf) < 0)
        return;
    char *save = NULL;
    for (char *line = strtok_r(esc_mapsbuf, "\n", &save); line && esc_nmaps < ESC_MAXMAPS;
         line = strtok_r(NULL, "\n", &save)) {
        struct esc_map *m = &esc_maps[esc_nmaps];
        int pathoff = 0;
        if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %n", &m->start, &m->end, m->perm, &m->off, &pathoff) < 4)
            continue;
        snprintf(m->path, sizeof m->path, "%s", pathoff ? line + pathoff : "");
        char *del = strstr(m->path, " (deleted)");
        if (del)
            *del = '\0';
        esc_nmaps++;
    }
}

ESC_FN const char *esc_base(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* The maps line holding addr, or NULL. */
ESC_FN struct esc_map *esc_map_at(unsigned long addr)
{
    for (int i = 0; i < esc_nmaps; i++)
        if (esc_maps[i].start <= addr && addr < esc_maps[i].end)
            return &esc_maps[i];
    return NULL;
}

/* ---- trapbox's memory ("foreign") ------------------------------------------------------ */

struct esc_target {
    unsigned long addr, len;
    char what[80];
};
#define ESC_MAXTARGETS 64
static struct esc_target esc_tg[ESC_MAXTARGETS];
static int esc_ntg;
/* trapbox's ELF header (a foreign address that starts with "\x7fELF"), or 0. */
static unsigned long esc_elf;
/* Foreign argument strings that may be overwritten (length esc_argw_len), or 0. */
static unsigned long esc_argw;
static size_t esc_argw_len;
/* /proc/self/cmdline as last seen. */
static char esc_cmd0[8192];
static ssize_t esc_cmd0_len;

ESC_FN int esc_is_foreign(unsigned long addr)
{
    for (int i = 0; i < esc_ntg; i++)
        if (esc_tg[i].addr <= addr && addr < esc_tg[i].addr + esc_tg[i].len)
            return 1;
    return 0;
}

ESC_FN void esc_add_target(unsigned long addr, unsigned long len, const char *what)
{
    if (!addr || esc_ntg >= ESC_MAXTARGETS)
        return;
    for (int i = 0; i < esc_ntg; i++)
        if (esc_tg[i].addr == addr)
            return;
    esc_tg[esc_ntg].addr = addr;
    esc_tg[esc_ntg].len = len ? len : 1;
    snprintf(esc_tg[esc_ntg].what, sizeof esc_tg[esc_ntg].what, "%s", what);
    esc_ntg++;
}

/* Fields of /proc/self/stat, numbered as in proc(5) (1 = pid); 0 if absent. */
ESC_FN unsigned long esc_stat_field(const char *stat, int field)
{
    const char *p = strrchr(stat, ')');
    if (!p)
        return 0;
    p++;
    for (int f = 3; f <= field; f++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return 0;
        if (f == field)
            return strtoul(p, NULL, 10);
        while (*p && *p != ' ')
            p++;
    }
    return 0;
}

ESC_FN int esc_cmdline_changed(void)
{
    static char now[sizeof esc_cmd0];
    ssize_t n = esc_slurp("/proc/self/cmdline", now, sizeof now);
    if (n == esc_cmd0_len && memcmp(now, esc_cmd0, (size_t)(n > 0 ? n : 0)) == 0)
        return 0;
    esc_hex("cmdline now", now, n > 0 ? (size_t)n : 0);
    memcpy(esc_cmd0, now, sizeof now);
    esc_cmd0_len = n;
    return 1;
}

/* Finds trapbox's memory as seen from here (call it in the attacking thread or process). */
ESC_FN void esc_find_foreign(void)
{
    esc_ntg = 0;
    esc_elf = esc_argw = 0;
    esc_argw_len = 0;
    esc_read_maps();
    /* Names first, so that they lead the list. */
    for (int i = 0; i < esc_nmaps; i++) {
        struct esc_map *m = &esc_maps[i];
        if (strcmp(esc_base(m->path), "trapbox") == 0) {
            esc_add_target(m->start, m->end - m->start, "trapbox binary");
            if (m->off == 0 && !esc_elf)
                esc_elf = m->start;
        } else if (strncmp(m->path, "anon_inode:kvm", 14) == 0) {
            esc_add_target(m->start, m->end - m->start, m->path);
        }
    }
    for (int i = 0; i < esc_nmaps; i++) {
        struct esc_map *m = &esc_maps[i];
        if (m->perm[0] != 'r' || strncmp(m->path, "[v", 2) == 0)
            continue;
        if (esc_probe(m->start, 0) == 0) {
            char what[80];
            snprintf(what, sizeof what, "unreachable %s", m->path[0] ? esc_base(m->path) : "anonymous");
            esc_add_target(m->start, m->end - m->start, what);
        }
    }
    static char stat[4096];
    if (esc_slurp("/proc/self/stat", stat, sizeof stat) > 0) {
        static const struct {
            int field;
            const char *what;
        } f[] = {{26, "stat startcode"}, {28, "stat startstack"}, {45, "stat start_data"},
                 {48, "stat arg_start"}, {50, "stat env_start"}};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
            unsigned long a = esc_stat_field(stat, f[i].field);
            if (a && esc_probe(a, 0) == 0)
                esc_add_target(a, 1, f[i].what);
        }
        unsigned long as = esc_stat_field(stat, 48), ae = esc_stat_field(stat, 49);
        if (as && ae > as && esc_probe(as, 0) == 0) {
            esc_argw = as;
            esc_argw_len = ae - as;
        }
    }
    int fd = open("/proc/self/auxv", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        unsigned long kv[2];
        while (read(fd, kv, sizeof kv) == (ssize_t)sizeof kv && kv[0] != AT_NULL) {
            if ((kv[0] == AT_PHDR || kv[0] == AT_ENTRY || kv[0] == AT_BASE || kv[0] == AT_EXECFN ||
                 kv[0] == AT_RANDOM || kv[0] == AT_PLATFORM) &&
                kv[1] && kv[1] != getauxval(kv[0]) && esc_probe(kv[1], 0) == 0) {
                char what[40];
                snprintf(what, sizeof what, "auxv type %lu", kv[0]);
                esc_add_target(kv[1], 1, what);
            }
        }
        close(fd);
    }
    const char *st = getenv("ESC_SELFTEST");
    if (st && *st && strcmp(st, "0") != 0 && !esc_ntg) {
        /* Test the attacks themselves, natively: pretend that a page of the program's own
         * (starting "\x7fELF") and its own argument strings are trapbox's. Every attack that
         * would work against an unchecked box then reports an escape. */
        static char *fake;
        if (!fake) {
            fake = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (fake != MAP_FAILED)
                memcpy(fake, "\x7f" "ELF-selftest", 12);
        }
        if (fake != MAP_FAILED) {
            esc_add_target((unsigned long)fake, 8192, "self-test page");
            esc_elf = (unsigned long)fake;
        }
        if (esc_slurp("/proc/self/stat", stat, sizeof stat) > 0) {
            esc_argw = esc_stat_field(stat, 48);
            esc_argw_len = esc_stat_field(stat, 49) - esc_argw;
            esc_add_target(esc_argw, esc_argw_len, "self-test argument strings");
        }
    }
    esc_cmd0_len = esc_slurp("/proc/self/cmdline", esc_cmd0, sizeof esc_cmd0);
    esc_note("foreign targets: %d (ELF header %#lx, argument strings %#lx + %zu)", esc_ntg, esc_elf, esc_argw,
             esc_argw_len);
    for (int i = 0; i < esc_ntg; i++)
        esc_note("  %#lx + %#lx %s", esc_tg[i].addr, esc_tg[i].len, esc_tg[i].what);
}

/* The best foreign address to read from: the ELF header, else the first target. */
ESC_FN unsigned long esc_leak_src(void)
{
    return esc_elf ? esc_elf : esc_ntg ? esc_tg[0].addr : 0;
}

/* ---- threads of trapbox ---------------------------------------------------------------- */

/* Tids in /proc/self/task that are not in `guest` (n of them); returns how many were found. */
ESC_FN int esc_foreign_tids(const pid_t *guest, int n, pid_t *out, int max)
{
    int k = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) && k < max) {
        pid_t t = (pid_t)atoi(e->d_name);
        if (t <= 0)
            continue;
        int mine = 0;
        for (int i = 0; i < n; i++)
            mine |= guest[i] == t;
        if (!mine)
            out[k++] = t;
    }
    closedir(d);
    return k;
}

/* The name (comm) of thread tid of this process, for messages. */
ESC_FN const char *esc_tid_name(pid_t tid)
{
    static __thread char name[64];
    char p[64];
    snprintf(p, sizeof p, "/proc/self/task/%d/comm", (int)tid);
    if (esc_slurp(p, name, sizeof name) <= 0)
        snprintf(name, sizeof name, "?");
    name[strcspn(name, "\n")] = '\0';
    return name;
}

/* ---- a racing thread that flips one word ------------------------------------------------ */

struct esc_flip {
    void *slot;
    int width; /* 4 or 8 */
    uint64_t a, b;
    volatile int stop, started;
    pthread_t t;
};

ESC_FN void *esc_flipper(void *p)
{
    struct esc_flip *f = p;
    f->started = 1;
    while (!f->stop) {
        for (int i = 0; i < 64; i++) {
            if (f->width == 8) {
                __atomic_store_n((uint64_t *)f->slot, f->b, __ATOMIC_RELAXED);
                __asm__ volatile("pause");
                __atomic_store_n((uint64_t *)f->slot, f->a, __ATOMIC_RELAXED);
            } else {
                __atomic_store_n((uint32_t *)f->slot, (uint32_t)f->b, __ATOMIC_RELAXED);
                __asm__ volatile("pause");
                __atomic_store_n((uint32_t *)f->slot, (uint32_t)f->a, __ATOMIC_RELAXED);
            }
            __asm__ volatile("pause");
        }
    }
    return NULL;
}

/* Starts flipping *slot between a (what a check should see) and b (what it must not). */
ESC_FN int esc_flip_start(struct esc_flip *f, void *slot, int width, uint64_t a, uint64_t b)
{
    f->slot = slot;
    f->width = width;
    f->a = a;
    f->b = b;
    f->stop = 0;
    f->started = 0;
    int e = pthread_create(&f->t, NULL, esc_flipper, f);
    if (e) {
        esc_note("pthread_create for the racer: %s", esc_err(e));
        return 0;
    }
    while (!f->started)
        sched_yield();
    return 1;
}

ESC_FN void esc_flip_stop(struct esc_flip *f)
{
    f->stop = 1;
    pthread_join(f->t, NULL);
    if (f->width == 8)
        *(uint64_t *)f->slot = f->a;
    else
        *(uint32_t *)f->slot = (uint32_t)f->a;
}

/* ---- small helpers --------------------------------------------------------------------- */

ESC_FN pid_t esc_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* A second guest thread that only waits, until esc_stop_helper(): its tid names a guest
 * thread other than the caller. esc_start_helper returns that tid, or 0 (and says why). */
static int esc_helper_pipe[2] = {-1, -1};
static volatile pid_t esc_helper_tid;
static pthread_t esc_helper_thread;

ESC_FN void *esc_helper_body(void *arg)
{
    (void)arg;
    esc_helper_tid = esc_gettid();
    char c;
    while (read(esc_helper_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;
    return NULL;
}

ESC_FN pid_t esc_start_helper(void)
{
    if (pipe(esc_helper_pipe) != 0) {
        esc_say("pipe: %s", esc_err(errno));
        return 0;
    }
    if (pthread_create(&esc_helper_thread, NULL, esc_helper_body, NULL) != 0) {
        esc_say("pthread_create failed");
        return 0;
    }
    while (!esc_helper_tid)
        sched_yield();
    return esc_helper_tid;
}

ESC_FN void esc_stop_helper(void)
{
    if (write(esc_helper_pipe[1], "x", 1) != 1)
        esc_note("waking the helper: %s", esc_err(errno));
    pthread_join(esc_helper_thread, NULL);
    close(esc_helper_pipe[0]);
    close(esc_helper_pipe[1]);
}

/* The open-dup race: while the caller opens something the box must refuse, a second thread
 * dup()s the number the next descriptor gets, to catch a descriptor that exists for a moment
 * before the box closes it again. `wanted` says of a descriptor's /proc/self/fd link whether
 * it names what must not be had. esc_race returns the descriptor caught (the caller closes
 * it), or -1; `opened` counts the opens that succeeded. */
static volatile int esc_race_stop, esc_race_guess, esc_race_caught;
static int (*esc_race_wanted)(const char *target);

ESC_FN void esc_readlink_fd(int fd, char *out, size_t cap)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
}

ESC_FN void *esc_race_body(void *arg)
{
    (void)arg;
    while (!esc_race_stop) {
        int r = dup(esc_race_guess);
        if (r < 0)
            continue;
        char t[256];
        esc_readlink_fd(r, t, sizeof t);
        if (esc_race_wanted(t)) {
            esc_race_caught = r;
            break;
        }
        close(r);
    }
    return NULL;
}

ESC_FN int esc_race(const char *path, int flags, int (*wanted)(const char *target), int *opened)
{
    int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (probe < 0)
        return -1;
    close(probe);
    esc_race_guess = probe;
    esc_race_stop = 0;
    esc_race_caught = -1;
    esc_race_wanted = wanted;
    pthread_t t;
    if (pthread_create(&t, NULL, esc_race_body, NULL) != 0)
        return -1;
    int i;
    *opened = 0;
    for (i = 0; i < esc_iters && esc_race_caught < 0; i++) {
        int fd = open(path, flags);
        if (fd >= 0) {
            ++*opened;
            close(fd);
        }
    }
    esc_race_stop = 1;
    pthread_join(t, NULL);
    esc_note("open-dup race on %s: %d tries, %d opens, caught %d", path, i, *opened, esc_race_caught);
    return esc_race_caught;
}

/* Forks and execs argv (argv[0] a full path); returns the wait status or -1. */
ESC_FN int esc_run_prog(char *const argv[])
{
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p < 0)
        return -1;
    if (p == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    while (waitpid(p, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return st;
}

ESC_FN const char *esc_status(int st)
{
    static char s[64];
    if (st == -1)
        snprintf(s, sizeof s, "fork failed");
    else if (WIFEXITED(st))
        snprintf(s, sizeof s, "exit %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st) && sigabbrev_np(WTERMSIG(st)))
        snprintf(s, sizeof s, "killed by SIG%s", sigabbrev_np(WTERMSIG(st)));
    else if (WIFSIGNALED(st))
        snprintf(s, sizeof s, "killed by signal %d", WTERMSIG(st));
    else
        snprintf(s, sizeof s, "status %#x", st);
    return s;
}

ESC_FN double esc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- handlers glibc will not install --------------------------------------------------- */

/* glibc's sigaction refuses its internal signals 32 and 33 (and installs its own handlers for
 * them only when pthread_cancel or a multi-threaded set*id first needs them), so a program
 * that wants to see them installs its handler with the raw call and its own restorer. */
extern void esc_restore_rt(void);
__asm__(".text\n"
        ".globl esc_restore_rt\n"
        ".type esc_restore_rt, @function\n"
        "esc_restore_rt:\n"
        "    mov $15, %eax\n"
        "    syscall\n"
        "    hlt\n"
        ".size esc_restore_rt, .-esc_restore_rt\n");

ESC_FN int esc_raw_sigaction(int sig, void (*h)(int, siginfo_t *, void *), unsigned long flags)
{
    struct {
        void *handler;
        unsigned long flags;
        void (*restorer)(void);
        uint64_t mask;
    } ka = {(void *)h, flags | SA_SIGINFO | 0x04000000 /* SA_RESTORER */, esc_restore_rt, 0};
    return (int)syscall(SYS_rt_sigaction, sig, &ka, NULL, 8);
}

ESC_FN void *esc_nothing(void *arg)
{
    return arg;
}

/* Installs h for signals 32 and 33. glibc puts its own SIGSETXID handler in place when the
 * first thread is created, so one is created (and joined) first. */
ESC_FN void esc_own_internal_signals(void (*h)(int, siginfo_t *, void *))
{
    pthread_t t;
    if (pthread_create(&t, NULL, esc_nothing, NULL) == 0)
        pthread_join(t, NULL);
    esc_raw_sigaction(32, h, SA_RESTART);
    esc_raw_sigaction(33, h, SA_RESTART);
}

/* ---- the three places ------------------------------------------------------------------ */

static void (*esc_attack_fn)(void);

ESC_FN void *esc_thread_body(void *arg)
{
    (void)arg;
    esc_attack_fn();
    return NULL;
}

ESC_FN int esc_main(int argc, char **argv, int default_iters, void (*attack)(void))
{
    const char *v = getenv("ESC_VERBOSE");
    esc_verbose = v && *v && strcmp(v, "0") != 0;
    esc_pid0 = getpid();
    esc_iters = default_iters;
    if (argc > 2)
        esc_iters = atoi(argv[2]);
    if (argc < 2 || (strcmp(argv[1], "main") && strcmp(argv[1], "thread") && strcmp(argv[1], "fork"))) {
        fprintf(stderr, "usage: %s main|thread|fork [N]\n", argv[0]);
        return 2;
    }
    esc_where = argv[1];
    esc_attack_fn = attack;
    if (strcmp(esc_where, "main") == 0) {
        attack();
    } else if (strcmp(esc_where, "thread") == 0) {
        pthread_t t;
        esc_waiter_tid = esc_gettid();
        int e = pthread_create(&t, NULL, esc_thread_body, NULL);
        if (e) {
            esc_say("pthread_create: %s", esc_err(e));
            return 1;
        }
        pthread_join(t, NULL);
    } else {
        fflush(stdout);
        fflush(stderr);
        pid_t p = fork();
        if (p < 0) {
            esc_say("fork: %s", esc_err(errno));
            return 1;
        }
        if (p == 0) {
            attack();
            fflush(stdout);
            _exit(esc_escaped ? 99 : 0);
        }
        int st = 0;
        while (waitpid(p, &st, 0) < 0 && errno == EINTR)
            ;
        esc_say("child %s", WIFEXITED(st) ? (WEXITSTATUS(st) == 0 ? "exited 0" : WEXITSTATUS(st) == 99 ? "escaped" : esc_status(st)) : esc_status(st));
        if (WIFEXITED(st) && WEXITSTATUS(st) == 99)
            esc_escaped = 1;
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            esc_escaped |= 2;
        if (esc_parent_report)
            esc_parent_report();
    }
    esc_say("survived");
    return esc_escaped & 1 ? 99 : esc_escaped ? 98 : 0;
}

#endif
