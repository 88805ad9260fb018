/*
 * Moves bytes to stdout without passing them through its own memory: writes 64 random
 * bytes (getrandom, hex) into a new file, then sends parts of it to stdout with
 * sendfile (with an offset pointer), copy_file_range (from the file's own offset, when
 * stdout is a regular file; else read and write, as cat does) and splice (when stdout is a
 * pipe; else sendfile again), a label before each. The file is unlinked before the end.
 * With argument "pipe" it also splices 16 bytes from a pipe it filled itself to stdout
 * (bytes that cannot be read again once moved). Exit status 0.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

static void say(const char *s) { if (write(1, s, strlen(s)) < 0) exit(1); }

int main(int argc, char **argv)
{
    unsigned char r[32];
    char hex[65];
    if (getrandom(r, sizeof r, 0) != sizeof r)
        return 1;
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", r[i]);
    char path[] = "/tmp/console_transfer_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, hex, 64) != 64)
        return 1;

    say("sendfile: ");
    off_t off = 0;
    if (sendfile(1, fd, &off, 16) != 16 || off != 16)
        return 2;

    say("\ncopy_file_range: ");
    if (lseek(fd, 16, SEEK_SET) != 16)
        return 3;
    ssize_t n = copy_file_range(fd, NULL, 1, NULL, 16, 0);
    if (n < 0) {
        /* stdout is not a regular file: what cat does then. */
        char buf[16];
        if (read(fd, buf, 16) != 16 || write(1, buf, 16) != 16)
            return 3;
    } else if (n != 16 || lseek(fd, 0, SEEK_CUR) != 32) {
        return 3;
    }

    say("\nsplice: ");
    struct stat st;
    if (fstat(1, &st) != 0)
        return 4;
    loff_t at = 32;
    if (S_ISFIFO(st.st_mode)) {
        if (splice(fd, &at, 1, NULL, 16, 0) != 16)
            return 4;
    } else if (sendfile(1, fd, &at, 16) != 16) {
        return 4;
    }
    unlink(path);

    if (argc > 1 && strcmp(argv[1], "pipe") == 0) {
        say("\nfrom a pipe: ");
        int p[2];
        if (pipe(p) != 0 || write(p[1], hex + 48, 16) != 16)
            return 5;
        if (splice(p[0], NULL, 1, NULL, 16, 0) != 16)
            return 5;
    }
    say("\nend\n");
    return 0;
}
