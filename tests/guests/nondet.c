/* nondet: output that depends on nondeterminism — getrandom, /dev/urandom, clock_gettime
 * (through the syscall, not the vDSO), getpid, rdtsc, rdtscp, cpuid's vendor, the contents
 * of the file named by argv[1] (read, then left for the test to delete), and all of stdin.
 * Two native runs print different lines; a replay must print exactly the recorded ones.
 * Exits 0.
 */
#include <cpuid.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void hex(const char *label, const unsigned char *b, size_t n) {
    printf("%s ", label);
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
    printf("\n");
}

int main(int argc, char **argv) {
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) return 1;
    hex("getrandom", r, sizeof r);
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, r, sizeof r) != (ssize_t)sizeof r) return 1;
    close(fd);
    hex("urandom", r, sizeof r);
    struct timespec ts;
    syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
    printf("clock %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    printf("pid %ld\n", (long)syscall(SYS_getpid));
    unsigned lo, hi, aux;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    printf("rdtsc %llu\n", ((unsigned long long)hi << 32) | lo);
    __asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
    printf("rdtscp %llu aux %u\n", ((unsigned long long)hi << 32) | lo, aux);
    unsigned a = 0, b = 0, c = 0, d = 0;
    __cpuid(0, a, b, c, d);
    char vendor[13];
    memcpy(vendor, &b, 4);
    memcpy(vendor + 4, &d, 4);
    memcpy(vendor + 8, &c, 4);
    vendor[12] = 0;
    printf("cpuid vendor %s\n", vendor);
    if (argc > 1) {
        char buf[256];
        int f = open(argv[1], O_RDONLY);
        ssize_t n = f < 0 ? -1 : read(f, buf, sizeof buf - 1);
        if (n >= 0) buf[n] = 0;
        printf("file %s", n >= 0 ? buf : "(unreadable)\n");
        if (f >= 0) close(f);
    }
    char in[256];
    ssize_t n = read(0, in, sizeof in - 1);
    in[n > 0 ? n : 0] = 0;
    printf("stdin %s", in);
    return 0;
}
