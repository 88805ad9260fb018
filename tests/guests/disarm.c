/* A program that tries every way a guest could switch off the interception of its syscalls
 * in the in-process engine, each reported with its result: turning Syscall User Dispatch off
 * or on with a selector of its own, blocking, catching and ignoring SIGSYS and the fault
 * signals, a tiny alternate stack, a seccomp filter, a GS base of its own. Every syscall after
 * each attempt must still be a trap (the trace shows the marker writes), and both engines must
 * give the program the same answers. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile int caught;
static void on_sys(int sig) { caught = sig; }

static void marker(const char *what, long ret) {
    char line[160];
    int n = snprintf(line, sizeof line, "%s: %ld%s%s\n", what, ret, ret < 0 ? " " : "", ret < 0 ? strerror(errno) : "");
    syscall(SYS_write, 1, line, n);
}

int main(void) {
    static char selector;
    marker("SUD off", syscall(SYS_prctl, 59, 0, 0, 0, 0));
    marker("SUD on", syscall(SYS_prctl, 59, 1, 0, 0, &selector));
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGSYS);
    sigaddset(&s, SIGSEGV);
    sigaddset(&s, SIGTRAP);
    marker("block SIGSYS, SIGSEGV, SIGTRAP", sigprocmask(SIG_BLOCK, &s, 0));
    marker("getppid while blocked > 0", syscall(SYS_getppid) > 0);
    marker("unblock", sigprocmask(SIG_UNBLOCK, &s, 0));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sys;
    marker("catch SIGSYS", sigaction(SIGSYS, &sa, 0));
    marker("getppid while caught > 0", syscall(SYS_getppid) > 0);
    marker("SIGSYS handler ran for a syscall", caught);
    sa.sa_handler = SIG_IGN;
    marker("ignore SIGSYS", sigaction(SIGSYS, &sa, 0));
    marker("ignore SIGTRAP", sigaction(SIGTRAP, &sa, 0));
    static char tiny[4096];
    stack_t ss = {.ss_sp = tiny, .ss_size = sizeof tiny};
    marker("small alternate stack", sigaltstack(&ss, 0));
    marker("getppid with it > 0", syscall(SYS_getppid) > 0);
    marker("seccomp strict", syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 0, 0));
    marker("arch_prctl SET_GS", syscall(SYS_arch_prctl, 0x1001, 0x1000));
    marker("after all attempts", 0);
    return 0;
}
