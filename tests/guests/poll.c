/* poll: poll and ppoll on a pipe — one call with two ready descriptors, one that times out,
 * one ppoll — so the trace shows pollfd arrays with their events and returned revents.
 * Exits 0.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    int p[2];
    if (pipe(p) != 0 || write(p[1], "x", 1) != 1) return 1;
    struct pollfd f[2] = {{p[0], POLLIN | POLLPRI, 0}, {p[1], POLLOUT, 0}};
    int a = poll(f, 2, 100);
    char c;
    if (read(p[0], &c, 1) != 1) return 1;
    struct pollfd g = {p[0], POLLIN, 0};
    int b = poll(&g, 1, 0);
    int d = ppoll(f, 2, NULL, NULL);
    printf("%d %d %d\n", a, b, d);
    return 0;
}
