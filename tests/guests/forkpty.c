/*
 * forkpty.c - runs `sh -c 'stty size; tty'` on a new pseudo-terminal of 30 rows and 120
 * columns (forkpty), reads everything the child writes to it and prints it with the pty's
 * number replaced by N, then the child's exit status. Exits 0 when the child exited 0.
 */
#define _GNU_SOURCE
#include <pty.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    struct winsize ws = {.ws_row = 30, .ws_col = 120};
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, &ws);
    if (pid < 0) {
        perror("forkpty");
        return 1;
    }
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "stty size; tty", (char *)NULL);
        _exit(127);
    }
    char buf[4096];
    size_t len = 0;
    ssize_t n;
    /* The master reads EIO once the child side is closed. */
    while (len < sizeof buf - 1 && (n = read(master, buf + len, sizeof buf - 1 - len)) > 0)
        len += n;
    buf[len] = 0;
    int status;
    waitpid(pid, &status, 0);
    for (char *p = buf; *p; p++) {
        if (*p == '\r')
            continue;
        if (strncmp(p, "/dev/pts/", 9) == 0) {
            fputs("/dev/pts/N", stdout);
            p += 9;
            while (p[1] >= '0' && p[1] <= '9')
                p++;
            continue;
        }
        putchar(*p);
    }
    printf("child: %s %d\n", WIFEXITED(status) ? "exit" : "signal",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
