/*
 * esc_struct_ptrs.c PLACE [N] - pointers and ids hidden inside structures the kernel reads,
 * and places the box itself writes to later (see esc_common.h for PLACE, N and the output
 * conventions). One line each:
 *   "mq_notify SIGEV_THREAD with its own cookie: delivered" - the 32-byte cookie sival_ptr
 *     names comes back through the netlink socket sigev_signo names (or "refused" where
 *     SIGEV_THREAD is refused; natively it is delivered);
 *   "mq_notify SIGEV_THREAD cookie at trapbox: safe" - the same with sival_ptr at trapbox's
 *     memory (accepted = the kernel copied trapbox memory, then read back: ESCAPED);
 *   "mq_notify SIGSEGV to itself: survived" - SIGEV_SIGNAL with SIGSEGV, a message sent; a
 *     handler is installed, so natively it runs (details in ESC_VERBOSE);
 *   "timer at a thread outside the guest: safe" - timer_create SIGEV_THREAD_ID naming each
 *     tid of /proc/self/task that is not the program's (natively there are none);
 *   "timer SIG<x> to itself: survived" for SIGSEGV (SIGEV_THREAD_ID, own thread) and signals
 *     32 and 33 (glibc's internal ones; SIGEV_SIGNAL), each armed for 1 ms and waited for
 *     (handlers for all three are installed, 32 and 33 with the raw rt_sigaction);
 *   "SO_ATTACH_FILTER with its own filter: ok" and "SO_GET_FILTER of 256 instructions: 2048
 *     bytes" (the kernel counts SO_GET_FILTER's length in instructions, 8 bytes each);
 *   "SO_ATTACH_FILTER program at trapbox: safe" (success or EINVAL, an invalid program, means
 *     the kernel read trapbox memory as the filter);
 *   "PR_SET_VMA name at trapbox: safe" - the anonymous-mapping name string read from trapbox
 *     (accepted = read; the name would show in /proc/self/maps);
 *   "futex WAKE_OP on a trapbox word: safe" - FUTEX_WAKE_OP's second word at trapbox's
 *     argument strings (flipping one bit, flipped back if it worked);
 *   "clear_child_tid at trapbox: safe" - a thread calls set_tid_address() with trapbox's
 *     argument strings and exits: the zero written at its end must not land there;
 *   "signal frame on an alternate stack at trapbox: killed by SIGSEGV" - in a forked child, a
 *     sigaltstack whose top is trapbox's argument strings and a SA_ONSTACK signal (natively an
 *     unmapped stack: the kernel kills with SIGSEGV; a box that writes the frame is ESCAPED).
 * Exit status 0, or 99 after an escape.
 */
#include "esc_common.h"
#include <linux/filter.h>
#include <linux/futex.h>
#include <mqueue.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

static volatile int got_sig, got_code;

static void handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    got_sig = sig;
    got_code = si->si_code;
}

static void wait_sig(int sig)
{
    for (int i = 0; i < 1000 && got_sig != sig; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* ---- mq_notify --------------------------------------------------------------------------- */

static int mq_seq;

static int mq_make(void)
{
    char name[64]; /* the raw calls take the name without glibc's leading slash */
    snprintf(name, sizeof name, "esc_sp.%d.%d", (int)getpid(), mq_seq++);
    struct mq_attr attr = {.mq_maxmsg = 1, .mq_msgsize = 8};
    int q = (int)syscall(SYS_mq_open, name, O_RDWR | O_CREAT | O_EXCL | O_NONBLOCK | O_CLOEXEC, 0600, &attr);
    if (q >= 0)
        syscall(SYS_mq_unlink, name);
    else
        esc_note("mq_open: %s", esc_err(errno));
    return q;
}

/* Registers SIGEV_THREAD with cookie ptr, sends; returns bytes received (-1: refused). */
static int mq_cookie(const void *ptr, unsigned char *out)
{
    int q = mq_make();
    int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (q < 0 || nl < 0) {
        if (q >= 0)
            close(q);
        if (nl >= 0)
            close(nl);
        return -2;
    }
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD;
    sev.sigev_signo = nl;
    sev.sigev_value.sival_ptr = (void *)ptr;
    long r = syscall(SYS_mq_notify, q, &sev);
    esc_note("mq_notify SIGEV_THREAD cookie %p: %s", ptr, esc_res(r, errno));
    int n = -1;
    if (r == 0) {
        syscall(SYS_mq_timedsend, q, "x", 1, 0, NULL);
        n = (int)recv(nl, out, 64, MSG_DONTWAIT);
        esc_note("cookie received: %d", n);
    }
    close(nl);
    close(q);
    return n;
}

static void mq_attacks(void)
{
    static unsigned char cookie[32] = "esc-cookie-0123456789abcdefghij";
    unsigned char out[64];
    int n = mq_cookie(cookie, out);
    esc_say("mq_notify SIGEV_THREAD with its own cookie: %s",
            n >= 31 && memcmp(out, cookie, 31) == 0 ? "delivered" : n == -1 ? "refused" : "not delivered");

    unsigned long L = esc_leak_src();
    n = L ? mq_cookie((void *)L, out) : -1;
    if (n >= 0) {
        if (n > 0)
            esc_hex("cookie", out, (size_t)n);
        esc_escape("mq_notify took a SIGEV_THREAD cookie from trapbox memory%s",
                   n >= 4 && memcmp(out, "\x7f" "ELF", 4) == 0 ? " (its ELF header came back)" : "");
    } else {
        esc_say("mq_notify SIGEV_THREAD cookie at trapbox: safe");
    }

    int q = mq_make();
    if (q >= 0) {
        struct sigevent sev;
        memset(&sev, 0, sizeof sev);
        sev.sigev_notify = SIGEV_SIGNAL;
        sev.sigev_signo = SIGSEGV;
        got_sig = 0;
        long r = syscall(SYS_mq_notify, q, &sev);
        if (r == 0) {
            syscall(SYS_mq_timedsend, q, "x", 1, 0, NULL);
            wait_sig(SIGSEGV);
        }
        esc_note("mq_notify SIGSEGV: %s, handler %s (si_code %d)", esc_res(r, errno),
                 got_sig == SIGSEGV ? "ran" : "did not run", got_code);
        close(q);
    }
    esc_say("mq_notify SIGSEGV to itself: survived");
}

/* ---- timers ------------------------------------------------------------------------------ */

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

static void timer_attacks(void)
{
    pid_t guest[3] = {getpid(), esc_gettid(), esc_waiter_tid}, others[64];
    int n = esc_foreign_tids(guest, 3, others, 64), esc = 0;
    for (int i = 0; i < n; i++) {
        struct sigevent sev;
        memset(&sev, 0, sizeof sev);
        sev.sigev_notify = SIGEV_THREAD_ID;
        sev.sigev_signo = SIGURG;
        sev.sigev_notify_thread_id = others[i];
        int id = -1;
        long r = syscall(SYS_timer_create, CLOCK_MONOTONIC, &sev, &id);
        esc_note("timer at tid %d: %s", (int)others[i], esc_res(r, errno));
        if (r == 0) {
            syscall(SYS_timer_delete, id);
            esc_escape("timer_create aimed a timer at thread %d (%s), which is not the guest's", (int)others[i],
                       esc_tid_name(others[i]));
            esc = 1;
        }
    }
    if (!esc)
        esc_say("timer at a thread outside the guest: safe");

    static const struct {
        int sig, thread_id;
    } t[] = {{SIGSEGV, 1}, {32, 0}, {33, 0}};
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        struct sigevent sev;
        memset(&sev, 0, sizeof sev);
        sev.sigev_notify = t[k].thread_id ? SIGEV_THREAD_ID : SIGEV_SIGNAL;
        sev.sigev_signo = t[k].sig;
        sev.sigev_notify_thread_id = esc_gettid();
        int id = -1;
        got_sig = 0;
        long r = syscall(SYS_timer_create, CLOCK_MONOTONIC, &sev, &id);
        if (r == 0) {
            struct itimerspec its = {{0, 0}, {0, 1000000}};
            syscall(SYS_timer_settime, id, 0, &its, NULL);
            if (t[k].sig == SIGSEGV)
                wait_sig(SIGSEGV);
            else {
                struct timespec ts = {0, 20000000};
                nanosleep(&ts, NULL);
            }
            syscall(SYS_timer_delete, id);
        }
        esc_note("timer signal %d: %s, handler %s (si_code %d)", t[k].sig, esc_res(r, errno),
                 got_sig == t[k].sig ? "ran" : "did not run", got_code);
        if (t[k].sig == SIGSEGV)
            esc_say("timer SIGSEGV to itself: survived");
        else
            esc_say("timer signal %d to itself: survived", t[k].sig);
    }
}

/* ---- socket filters ---------------------------------------------------------------------- */

static void filter_attacks(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) != 0) {
        esc_say("socketpair: %s", esc_err(errno));
        return;
    }
    static struct sock_filter prog[256];
    for (int i = 0; i < 255; i++)
        prog[i] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_IMM, (unsigned)i);
    prog[255] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0xffff);
    struct sock_fprog fp = {256, prog};
    int r = setsockopt(sv[0], SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp);
    esc_say("SO_ATTACH_FILTER with its own filter: %s", esc_res(r, errno));
    if (r == 0) {
        /* The length is a count of instructions: 256 of them are 2048 bytes. */
        static unsigned char buf[4096];
        memset(buf, 0xee, sizeof buf);
        socklen_t len = 256;
        int g = getsockopt(sv[0], SOL_SOCKET, SO_GET_FILTER, buf, &len);
        size_t filled = 0; /* bytes of the program that came back */
        while (filled < 2048 && buf[filled] == ((unsigned char *)prog)[filled])
            filled++;
        if (g == 0 && filled == 2048 && buf[2048] == 0xee)
            esc_say("SO_GET_FILTER of 256 instructions: 2048 bytes");
        else if (g != 0)
            esc_say("SO_GET_FILTER of 256 instructions: %s", esc_err(errno));
        else
            esc_say("SO_GET_FILTER of 256 instructions: %zu bytes", filled);
    } else {
        esc_say("SO_GET_FILTER of 256 instructions: no filter attached");
    }
    unsigned long L = esc_leak_src();
    if (L) {
        struct sock_fprog bad = {4, (struct sock_filter *)L};
        errno = 0;
        r = setsockopt(sv[1], SOL_SOCKET, SO_ATTACH_FILTER, &bad, sizeof bad);
        esc_note("SO_ATTACH_FILTER program at trapbox: %s", esc_res(r, errno));
        if (r == 0 || errno == EINVAL) /* the kernel copied the program: it read trapbox memory */
            esc_escape("SO_ATTACH_FILTER read its program from trapbox memory (%s)", esc_res(r, errno));
        else
            esc_say("SO_ATTACH_FILTER program at trapbox: safe");
    } else {
        esc_say("SO_ATTACH_FILTER program at trapbox: safe");
    }
    close(sv[0]);
    close(sv[1]);
}

/* ---- names, futex words and clear_child_tid ---------------------------------------------- */

static void vma_name(void)
{
    unsigned long src = esc_argw ? esc_argw : esc_leak_src();
    char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (src && page != MAP_FAILED) {
        int r = prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)page, 4096UL, src);
        esc_note("PR_SET_VMA name at trapbox: %s", esc_res(r, errno));
        if (r == 0) {
            esc_read_maps();
            struct esc_map *m = esc_map_at((unsigned long)page);
            esc_escape("PR_SET_VMA took a name from trapbox memory (%s)", m ? m->path : "?");
            munmap(page, 4096);
            return;
        }
    }
    if (page != MAP_FAILED)
        munmap(page, 4096);
    esc_say("PR_SET_VMA name at trapbox: safe");
}

static void futex_wake_op(void)
{
    if (esc_argw) {
        static uint32_t word;
        /* FUTEX_OP(FUTEX_OP_XOR, 0x20, FUTEX_OP_CMP_EQ, 0): flips bit 5 of the second word. */
        uint32_t op = (4u << 28) | (0u << 24) | (0x20u << 12) | 0u;
        unsigned long w2 = (esc_argw + 3) & ~3UL;
        long r = syscall(SYS_futex, &word, FUTEX_WAKE_OP, 1, 0, w2, op);
        esc_note("futex WAKE_OP on %#lx: %s", w2, esc_res(r, errno));
        if (r >= 0) {
            int ch = esc_cmdline_changed();
            syscall(SYS_futex, &word, FUTEX_WAKE_OP, 1, 0, w2, op);
            esc_cmdline_changed();
            esc_escape("futex WAKE_OP changed a word of trapbox memory%s", ch ? " (its command line changed)" : "");
            return;
        }
    }
    esc_say("futex WAKE_OP on a trapbox word: safe");
}

static volatile int ctid_ready;

static void *ctid_thread(void *arg)
{
    (void)arg;
    syscall(SYS_set_tid_address, (void *)((esc_argw + 3) & ~3UL));
    ctid_ready = 1;
    syscall(SYS_exit, 0); /* the raw exit: glibc's own would wait for nothing */
    return NULL;
}

static void clear_child_tid(void)
{
    if (esc_argw) {
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_t t;
        ctid_ready = 0;
        if (pthread_create(&t, &a, ctid_thread, NULL) == 0) {
            while (!ctid_ready)
                sched_yield();
            struct timespec ts = {0, 50000000};
            nanosleep(&ts, NULL);
            if (esc_cmdline_changed()) {
                esc_escape("a thread's clear_child_tid zeroed trapbox memory (its command line changed)");
                pthread_attr_destroy(&a);
                return;
            }
        }
        pthread_attr_destroy(&a);
    }
    esc_say("clear_child_tid at trapbox: safe");
}

/* ---- a signal frame on an alternate stack at trapbox -------------------------------------- */

static void altstack_handler(int sig)
{
    (void)sig;
}

static void altstack_frame(void)
{
    /* The top of the stack: trapbox's argument strings, else (natively) an unmapped page. */
    unsigned long top;
    void *hole = NULL;
    if (esc_argw) {
        top = esc_argw + esc_argw_len;
    } else {
        hole = mmap(NULL, 1UL << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (hole == MAP_FAILED) {
            esc_say("mmap: %s", esc_err(errno));
            return;
        }
        munmap(hole, 1UL << 20);
        top = (unsigned long)hole + (1UL << 20);
    }
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        signal(SIGSEGV, SIG_DFL);
        stack_t ss = {.ss_sp = (void *)(top - 65536), .ss_size = 65536, .ss_flags = 0};
        if (sigaltstack(&ss, NULL) != 0)
            _exit(3);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = altstack_handler;
        sa.sa_flags = SA_ONSTACK;
        sigaction(SIGUSR1, &sa, NULL);
        raise(SIGUSR1);
        _exit(0);
    }
    int st = 0;
    waitpid(p, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && esc_argw)
        esc_escape("a signal frame was written on an alternate stack in trapbox memory");
    else if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
        esc_say("signal frame on an alternate stack at trapbox: sigaltstack refused");
    else
        esc_say("signal frame on an alternate stack at trapbox: %s", esc_status(st));
}

static void attack(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGURG, &sa, NULL);
    esc_own_internal_signals(handler);
    esc_find_foreign();
    mq_attacks();
    timer_attacks();
    filter_attacks();
    vma_name();
    futex_wake_op();
    clear_child_tid();
    altstack_frame();
}

int main(int argc, char **argv)
{
    return esc_main(argc, argv, 1, attack);
}
