/* sancov_init: what libFuzzer gives a program built with SanitizerCoverage's inline 8-bit
 * counters, the callback their module constructor registers them with; a no-op here, so that
 * such a build links without any sanitizer runtime (which would print its own crash report).
 * Linked into fuzz_target's SanitizerCoverage build (tests/fuzz.rs); not a guest of its own. */
void __sanitizer_cov_8bit_counters_init(char *start, char *end);

void __sanitizer_cov_8bit_counters_init(char *start, char *end) {
    (void)start;
    (void)end;
}
