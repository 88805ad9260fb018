/*
 * A forked child closes every descriptor above stdio with close_range(3, ~0U, 0), as
 * Python's subprocess does before it execs, prints "child after close_range", then execs
 * /bin/echo "child exec'd"; the parent waits and prints "child exited N". A sandbox whose
 * own descriptors the child's close_range reached would lose the child.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        if (syscall(SYS_close_range, 3, ~0U, 0) != 0) {
            perror("close_range");
            _exit(2);
        }
        printf("child after close_range\n");
        fflush(stdout);
        execl("/bin/echo", "echo", "child exec'd", (char *)NULL);
        perror("execl");
        _exit(3);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) {
        perror("waitpid");
        return 1;
    }
    printf("child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 0;
}
