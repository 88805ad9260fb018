/* A program for the debugger tests: a call in a loop, a global, output at the end. */
#include <stdio.h>

int counter = 0;

static int square(int x) {
    int y = x * x;
    return y;
}

int main(void) {
    int total = 0;
    for (int i = 1; i <= 3; i++) {
        counter += i;
        total += square(i);
    }
    printf("total %d counter %d\n", total, counter);
    return 0;
}
