/* A signal handler that leaves an FPU state the kernel refuses to load (MXCSR with reserved
 * bits set) in its frame: rt_sigreturn fails and the process gets SIGSEGV, natively and in
 * the box (on KVM, KVM_SET_XSAVE refuses the image; in-process, trapbox does before the
 * kernel would). A forked child first corrupts the XSAVE header instead. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

static int mode;

static void handler(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)si;
    ucontext_t *uc = ctx;
    unsigned char *fp = (unsigned char *)uc->uc_mcontext.fpregs;
    if (mode == 0) {
        unsigned int bad = 0xffffffffu;
        memcpy(fp + 24, &bad, 4);
    } else {
        fp[512 + 8] = 0x80; /* XCOMP_BV: compacted form, which a frame never holds */
    }
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, 0);
    /* The header first, in a child; then MXCSR here. */
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        mode = 1;
        raise(SIGUSR1);
        printf("survived a bad XSAVE header\n");
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    printf("bad XSAVE header: %s %d\n", WIFSIGNALED(status) ? "killed by" : "exited", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    printf("raising\n");
    fflush(stdout);
    raise(SIGUSR1);
    printf("survived a bad MXCSR\n");
    return 0;
}
