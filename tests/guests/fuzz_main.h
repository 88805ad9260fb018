/* fuzz_main.h: the main of a libFuzzer-style harness: `PROGRAM FILE` runs
 * LLVMFuzzerTestOneInput once on FILE's bytes and prints "no crash" (how a saved crash
 * reproduces); without FILE it does nothing. */
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
    if (argc < 2)
        return 0;
    static uint8_t buf[1 << 16];
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    puts("no crash");
    return 0;
}
