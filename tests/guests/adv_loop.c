/*
 * adv_loop.c - adversarial: prints "looping", flushes, then spins forever in
 * a loop containing no syscalls, so the only way to stop it is a timeout or
 * signal from outside (the harness checks trapbox can still be interrupted or
 * time-limited).  Never exits on its own.
 */
#include <stdio.h>

int main(void)
{
    printf("looping\n");
    fflush(stdout);
    for (;;)
        __asm__ volatile("" ::: "memory");
}
