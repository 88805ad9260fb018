/* For the debugger's watchpoints: a global the program writes itself, and a buffer only the
 * kernel writes (a read from a pipe). */
#include <stdio.h>
#include <unistd.h>

int counter = 0;
char buf[8];

int main(void) {
    int p[2];
    if (pipe(p) != 0)
        return 1;
    for (int i = 1; i <= 3; i++)
        counter += i;
    if (write(p[1], "wxyz", 4) != 4 || read(p[0], buf, 4) != 4)
        return 2;
    printf("%s %d\n", buf, counter);
    return 0;
}
