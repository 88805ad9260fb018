/* Runs a command with its stdout through a pipe, copies it to our stdout, and reports on stderr
 * how long after the start the first byte and a marker string came, and when the command ended.
 * When the marker comes it also reads each file named in $TSTAMP_COUNTERS (KVM's debugfs
 * counters, which count only VMs still alive) and reports their values then.
 * Both sides of the boot benchmark are measured with it, the same way.
 * usage: tstamp MARKER CMD ARGS... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static char counters[512] = "";

static void read_counters(void) {
  const char *list = getenv("TSTAMP_COUNTERS");
  char names[512], *save = NULL;
  if (!list) return;
  snprintf(names, sizeof names, "%s", list);
  for (char *f = strtok_r(names, " ", &save); f; f = strtok_r(NULL, " ", &save)) {
    long long v = -1;
    FILE *fp = fopen(f, "r");
    if (fp) {
      if (fscanf(fp, "%lld", &v) != 1) v = -1;
      fclose(fp);
    }
    size_t n = strlen(counters);
    snprintf(counters + n, sizeof counters - n, " %lld", v);
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: tstamp MARKER CMD ARGS...\n");
    return 2;
  }
  const char *marker = argv[1];
  size_t ml = strlen(marker), matched = 0;
  int p[2];
  if (pipe(p) != 0) { perror("pipe"); return 2; }
  double t0 = now_ms(), first = -1, mark = -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    close(p[0]);
    close(p[1]);
    execvp(argv[2], argv + 2);
    perror("exec");
    _exit(127);
  }
  close(p[1]);
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) {
    double t = now_ms() - t0;
    if (first < 0) first = t;
    fwrite(buf, 1, n, stdout);
    /* Byte-at-a-time match; the marker has no repeated prefix, so no backtracking is needed. */
    for (ssize_t i = 0; i < n && mark < 0; i++) {
      matched = buf[i] == marker[matched] ? matched + 1 : (buf[i] == marker[0]);
      if (matched == ml) {
        mark = t;
        read_counters();
      }
    }
  }
  int st = 0;
  waitpid(pid, &st, 0);
  double end = now_ms() - t0;
  fflush(stdout);
  fprintf(stderr, "tstamp: first-byte %.1f marker %.1f exit %.1f status %d counters%s\n", first, mark, end,
          WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), counters[0] ? counters : " - - -");
  return 0;
}
