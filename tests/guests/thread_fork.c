/*
 * thread_fork.c - fork from a thread other than the first: in the child that thread is the
 * whole process. Its exit status (5) and an exec'd program's output (/bin/echo) reach the
 * parent thread's waitpid as natively.
 */
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static void *worker(void *arg)
{
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        puts("child of a thread: running");
        fflush(stdout);
        _exit(5);
    }
    int st = 0;
    waitpid(p, &st, 0);
    printf("thread: child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    fflush(stdout);
    p = fork();
    if (p == 0) {
        execl("/bin/echo", "echo", "exec from a thread's child", (char *)0);
        _exit(127);
    }
    waitpid(p, &st, 0);
    printf("thread: exec'd child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return arg;
}

int main(void)
{
    pthread_t t;
    pthread_create(&t, 0, worker, 0);
    pthread_join(t, 0);
    puts("main: joined");
    return 0;
}
