/*
 * sig_thread.c - a signal aimed at one thread runs its handler on that thread: three threads
 * wait (one blocked in read, one in nanosleep, one spinning in user code); the main thread
 * sends each SIGUSR1 with pthread_kill (tgkill) and SIGUSR2 with rt_tgsigqueueinfo, and each
 * handler notes the thread it ran on. Prints, per target, where the handlers ran. Exits 0.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define N 3
static pid_t tids[N];
static volatile pid_t ran_on[N][2];
static volatile int stop;
static int pipes[2];

static int index_of(pid_t t)
{
    for (int i = 0; i < N; i++)
        if (tids[i] == t)
            return i;
    return -1;
}

static void on_sig(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    pid_t me = (pid_t)syscall(SYS_gettid);
    int target = sig == SIGUSR1 ? index_of(me) : si->si_value.sival_int;
    if (target >= 0)
        ran_on[target][sig == SIGUSR2] = me;
}

static void *waiter(void *arg)
{
    long kind = (long)arg;
    tids[kind] = (pid_t)syscall(SYS_gettid);
    if (kind == 0) {
        char c;
        while (read(pipes[0], &c, 1) != 1)
            ;
    } else if (kind == 1) {
        while (!stop) {
            struct timespec t = {0, 5000000};
            nanosleep(&t, NULL);
        }
    } else {
        while (!stop)
            ;
    }
    return NULL;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sig;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    if (pipe(pipes) != 0)
        return 1;
    pthread_t th[N];
    for (long i = 0; i < N; i++)
        pthread_create(&th[i], NULL, waiter, (void *)i);
    for (int i = 0; i < N; i++)
        while (!__atomic_load_n(&tids[i], __ATOMIC_SEQ_CST))
            sched_yield();
    const char *what[N] = {"blocked in read", "sleeping", "spinning"};
    for (int i = 0; i < N; i++) {
        pthread_kill(th[i], SIGUSR1);
        siginfo_t si;
        memset(&si, 0, sizeof si);
        si.si_signo = SIGUSR2;
        si.si_code = SI_QUEUE;
        si.si_pid = getpid();
        si.si_value.sival_int = i;
        syscall(SYS_rt_tgsigqueueinfo, getpid(), tids[i], SIGUSR2, &si);
        for (int t = 0; t < 2000 && !(ran_on[i][0] && ran_on[i][1]); t++) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
        for (int s = 0; s < 2; s++)
            printf("%s to the thread %s: %s\n", s ? "rt_tgsigqueueinfo" : "pthread_kill", what[i],
                   !ran_on[i][s] ? "handler did not run" : ran_on[i][s] == tids[i] ? "ran on it" : "ran elsewhere");
    }
    stop = 1;
    (void)!write(pipes[1], "x", 1);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    return 0;
}
