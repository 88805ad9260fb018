/* adv_in_thread.h: runs an adversarial guest's main on a second thread.
 *
 * Force-included before a guest's source (gcc -include adv_in_thread.h; see
 * `guest_with_flags` in tests/common/mod.rs): it defines the real main, which starts
 * one thread that calls the guest's own main (renamed adv_main by the #define at the
 * end) with the process's argc/argv/environ and exit()s with its result, while the
 * main thread waits in pthread_join. The guest's checks therefore run on a thread
 * that is not the thread-group leader (under trapbox, a second vCPU), and the process
 * ends as the guest would: exit() with its status, or killed by its signal.
 * Everything else about the guest (output, exit status) is unchanged.
 */
#ifndef ADV_IN_THREAD_H
#define ADV_IN_THREAD_H
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The guest's main, whatever its parameter list: (void), (argc, argv) or (argc, argv, envp). */
extern char adv_main_entry[] __asm__("adv_main");
extern char **environ;

static int adv_argc;
static char **adv_argv;

static void *adv_thread_body(void *arg)
{
    (void)arg;
    int (*entry)(int, char **, char **) = (int (*)(int, char **, char **))(void *)adv_main_entry;
    exit(entry(adv_argc, adv_argv, environ));
}

int main(int argc, char **argv)
{
    adv_argc = argc;
    adv_argv = argv;
    pthread_t t;
    int e = pthread_create(&t, NULL, adv_thread_body, NULL);
    if (e) {
        printf("adv_in_thread: pthread_create: %s\n", strerror(e));
        return 126;
    }
    pthread_join(t, NULL); /* never returns: the thread exit()s the process */
    return 126;
}

#define main adv_main
#endif
