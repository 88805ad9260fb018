/*
 * fork_chain.c - processes: fork, exec, wait, pipes, process groups, vfork.
 *
 * fork_chain chain D: prints "depth D", then (D > 0) forks a child that execs
 *   /proc/self/exe with "chain D-1" and waits for it; prints "depth D: child
 *   exited N" and exits N+1. Depth 0 exits 10, so "chain 5" exits 15.
 * fork_chain fdcheck A B: (after exec) prints whether fd A is open and fd B closed.
 * fork_chain (no arguments): runs every section below in order and exits 0:
 *   exit codes 0, 7 and 42 through waitpid; a child killed by its own SIGUSR2
 *   and one the parent SIGKILLs while it blocks on a pipe (WIFSIGNALED and
 *   WTERMSIG); a pipe round trip (parent sends "ping", child answers "PING");
 *   getppid in the child; fd inheritance across fork (plain and O_CLOEXEC fds
 *   both open) and across exec (argv[0] "fdcheck": plain open, O_CLOEXEC
 *   closed); getpgid/setpgid/setsid in children (booleans only); vfork + _exit(3);
 *   vfork + exec; execve of a nonexistent path (ENOENT, seen in the child);
 *   waitid with CLD_EXITED and si_status; wait4 with WNOHANG while the child
 *   runs (0) and ECHILD once there are no children.
 * Output is line-buffered so parent and child lines never interleave out of order:
 * every parent line about a child is printed after waiting for it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *yes(int b)
{
    return b ? "yes" : "no";
}

static void describe(const char *what, int st)
{
    if (WIFEXITED(st))
        printf("%s: exited %d\n", what, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        printf("%s: killed by signal %d (%s)\n", what, WTERMSIG(st), sigabbrev_np(WTERMSIG(st)));
    else
        printf("%s: status 0x%x\n", what, st);
}

static pid_t xfork(void)
{
    fflush(stdout);
    pid_t p = fork();
    if (p < 0) {
        printf("fork: %s\n", strerror(errno));
        exit(1);
    }
    return p;
}

static int xwait(pid_t p)
{
    int st = 0;
    if (waitpid(p, &st, 0) != p) {
        printf("waitpid: %s\n", strerror(errno));
        exit(1);
    }
    return st;
}

static int chain(int depth)
{
    printf("depth %d\n", depth);
    if (depth == 0)
        return 10;
    pid_t p = xfork();
    if (p == 0) {
        char d[16];
        snprintf(d, sizeof d, "%d", depth - 1);
        char *args[] = {"fork_chain", "chain", d, NULL};
        execv("/proc/self/exe", args);
        printf("execv /proc/self/exe: %s\n", strerror(errno));
        _exit(127);
    }
    int st = xwait(p);
    if (!WIFEXITED(st)) {
        describe("child", st);
        return 1;
    }
    printf("depth %d: child exited %d\n", depth, WEXITSTATUS(st));
    return WEXITSTATUS(st) + 1;
}

static void exit_codes(void)
{
    int codes[] = {0, 7, 42};
    for (int i = 0; i < 3; i++) {
        pid_t p = xfork();
        if (p == 0)
            _exit(codes[i]);
        char what[32];
        snprintf(what, sizeof what, "child %d", i);
        describe(what, xwait(p));
    }
}

static void killed(void)
{
    pid_t p = xfork();
    if (p == 0) {
        raise(SIGUSR2);
        _exit(99);
    }
    describe("child raising SIGUSR2", xwait(p));

    int fds[2];
    if (pipe(fds) != 0)
        exit(1);
    p = xfork();
    if (p == 0) {
        char c;
        close(fds[1]);
        read(fds[0], &c, 1); /* blocks: the parent never writes */
        _exit(98);
    }
    close(fds[0]);
    kill(p, SIGKILL);
    describe("child blocked on a pipe, SIGKILLed", xwait(p));
    close(fds[1]);
}

static void pipes(void)
{
    int down[2], up[2];
    if (pipe(down) || pipe(up))
        exit(1);
    pid_t parent = getpid();
    pid_t p = xfork();
    if (p == 0) {
        close(down[1]);
        close(up[0]);
        char buf[16] = "";
        ssize_t n = read(down[0], buf, sizeof buf - 1);
        for (ssize_t i = 0; i < n; i++)
            buf[i] = (char)(buf[i] >= 'a' && buf[i] <= 'z' ? buf[i] - 32 : buf[i]);
        write(up[1], buf, n > 0 ? (size_t)n : 0);
        printf("child: getppid is the parent: %s\n", yes(getppid() == parent));
        _exit(0);
    }
    close(down[0]);
    close(up[1]);
    write(down[1], "ping", 4);
    close(down[1]);
    char buf[16] = "";
    ssize_t n = read(up[0], buf, sizeof buf - 1);
    close(up[0]);
    describe("pipe child", xwait(p));
    printf("parent got %zd bytes: %s\n", n, buf);
}

static void fd_inheritance(const char *self)
{
    int plain = open("/dev/null", O_RDONLY);
    int cloexec = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t p = xfork();
    if (p == 0) {
        printf("after fork: plain open %s, cloexec open %s\n", yes(fcntl(plain, F_GETFD) >= 0),
               yes(fcntl(cloexec, F_GETFD) >= 0));
        char a[16], b[16];
        snprintf(a, sizeof a, "%d", plain);
        snprintf(b, sizeof b, "%d", cloexec);
        char *args[] = {(char *)self, "fdcheck", a, b, NULL};
        fflush(stdout);
        execv(self, args);
        printf("execv %s: %s\n", self, strerror(errno));
        _exit(127);
    }
    describe("fd child", xwait(p));
    close(plain);
    close(cloexec);
}

static void groups(void)
{
    pid_t mypgid = getpgid(0);
    pid_t p = xfork();
    if (p == 0) {
        printf("child: starts in the parent's group: %s\n", yes(getpgid(0) == mypgid));
        int r = setpgid(0, 0);
        printf("child: setpgid(0, 0) ok: %s, now leads its group: %s\n", yes(r == 0), yes(getpgid(0) == getpid()));
        _exit(0);
    }
    describe("setpgid child", xwait(p));

    p = xfork();
    if (p == 0) {
        pid_t oldsid = getsid(0);
        pid_t s = setsid();
        printf("child: setsid returned its pid: %s, new session: %s, leads group: %s\n", yes(s == getpid()),
               yes(getsid(0) == getpid() && getsid(0) != oldsid), yes(getpgid(0) == getpid()));
        _exit(0);
    }
    describe("setsid child", xwait(p));
}

static void vforks(const char *self)
{
    fflush(stdout);
    pid_t p = vfork();
    if (p == 0)
        _exit(3);
    describe("vfork child", xwait(p));

    fflush(stdout);
    p = vfork();
    if (p == 0) {
        char *args[] = {(char *)self, "fdcheck", "1", "999", NULL};
        execv(self, args);
        _exit(127);
    }
    describe("vfork+exec child", xwait(p));
}

static void exec_missing(void)
{
    pid_t p = xfork();
    if (p == 0) {
        char *args[] = {"nope", NULL};
        char *env[] = {NULL};
        execve("/nonexistent/dir/prog", args, env);
        printf("child: execve of a nonexistent path: %s\n", errno == ENOENT ? "ENOENT" : strerror(errno));
        _exit(errno == ENOENT ? 5 : 6);
    }
    describe("execve-ENOENT child", xwait(p));
}

static void waits(void)
{
    pid_t p = xfork();
    if (p == 0)
        _exit(21);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_PID, p, &si, WEXITED);
    printf("waitid: ok %s, pid matches %s, CLD_EXITED %s, si_status %d\n", yes(r == 0), yes(si.si_pid == p),
           yes(si.si_code == CLD_EXITED), si.si_status);

    int go[2];
    if (pipe(go))
        exit(1);
    p = xfork();
    if (p == 0) {
        char c;
        close(go[1]);
        read(go[0], &c, 1);
        _exit(0);
    }
    close(go[0]);
    int st;
    struct rusage ru;
    printf("wait4 WNOHANG while the child runs: %d\n", (int)wait4(p, &st, WNOHANG, &ru));
    close(go[1]); /* lets the child finish */
    printf("wait4 blocking: pid matches %s\n", yes(wait4(p, &st, 0, &ru) == p));
    describe("wait4 child", st);
    errno = 0;
    r = wait(&st);
    printf("wait when childless: %d %s\n", r, errno == ECHILD ? "ECHILD" : strerror(errno));
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "chain") == 0)
        return chain(atoi(argv[2]));
    if (argc == 4 && strcmp(argv[1], "fdcheck") == 0) {
        printf("after exec: fd %s open %s, fd %s closed %s\n", argv[2], yes(fcntl(atoi(argv[2]), F_GETFD) >= 0),
               argv[3], yes(fcntl(atoi(argv[3]), F_GETFD) < 0));
        return 0;
    }
    exit_codes();
    killed();
    pipes();
    fd_inheritance(argv[0]);
    groups();
    vforks(argv[0]);
    exec_missing();
    waits();
    printf("done\n");
    return 0;
}
