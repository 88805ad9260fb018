/*
 * esc_double_fetch.c PLACE [N] - races a second thread against the box's checks: the racer
 * flips a pointer or a length in guest memory between a value a check accepts and one that
 * reaches trapbox, so that a box that checks guest memory and then lets the kernel read it
 * again is caught in between (see esc_common.h for PLACE, N and the output conventions; N is
 * the number of calls per attack, default 150).
 *
 * Reads aim at trapbox's memory (its ELF header, else the first foreign address); a leak is
 * data that differs from the guest buffer the check saw. Writes aim at trapbox's argument
 * strings, and are seen as a change of /proc/self/cmdline (or of data missing from the guest
 * buffer). One line per attack, "<attack>: safe" unless an escape is printed:
 *   writev iov_base (guest buffer <-> trapbox), readv iov_base (guest buffer <-> trapbox),
 *   sendmsg msg_iov (good iovec array <-> one naming trapbox), sendmsg msg_iovlen (1 <-> 2, the
 *   second iovec naming trapbox), recvmsg msg_name (guest <-> trapbox), recvmsg msg_namelen
 *   (0 <-> 110, msg_name at trapbox), recvmsg msg_control (guest <-> trapbox, SCM_CREDENTIALS),
 *   recvmsg msg_controllen (0 <-> 64, msg_control at trapbox), recvfrom addrlen (0 <-> 110,
 *   src_addr at trapbox), recvfrom with src_addr at trapbox (no race: a register), accept
 *   addrlen (0 <-> 110),
 *   getsockopt optlen (0 <-> 12, SO_PEERCRED into trapbox), writev iov_len (64 <-> 4160 on
 *   the last 64 bytes of a page the program maps right below a foreign mapping, if it can).
 * Natively there is nothing of trapbox to aim at: every line is "safe". Exit status 0, or 99
 * after an escape.
 */
#include "esc_common.h"
#include <sys/socket.h>
#include <sys/uio.h>
#include <stddef.h>
#include <sys/un.h>

#define PAGE 4096UL

static unsigned char A[64];
static int esc_now_line;

static void done(const char *attack)
{
    if (!esc_now_line)
        esc_say("%s: safe", attack);
    esc_now_line = 0;
}

static void leaked(const char *attack, const unsigned char *got, size_t n)
{
    esc_hex(attack, got, n);
    esc_escape("%s leaked %zu bytes that are not the guest's%s", attack, n,
               n >= 4 && memcmp(got, "\x7f" "ELF", 4) == 0 ? " (trapbox's ELF header)" : "");
    esc_now_line = 1;
}

static void wrote(const char *attack, const char *how)
{
    esc_escape("%s wrote into trapbox memory (%s)", attack, how);
    esc_now_line = 1;
}

/* Where the next write attack aims: trapbox's argument strings, at an offset of its own, so
 * that the same bytes written by two attacks still change what /proc/self/cmdline shows. */
static unsigned long wtarget(size_t need)
{
    static unsigned seq;
    if (!esc_argw || esc_argw_len < need)
        return 0;
    size_t room = esc_argw_len - need + 1;
    return esc_argw + (seq++ * 7) % room;
}

/* Whether bytes differ from the guest buffer A's pattern. */
static int foreign_bytes(const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != 'A')
            return 1;
    return 0;
}

/* ---- reads ----------------------------------------------------------------------------- */

static void writev_base(unsigned long L)
{
    const char *name = "writev iov_base race";
    int p[2];
    if (!L || pipe2(p, O_CLOEXEC) != 0)
        return done(name);
    struct iovec iov[1] = {{A, sizeof A}};
    struct esc_flip f;
    if (esc_flip_start(&f, &iov[0].iov_base, 8, (uint64_t)(uintptr_t)A, L)) {
        unsigned char out[64];
        for (int i = 0; i < esc_iters && !esc_now_line; i++) {
            ssize_t n = writev(p[1], iov, 1);
            if (n <= 0)
                continue;
            ssize_t r = read(p[0], out, (size_t)n);
            if (r > 0 && foreign_bytes(out, (size_t)r))
                leaked(name, out, (size_t)r);
        }
        esc_flip_stop(&f);
    }
    close(p[0]);
    close(p[1]);
    done(name);
}

static void sendmsg_iov(unsigned long L, int raise_len)
{
    const char *name = raise_len ? "sendmsg msg_iovlen race" : "sendmsg msg_iov race";
    int sv[2];
    if (!L || socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) != 0)
        return done(name);
    struct iovec good[2] = {{A, sizeof A}, {(void *)L, 64}};
    struct iovec bad[1] = {{(void *)L, 64}};
    struct msghdr m = {.msg_iov = good, .msg_iovlen = 1};
    struct esc_flip f;
    int ok = raise_len ? esc_flip_start(&f, &m.msg_iovlen, 8, 1, 2)
                       : esc_flip_start(&f, &m.msg_iov, 8, (uint64_t)(uintptr_t)good, (uint64_t)(uintptr_t)bad);
    if (ok) {
        unsigned char out[256];
        for (int i = 0; i < esc_iters && !esc_now_line; i++) {
            ssize_t n = sendmsg(sv[0], &m, MSG_DONTWAIT);
            if (n <= 0)
                continue;
            ssize_t r = recv(sv[1], out, sizeof out, MSG_DONTWAIT);
            if (r > (ssize_t)sizeof A)
                leaked(name, out + sizeof A, (size_t)r - sizeof A);
            else if (r > 0 && foreign_bytes(out, (size_t)r))
                leaked(name, out, (size_t)r);
        }
        esc_flip_stop(&f);
    }
    close(sv[0]);
    close(sv[1]);
    done(name);
}

static void writev_len(void)
{
    const char *name = "writev iov_len race";
    char *page = MAP_FAILED;
    for (int i = 0; i < esc_ntg && page == MAP_FAILED; i++) {
        if (esc_tg[i].addr & (PAGE - 1) || esc_tg[i].len < PAGE || esc_tg[i].addr < PAGE)
            continue;
        void *want = (void *)(esc_tg[i].addr - PAGE);
        page = mmap(want, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (page != MAP_FAILED && page != want) {
            munmap(page, PAGE);
            page = MAP_FAILED;
        }
        if (page != MAP_FAILED)
            esc_note("%s: page %p right below %s", name, (void *)page, esc_tg[i].what);
    }
    int p[2];
    if (page == MAP_FAILED || pipe2(p, O_CLOEXEC) != 0) {
        if (page != MAP_FAILED)
            munmap(page, PAGE);
        return done(name);
    }
    memset(page, 'A', PAGE);
    struct iovec iov[1] = {{page + PAGE - 64, 64}};
    struct esc_flip f;
    if (esc_flip_start(&f, &iov[0].iov_len, 8, 64, 64 + PAGE)) {
        static unsigned char out[64 + PAGE];
        for (int i = 0; i < esc_iters && !esc_now_line; i++) {
            ssize_t n = writev(p[1], iov, 1);
            if (n <= 0)
                continue;
            ssize_t r = read(p[0], out, (size_t)n);
            if (r > 64)
                leaked(name, out + 64, (size_t)r - 64);
        }
        esc_flip_stop(&f);
    }
    close(p[0]);
    close(p[1]);
    munmap(page, PAGE);
    done(name);
}

/* ---- writes ---------------------------------------------------------------------------- */

static void readv_base(void)
{
    const char *name = "readv iov_base race";
    unsigned long W = wtarget(8);
    int p[2];
    if (!W || pipe2(p, O_CLOEXEC) != 0)
        return done(name);
    unsigned char buf[8];
    struct iovec iov[1] = {{buf, sizeof buf}};
    struct esc_flip f;
    if (esc_flip_start(&f, &iov[0].iov_base, 8, (uint64_t)(uintptr_t)buf, W)) {
        for (int i = 0; i < esc_iters && !esc_now_line; i++) {
            char mark[8];
            snprintf(mark, sizeof mark, "R%06d", i % 1000000);
            memset(buf, 0, sizeof buf);
            if (write(p[1], mark, sizeof mark) != (ssize_t)sizeof mark)
                break;
            ssize_t n = readv(p[0], iov, 1);
            if (n < 0) {
                char sink[8];
                if (read(p[0], sink, sizeof sink) < 0)
                    break;
                continue;
            }
            if (n > 0 && memcmp(buf, mark, (size_t)n) != 0)
                wrote(name, esc_cmdline_changed() ? "its command line changed" : "the data missed the guest buffer");
        }
        esc_flip_stop(&f);
    }
    close(p[0]);
    close(p[1]);
    done(name);
}

/* An AF_UNIX datagram receiver bound to an abstract name and an autobound sender. */
static int dgram_pair(int *rx, int *tx, struct sockaddr_un *rxa, socklen_t *rxl)
{
    static int seq;
    memset(rxa, 0, sizeof *rxa);
    rxa->sun_family = AF_UNIX;
    int n = snprintf(rxa->sun_path + 1, sizeof rxa->sun_path - 1, "esc_df.%d.%d", (int)getpid(), seq++);
    *rxl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    *rx = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    *tx = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sa_family_t fam = AF_UNIX;
    if (*rx < 0 || *tx < 0 || bind(*rx, (struct sockaddr *)rxa, *rxl) != 0 ||
        bind(*tx, (struct sockaddr *)&fam, sizeof fam) != 0) {
        esc_note("dgram pair: %s", esc_err(errno));
        if (*rx >= 0)
            close(*rx);
        if (*tx >= 0)
            close(*tx);
        return 0;
    }
    int one = 1;
    setsockopt(*rx, SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
    return 1;
}

enum rx_kind { NAME_PTR, NAME_LEN, CTL_PTR, CTL_LEN, FROM_LEN, FROM_PTR };

static void recv_race(enum rx_kind k, const char *name, size_t need)
{
    int rx, tx;
    struct sockaddr_un rxa;
    socklen_t rxl;
    unsigned long W = wtarget(need);
    if (!W || !dgram_pair(&rx, &tx, &rxa, &rxl))
        return done(name);
    unsigned char data[8], nb[128];
    union {
        char b[64];
        struct cmsghdr align;
    } cb;
    struct iovec iov = {data, sizeof data};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    socklen_t alen = 0;
    struct esc_flip f;
    int ok = 0;
    switch (k) {
    case NAME_PTR:
        m.msg_name = nb;
        m.msg_namelen = sizeof nb;
        ok = esc_flip_start(&f, &m.msg_name, 8, (uint64_t)(uintptr_t)nb, W);
        break;
    case NAME_LEN:
        m.msg_name = (void *)W;
        ok = esc_flip_start(&f, &m.msg_namelen, 4, 0, 110);
        break;
    case CTL_PTR:
        m.msg_control = cb.b;
        m.msg_controllen = sizeof cb.b;
        ok = esc_flip_start(&f, &m.msg_control, 8, (uint64_t)(uintptr_t)cb.b, W);
        break;
    case CTL_LEN:
        m.msg_control = (void *)W;
        ok = esc_flip_start(&f, &m.msg_controllen, 8, 0, 64);
        break;
    case FROM_LEN:
        ok = esc_flip_start(&f, &alen, 4, 0, 110);
        break;
    case FROM_PTR:
        /* recvfrom's address is a register: nothing to race, the plain call must be refused. */
        alen = sizeof nb;
        ok = 1;
        break;
    }
    if (ok) {
        for (int i = 0; i < esc_iters && !esc_now_line; i++) {
            char msg[8];
            snprintf(msg, sizeof msg, "m%06d", i % 1000000);
            if (sendto(tx, msg, sizeof msg, 0, (struct sockaddr *)&rxa, rxl) != (ssize_t)sizeof msg)
                break;
            ssize_t n;
            if (k == FROM_LEN)
                n = recvfrom(rx, data, sizeof data, 0, (struct sockaddr *)W, &alen);
            else if (k == FROM_PTR) {
                alen = sizeof nb;
                n = recvfrom(rx, data, sizeof data, 0, (struct sockaddr *)W, &alen);
            } else {
                if (k == NAME_PTR)
                    m.msg_namelen = sizeof nb;
                if (k == CTL_PTR)
                    m.msg_controllen = sizeof cb.b;
                n = recvmsg(rx, &m, 0);
            }
            if (n < 0) {
                char sink[8];
                recv(rx, sink, sizeof sink, MSG_DONTWAIT);
            }
            if (esc_cmdline_changed())
                wrote(name, "its command line changed");
            if (k == FROM_PTR)
                break;
        }
        if (k != FROM_PTR)
            esc_flip_stop(&f);
    }
    close(rx);
    close(tx);
    done(name);
}

static void accept_race(void)
{
    const char *name = "accept addrlen race";
    unsigned long W = wtarget(16);
    if (!W)
        return done(name);
    struct sockaddr_un la;
    memset(&la, 0, sizeof la);
    la.sun_family = AF_UNIX;
    int n = snprintf(la.sun_path + 1, sizeof la.sun_path - 1, "esc_df.l.%d", (int)getpid());
    socklen_t ll = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (ls < 0 || bind(ls, (struct sockaddr *)&la, ll) != 0 || listen(ls, 8) != 0) {
        if (ls >= 0)
            close(ls);
        return done(name);
    }
    socklen_t alen = 0;
    struct esc_flip f;
    if (esc_flip_start(&f, &alen, 4, 0, 110)) {
        for (int i = 0; i < esc_iters && !esc_now_line; i++) {
            int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            sa_family_t fam = AF_UNIX;
            if (c < 0)
                break;
            if (bind(c, (struct sockaddr *)&fam, sizeof fam) != 0 || connect(c, (struct sockaddr *)&la, ll) != 0) {
                close(c);
                break;
            }
            int a = accept(ls, (struct sockaddr *)W, &alen);
            if (a < 0) /* take the connection off the queue all the same */
                a = accept(ls, NULL, NULL);
            if (a >= 0)
                close(a);
            close(c);
            if (esc_cmdline_changed())
                wrote(name, "its command line changed");
        }
        esc_flip_stop(&f);
    }
    close(ls);
    done(name);
}

static void getsockopt_race(void)
{
    const char *name = "getsockopt optlen race";
    unsigned long W = wtarget(12);
    int sv[2];
    if (!W || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return done(name);
    socklen_t len = 0;
    struct esc_flip f;
    if (esc_flip_start(&f, &len, 4, 0, 12)) {
        for (int i = 0; i < esc_iters && !esc_now_line; i++) {
            getsockopt(sv[0], SOL_SOCKET, SO_PEERCRED, (void *)W, &len);
            if (esc_cmdline_changed())
                wrote(name, "its command line changed");
        }
        esc_flip_stop(&f);
    }
    close(sv[0]);
    close(sv[1]);
    done(name);
}

static void attack(void)
{
    esc_find_foreign();
    memset(A, 'A', sizeof A);
    unsigned long L = esc_leak_src();
    writev_base(L);
    readv_base();
    sendmsg_iov(L, 0);
    sendmsg_iov(L, 1);
    recv_race(NAME_PTR, "recvmsg msg_name race", 16);
    recv_race(NAME_LEN, "recvmsg msg_namelen race", 16);
    recv_race(CTL_PTR, "recvmsg msg_control race", 32);
    recv_race(CTL_LEN, "recvmsg msg_controllen race", 32);
    recv_race(FROM_LEN, "recvfrom addrlen race", 16);
    recv_race(FROM_PTR, "recvfrom src_addr at trapbox", 16);
    accept_race();
    getsockopt_race();
    writev_len();
}

int main(int argc, char **argv)
{
    return esc_main(argc, argv, 150, attack);
}
