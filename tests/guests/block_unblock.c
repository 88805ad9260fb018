/*
 * block_unblock.c [NAME...] - for each blocking call, the main thread blocks in it while a
 * second thread does what unblocks it 100 ms later (writes to the pipe, connects, wakes the
 * futex, sends the signal, lets go of the lock, ...). Prints one line per call:
 * `NAME: unblocked` when the call returned what it should within a second, else
 * `NAME: STUCK (...)`. A box that holds something every thread needs while one of them waits
 * makes the second thread wait too, and the call stays blocked (or times out). Exits 0 when
 * every call was unblocked. With NAMEs, only those calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/select.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int p[2], sp[2], lsock, epfd, semid, msqid, lockfd_b, child_pipe[2];
static uint32_t fword;
static char path[64], sockpath[108];
static struct sockaddr_un sun;
static aio_context_t aio;
static volatile sig_atomic_t got;

static void on_sig(int s)
{
    (void)s;
    got++;
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

static void block_sig_here(int sig)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
}

/* ---- the unblocking sides ---- */
static void w_pipe(void) { (void)!write(p[1], "x", 1); }
static void w_sock(void) { (void)!send(sp[1], "x", 1, 0); }
static void drain_pipe(void)
{
    char b[65536];
    (void)!read(p[0], b, sizeof b);
}
static void do_connect(void)
{
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    connect(c, (struct sockaddr *)&sun, sizeof sun);
}
static void do_accept(void) { accept(lsock, NULL, NULL); }
static void wake_futex(void)
{
    __atomic_store_n(&fword, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &fword, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
static void wake_futex_shared(void)
{
    __atomic_store_n(&fword, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &fword, FUTEX_WAKE, 1, NULL, NULL, 0);
}
static void send_usr1(void)
{
    block_sig_here(SIGUSR1);
    kill(getpid(), SIGUSR1);
}
static void send_usr2(void) { kill(getpid(), SIGUSR2); }
static void to_child(void) { (void)!write(child_pipe[1], "x", 1); }
static void unlock_b(void) { flock(lockfd_b, LOCK_UN); }
static void ofd_unlock_b(void)
{
    struct flock l = {.l_type = F_UNLCK, .l_whence = SEEK_SET};
    fcntl(lockfd_b, F_OFD_SETLK, &l);
}
static void open_fifo_w(void) { open(path, O_WRONLY); }
static void sem_post1(void)
{
    struct sembuf b = {0, 1, 0};
    semop(semid, &b, 1);
}
static void msg_send(void)
{
    struct {
        long type;
        char text[8];
    } m = {1, "x"};
    msgsnd(msqid, &m, sizeof m.text, 0);
}
static void aio_submit_read(void)
{
    static char buf[1];
    struct iocb cb = {0};
    struct iocb *cbs[1] = {&cb};
    cb.aio_fildes = open("/proc/self/exe", O_RDONLY);
    cb.aio_lio_opcode = IOCB_CMD_PREAD;
    cb.aio_buf = (uint64_t)(uintptr_t)buf;
    cb.aio_nbytes = 1;
    syscall(SYS_io_submit, aio, 1, cbs);
}

/* ---- the set-ups (before the second thread starts) ---- */
static void mk_pipe(void) { (void)!pipe(p); }
static void mk_full_pipe(void)
{
    (void)!pipe2(p, O_NONBLOCK);
    char b[4096] = {0};
    while (write(p[1], b, sizeof b) > 0)
        ;
    fcntl(p[1], F_SETFL, 0);
}
static void mk_sock(void) { socketpair(AF_UNIX, SOCK_STREAM, 0, sp); }
static void mk_listener(int backlog)
{
    snprintf(sockpath, sizeof sockpath, "/tmp/block-unblock-%d.sock", getpid());
    unlink(sockpath);
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, sockpath);
    lsock = socket(AF_UNIX, SOCK_STREAM, 0);
    bind(lsock, (struct sockaddr *)&sun, sizeof sun);
    listen(lsock, backlog);
}
static void mk_listen(void) { mk_listener(8); }
static void mk_full_listen(void)
{
    mk_listener(0);
    /* The queue holds one connection past a backlog of 0: the next connect waits. */
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(c, (struct sockaddr *)&sun, sizeof sun);
}
static void mk_epoll(void)
{
    mk_pipe();
    epfd = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN};
    epoll_ctl(epfd, EPOLL_CTL_ADD, p[0], &e);
}
static void mk_futex(void) { fword = 0; }
static void mk_sig(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_sig;
    sigaction(SIGUSR1, &sa, NULL);
    got = 0;
}
static void mk_sigwait(void) { block_sig_here(SIGUSR2); }
static void mk_child(void)
{
    (void)!pipe(child_pipe);
    if (fork() == 0) {
        char c;
        (void)!read(child_pipe[0], &c, 1);
        _exit(7);
    }
}
static void mk_lock(void)
{
    snprintf(path, sizeof path, "/tmp/block-unblock-%d.lock", getpid());
    lockfd_b = open(path, O_RDWR | O_CREAT, 0600);
    flock(lockfd_b, LOCK_EX);
}
static void mk_ofd_lock(void)
{
    snprintf(path, sizeof path, "/tmp/block-unblock-%d.lock", getpid());
    lockfd_b = open(path, O_RDWR | O_CREAT, 0600);
    struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    fcntl(lockfd_b, F_OFD_SETLK, &l);
}
static void mk_fifo(void)
{
    snprintf(path, sizeof path, "/tmp/block-unblock-%d.fifo", getpid());
    unlink(path);
    mkfifo(path, 0600);
}
static void mk_sem(void) { semid = semget(IPC_PRIVATE, 1, 0600); }
static void mk_msg(void) { msqid = msgget(IPC_PRIVATE, 0600); }
static void mk_aio(void)
{
    aio = 0;
    syscall(SYS_io_setup, 4, &aio);
}

/* ---- the blocking calls: 1 when the call returned as it should ---- */
static struct timeval tv5() { return (struct timeval){5, 0}; }
static int b_read(void) { char c; return read(p[0], &c, 1) == 1; }
static int b_readv(void)
{
    char c;
    struct iovec v = {&c, 1};
    return readv(p[0], &v, 1) == 1;
}
static int b_recvfrom(void) { char c; return recvfrom(sp[0], &c, 1, 0, NULL, NULL) == 1; }
static int b_recvmsg(void)
{
    char c;
    struct iovec v = {&c, 1};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    return recvmsg(sp[0], &m, 0) == 1;
}
static int b_recvmmsg(void)
{
    char c;
    struct iovec v = {&c, 1};
    struct mmsghdr m = {.msg_hdr = {.msg_iov = &v, .msg_iovlen = 1}};
    return recvmmsg(sp[0], &m, 1, MSG_WAITFORONE, NULL) == 1;
}
static int b_write_full(void) { return write(p[1], "y", 1) == 1; }
static int b_accept(void) { return accept(lsock, NULL, NULL) >= 0; }
static int b_accept4(void) { return accept4(lsock, NULL, NULL, SOCK_CLOEXEC) >= 0; }
static int b_connect(void)
{
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    return connect(c, (struct sockaddr *)&sun, sizeof sun) == 0;
}
static int b_select(void)
{
    fd_set r;
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    struct timeval t = tv5();
    return select(p[0] + 1, &r, NULL, NULL, &t) == 1;
}
static int b_select_forever(void)
{
    fd_set r;
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    return select(p[0] + 1, &r, NULL, NULL, NULL) == 1;
}
static int b_pselect(void)
{
    fd_set r;
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    struct timespec t = {5, 0};
    sigset_t m;
    sigemptyset(&m);
    return pselect(p[0] + 1, &r, NULL, NULL, &t, &m) == 1;
}
static int b_poll(void)
{
    struct pollfd f = {p[0], POLLIN, 0};
    return poll(&f, 1, 5000) == 1;
}
static int b_ppoll(void)
{
    struct pollfd f = {p[0], POLLIN, 0};
    struct timespec t = {5, 0};
    return ppoll(&f, 1, &t, NULL) == 1;
}
static int b_epoll_wait(void)
{
    struct epoll_event e;
    return epoll_wait(epfd, &e, 1, 5000) == 1;
}
static int b_epoll_pwait(void)
{
    struct epoll_event e;
    sigset_t m;
    sigemptyset(&m);
    return epoll_pwait(epfd, &e, 1, 5000, &m) == 1;
}
static int b_epoll_pwait2(void)
{
    struct epoll_event e;
    struct timespec t = {5, 0};
    return syscall(SYS_epoll_pwait2, epfd, &e, 1, &t, NULL, 8) == 1;
}
static int b_futex(void)
{
    struct timespec t = {5, 0};
    while (__atomic_load_n(&fword, __ATOMIC_SEQ_CST) == 0)
        if (syscall(SYS_futex, &fword, FUTEX_WAIT_PRIVATE, 0, &t, NULL, 0) != 0 && errno == ETIMEDOUT)
            return 0;
    return 1;
}
static int b_futex_shared(void)
{
    struct timespec t = {5, 0};
    while (__atomic_load_n(&fword, __ATOMIC_SEQ_CST) == 0)
        if (syscall(SYS_futex, &fword, FUTEX_WAIT, 0, &t, NULL, 0) != 0 && errno == ETIMEDOUT)
            return 0;
    return 1;
}
static int b_futex_waitv(void)
{
    struct futex_waitv w = {.val = 0, .uaddr = (uint64_t)(uintptr_t)&fword, .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG};
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += 5;
    while (__atomic_load_n(&fword, __ATOMIC_SEQ_CST) == 0)
        if (syscall(SYS_futex_waitv, &w, 1, 0, &t, CLOCK_MONOTONIC) < 0 && errno != EAGAIN && errno != EINTR)
            return 0;
    return 1;
}
static int b_nanosleep(void)
{
    struct timespec t = {5, 0};
    return nanosleep(&t, &t) == -1 && errno == EINTR && got == 1;
}
static int b_clock_nanosleep(void)
{
    struct timespec t = {5, 0};
    return clock_nanosleep(CLOCK_MONOTONIC, 0, &t, &t) == EINTR && got == 1;
}
static int b_pause(void) { return pause() == -1 && errno == EINTR && got == 1; }
static int b_sigsuspend(void)
{
    sigset_t m;
    sigemptyset(&m);
    return sigsuspend(&m) == -1 && errno == EINTR && got == 1;
}
static int b_sigtimedwait(void)
{
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    struct timespec t = {5, 0};
    return sigtimedwait(&m, NULL, &t) == SIGUSR2;
}
static int b_wait4(void)
{
    int st;
    return wait4(-1, &st, 0, NULL) > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 7;
}
static int b_waitid(void)
{
    siginfo_t si;
    return waitid(P_ALL, 0, &si, WEXITED) == 0 && si.si_status == 7;
}
static int b_flock(void)
{
    int fd = open(path, O_RDWR);
    int r = flock(fd, LOCK_EX) == 0;
    close(fd);
    unlink(path);
    return r;
}
static int b_ofd_lock(void)
{
    int fd = open(path, O_RDWR);
    struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int r = fcntl(fd, F_OFD_SETLKW, &l) == 0;
    close(fd);
    unlink(path);
    return r;
}
static int b_open_fifo(void)
{
    int r = open(path, O_RDONLY) >= 0;
    unlink(path);
    return r;
}
static int b_semop(void)
{
    struct sembuf b = {0, -1, 0};
    int r = semop(semid, &b, 1) == 0;
    semctl(semid, 0, IPC_RMID);
    return r;
}
static int b_msgrcv(void)
{
    struct {
        long type;
        char text[8];
    } m;
    ssize_t n = msgrcv(msqid, &m, sizeof m.text, 0, 0);
    int r = n == (ssize_t)sizeof m.text && m.type == 1 && m.text[0] == 'x';
    if (!r)
        fprintf(stderr, "msgrcv: %zd %s\n", n, strerror(errno));
    msgctl(msqid, IPC_RMID, NULL);
    return r;
}
static int b_io_getevents(void)
{
    struct io_event e;
    struct timespec t = {5, 0};
    int r = syscall(SYS_io_getevents, aio, 1, 1, &e, &t) == 1;
    syscall(SYS_io_destroy, aio);
    return r;
}

struct test {
    const char *name;
    void (*setup)(void);
    int (*block)(void);
    void (*unblock)(void);
};

static const struct test tests[] = {
    {"read", mk_pipe, b_read, w_pipe},
    {"readv", mk_pipe, b_readv, w_pipe},
    {"recvfrom", mk_sock, b_recvfrom, w_sock},
    {"recvmsg", mk_sock, b_recvmsg, w_sock},
    {"recvmmsg", mk_sock, b_recvmmsg, w_sock},
    {"write", mk_full_pipe, b_write_full, drain_pipe},
    {"accept", mk_listen, b_accept, do_connect},
    {"accept4", mk_listen, b_accept4, do_connect},
    {"connect", mk_full_listen, b_connect, do_accept},
    {"select", mk_pipe, b_select, w_pipe},
    {"select-forever", mk_pipe, b_select_forever, w_pipe},
    {"pselect6", mk_pipe, b_pselect, w_pipe},
    {"poll", mk_pipe, b_poll, w_pipe},
    {"ppoll", mk_pipe, b_ppoll, w_pipe},
    {"epoll_wait", mk_epoll, b_epoll_wait, w_pipe},
    {"epoll_pwait", mk_epoll, b_epoll_pwait, w_pipe},
    {"epoll_pwait2", mk_epoll, b_epoll_pwait2, w_pipe},
    {"futex", mk_futex, b_futex, wake_futex},
    {"futex-shared", mk_futex, b_futex_shared, wake_futex_shared},
    {"futex_waitv", mk_futex, b_futex_waitv, wake_futex},
    {"nanosleep", mk_sig, b_nanosleep, send_usr1},
    {"clock_nanosleep", mk_sig, b_clock_nanosleep, send_usr1},
    {"pause", mk_sig, b_pause, send_usr1},
    {"rt_sigsuspend", mk_sig, b_sigsuspend, send_usr1},
    {"rt_sigtimedwait", mk_sigwait, b_sigtimedwait, send_usr2},
    {"wait4", mk_child, b_wait4, to_child},
    {"waitid", mk_child, b_waitid, to_child},
    {"flock", mk_lock, b_flock, unlock_b},
    {"fcntl-ofd-lock", mk_ofd_lock, b_ofd_lock, ofd_unlock_b},
    {"open-fifo", mk_fifo, b_open_fifo, open_fifo_w},
    {"semop", mk_sem, b_semop, sem_post1},
    {"msgrcv", mk_msg, b_msgrcv, msg_send},
    /* Last: the box refuses io_submit (its iocbs' pointers are not checked yet), so only
       named on the command line. */
    {"io_getevents", mk_aio, b_io_getevents, aio_submit_read},
};

static const struct test *current;

static void *unblocker(void *arg)
{
    (void)arg;
    sleep_ms(100);
    current->unblock();
    return NULL;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    int failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        current = &tests[i];
        if (argc == 1 && strcmp(current->name, "io_getevents") == 0)
            continue;
        if (argc > 1) {
            int wanted = 0;
            for (int a = 1; a < argc; a++)
                wanted |= strcmp(argv[a], current->name) == 0;
            if (!wanted)
                continue;
        }
        current->setup();
        pthread_t t;
        double t0 = now_ms();
        pthread_create(&t, NULL, unblocker, NULL);
        int ok = current->block();
        double ms = now_ms() - t0;
        pthread_join(t, NULL);
        if (ok && ms < 1000) {
            printf("%s: unblocked\n", current->name);
        } else {
            printf("%s: STUCK (%s after %.0f ms)\n", current->name, ok ? "returned" : "failed", ms);
            failed++;
        }
        fflush(stdout);
    }
    unlink(sockpath);
    return failed != 0;
}
