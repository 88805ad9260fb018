/*
 * adv_map_fixed.c - adversarial: tries to replace, unmap, re-protect or
 * discard the trapbox host's own memory through the guest's memory-management
 * syscalls.  It scans /proc/self/maps for the first mapping whose file name
 * contains "trapbox" (under trapbox the maps seen are the host's; natively
 * there is none and the guest's own executable is ignored); if none is found
 * it prints "no trapbox mapping" and exits 0 without touching anything.
 * Otherwise, for A = that mapping's start (and then for the start of the
 * "[heap]" mapping, i.e. the host heap, if listed), it calls mmap(A, 4096,
 * RW, MAP_FIXED|MAP_PRIVATE|MAP_ANONYMOUS), munmap(A, 4096),
 * mprotect(A, 4096, RWX) and madvise(A, 4096, MADV_DONTNEED), printing for
 * each "<call> <target>: ok" or the errno name, then "still alive"; exit
 * status 0.  Under trapbox these addresses are guest addresses and the host
 * must be unaffected.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
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

static void attack(const char *what, unsigned long a)
{
    void *p = (void *)a;
    errno = 0;
    void *m = mmap(p, 4096, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mmap fixed over %s: %s\n", what, m != MAP_FAILED ? "ok" : errname(errno));
    fflush(stdout);
    errno = 0;
    int r = munmap(p, 4096);
    printf("munmap %s: %s\n", what, r == 0 ? "ok" : errname(errno));
    fflush(stdout);
    errno = 0;
    r = mprotect(p, 4096, PROT_READ | PROT_WRITE | PROT_EXEC);
    printf("mprotect %s: %s\n", what, r == 0 ? "ok" : errname(errno));
    fflush(stdout);
    errno = 0;
    r = madvise(p, 4096, MADV_DONTNEED);
    printf("madvise %s: %s\n", what, r == 0 ? "ok" : errname(errno));
    fflush(stdout);
}

int main(void)
{
    unsigned long heap = 0;
    unsigned long a = find_trapbox_mapping(&heap);
    if (!a) {
        printf("no trapbox mapping\n");
        return 0;
    }
    printf("found trapbox mapping\n");
    fflush(stdout);
    attack("trapbox", a);
    if (heap)
        attack("host heap", heap);
    else
        printf("no [heap] mapping\n");
    printf("still alive\n");
    return 0;
}
