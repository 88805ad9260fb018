/*
 * sig_kill.c - signals between and within guest processes.
 *   SIGUSR1 to self with kill(): the handler runs before kill returns
 *     ("self SIGUSR1: handler ran before kill returned: yes").
 *   Blocked SIGUSR2, SIGUSR1, SIGTERM (raised in that order, handlers for all) are
 *     pending together ("pending: USR1 yes USR2 yes TERM yes, delivered while
 *     blocked: none"). On unblock Linux sets up a frame for every pending signal at
 *     once, lowest number first, each on top of the previous one, so the handlers
 *     run highest number first: "delivered: TERM USR2 USR1".
 *   A child installs a SIGTERM handler, says it is ready through a pipe and
 *     pauses; the parent checks it with kill(pid, 0), sends SIGTERM; the child's
 *     handler prints "child: got SIGTERM from the parent: yes" and _exits 3.
 *   A child stopped with SIGSTOP and resumed with SIGCONT: waitpid reports
 *     WIFSTOPPED (SIGSTOP) with WUNTRACED and WIFCONTINUED with WCONTINUED; it
 *     is then killed with SIGKILL; kill(pid, 0) after reaping fails with ESRCH.
 * Exit status 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *yes(int b)
{
    return b ? "yes" : "no";
}

static char order[64];
static volatile sig_atomic_t self_ran;

static void on_sig(int sig)
{
    if (order[0])
        strcat(order, " ");
    strcat(order, sigabbrev_np(sig));
    if (sig == SIGUSR1)
        self_ran = 1;
}

static volatile pid_t term_from;
static void child_on_term(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    char msg[64];
    int n = snprintf(msg, sizeof msg, "child: got SIGTERM from the parent: %s\n", yes(si->si_pid == getppid()));
    write(1, msg, (size_t)n);
    _exit(3);
}

static void describe(const char *what, int st)
{
    if (WIFEXITED(st))
        printf("%s: exited %d\n", what, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        printf("%s: killed by %s\n", what, sigabbrev_np(WTERMSIG(st)));
    else if (WIFSTOPPED(st))
        printf("%s: stopped by %s\n", what, sigabbrev_np(WSTOPSIG(st)));
    else if (WIFCONTINUED(st))
        printf("%s: continued\n", what);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    kill(getpid(), SIGUSR1);
    printf("self SIGUSR1: handler ran before kill returned: %s\n", yes(self_ran));

    order[0] = 0;
    sigset_t set, old, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, &old);
    raise(SIGUSR2);
    raise(SIGUSR1);
    raise(SIGTERM);
    sigpending(&pend);
    printf("pending: USR1 %s USR2 %s TERM %s, delivered while blocked: %s\n", yes(sigismember(&pend, SIGUSR1)),
           yes(sigismember(&pend, SIGUSR2)), yes(sigismember(&pend, SIGTERM)), order[0] ? order : "none");
    sigprocmask(SIG_SETMASK, &old, NULL);
    printf("delivered: %s\n", order);

    /* Parent -> child SIGTERM with a handler in the child. */
    int ready[2];
    if (pipe(ready))
        return 1;
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        struct sigaction ct;
        memset(&ct, 0, sizeof ct);
        ct.sa_sigaction = child_on_term;
        ct.sa_flags = SA_SIGINFO;
        sigaction(SIGTERM, &ct, NULL);
        write(ready[1], "r", 1);
        for (;;)
            pause();
    }
    char c;
    read(ready[0], &c, 1);
    printf("kill(child, 0): %d\n", kill(p, 0));
    kill(p, SIGTERM);
    int st;
    waitpid(p, &st, 0);
    describe("SIGTERMed child", st);

    /* Stop, continue, kill. */
    fflush(stdout);
    p = fork();
    if (p == 0) {
        for (;;)
            pause();
    }
    kill(p, SIGSTOP);
    waitpid(p, &st, WUNTRACED);
    describe("child", st);
    kill(p, SIGCONT);
    waitpid(p, &st, WCONTINUED);
    describe("child", st);
    kill(p, SIGKILL);
    waitpid(p, &st, 0);
    describe("child", st);
    errno = 0;
    int r = kill(p, 0);
    printf("kill(reaped child, 0): %d %s\n", r, errno == ESRCH ? "ESRCH" : strerror(errno));
    return 0;
}
