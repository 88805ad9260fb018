/* Spins without a syscall until a debugger interrupts it. */
volatile unsigned long spins;

int main(void) {
    for (;;)
        spins++;
}
