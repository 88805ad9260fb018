/*
 * fork_exec_loop.c N [PROGRAM] - N times: fork, execv PROGRAM (default /bin/true)
 * in the child, waitpid in the parent. Prints "N children, all exited 0" (or the
 * first failure) and exits 0 when every child exited 0. The process benchmark
 * divides its time by N for the cost of one fork+exec+wait.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 10;
    char *prog = argc > 2 ? argv[2] : "/bin/true";
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            printf("fork %ld: %s\n", i, strerror(errno));
            return 1;
        }
        if (pid == 0) {
            char *args[] = {prog, NULL};
            execv(prog, args);
            _exit(127);
        }
        int st;
        if (waitpid(pid, &st, 0) != pid) {
            printf("waitpid %ld: %s\n", i, strerror(errno));
            return 1;
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            printf("child %ld: status 0x%x\n", i, st);
            return 1;
        }
    }
    printf("%ld children, all exited 0\n", n);
    return 0;
}
