/*
 * sigint_disposition.c - says whether SIGINT was ignored when the program started, and
 * takes a different path on each answer (a getppid call only when it is not ignored), as
 * interpreters do before installing their SIGINT handler.
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    struct sigaction old;
    if (sigaction(SIGINT, NULL, &old) != 0)
        return 1;
    if (old.sa_handler == SIG_IGN) {
        printf("SIGINT ignored\n");
    } else {
        printf("SIGINT default, parent %d\n", getppid() > 0);
    }
    return 0;
}
