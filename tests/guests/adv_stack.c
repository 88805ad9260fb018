/*
 * adv_stack.c - adversarial: unbounded recursion with a ~1 KiB frame, growing
 * the stack until it hits the stack limit.  Prints "recursing", flushes, and
 * must then die of SIGSEGV (exit status 139 in a shell); "unexpectedly
 * returned" must never appear.  Each frame's array is written by its child
 * through a pointer, so the frames must all coexist and the recursion cannot
 * be turned into a loop.  If RLIMIT_STACK is unlimited it is first lowered to
 * 8 MiB so the run cannot eat all memory.
 */
#include <stdio.h>
#include <limits.h>
#include <sys/resource.h>

/* Never reached; keeps the compiler from proving the recursion infinite. */
static volatile long stop_depth = LONG_MAX;

__attribute__((noinline)) static long recurse(long depth, volatile char *parent)
{
    volatile char buf[1024];
    if (depth == stop_depth)
        return 0;
    buf[depth & 1023] = (char)depth;
    parent[depth & 1023] = (char)(depth + 1);
    long r = recurse(depth + 1, buf);
    return r + buf[(depth * 7) & 1023] + parent[0];
}

int main(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur == RLIM_INFINITY) {
        rl.rlim_cur = 8 << 20;
        setrlimit(RLIMIT_STACK, &rl);
    }
    static volatile char root[1024];
    printf("recursing\n");
    fflush(stdout);
    long r = recurse(0, root);
    printf("unexpectedly returned %ld\n", r);
    return 0;
}
