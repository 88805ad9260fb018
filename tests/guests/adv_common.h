/* adv_common.h: helpers shared by the adversarial guests — an errno name for the result
 * lines, and the search of /proc/self/maps for a mapping of the host process running the
 * guest (under trapbox, the trapbox binary).
 */
#ifndef ADV_COMMON_H
#define ADV_COMMON_H
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline const char *errname(int e)
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

#ifdef ADV_NEED_MAPS
static inline const char *base_name(const char *p)
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
static inline unsigned long find_trapbox_mapping(unsigned long *heap)
{
    /* The box shows the guest its own maps only: a test that knows where trapbox is (its
     * image without address randomization) says so here. */
    const char *at = getenv("ADV_TRAPBOX_AT");
    if (at && *at) {
        if (heap)
            *heap = 0;
        return strtoul(at, NULL, 0);
    }
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

#endif

#endif
