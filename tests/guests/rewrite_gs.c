// A program whose syscall sites were rewritten (hot) then loads GS itself: the rewrites are
// withdrawn first, GS is the program's own, and its GS area is never written by trapbox.
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static unsigned long area[64];

int main(void) {
    long p = getppid(), wrong = 0;
    for (int i = 0; i < 1000; i++) wrong += getppid() != p;
    for (int k = 0; k < 64; k++) area[k] = 0x5a5a5a5a00000000UL + k;
    if (syscall(SYS_arch_prctl, ARCH_SET_GS, area) != 0) {
        perror("arch_prctl");
        return 1;
    }
    for (int i = 0; i < 1000; i++) wrong += getppid() != p;
    unsigned long via_gs;
    asm volatile("mov %%gs:40, %0" : "=r"(via_gs));
    int kept = 1;
    for (int k = 0; k < 64; k++) kept &= area[k] == 0x5a5a5a5a00000000UL + k;
    printf("%s: %ld wrong, gs:[40] %s, area %s\n", !wrong && via_gs == area[5] && kept ? "ok" : "FAILED", wrong,
           via_gs == area[5] ? "is the program's" : "is not the program's", kept ? "kept" : "written");
    return 0;
}
