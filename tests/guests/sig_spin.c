/* sig_spin wait|count: a SIGALRM (ITIMER_REAL, 20 ms) interrupts user code that makes no
 * syscall. `wait` spins on a flag the handler sets (the registers are the same on every turn);
 * `count` also counts the turns in a register. Prints where the signal interrupted (offset from
 * main, from the handler's ucontext), the turns counted (count) and 8 random bytes (so that
 * runs differ). Exits 0.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <ucontext.h>

static volatile sig_atomic_t flag;
static volatile unsigned long where;

static void on_alarm(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = ucv;
    where = (unsigned long)uc->uc_mcontext.gregs[REG_RIP];
    flag = 1;
}

int main(int argc, char **argv)
{
    int count = argc > 1 && strcmp(argv[1], "count") == 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_alarm;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &it, NULL);
    unsigned long turns = 0;
    if (count) {
        while (!flag)
            turns++;
    } else {
        while (!flag)
            ;
    }
    unsigned char r[8];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return 1;
    printf("interrupted at main%+ld", (long)(where - (unsigned long)main));
    if (count)
        printf(" after %s turns", turns > 0 ? "some" : "no");
    printf(" random ");
    for (size_t i = 0; i < sizeof r; i++)
        printf("%02x", r[i]);
    printf("\n");
    return 0;
}
