/*
 * launch.c PROGRAM [ARGS...] - runs PROGRAM in a forked child through execv (argv[0]
 * is PROGRAM), waits for it and reports how it ended on stdout, after everything the
 * child printed: "launch: exited N" or "launch: killed by SIGNAME". Exits with the
 * child's status as a shell reports it (N, or 128 + the signal number), so a program
 * run through launch ends exactly like the program itself. If execv fails the child
 * prints "launch: execv: <strerror>" and exits 127.
 * Used to run the adversarial guests from a forked child and to exec a program of a
 * different link form (a static binary from a dynamic one).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: launch PROGRAM [ARGS...]\n");
        return 2;
    }
    fflush(stdout);
    pid_t p = fork();
    if (p < 0) {
        printf("launch: fork: %s\n", strerror(errno));
        return 126;
    }
    if (p == 0) {
        execv(argv[1], argv + 1);
        printf("launch: execv: %s\n", strerror(errno));
        fflush(stdout);
        _exit(127);
    }
    int st;
    if (waitpid(p, &st, 0) != p) {
        printf("launch: waitpid: %s\n", strerror(errno));
        return 126;
    }
    if (WIFSIGNALED(st)) {
        printf("launch: killed by SIG%s\n", sigabbrev_np(WTERMSIG(st)));
        return 128 + WTERMSIG(st);
    }
    printf("launch: exited %d\n", WEXITSTATUS(st));
    return WEXITSTATUS(st);
}
