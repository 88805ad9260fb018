/*
 * sig_alarm.c - asynchronous signals from timers.
 * 1. setitimer(ITIMER_REAL, 10 ms interval) with a SIGALRM handler counting ticks;
 *    SIGALRM is blocked and the main loop waits in sigsuspend(empty mask) until 5
 *    ticks: each sigsuspend returns -1/EINTR after exactly one handler run.
 *    Prints "sigsuspend woke 5 times, all EINTR: yes, ticks 5, at least 40 ms: yes".
 * 2. The timer is stopped; getitimer then reads zero: "timer stopped: yes".
 * 3. alarm(1)-style one-shot (setitimer 20 ms, no interval) and pause(): pause
 *    returns -1/EINTR after the handler: "pause: -1 EINTR, ticks 6".
 * 4. SIGALRM with SIG_IGN then a one-shot timer and a 60 ms nanosleep: nothing
 *    interrupts it, "ignored SIGALRM: nanosleep 0, ticks 6".
 * Exit status 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t ticks;

static void on_alarm(int sig)
{
    (void)sig;
    ticks++;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);

    sigset_t block, empty;
    sigemptyset(&block);
    sigaddset(&block, SIGALRM);
    sigemptyset(&empty);
    sigprocmask(SIG_BLOCK, &block, NULL);

    double t0 = now_ms();
    struct itimerval it = {{0, 10000}, {0, 10000}};
    setitimer(ITIMER_REAL, &it, NULL);
    int wakes = 0, all_eintr = 1;
    while (ticks < 5) {
        int before = ticks;
        int r = sigsuspend(&empty);
        wakes++;
        all_eintr &= r == -1 && errno == EINTR && ticks == before + 1;
        if (r != -1 || errno != EINTR) {
            /* Fail fast instead of spinning: sigsuspend only ever returns EINTR. */
            printf("sigsuspend: %d %s\n", r, strerror(errno));
            return 1;
        }
    }
    double took = now_ms() - t0;
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("sigsuspend woke %d times, all EINTR: %s, ticks %d, at least 40 ms: %s\n", wakes,
           all_eintr ? "yes" : "no", (int)ticks, took >= 40 ? "yes" : "no");

    /* A tick may have become pending between the last wake and the stop. */
    signal(SIGALRM, SIG_IGN);
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval cur;
    getitimer(ITIMER_REAL, &cur);
    printf("timer stopped: %s\n", cur.it_value.tv_sec == 0 && cur.it_value.tv_usec == 0 ? "yes" : "no");

    struct itimerval once = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &once, NULL);
    int r = pause();
    printf("pause: %d %s, ticks %d\n", r, errno == EINTR ? "EINTR" : strerror(errno), (int)ticks);

    signal(SIGALRM, SIG_IGN);
    setitimer(ITIMER_REAL, &once, NULL);
    struct timespec ts = {0, 60 * 1000 * 1000};
    r = nanosleep(&ts, NULL);
    printf("ignored SIGALRM: nanosleep %d, ticks %d\n", r, (int)ticks);
    return 0;
}
