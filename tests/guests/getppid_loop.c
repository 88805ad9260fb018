/*
 * getppid_loop.c - a syscall round-trip benchmark: argv[1] = count (default
 * 100000); issues syscall(SYS_getppid) that many times (the raw syscall, so no
 * libc caching) and then prints "done" (never the ppid itself, which differs
 * between runs); exit status 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 0) : 100000;
    long bad = 0;
    for (long i = 0; i < n; i++)
        if (syscall(SYS_getppid) < 0)
            bad++;
    if (bad)
        printf("getppid failed %ld times\n", bad);
    printf("done\n");
    return 0;
}
