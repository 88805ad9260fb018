/*
 * adv_trapbox_mem.c - adversarial: tries to make the kernel touch the trapbox
 * host's own memory on the guest's behalf.  It scans /proc/self/maps for the
 * first mapping whose file name contains "trapbox" (under trapbox the maps
 * seen are the host process's, whose binary is named trapbox; natively there
 * is none, and the guest's own executable is ignored).  If none is found it
 * prints "no trapbox mapping" and exits 0.  Otherwise, with A = that
 * mapping's start address, it tries read(/dev/zero fd, A, 4096), write(1, A,
 * 16) and readv(/dev/zero fd, {A, 4096}), printing "read into trapbox memory:
 * ", "write from trapbox memory: " and "readv into trapbox memory: " followed
 * by "ok" or the errno name, then "still alive"; exit status 0.  Under
 * trapbox, A names guest address space, never the host's, so none of these
 * may reach or change host memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static const char *errname(int e)
{
    static char other[32];
    switch (e) {
    case EFAULT: return "EFAULT";
    case ENOMEM: return "ENOMEM";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case EEXIST: return "EEXIST";
    case EBADF: return "EBADF";
    case ENOENT: return "ENOENT";
    case ENOSYS: return "ENOSYS";
    case EIO: return "EIO";
    case ESRCH: return "ESRCH";
    case EAGAIN: return "EAGAIN";
    case EBUSY: return "EBUSY";
    case EMFILE: return "EMFILE";
    case ENODEV: return "ENODEV";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOTDIR: return "ENOTDIR";
    case ENXIO: return "ENXIO";
    }
    snprintf(other, sizeof other, "errno %d", e);
    return other;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/*
 * Scan /proc/self/maps for the first mapping whose file name contains
 * "trapbox".  The guest's own executable is skipped (its name, e.g.
 * "adv_trapbox_mem", contains "trapbox" too), as are mappings whose
 * directory, not file name, contains it.  If heap is non-NULL, the start of
 * the "[heap]" mapping (0 if none) is stored there.
 */
static unsigned long find_trapbox_mapping(unsigned long *heap)
{
    char self[256] = "";
    const char *execfn = (const char *)getauxval(AT_EXECFN);
    if (execfn)
        snprintf(self, sizeof self, "%s", base_name(execfn));
    if (heap)
        *heap = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) {
        printf("cannot open /proc/self/maps: %s\n", errname(errno));
        return 0;
    }
    char line[4096];
    unsigned long found = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        unsigned long start, end;
        int pathoff = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &start, &end, &pathoff) < 2 || pathoff == 0)
            continue;
        char *path = line + pathoff;
        char *del = strstr(path, " (deleted)");
        if (del)
            *del = '\0';
        if (heap && !*heap && strcmp(path, "[heap]") == 0)
            *heap = start;
        if (!found && path[0] == '/') {
            const char *bn = base_name(path);
            if (strstr(bn, "trapbox") && strcmp(bn, self) != 0)
                found = start;
        }
    }
    fclose(f);
    return found;
}

static void result(const char *label, long r)
{
    int e = errno;
    printf("%s: %s\n", label, r >= 0 ? "ok" : errname(e));
    fflush(stdout);
}

int main(void)
{
    unsigned long a = find_trapbox_mapping(NULL);
    if (!a) {
        printf("no trapbox mapping\n");
        return 0;
    }
    printf("found trapbox mapping\n");
    fflush(stdout);

    int fd = open("/dev/zero", O_RDONLY);
    if (fd < 0) {
        printf("open /dev/zero: %s\n", errname(errno));
        return 1;
    }
    errno = 0;
    result("read into trapbox memory", read(fd, (void *)a, 4096));

    printf("write from trapbox memory: ");
    fflush(stdout);
    errno = 0;
    long w = write(1, (const void *)a, 16);
    int e = errno;
    printf("%s\n", w >= 0 ? "ok" : errname(e));
    fflush(stdout);

    struct iovec iov = {(void *)a, 4096};
    errno = 0;
    result("readv into trapbox memory", syscall(SYS_readv, fd, &iov, 1));

    close(fd);
    printf("still alive\n");
    return 0;
}
