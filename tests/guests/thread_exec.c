/*
 * thread_exec.c - execve from a process with other threads: one sleeping in a host call,
 * one spinning in user code.  The kernel ends both before the new image runs; the new
 * program (/bin/echo) prints and exits 0.
 */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static void *sleeper(void *a)
{
    for (;;)
        usleep(1000);
    return a;
}

static void *spinner(void *a)
{
    volatile unsigned long x = 0;
    for (;;)
        x++;
    return a;
}

int main(void)
{
    pthread_t t, u;
    pthread_create(&t, 0, sleeper, 0);
    pthread_create(&u, 0, spinner, 0);
    usleep(20000);
    puts("threads running: exec");
    fflush(stdout);
    execl("/bin/echo", "echo", "after exec", (char *)0);
    perror("execl");
    return 1;
}
