/* regs: checks that registers survive a trap.
 *
 * `syscall` mode loads known values into every general register that Linux preserves
 * across a syscall (all but rax, rcx, r11), makes a getppid syscall, and checks them.
 * `int3` mode does the same around an int3 (a handler that resumes after it is needed);
 * run without such a handler the program dies of SIGTRAP, natively too.
 * Prints "registers survived <mode>" and exits 0, or "register <name> clobbered" and 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void trap_regs(const uint64_t *in, uint64_t *out, uint64_t use_int3);
__asm__(
    ".text\n.globl trap_regs\n.type trap_regs,@function\ntrap_regs:\n"
    "push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
    "push %rsi\n push %rdx\n"
    "mov 0(%rdi), %rbx\n mov 8(%rdi), %rdx\n mov 16(%rdi), %rsi\n mov 32(%rdi), %rbp\n"
    "mov 40(%rdi), %r8\n mov 48(%rdi), %r9\n mov 56(%rdi), %r10\n mov 64(%rdi), %r12\n"
    "mov 72(%rdi), %r13\n mov 80(%rdi), %r14\n mov 88(%rdi), %r15\n mov 24(%rdi), %rdi\n"
    "pop %rax\n test %rax, %rax\n mov $110, %eax\n jnz 1f\n syscall\n jmp 2f\n1: int3\n2:\n"
    "pop %rax\n"
    "mov %rbx, 0(%rax)\n mov %rdx, 8(%rax)\n mov %rsi, 16(%rax)\n mov %rdi, 24(%rax)\n"
    "mov %rbp, 32(%rax)\n mov %r8, 40(%rax)\n mov %r9, 48(%rax)\n mov %r10, 56(%rax)\n"
    "mov %r12, 64(%rax)\n mov %r13, 72(%rax)\n mov %r14, 80(%rax)\n mov %r15, 88(%rax)\n"
    "pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n ret\n");

static const char *names[] = {"rbx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r12", "r13", "r14", "r15"};

int main(int argc, char **argv) {
    int use_int3 = argc > 1 && strcmp(argv[1], "int3") == 0;
    uint64_t in[12], out[12];
    for (int i = 0; i < 12; i++) in[i] = 0x1111111111111111ULL * (uint64_t)(i + 1) + 0x0123;
    memset(out, 0, sizeof out);
    trap_regs(in, out, (uint64_t)use_int3);
    for (int i = 0; i < 12; i++) {
        if (in[i] != out[i]) {
            printf("register %s clobbered\n", names[i]);
            return 1;
        }
    }
    printf("registers survived %s\n", use_int3 ? "int3" : "syscall");
    return 0;
}
