/* A signal that becomes deliverable at a handler's rt_sigreturn, the handler having
 * interrupted a call the kernel never restarts: SIGALRM (SA_RESTART, SIGUSR2 in its mask)
 * interrupts nanosleep and raises SIGUSR2, which runs when the first handler returns. The
 * sleep must then fail with EINTR, once, after both handlers; trapbox once took the EINTR
 * restored by rt_sigreturn for rt_sigreturn's own result and "restarted" it at the sleep's
 * `syscall` (SIGSEGV). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile int order[4], n;

static void on_alarm(int sig) {
    (void)sig;
    order[n++] = 1;
    raise(SIGUSR2);
}

static void on_usr2(int sig) {
    (void)sig;
    order[n++] = 2;
}

int main(void) {
    struct sigaction a;
    memset(&a, 0, sizeof a);
    a.sa_handler = on_alarm;
    a.sa_flags = SA_RESTART;
    sigaddset(&a.sa_mask, SIGUSR2);
    sigaction(SIGALRM, &a, 0);
    a.sa_handler = on_usr2;
    sigemptyset(&a.sa_mask);
    sigaction(SIGUSR2, &a, 0);
    for (int round = 0; round < 3; round++) {
        n = 0;
        struct itimerval it = {{0, 0}, {0, 20000}};
        setitimer(ITIMER_REAL, &it, 0);
        struct timespec t = {5, 0};
        int r = nanosleep(&t, 0);
        int e = errno;
        printf("round %d: nanosleep %d %s, handlers", round, r, r ? strerror(e) : "");
        for (int i = 0; i < n; i++)
            printf(" %d", order[i]);
        printf("\n");
    }
    return 0;
}
