/* For reverse-continue to watchpoints over a run with calls between the writes: a global
 * written in a function (a breakpoint there arrives just before the write, between the same
 * two calls), calls before and after every write, and a buffer the kernel fills. */
#include <stdio.h>
#include <unistd.h>

int value = 0;
char slot[4];

static void mark(int i) {
    value = i;
}

int main(void) {
    int p[2];
    if (pipe(p) != 0)
        return 1;
    for (int i = 1; i <= 20; i++) {
        getppid();
        if (i % 5 == 0)
            mark(i);
        getppid();
    }
    if (write(p[1], "abc", 3) != 3 || read(p[0], slot, 3) != 3)
        return 2;
    printf("%d %s\n", value, slot);
    return 0;
}
