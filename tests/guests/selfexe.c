/* selfexe: prints what /proc/self/exe names (readlink and readlinkat). The guest's own
 * program, not the host process running it: must equal the native output. Exits 0.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    char b[4096];
    ssize_t n = readlink("/proc/self/exe", b, sizeof b);
    printf("readlink: %.*s\n", (int)(n < 0 ? 0 : n), b);
    n = readlinkat(AT_FDCWD, "/proc/self/exe", b, sizeof b);
    printf("readlinkat: %.*s\n", (int)(n < 0 ? 0 : n), b);
    return 0;
}
