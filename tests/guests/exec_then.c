/* exec_then [PROGRAM ARGS...]: prints one line that differs from run to run ("exec_then"
 * with its pid, 8 bytes from getrandom and the realtime clock read through libc, so through
 * the vDSO when there is one), then replaces itself with PROGRAM (execv, argv[0] = PROGRAM;
 * `@PATH` opens PATH and runs it with fexecve, argv[0] = "@PATH").
 * Without arguments it exits 0 after the line. If the exec fails it prints
 * "exec_then: execv: <strerror>" and exits 127.
 * Used to record a process that execs: across link forms, into scripts, and into programs
 * that changed before the replay.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    unsigned char r[8];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    printf("exec_then pid %d random ", (int)getpid());
    for (size_t i = 0; i < sizeof r; i++)
        printf("%02x", r[i]);
    printf(" clock %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    fflush(stdout);
    if (argc < 2)
        return 0;
    if (argv[1][0] == '@') {
        extern char **environ;
        int fd = open(argv[1] + 1, O_RDONLY | O_CLOEXEC);
        if (fd >= 0)
            fexecve(fd, argv + 1, environ);
    } else {
        execv(argv[1], argv + 1);
    }
    printf("exec_then: execv: %s\n", strerror(errno));
    return 127;
}
