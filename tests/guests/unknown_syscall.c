/* unknown_syscall: makes syscall 0x1ff (none on x86-64) with arguments 1..6 and prints the
 * errno it got ("ENOSYS"). strace shows it as syscall_0x1ff(0x1, ...). Exits 0.
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    long r = syscall(0x1ff, 1, 2, 3, 4, 5, 6);
    printf("%ld %s\n", r, errno == ENOSYS ? "ENOSYS" : "other");
    return 0;
}
