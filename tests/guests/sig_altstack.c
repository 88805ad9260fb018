/*
 * sig_altstack.c - stack overflow caught on an alternate signal stack.
 * Installs a 64 KiB sigaltstack and a SIGSEGV handler with SA_ONSTACK|SA_SIGINFO,
 * then recurses without bound. The handler (running on the alternate stack, since
 * the normal one is exhausted) checks that a local variable lies inside the
 * alternate stack and that sigaltstack reports SS_ONSTACK, writes
 *   "recursed deep: yes"
 *   "handler on the alternate stack: yes"
 *   "sigaltstack says SS_ONSTACK: yes"
 *   "si_code SEGV_MAPERR or SEGV_ACCERR: yes"
 * with write(2) and _exit(0)s. Before recursing, prints "altstack installed: yes"
 * (sigaltstack then reads back the same stack, flags 0).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ALT_SIZE (64 * 1024)
static char *alt;
static volatile unsigned long depth;

static void say(const char *s)
{
    write(1, s, strlen(s));
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    char here;
    stack_t cur;
    sigaltstack(NULL, &cur);
    say(depth > 1000 ? "recursed deep: yes\n" : "recursed deep: no\n");
    say(&here >= alt && &here < alt + ALT_SIZE ? "handler on the alternate stack: yes\n"
                                               : "handler on the alternate stack: no\n");
    say(cur.ss_flags & SS_ONSTACK ? "sigaltstack says SS_ONSTACK: yes\n" : "sigaltstack says SS_ONSTACK: no\n");
    say(si->si_code == SEGV_MAPERR || si->si_code == SEGV_ACCERR ? "si_code SEGV_MAPERR or SEGV_ACCERR: yes\n"
                                                                 : "si_code SEGV_MAPERR or SEGV_ACCERR: no\n");
    _exit(0);
}

/* Never reached; keeps the compiler from proving the recursion infinite. */
static volatile unsigned long stop_depth = ~0UL;

__attribute__((noinline)) static unsigned long recurse(unsigned long n)
{
    volatile char pad[512];
    if (n == stop_depth)
        return 0;
    pad[n & 511] = (char)n;
    depth = n;
    return recurse(n + 1) + pad[(n * 7) & 511];
}

int main(void)
{
    alt = malloc(ALT_SIZE);
    stack_t ss = {.ss_sp = alt, .ss_size = ALT_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        perror("sigaltstack");
        return 1;
    }
    stack_t back;
    sigaltstack(NULL, &back);
    printf("altstack installed: %s\n", back.ss_sp == alt && back.ss_size == ALT_SIZE && back.ss_flags == 0 ? "yes" : "no");
    fflush(stdout);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
    printf("%lu\n", recurse(0));
    return 1;
}
