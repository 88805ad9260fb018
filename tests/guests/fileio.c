/*
 * fileio.c - exercises basic file syscalls inside the directory given as
 * argv[1]: openat(AT_FDCWD) with O_CREAT|O_WRONLY|O_TRUNC, write, close,
 * open read-only, lseek, read, fstat, the raw getdents64 syscall, unlink, and
 * the ENOENT error path.  Expected output: the text read back from offset 7
 * ("read at 7: ..."), "size=43 regular=yes", the sorted directory listing
 * ("entry a.txt", "entry b.txt"), then "unlinked", then two lines reporting
 * that reopening a.txt and opening a nonexistent path fail with ENOENT
 * ("No such file or directory").  Exit status 0 (1 on an unexpected failure,
 * with a message on stderr).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char text[] = "trapbox fileio test: the quick brown fox.\n\n";

static void die(const char *what)
{
    fprintf(stderr, "fileio: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void report_open(const char *label, const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        printf("%s: unexpectedly opened\n", label);
        close(fd);
    } else {
        printf("%s: failed, %s, %s\n", label, errno == ENOENT ? "ENOENT" : "other errno",
               strerror(errno));
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fileio DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    char a[4096], b[4096], missing[4096];
    snprintf(a, sizeof a, "%s/a.txt", dir);
    snprintf(b, sizeof b, "%s/b.txt", dir);
    snprintf(missing, sizeof missing, "%s/does/not/exist.txt", dir);

    int fd = openat(AT_FDCWD, a, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0)
        die("openat a.txt");
    size_t len = sizeof text - 1;
    if (write(fd, text, len) != (ssize_t)len)
        die("write a.txt");
    if (close(fd) != 0)
        die("close a.txt");

    fd = open(a, O_RDONLY);
    if (fd < 0)
        die("open a.txt");
    if (lseek(fd, 7, SEEK_SET) != 7)
        die("lseek");
    char buf[64];
    ssize_t n = read(fd, buf, 20);
    if (n < 0)
        die("read");
    printf("read at 7: %zd bytes: \"%.*s\"\n", n, (int)n, buf);
    struct stat st;
    if (fstat(fd, &st) != 0)
        die("fstat");
    printf("size=%lld regular=%s\n", (long long)st.st_size, S_ISREG(st.st_mode) ? "yes" : "no");
    close(fd);

    fd = openat(AT_FDCWD, b, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0)
        die("openat b.txt");
    if (write(fd, "b\n", 2) != 2)
        die("write b.txt");
    close(fd);

    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0)
        die("open dir");
    char *names[256];
    int count = 0;
    _Alignas(8) char dbuf[1024]; /* small on purpose: forces several calls when busy */
    for (;;) {
        long nr = syscall(SYS_getdents64, dfd, dbuf, sizeof dbuf);
        if (nr < 0)
            die("getdents64");
        if (nr == 0)
            break;
        for (long off = 0; off < nr;) {
            struct dirent64 *d = (struct dirent64 *)(dbuf + off);
            if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0 && count < 256)
                names[count++] = strdup(d->d_name);
            off += d->d_reclen;
        }
    }
    close(dfd);
    qsort(names, count, sizeof names[0], cmp);
    for (int i = 0; i < count; i++) {
        printf("entry %s\n", names[i]);
        free(names[i]);
    }

    if (unlink(a) != 0)
        die("unlink a.txt");
    if (unlink(b) != 0)
        die("unlink b.txt");
    printf("unlinked\n");
    report_open("reopen a.txt", a);
    report_open("open nonexistent", missing);
    return 0;
}
