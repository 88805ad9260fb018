/*
 * esc_proc_mem.c PLACE [N] - escape attempts through the memory files of /proc and
 * process_vm_readv/writev (see esc_common.h for PLACE, N and the output conventions).
 *
 * The baseline is open("/proc/self/mem") (O_RDWR, else O_RDONLY). Every other way to name a
 * memory file is compared with it, one line each: "<route>: same as /proc/self/mem", where a
 * route that opens while the baseline is refused is a bypass (ESCAPED) and one refused while
 * the baseline opens prints "<route>: refused while /proc/self/mem opens". Routes: /proc/<pid>/mem,
 * /proc/<own tid>/mem, /proc/thread-self/mem, /proc/self/task/<tid>/mem,
 * /proc/<pid>/task/<tid>/mem, /proc/<other thread's tid>/mem, openat() with a dirfd of
 * /proc/self, /proc/<tid> and /proc/self/task/<tid>, openat2, /proc/self/root/proc/self/mem,
 * a relative open after chdir("/proc/self"), a symlink the program creates to /proc/self/mem,
 * to /proc/<tid>/mem and to /proc/thread-self, an O_PATH descriptor reopened through
 * /proc/self/fd; in fork mode also /proc/<parent>/mem, /proc/<parent>/task/<parent>/mem and
 * openat(/proc/<parent>, "mem"). Every descriptor a route yields is used to read trapbox's
 * memory (pread at every foreign address) and to write one byte of trapbox's argument strings
 * (restored at once); either succeeding is ESCAPED.
 * Then "open-dup race: same as /proc/self/mem": N opens of /proc/self/mem while a second thread
 * dup()s the number the open will get, to catch the descriptor in the moment between the
 * kernel's open and a box closing it again. Then "process_vm_readv own: safe",
 * "process_vm_writev own: safe" (and "... parent: safe" in fork mode): reads of every foreign
 * address and a write of the argument strings through those calls.
 * Natively every route opens and nothing of trapbox exists, so every line is the safe one.
 * Exit status 0, or 99 after an escape.
 */
#include "esc_common.h"
#include <linux/openat2.h>
#include <sys/uio.h>

static int base_ok;
static char tmpd[64];
static unsigned char arg_first; /* first byte of the foreign argument strings */

/* Reads and writes trapbox memory through a memory file of process `pid`. */
static void try_mem_fd(int fd, const char *how)
{
    unsigned char buf[16];
    for (int i = 0; i < esc_ntg; i++) {
        ssize_t n = pread(fd, buf, sizeof buf, (off_t)esc_tg[i].addr);
        if (n > 0) {
            esc_hex(how, buf, (size_t)n);
            esc_escape("%s read trapbox memory (%s)", how, esc_tg[i].what);
            break;
        }
        esc_note("%s: pread %s: %s", how, esc_tg[i].what, esc_res(n, errno));
    }
    if (esc_argw) {
        unsigned char mark = arg_first == 'E' ? 'F' : 'E';
        ssize_t w = pwrite(fd, &mark, 1, (off_t)esc_argw);
        if (w == 1) {
            int ch = esc_cmdline_changed();
            pwrite(fd, &arg_first, 1, (off_t)esc_argw);
            esc_cmdline_changed();
            esc_escape("%s wrote trapbox memory%s", how, ch ? " (its command line changed)" : "");
        } else {
            esc_note("%s: pwrite argument strings: %s", how, esc_res(w, errno));
        }
    }
}

/* Opens with O_RDWR, else O_RDONLY. */
static int open_mem(int dirfd, const char *path)
{
    int fd = openat(dirfd, path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && (errno == EACCES || errno == EPERM))
        fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    return fd;
}

/* One route's line; consumes fd. */
static void route(const char *label, int fd)
{
    int e = errno;
    esc_note("%s: %s", label, fd >= 0 ? "opened" : esc_err(e));
    if (fd >= 0) {
        try_mem_fd(fd, label);
        close(fd);
    }
    int ok = fd >= 0;
    if (ok == base_ok)
        esc_say("%s: same as /proc/self/mem", label);
    else if (ok)
        esc_escape("%s opens while /proc/self/mem is refused", label);
    else
        esc_say("%s: refused while /proc/self/mem opens", label);
}

static void route_path(const char *label, const char *path)
{
    errno = 0;
    route(label, open_mem(AT_FDCWD, path));
}

static void route_at(const char *label, const char *dir, const char *name)
{
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) {
        esc_note("%s: open %s: %s", label, dir, esc_err(errno));
        route(label, -1);
        return;
    }
    errno = 0;
    int fd = open_mem(d, name);
    int e = errno;
    close(d);
    errno = e;
    route(label, fd);
}

static void route_link(const char *label, const char *target, const char *suffix)
{
    char link[128], path[160];
    snprintf(link, sizeof link, "%s/l%d", tmpd, (int)(esc_now() * 1000) % 100000);
    unlink(link);
    if (symlink(target, link) != 0) {
        esc_note("%s: symlink: %s", label, esc_err(errno));
        route(label, -1);
        return;
    }
    snprintf(path, sizeof path, "%s%s", link, suffix);
    errno = 0;
    int fd = open_mem(AT_FDCWD, path);
    int e = errno;
    unlink(link);
    errno = e;
    route(label, fd);
}

/* ---- the open-dup race ------------------------------------------------------------------ */

static int names_mem(const char *target)
{
    return strstr(target, "/mem") != NULL;
}

static void open_dup_race(void)
{
    int opened;
    int race_caught = esc_race("/proc/self/mem", O_RDONLY, names_mem, &opened);
    if (race_caught >= 0) {
        try_mem_fd(race_caught, "open-dup race");
        close(race_caught);
        if (!base_ok) {
            esc_escape("open-dup race kept a /proc/self/mem descriptor the box refuses");
            return;
        }
    }
    esc_say("open-dup race: same as /proc/self/mem");
}

/* ---- process_vm_readv/writev ------------------------------------------------------------ */

static void vm_rw(pid_t pid, const char *who)
{
    char label[64];
    unsigned char buf[16];
    int esc = 0;
    for (int i = 0; i < esc_ntg && !esc; i++) {
        struct iovec l = {buf, sizeof buf}, r = {(void *)esc_tg[i].addr, sizeof buf};
        ssize_t n = process_vm_readv(pid, &l, 1, &r, 1, 0);
        esc_note("process_vm_readv %s %s: %s", who, esc_tg[i].what, esc_res(n, errno));
        if (n > 0) {
            esc_hex("process_vm_readv", buf, (size_t)n);
            esc_escape("process_vm_readv read %s trapbox memory (%s)", who, esc_tg[i].what);
            esc = 1;
        }
    }
    if (!esc) {
        snprintf(label, sizeof label, "process_vm_readv %s", who);
        esc_say("%s: safe", label);
    }
    if (esc_argw) {
        unsigned char mark = arg_first == 'E' ? 'F' : 'E';
        struct iovec l = {&mark, 1}, r = {(void *)esc_argw, 1};
        ssize_t n = process_vm_writev(pid, &l, 1, &r, 1, 0);
        esc_note("process_vm_writev %s: %s", who, esc_res(n, errno));
        if (n == 1) {
            int ch = esc_cmdline_changed();
            struct iovec back = {&arg_first, 1};
            process_vm_writev(pid, &back, 1, &r, 1, 0);
            esc_cmdline_changed();
            esc_escape("process_vm_writev wrote %s trapbox memory%s", who, ch ? " (command line changed)" : "");
            return;
        }
    }
    esc_say("process_vm_writev %s: safe", who);
}

static void attack(void)
{
    esc_find_foreign();
    arg_first = esc_cmd0_len > 0 ? (unsigned char)esc_cmd0[0] : 0;
    snprintf(tmpd, sizeof tmpd, "/tmp/esc_proc_mem.XXXXXX");
    if (!mkdtemp(tmpd)) {
        esc_say("mkdtemp: %s", esc_err(errno));
        return;
    }
    /* Another guest thread: its tid names a memory file too. */
    pid_t helper_tid = esc_start_helper();
    if (!helper_tid)
        return;

    pid_t pid = getpid(), tid = esc_gettid();
    char p[160], d[160];

    errno = 0;
    int fd = open_mem(AT_FDCWD, "/proc/self/mem");
    base_ok = fd >= 0;
    esc_note("/proc/self/mem: %s", base_ok ? "opened" : esc_err(errno));
    if (fd >= 0) {
        try_mem_fd(fd, "/proc/self/mem");
        close(fd);
    }

    snprintf(p, sizeof p, "/proc/%d/mem", (int)pid);
    route_path("/proc/<pid>/mem", p);
    snprintf(p, sizeof p, "/proc/%d/mem", (int)tid);
    route_path("/proc/<own tid>/mem", p);
    route_path("/proc/thread-self/mem", "/proc/thread-self/mem");
    snprintf(p, sizeof p, "/proc/self/task/%d/mem", (int)tid);
    route_path("/proc/self/task/<tid>/mem", p);
    snprintf(p, sizeof p, "/proc/%d/task/%d/mem", (int)pid, (int)tid);
    route_path("/proc/<pid>/task/<tid>/mem", p);
    snprintf(p, sizeof p, "/proc/%d/mem", (int)helper_tid);
    route_path("/proc/<other thread's tid>/mem", p);
    snprintf(p, sizeof p, "/proc/%d/task/%d/mem", (int)pid, (int)helper_tid);
    route_path("/proc/<pid>/task/<other tid>/mem", p);
    route_at("openat(/proc/self, mem)", "/proc/self", "mem");
    snprintf(d, sizeof d, "/proc/%d", (int)tid);
    route_at("openat(/proc/<tid>, mem)", d, "mem");
    snprintf(d, sizeof d, "/proc/self/task/%d", (int)tid);
    route_at("openat(/proc/self/task/<tid>, mem)", d, "mem");
    {
        struct open_how how = {.flags = O_RDONLY | O_CLOEXEC};
        errno = 0;
        route("openat2 /proc/self/mem", (int)syscall(SYS_openat2, AT_FDCWD, "/proc/self/mem", &how, sizeof how));
    }
    route_path("/proc/self/root/proc/self/mem", "/proc/self/root/proc/self/mem");
    {
        int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        errno = 0;
        int f = chdir("/proc/self") == 0 ? open_mem(AT_FDCWD, "mem") : -1;
        int e = errno;
        if (cwd >= 0) {
            if (fchdir(cwd) != 0)
                esc_note("fchdir back: %s", esc_err(errno));
            close(cwd);
        }
        errno = e;
        route("relative mem after chdir /proc/self", f);
    }
    route_link("symlink to /proc/self/mem", "/proc/self/mem", "");
    snprintf(p, sizeof p, "/proc/%d/mem", (int)tid);
    route_link("symlink to /proc/<tid>/mem", p, "");
    route_link("symlink to /proc/thread-self, then mem", "/proc/thread-self", "/mem");
    {
        int op = open("/proc/self/mem", O_PATH | O_CLOEXEC);
        int f = -1;
        if (op >= 0) {
            snprintf(p, sizeof p, "/proc/self/fd/%d", op);
            f = open_mem(AT_FDCWD, p);
            int e = errno;
            close(op);
            errno = e;
        }
        route("O_PATH descriptor reopened via /proc/self/fd", f);
    }
    if (strcmp(esc_where, "fork") == 0) {
        snprintf(p, sizeof p, "/proc/%d/mem", (int)esc_pid0);
        route_path("/proc/<parent>/mem", p);
        snprintf(p, sizeof p, "/proc/%d/task/%d/mem", (int)esc_pid0, (int)esc_pid0);
        route_path("/proc/<parent>/task/<parent>/mem", p);
        snprintf(d, sizeof d, "/proc/%d", (int)esc_pid0);
        route_at("openat(/proc/<parent>, mem)", d, "mem");
    }

    open_dup_race();

    vm_rw(getpid(), "own");
    if (strcmp(esc_where, "fork") == 0)
        vm_rw(esc_pid0, "parent");

    esc_stop_helper();
    rmdir(tmpd);
}

int main(int argc, char **argv)
{
    return esc_main(argc, argv, 500, attack);
}
