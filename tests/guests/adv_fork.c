/*
 * adv_fork.c - adversarial: tries fork() up to 5 times; each child calls
 * _exit(0) at once and the parent waits for it.  If a fork fails it prints
 * "fork failed: <strerror(errno)>" and exits 0; if all five succeed it prints
 * "forked 5" and exits 0.  Either way the box must stay intact.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    for (int i = 0; i < 5; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            printf("fork failed: %s\n", strerror(errno));
            return 0;
        }
        if (pid == 0)
            _exit(0);
        int status;
        if (waitpid(pid, &status, 0) != pid) {
            printf("waitpid failed: %s\n", strerror(errno));
            return 0;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            printf("child %d did not exit cleanly\n", i);
    }
    printf("forked 5\n");
    return 0;
}
