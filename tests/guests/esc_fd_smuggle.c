/*
 * esc_fd_smuggle.c PLACE [N] - tries to get hold of trapbox's own descriptors (see
 * esc_common.h for PLACE, N and the output conventions).
 *
 * trapbox's descriptors are those /proc/self/fd lists that lead to KVM ("/dev/kvm",
 * "anon_inode:kvm-vm", "anon_inode:kvm-vcpu:N") or that are listed but fail fcntl(F_GETFD)
 * (natively there are none of either). For each of them the program tries, one output line per
 * technique ("<technique>: safe" unless an escape is printed): ioctl KVM_GET_API_VERSION on the
 * number itself, mmap of it, fcntl F_DUPFD and F_DUPFD_CLOEXEC, dup, dup3, sending it to itself
 * over a socketpair with SCM_RIGHTS, pidfd_getfd(pidfd_open(getpid())), open of
 * /proc/self/fd/N, /proc/<pid>/fd/N, /proc/<tid>/fd/N and /proc/thread-self/fd/N, and in fork
 * mode open of /proc/<parent>/fd/N and pidfd_getfd on the parent. A descriptor obtained that
 * leads to KVM is an escape (it is tried with KVM_GET_API_VERSION and mmap, and could be handed
 * to a process outside the box); one that leads elsewhere is an escape unless the guest holds
 * the same file itself.
 * Then ways to open the KVM device are compared with open("/dev/kvm") (usable = the ioctl
 * answers 12): "<way>: same as /dev/kvm", a way that is usable while /dev/kvm is not being an
 * escape; ways: /dev/char/10:232, /proc/self/root/dev/kvm, a symlink to /dev/kvm, a character
 * device 10:232 made with mknod in a temporary directory (natively this needs root; if mknod is
 * refused the line reads the same), and N opens of /dev/kvm while another thread dup()s the
 * number the open gets. Natively as root every way is usable, as another user none is.
 * Exit status 0, or 99 after an escape.
 */
#include "esc_common.h"
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>

#define KVM_GET_API_VERSION 0xAE00

struct tfd {
    int fd;
    char target[256];
};
static struct tfd tfds[64];
static int ntfds;
static int esc_line; /* set when the current technique escaped */

static int kvmish(const char *t)
{
    return strcmp(t, "/dev/kvm") == 0 || strncmp(t, "anon_inode:kvm", 14) == 0;
}

static void find_trapbox_fds(void)
{
    ntfds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) && ntfds < 64) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd < 3 || fd == self)
            continue;
        char t[256];
        esc_readlink_fd(fd, t, sizeof t);
        int hidden = fcntl(fd, F_GETFD) < 0 && errno == EBADF;
        if (kvmish(t) || hidden) {
            tfds[ntfds].fd = fd;
            snprintf(tfds[ntfds].target, sizeof tfds[ntfds].target, "%s", t);
            ntfds++;
        }
    }
    closedir(d);
    esc_note("trapbox descriptors: %d", ntfds);
    for (int i = 0; i < ntfds; i++)
        esc_note("  %d -> %s", tfds[i].fd, tfds[i].target);
}

/* Whether the guest holds a descriptor (other than `except`) on the same file as fd. */
static int guest_has_same(int fd, int except)
{
    struct stat a, b;
    if (fstat(fd, &a) != 0)
        return 0;
    for (int g = 0; g < 1024; g++) {
        if (g == fd || g == except)
            continue;
        int trapbox = 0;
        for (int i = 0; i < ntfds; i++)
            trapbox |= tfds[i].fd == g;
        if (!trapbox && fstat(g, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
            return 1;
    }
    return 0;
}

/* A descriptor r the guest got from trapbox's descriptor `from` by `how`; consumes r. */
static void obtained(int r, int from, const char *how)
{
    if (r < 0)
        return;
    char t[256];
    esc_readlink_fd(r, t, sizeof t);
    esc_note("%s of %d gave %d -> %s", how, from, r, t);
    if (kvmish(t)) {
        int v = ioctl(r, KVM_GET_API_VERSION, 0);
        void *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, r, 0);
        if (m != MAP_FAILED) {
            esc_hex("mapped", m, 16);
            munmap(m, 4096);
        }
        esc_escape("%s of trapbox's descriptor %d gave %s as %d%s%s", how, from, t, r,
                   v == 12 ? ", KVM_GET_API_VERSION answers 12" : "",
                   m != MAP_FAILED ? ", and it maps" : "");
        esc_line = 1;
    } else if (!guest_has_same(r, from)) {
        esc_escape("%s of trapbox's descriptor %d gave %s as %d", how, from, t, r);
        esc_line = 1;
    }
    close(r);
}

static void line(const char *technique)
{
    if (!esc_line)
        esc_say("%s: safe", technique);
    esc_line = 0;
}

static int scm_roundtrip(int fd)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    char data = 'x';
    struct iovec iov = {&data, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    int got = -1;
    ssize_t s = sendmsg(sv[0], &mh, 0);
    esc_note("sendmsg SCM_RIGHTS %d: %s", fd, esc_res(s, errno));
    if (s == 1) {
        memset(&u, 0, sizeof u);
        struct msghdr rh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
        ssize_t n = recvmsg(sv[1], &rh, MSG_CMSG_CLOEXEC);
        struct cmsghdr *rc = n >= 0 ? CMSG_FIRSTHDR(&rh) : NULL;
        if (rc && rc->cmsg_type == SCM_RIGHTS)
            memcpy(&got, CMSG_DATA(rc), sizeof got);
    }
    close(sv[0]);
    close(sv[1]);
    return got;
}

static void smuggle(void)
{
    char p[96];
    pid_t pid = getpid(), tid = esc_gettid();

    for (int i = 0; i < ntfds; i++) {
        int v = ioctl(tfds[i].fd, KVM_GET_API_VERSION, 0);
        if (v == 12) {
            esc_escape("KVM_GET_API_VERSION on trapbox's descriptor %d answers 12", tfds[i].fd);
            esc_line = 1;
        }
    }
    line("ioctl on trapbox's descriptors");
    for (int i = 0; i < ntfds; i++) {
        void *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, tfds[i].fd, 0);
        if (m != MAP_FAILED) {
            esc_hex("mapped", m, 16);
            munmap(m, 4096);
            esc_escape("mmap of trapbox's descriptor %d (%s)", tfds[i].fd, tfds[i].target);
            esc_line = 1;
        }
    }
    line("mmap of trapbox's descriptors");
    for (int i = 0; i < ntfds; i++)
        obtained(fcntl(tfds[i].fd, F_DUPFD, 0), tfds[i].fd, "F_DUPFD");
    line("fcntl F_DUPFD");
    for (int i = 0; i < ntfds; i++)
        obtained(fcntl(tfds[i].fd, F_DUPFD_CLOEXEC, 0), tfds[i].fd, "F_DUPFD_CLOEXEC");
    line("fcntl F_DUPFD_CLOEXEC");
    for (int i = 0; i < ntfds; i++)
        obtained(dup(tfds[i].fd), tfds[i].fd, "dup");
    line("dup");
    for (int i = 0; i < ntfds; i++)
        obtained(dup3(tfds[i].fd, 100, O_CLOEXEC), tfds[i].fd, "dup3");
    line("dup3");
    for (int i = 0; i < ntfds; i++)
        obtained(scm_roundtrip(tfds[i].fd), tfds[i].fd, "SCM_RIGHTS");
    line("SCM_RIGHTS to itself");
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    for (int i = 0; i < ntfds && pfd >= 0; i++)
        obtained((int)syscall(SYS_pidfd_getfd, pfd, tfds[i].fd, 0), tfds[i].fd, "pidfd_getfd");
    if (pfd >= 0)
        close(pfd);
    line("pidfd_getfd on itself");
    static const char *const fmts[] = {"/proc/self/fd/%d", "/proc/%d/fd/%d", "/proc/%d/fd/%d",
                                       "/proc/thread-self/fd/%d"};
    static const char *const labels[] = {"open /proc/self/fd/N", "open /proc/<pid>/fd/N",
                                         "open /proc/<tid>/fd/N", "open /proc/thread-self/fd/N"};
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < ntfds; i++) {
            if (k == 1)
                snprintf(p, sizeof p, fmts[k], (int)pid, tfds[i].fd);
            else if (k == 2)
                snprintf(p, sizeof p, fmts[k], (int)tid, tfds[i].fd);
            else
                snprintf(p, sizeof p, fmts[k], tfds[i].fd);
            int r = open(p, O_RDWR | O_CLOEXEC);
            if (r < 0)
                r = open(p, O_RDONLY | O_CLOEXEC);
            esc_note("%s (%s): %s", labels[k], p, r >= 0 ? "opened" : esc_err(errno));
            obtained(r, tfds[i].fd, labels[k]);
        }
        line(labels[k]);
    }
    if (strcmp(esc_where, "fork") == 0) {
        /* The parent's descriptors: the same numbers hold the parent trapbox's KVM objects. */
        for (int i = 0; i < ntfds; i++) {
            snprintf(p, sizeof p, "/proc/%d/fd/%d", (int)esc_pid0, tfds[i].fd);
            int r = open(p, O_RDWR | O_CLOEXEC);
            if (r < 0)
                r = open(p, O_RDONLY | O_CLOEXEC);
            obtained(r, tfds[i].fd, "open /proc/<parent>/fd/N");
        }
        line("open /proc/<parent>/fd/N");
        int ppfd = (int)syscall(SYS_pidfd_open, esc_pid0, 0);
        for (int i = 0; i < ntfds && ppfd >= 0; i++)
            obtained((int)syscall(SYS_pidfd_getfd, ppfd, tfds[i].fd, 0), tfds[i].fd, "pidfd_getfd on the parent");
        if (ppfd >= 0)
            close(ppfd);
        line("pidfd_getfd on the parent");
    }
}

/* ---- the KVM device by other names ------------------------------------------------------ */

/* 2: usable (KVM_GET_API_VERSION is 12), 1: opened but not usable, 0: refused; closes it. */
static int kvm_state(int fd, const char *how)
{
    if (fd < 0) {
        esc_note("%s: %s", how, esc_err(errno));
        return 0;
    }
    int v = ioctl(fd, KVM_GET_API_VERSION, 0);
    esc_note("%s: opened, KVM_GET_API_VERSION %s", how, v >= 0 ? "answers" : esc_err(errno));
    close(fd);
    return v == 12 ? 2 : 1;
}

static const char *state_name(int s)
{
    return s == 2 ? "usable" : s == 1 ? "opened but unusable" : "refused";
}

static int direct;

static void compare(const char *way, int s)
{
    if (s == direct)
        esc_say("%s: same as /dev/kvm", way);
    else if (s == 2)
        esc_escape("%s is usable while /dev/kvm is %s", way, state_name(direct));
    else
        esc_say("%s: differs from /dev/kvm (%s, /dev/kvm %s)", way, state_name(s), state_name(direct));
}

static int names_kvm(const char *target)
{
    return strcmp(target, "/dev/kvm") == 0;
}

static void device(void)
{
    direct = kvm_state(open("/dev/kvm", O_RDWR | O_CLOEXEC), "/dev/kvm");
    /* Not every system has /dev/char: where it is missing, it is as good as /dev/kvm. */
    int c = open("/dev/char/10:232", O_RDWR | O_CLOEXEC);
    compare("/dev/char/10:232", c < 0 && errno == ENOENT ? direct : kvm_state(c, "/dev/char/10:232"));
    compare("/proc/self/root/dev/kvm",
            kvm_state(open("/proc/self/root/dev/kvm", O_RDWR | O_CLOEXEC), "/proc/self/root/dev/kvm"));

    char dir[64] = "/tmp/esc_fd_smuggle.XXXXXX", node[96];
    if (!mkdtemp(dir)) {
        esc_say("mkdtemp: %s", esc_err(errno));
        return;
    }
    snprintf(node, sizeof node, "%s/link", dir);
    int s = symlink("/dev/kvm", node) == 0 ? kvm_state(open(node, O_RDWR | O_CLOEXEC), "symlink") : 0;
    unlink(node);
    compare("symlink to /dev/kvm", s);

    snprintf(node, sizeof node, "%s/kvm", dir);
    if (mknod(node, S_IFCHR | 0600, makedev(10, 232)) == 0) {
        s = kvm_state(open(node, O_RDWR | O_CLOEXEC), "mknod 10:232 node");
        unlink(node);
    } else {
        /* Without the right to make device nodes the node cannot exist: it is as refused as
         * /dev/kvm would be to such a user. */
        esc_note("mknod: %s", esc_err(errno));
        s = direct;
    }
    rmdir(dir);
    compare("mknod 10:232 node", s);

    int opened;
    int race_caught = esc_race("/dev/kvm", O_RDWR, names_kvm, &opened);
    compare("open /dev/kvm while another thread dups it",
            race_caught >= 0 ? kvm_state(race_caught, "open-dup race") : direct);
}

static void attack(void)
{
    find_trapbox_fds();
    smuggle();
    device();
}

int main(int argc, char **argv)
{
    return esc_main(argc, argv, 500, attack);
}
