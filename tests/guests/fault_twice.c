/* fault_twice: a fault the program handles (its handler siglongjmps out), then one that
 * kills it. A replay must run past the first and end at the second, at the same instruction. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>

static sigjmp_buf env;
/* Addresses in page 0, hidden from the compiler's bounds checks. */
static volatile unsigned long first = 8, second = 16;

static void handler(int sig) {
    (void)sig;
    siglongjmp(env, 1);
}

int main(void) {
    signal(SIGSEGV, handler);
    if (!sigsetjmp(env, 1))
        *(volatile int *)first = 1;
    puts("handled the first fault");
    fflush(stdout);
    signal(SIGSEGV, SIG_DFL);
    *(volatile int *)second = 2;
    puts("not reached");
    return 0;
}
