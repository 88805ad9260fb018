/*
 * spawn_nofile.c - lowers RLIMIT_NOFILE to 16, then posix_spawns `/bin/echo child says hi`
 * and waits for it: the child's output must come through. Prints the child's status.
 */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>

extern char **environ;

int main(void)
{
    struct rlimit r = {16, 16};
    if (setrlimit(RLIMIT_NOFILE, &r) != 0) {
        perror("setrlimit");
        return 1;
    }
    char *argv[] = {"/bin/echo", "child says hi", NULL};
    pid_t pid;
    int e = posix_spawn(&pid, "/bin/echo", NULL, NULL, argv, environ);
    if (e != 0) {
        printf("posix_spawn: error %d\n", e);
        return 1;
    }
    int status;
    waitpid(pid, &status, 0);
    fflush(stdout);
    printf("child status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
