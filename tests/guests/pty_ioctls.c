/*
 * pty_ioctls.c - makes a pseudo-terminal pair and uses the ioctls a terminal program does on
 * it (TIOCGPTN, TIOCSPTLCK, TIOCGPTPEER, window size, FIONREAD, FIONBIO, termios), for the
 * tracer's decoding to be compared with strace's. Prints the window size read back.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <termios.h>
int main(void)
{
  int m = posix_openpt(O_RDWR|O_NOCTTY); grantpt(m); unlockpt(m);
  int n; ioctl(m, TIOCGPTN, &n);
  int s = ioctl(m, TIOCGPTPEER, O_RDWR|O_NOCTTY);
  struct winsize w = {30, 120, 0, 0}; ioctl(s, TIOCSWINSZ, &w);
  struct winsize r; ioctl(m, TIOCGWINSZ, &r);
  int q; ioctl(m, FIONREAD, &q);
  int one=1; ioctl(m, FIONBIO, &one);
  struct termios t; tcgetattr(s, &t); tcsetattr(s, TCSANOW, &t);
  tcflush(s, TCIOFLUSH); tcflow(s, TCOON);
  printf("%d %d\n", r.ws_row, r.ws_col);
  return 0; }
