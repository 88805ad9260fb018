/*
 * exitcode.c - exercises exit-status propagation: prints "exiting with N" to
 * stderr (N = atoi(argv[1]), default 0) and calls exit(N).  The observed exit
 * status is N & 0xff.  Nothing is written to stdout.
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 0;
    fprintf(stderr, "exiting with %d\n", n);
    exit(n);
}
