/*
 * esc_self_view.c PLACE [N] - what the guest sees of itself, which must be itself and not
 * trapbox (see esc_common.h for PLACE and the output conventions). Nothing here is an escape by
 * itself; each line says whether the view is the program's own, so that a box that shows
 * trapbox's process (its descriptors, arguments, threads, addresses) differs from the native run:
 *   "/proc/self/fd: N entries, kvm-like 0" and "/proc/self/fdinfo: N entries" (names of
 *     kvm-like entries, if any, go to ESC_VERBOSE);
 *   "/proc/self/cmdline: matches argv", "/proc/self/environ: matches environ",
 *     "/proc/self/comm: matches", "/proc/self/status: Name matches, Threads T",
 *     "/proc/self/task: T threads, names all the program's";
 *   "/proc/self/stat: comm matches, code range holds main";
 *   "/proc/self/auxv: matches getauxval" (AT_PHDR, AT_ENTRY, AT_BASE, AT_EXECFN, AT_RANDOM);
 *   "<path>: names the program" for readlink of /proc/self/exe, /proc/<pid>/exe,
 *     /proc/<tid>/exe, /proc/thread-self/exe, /proc/self/task/<tid>/exe, and "open
 *     /proc/self/exe: the program" (same inode as argv[0]);
 *   "/proc/self/maps: trapbox lines 0, kvm lines 0";
 *   "sgdt base B limit L", "sidt base B limit L", "sldt S", "smsw M", "str S" - what the CPU
 *     (natively: the kernel's UMIP emulation, fixed dummy values) answers; in a box the
 *     descriptor-table bases would be trapbox's addresses, so the line also says whether the
 *     base is in the user half.
 * T is 1 in main and fork mode, 2 in thread mode. Exit status 0.
 */
#include "esc_common.h"

extern char **environ;
static char **args;
static int nargs;
static char **env0;

static void fds(void)
{
    int counts[2] = {0, 0}, kvm = 0;
    static const char *const dirs[] = {"/proc/self/fd", "/proc/self/fdinfo"};
    for (int k = 0; k < 2; k++) {
        DIR *d = opendir(dirs[k]);
        if (!d) {
            esc_say("%s: %s", dirs[k], esc_err(errno));
            continue;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            counts[k]++;
            if (k == 0) {
                char p[300], t[256];
                snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
                ssize_t n = readlink(p, t, sizeof t - 1);
                t[n > 0 ? n : 0] = '\0';
                if (strstr(t, "kvm")) {
                    kvm++;
                    esc_note("fd %s -> %s", e->d_name, t);
                }
            }
        }
        closedir(d);
    }
    esc_say("/proc/self/fd: %d entries, kvm-like %d", counts[0], kvm);
    esc_say("/proc/self/fdinfo: %d entries", counts[1]);
}

/* Whether a NUL-separated file equals the strings v[0..n). */
static int file_is_strings(const char *path, char **v, int n)
{
    static char buf[1 << 16], want[1 << 16];
    ssize_t got = esc_slurp(path, buf, sizeof buf);
    size_t w = 0;
    for (int i = 0; i < n && v[i]; i++) {
        size_t l = strlen(v[i]) + 1;
        if (w + l > sizeof want)
            return 0;
        memcpy(want + w, v[i], l);
        w += l;
    }
    if (got != (ssize_t)w || memcmp(buf, want, w) != 0) {
        esc_hex(path, buf, got > 0 ? (size_t)got : 0);
        return 0;
    }
    return 1;
}

static const char *comm_of_program(void)
{
    static char c[16];
    snprintf(c, sizeof c, "%s", esc_base(args[0]));
    return c;
}

static void identity(void)
{
    esc_say("/proc/self/cmdline: %s", file_is_strings("/proc/self/cmdline", args, nargs) ? "matches argv" : "differs");
    int ne = 0;
    while (env0[ne])
        ne++;
    esc_say("/proc/self/environ: %s",
            file_is_strings("/proc/self/environ", env0, ne) ? "matches environ" : "differs");
    char comm[64];
    esc_slurp("/proc/self/comm", comm, sizeof comm);
    comm[strcspn(comm, "\n")] = '\0';
    esc_note("comm %s", comm);
    esc_say("/proc/self/comm: %s", strcmp(comm, comm_of_program()) == 0 ? "matches" : "differs");

    static char st[8192];
    esc_slurp("/proc/self/status", st, sizeof st);
    char name[64] = "";
    int threads = -1;
    for (char *l = strtok(st, "\n"); l; l = strtok(NULL, "\n")) {
        if (strncmp(l, "Name:\t", 6) == 0)
            snprintf(name, sizeof name, "%s", l + 6);
        if (strncmp(l, "Threads:\t", 9) == 0)
            threads = atoi(l + 9);
    }
    esc_say("/proc/self/status: Name %s, Threads %d", strcmp(name, comm_of_program()) == 0 ? "matches" : "differs",
            threads);

    int tasks = 0, foreign_names = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        tasks++;
        char p[300], c[64];
        snprintf(p, sizeof p, "/proc/self/task/%s/comm", e->d_name);
        esc_slurp(p, c, sizeof c);
        c[strcspn(c, "\n")] = '\0';
        if (strcmp(c, comm_of_program()) != 0) {
            foreign_names++;
            esc_note("task %s is named %s", e->d_name, c);
        }
    }
    if (d)
        closedir(d);
    esc_say("/proc/self/task: %d threads, names %s", tasks, foreign_names ? "not all the program's" : "all the program's");

    static char stat[4096];
    esc_slurp("/proc/self/stat", stat, sizeof stat);
    char *open_paren = strchr(stat, '('), *close_paren = strrchr(stat, ')');
    char scomm[64] = "";
    if (open_paren && close_paren && close_paren > open_paren)
        snprintf(scomm, sizeof scomm, "%.*s", (int)(close_paren - open_paren - 1), open_paren + 1);
    unsigned long sc = esc_stat_field(stat, 26), ec = esc_stat_field(stat, 27), m = (unsigned long)(void *)identity;
    esc_note("stat code %#lx-%#lx, a function at %#lx", sc, ec, m);
    esc_say("/proc/self/stat: comm %s, code range %s", strcmp(scomm, comm_of_program()) == 0 ? "matches" : "differs",
            sc <= m && m < ec ? "holds the program's code" : "does not hold the program's code");

    int ok = 1;
    int fd = open("/proc/self/auxv", O_RDONLY | O_CLOEXEC);
    unsigned long kv[2];
    while (fd >= 0 && read(fd, kv, sizeof kv) == (ssize_t)sizeof kv && kv[0] != AT_NULL)
        if ((kv[0] == AT_PHDR || kv[0] == AT_ENTRY || kv[0] == AT_BASE || kv[0] == AT_EXECFN || kv[0] == AT_RANDOM) &&
            kv[1] != getauxval(kv[0])) {
            esc_note("auxv %lu: %#lx, getauxval %#lx", kv[0], kv[1], getauxval(kv[0]));
            ok = 0;
        }
    if (fd >= 0)
        close(fd);
    esc_say("/proc/self/auxv: %s", fd >= 0 && ok ? "matches getauxval" : "differs");
}

static void exe(void)
{
    char want[4096];
    const char *execfn = (const char *)getauxval(AT_EXECFN);
    if (!realpath(execfn ? execfn : args[0], want))
        snprintf(want, sizeof want, "?");
    char p[5][96];
    static const char *const label[5] = {"/proc/self/exe", "/proc/<pid>/exe", "/proc/<tid>/exe",
                                         "/proc/thread-self/exe", "/proc/self/task/<tid>/exe"};
    snprintf(p[0], sizeof p[0], "/proc/self/exe");
    snprintf(p[1], sizeof p[1], "/proc/%d/exe", (int)getpid());
    snprintf(p[2], sizeof p[2], "/proc/%d/exe", (int)esc_gettid());
    snprintf(p[3], sizeof p[3], "/proc/thread-self/exe");
    snprintf(p[4], sizeof p[4], "/proc/self/task/%d/exe", (int)esc_gettid());
    for (int i = 0; i < 5; i++) {
        char t[4096];
        ssize_t n = readlink(p[i], t, sizeof t - 1);
        t[n > 0 ? n : 0] = '\0';
        esc_note("%s -> %s", p[i], t);
        esc_say("%s: %s", label[i], strcmp(t, want) == 0 ? "names the program" : "names something else");
    }
    struct stat a, b;
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    int same = fd >= 0 && fstat(fd, &a) == 0 && stat(want, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
    if (fd >= 0)
        close(fd);
    esc_say("open /proc/self/exe: %s", same ? "the program" : "something else");
}

static void maps(void)
{
    esc_read_maps();
    int tb = 0, kvm = 0;
    for (int i = 0; i < esc_nmaps; i++) {
        if (strcmp(esc_base(esc_maps[i].path), "trapbox") == 0)
            tb++;
        if (strncmp(esc_maps[i].path, "anon_inode:kvm", 14) == 0)
            kvm++;
    }
    esc_say("/proc/self/maps: trapbox lines %d, kvm lines %d", tb, kvm);
}

static void descriptor_tables(void)
{
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } g = {0, 0}, i = {0, 0};
    unsigned long msw = 0;
    uint16_t ldt = 0xffff, tr = 0xffff;
    __asm__ volatile("sgdt %0" : "=m"(g));
    __asm__ volatile("sidt %0" : "=m"(i));
    __asm__ volatile("sldt %0" : "=r"(ldt));
    __asm__ volatile("smsw %0" : "=r"(msw));
    __asm__ volatile("str %0" : "=r"(tr));
    esc_say("sgdt base %#lx limit %#x (%s half)", (unsigned long)g.base, g.limit, g.base >> 63 ? "kernel" : "user");
    esc_say("sidt base %#lx limit %#x (%s half)", (unsigned long)i.base, i.limit, i.base >> 63 ? "kernel" : "user");
    esc_say("sldt %#x", ldt);
    esc_say("smsw %#lx", msw);
    esc_say("str %#x", tr);
}

static void attack(void)
{
    fds();
    identity();
    exe();
    maps();
    descriptor_tables();
}

int main(int argc, char **argv)
{
    args = argv;
    nargs = argc;
    env0 = environ;
    return esc_main(argc, argv, 1, attack);
}
