/*
 * hello.c - the smallest possible guest: exercises process start-up (ELF
 * loading, libc initialisation), one write(2) to stdout through stdio, and a
 * clean exit_group(0).  Expected output: the single line "hello, world";
 * exit status 0.
 */
#include <stdio.h>

int main(void)
{
    printf("hello, world\n");
    return 0;
}
