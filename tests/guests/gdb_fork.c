/* For the debugger: a program that forks, parent and child both calling one function (gdb
 * follows the parent; the child must run on without the debugger, not hang at a breakpoint). */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int work(int x) {
    return x * 2;
}

int main(void) {
    pid_t p = fork();
    if (p == 0) {
        printf("child %d\n", work(2));
        return 0;
    }
    int st;
    waitpid(p, &st, 0);
    printf("parent %d\n", work(3));
    return 0;
}
