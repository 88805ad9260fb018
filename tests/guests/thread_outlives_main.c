/*
 * thread_outlives_main.c - the first thread leaves with pthread_exit (the exit syscall, not
 * exit_group) while a second thread still runs: the process lives on until that thread ends
 * it with exit(7), which is the process's status.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *worker(void *arg)
{
    usleep(50000);
    puts("worker: main is gone, the process is not");
    fflush(stdout);
    exit(7);
    return arg;
}

int main(void)
{
    pthread_t t;
    pthread_create(&t, 0, worker, 0);
    puts("main: pthread_exit");
    fflush(stdout);
    pthread_exit(0);
}
