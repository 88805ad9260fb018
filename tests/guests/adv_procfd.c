/* adv_procfd: finds every descriptor listed in /proc/self/fd (in the box that includes
 * trapbox's own, which the guest can see but must not be able to use), then for each one
 * >= 3 (other than the directory stream's) tries fcntl(F_GETFD), dup2(1, fd), dup(fd) and
 * close(fd). Prints how many were listed-but-unusable and how many of each operation
 * succeeded. Natively no extra descriptors are listed, so all counts are 0; in the box every
 * operation on trapbox's descriptors must fail with EBADF, so they are 0 too. Exits 0.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        perror("opendir");
        return 1;
    }
    int self = dirfd(d), fds[256], n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd >= 3 && fd != self) fds[n++] = fd;
    }
    closedir(d);
    int getfd = 0, dup2ok = 0, dupok = 0, closeok = 0, notebadf = 0;
    for (int i = 0; i < n; i++) {
        if (fcntl(fds[i], F_GETFD) != -1) getfd++;
        else if (errno != EBADF) notebadf++;
        int r = dup(fds[i]);
        if (r != -1) { dupok++; close(r); }
        if (dup2(1, fds[i]) != -1) dup2ok++;
        else if (errno != EBADF) notebadf++;
        if (close(fds[i]) == 0) closeok++;
    }
    printf("usable: fcntl %d, dup %d, dup2 %d, close %d, errors other than EBADF %d\n", getfd, dupok, dup2ok, closeok, notebadf);
    printf("still alive\n");
    return 0;
}
