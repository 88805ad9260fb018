/*
 * sig_segv.c - synchronous SIGSEGV/SIGBUS delivered to a handler that recovers
 * with siglongjmp. Four faults, each printed as one line with booleans only:
 *   read of an unmapped page: SEGV_MAPERR, si_addr is the page;
 *   write to a read-only page: SEGV_ACCERR, si_addr is the byte written;
 *   read of a PROT_NONE page: SEGV_ACCERR;
 *   read past the end of a file mapping: SIGBUS, BUS_ADRERR.
 * After each recovery the signal mask is restored by siglongjmp (SIGSEGV is not
 * left blocked: the next fault is delivered again). Then prints "recovered 4"
 * and exits 0.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static sigjmp_buf env;
static volatile int got_sig, got_code;
static void *volatile got_addr;

static void handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    got_sig = sig;
    got_code = si->si_code;
    got_addr = si->si_addr;
    siglongjmp(env, 1);
}

static int recovered;

static void try_access(const char *what, volatile char *p, int write, int want_sig, int want_code)
{
    got_sig = 0;
    if (sigsetjmp(env, 1) == 0) {
        if (write)
            *p = 1;
        else
            (void)*p;
        printf("%s: no fault\n", what);
        return;
    }
    recovered++;
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    printf("%s: %s, code ok %s, si_addr ok %s, mask restored %s\n", what, sigabbrev_np(got_sig),
           got_code == want_code ? "yes" : "no", got_addr == (void *)p ? "yes" : "no",
           !sigismember(&cur, want_sig) ? "yes" : "no");
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);

    long pg = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 1;
    munmap(m, pg);                           /* page 0: unmapped */
    mprotect(m + pg, pg, PROT_READ);         /* page 1: read-only */
    mprotect(m + 2 * pg, pg, PROT_NONE);     /* page 2: no access */
    try_access("read unmapped", m + 16, 0, SIGSEGV, SEGV_MAPERR);
    try_access("write read-only", m + pg + 5, 1, SIGSEGV, SEGV_ACCERR);
    try_access("read PROT_NONE", m + 2 * pg + 7, 0, SIGSEGV, SEGV_ACCERR);

    /* A one-byte file mapped for two pages: the second page is past EOF. */
    char path[] = "/tmp/sig_segv_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, "x", 1) != 1)
        return 1;
    unlink(path);
    char *f = mmap(NULL, 2 * pg, PROT_READ, MAP_SHARED, fd, 0);
    if (f == MAP_FAILED)
        return 1;
    try_access("read past EOF", f + pg + 3, 0, SIGBUS, BUS_ADRERR);
    printf("recovered %d\n", recovered);
    return 0;
}
