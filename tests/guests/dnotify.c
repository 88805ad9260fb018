/*
 * dnotify.c DIR - asks for SIGUSR1 (F_SETSIG) when a file is created in DIR
 * (F_NOTIFY, DN_CREATE|DN_MULTISHOT), creates two files there, and prints how many
 * notifications arrived and with which descriptor. Exits 0 when both did.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t count, from_fd = -1;

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    count++;
    from_fd = si->si_fd;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    struct sigaction sa = {0};
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    int dir = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (dir < 0 || fcntl(dir, F_SETSIG, SIGUSR1) != 0 ||
        fcntl(dir, F_NOTIFY, DN_CREATE | DN_MULTISHOT) != 0) {
        perror("dnotify");
        return 1;
    }
    for (int i = 0; i < 2; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/file%d", argv[1], i);
        close(open(path, O_CREAT | O_WRONLY, 0600));
        for (int t = 0; t < 200 && count <= i; t++) {
            struct timespec ms = {0, 10000000};
            nanosleep(&ms, NULL);
        }
    }
    printf("notifications: %d, from the directory's descriptor: %s\n", (int)count,
           from_fd == dir ? "yes" : "no");
    return count == 2 ? 0 : 1;
}
