/*
 * sig_chld.c - SIGCHLD with SA_SIGINFO from exiting children.
 * SIGCHLD is blocked; for each child (exit codes 1, 2, 3, then one the parent
 * kills with SIGTERM while it blocks on a pipe) the parent waits in sigsuspend
 * until the handler has run, then reaps it with waitpid. Per child one line:
 *   "child N: si_pid ok yes, CLD_EXITED, si_status 1, reaped ok"
 *   (CLD_KILLED and si_status 15 for the killed child).
 * Then SIGCHLD set to SIG_IGN: children are reaped by the kernel and waitpid
 * fails with ECHILD ("SIG_IGN auto-reap: waitpid ECHILD").
 * Exit status 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got, code, status;
static volatile pid_t from;

static void on_chld(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    got++;
    code = si->si_code;
    status = si->si_status;
    from = si->si_pid;
}

static const char *code_name(int c)
{
    switch (c) {
    case CLD_EXITED: return "CLD_EXITED";
    case CLD_KILLED: return "CLD_KILLED";
    case CLD_DUMPED: return "CLD_DUMPED";
    case CLD_STOPPED: return "CLD_STOPPED";
    default: return "other";
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_chld;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t block, empty;
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigemptyset(&empty);
    sigprocmask(SIG_BLOCK, &block, NULL);

    for (int i = 1; i <= 4; i++) {
        int fds[2];
        if (pipe(fds))
            return 1;
        fflush(stdout);
        pid_t p = fork();
        if (p < 0) {
            printf("fork: %s\n", strerror(errno));
            return 1;
        }
        if (p == 0) {
            if (i == 4) {
                char c;
                close(fds[1]);
                read(fds[0], &c, 1);
            }
            _exit(i);
        }
        close(fds[0]);
        if (i == 4)
            kill(p, SIGTERM);
        int before = got;
        while (got == before) {
            if (sigsuspend(&empty) != -1 || errno != EINTR) {
                /* Fail fast instead of spinning: sigsuspend only ever returns EINTR. */
                printf("sigsuspend: %s\n", strerror(errno));
                return 1;
            }
        }
        int st;
        pid_t w = waitpid(p, &st, 0);
        printf("child %d: si_pid ok %s, %s, si_status %d, reaped %s\n", i, from == p ? "yes" : "no",
               code_name(code), (int)status, w == p ? "ok" : "failed");
        close(fds[1]);
    }

    signal(SIGCHLD, SIG_IGN);
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0)
        _exit(0);
    int st;
    errno = 0;
    pid_t w = waitpid(p, &st, 0);
    printf("SIG_IGN auto-reap: waitpid %s\n", w < 0 && errno == ECHILD ? "ECHILD" : "returned the child");
    return 0;
}
