/*
 * sig_pipe.c - SIGPIPE from a write to a pipe whose read end is closed.
 *   default action, in a forked child: the child is killed by SIGPIPE
 *     ("default: child killed by SIGPIPE: yes");
 *   SIG_IGN: write returns -1/EPIPE ("ignored: write -1 EPIPE");
 *   a handler: it runs once, then write returns -1/EPIPE
 *     ("handler: ran 1 time(s), write -1 EPIPE");
 *   blocked: write returns -1/EPIPE and SIGPIPE is left pending
 *     ("blocked: write -1 EPIPE, pending yes"); SIG_IGN then discards it.
 * Exit status 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t ran;

static void on_pipe(int sig)
{
    (void)sig;
    ran++;
}

/* A pipe with its read end already closed; returns the write end. */
static int broken_pipe(void)
{
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        _exit(1);
    }
    close(fds[0]);
    return fds[1];
}

static const char *ename(int e)
{
    return e == EPIPE ? "EPIPE" : strerror(e);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        int w = broken_pipe();
        write(w, "x", 1);
        _exit(0); /* not reached: SIGPIPE kills */
    }
    int st;
    waitpid(p, &st, 0);
    printf("default: child killed by SIGPIPE: %s\n", WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE ? "yes" : "no");

    signal(SIGPIPE, SIG_IGN);
    int w = broken_pipe();
    errno = 0;
    int r = (int)write(w, "x", 1);
    printf("ignored: write %d %s\n", r, ename(errno));
    close(w);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_pipe;
    sigaction(SIGPIPE, &sa, NULL);
    w = broken_pipe();
    errno = 0;
    r = (int)write(w, "x", 1);
    printf("handler: ran %d time(s), write %d %s\n", (int)ran, r, ename(errno));
    close(w);

    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigprocmask(SIG_BLOCK, &set, NULL);
    w = broken_pipe();
    errno = 0;
    r = (int)write(w, "x", 1);
    sigpending(&pend);
    printf("blocked: write %d %s, pending %s\n", r, ename(errno), sigismember(&pend, SIGPIPE) ? "yes" : "no");
    signal(SIGPIPE, SIG_IGN);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    printf("after unblock with SIG_IGN: handler ran %d time(s)\n", (int)ran);
    close(w);
    return 0;
}
