/*
 * adv_priv.c - adversarial: executes one privileged or trapping instruction
 * at user level (CPL 3), named by argv[1]: hlt, cli, sti, wrmsr, rdmsr, out,
 * in, lgdt, lidt, invlpg, movcr3 (mov to %cr3), int80 (int $0x80 with
 * eax=20, the 32-bit getpid), sysenter, ud2, int3.  Prints "executing
 * <name>", flushes, executes it, and if execution continues prints "survived
 * <name>" and exits 0.  Natively each one kills the process with a signal:
 * SIGSEGV (#GP) for most, SIGILL for ud2 (and sysenter on AMD), SIGTRAP for
 * int3 -- except int80, which survives on kernels with IA32 emulation.  Under
 * trapbox the guest must never gain privilege; it should die the same way.
 * An unknown or missing name prints a usage message to stderr and exits 2.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct __attribute__((packed)) desc_ptr {
    uint16_t limit;
    uint64_t base;
};

static const char *const names[] = {"hlt",   "cli",    "sti",    "wrmsr",    "rdmsr",
                                    "out",   "in",     "lgdt",   "lidt",     "invlpg",
                                    "movcr3", "int80", "sysenter", "ud2",    "int3"};

static void usage(void)
{
    fprintf(stderr, "usage: adv_priv NAME\nNAME is one of:");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        fprintf(stderr, " %s", names[i]);
    fprintf(stderr, "\n");
}

static int run(const char *n)
{
    static volatile char scratch[4096];
    struct desc_ptr dp = {0, 0};

    if (!strcmp(n, "hlt"))
        __asm__ volatile("hlt" ::: "memory");
    else if (!strcmp(n, "cli"))
        __asm__ volatile("cli" ::: "memory");
    else if (!strcmp(n, "sti"))
        __asm__ volatile("sti" ::: "memory");
    else if (!strcmp(n, "wrmsr"))
        __asm__ volatile("wrmsr" ::"c"(0x10u), "a"(0u), "d"(0u) : "memory");
    else if (!strcmp(n, "rdmsr")) {
        uint32_t lo, hi;
        __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0x10u) : "memory");
        (void)lo;
        (void)hi;
    } else if (!strcmp(n, "out"))
        __asm__ volatile("outb %%al, $0x80" ::"a"(0) : "memory");
    else if (!strcmp(n, "in")) {
        uint8_t v;
        __asm__ volatile("inb $0x80, %%al" : "=a"(v)::"memory");
        (void)v;
    } else if (!strcmp(n, "lgdt"))
        __asm__ volatile("lgdt %0" ::"m"(dp) : "memory");
    else if (!strcmp(n, "lidt"))
        __asm__ volatile("lidt %0" ::"m"(dp) : "memory");
    else if (!strcmp(n, "invlpg"))
        __asm__ volatile("invlpg %0" ::"m"(scratch[0]) : "memory");
    else if (!strcmp(n, "movcr3"))
        __asm__ volatile("mov %0, %%cr3" ::"r"((uint64_t)0) : "memory");
    else if (!strcmp(n, "int80")) {
        long ret = 20;
        __asm__ volatile("int $0x80"
                         : "+a"(ret)
                         :
                         : "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory",
                           "cc");
        (void)ret;
    } else if (!strcmp(n, "sysenter"))
        __asm__ volatile("sysenter" ::: "rcx", "r11", "memory", "cc");
    else if (!strcmp(n, "ud2"))
        __asm__ volatile("ud2" ::: "memory");
    else if (!strcmp(n, "int3"))
        __asm__ volatile("int3" ::: "memory");
    else
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 2;
    }
    const char *n = argv[1];
    int known = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(n, names[i]))
            known = 1;
    if (!known) {
        usage();
        return 2;
    }
    printf("executing %s\n", n);
    fflush(stdout);
    run(n);
    printf("survived %s\n", n);
    return 0;
}
