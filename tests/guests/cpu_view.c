/* cpu_view: the CPU view a program gets is true of the CPU it runs on. For every XSAVE state
 * component XCR0 enables, CPUID leaf 0xD gives a size; the area sizes CPUID gives (leaf 0xD.0
 * EBX for XSAVE, the sum of the sub-leaves as glibc computes it for XSAVEC, and 0xD.1 EBX)
 * are at least what XSAVE and XSAVEC really write (a buffer filled with two patterns, every
 * component dirtied first); and every feature CPUID advertises, of those listed below,
 * executes (an instruction of each under a SIGILL handler). Prints one `ok` line per check
 * (or what failed) and `features checked` once at least one executed; exits 0 if all held.
 * The output is the same on any consistent CPU, natively and in the box.
 */
#include <cpuid.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static sigjmp_buf on_ill;
static void ill(int sig) {
    (void)sig;
    siglongjmp(on_ill, 1);
}

static void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) { __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]); }

static uint64_t xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int failures;

static void fail(const char *what) {
    printf("FAIL %s\n", what);
    failures++;
}

/* Puts every enabled component out of its initial state. */
static void dirty(uint64_t xcr0) {
    static const uint64_t ones[8] = {~0ull, ~0ull, ~0ull, ~0ull, ~0ull, ~0ull, ~0ull, ~0ull};
    __asm__ volatile("fldpi\n\tfstp %%st(0)" ::: "memory");
    __asm__ volatile("movdqu %0, %%xmm7" ::"m"(ones) : "xmm7");
    if (xcr0 & 4)
        __asm__ volatile("vmovdqu %0, %%ymm6" ::"m"(ones) : "xmm6");
    if ((xcr0 & 0xe0) == 0xe0)
        __asm__ volatile("vmovdqu64 %0, %%zmm5\n\tvmovdqu64 %0, %%zmm31\n\tkxnorw %%k0, %%k0, %%k7" ::"m"(ones)
                         : "xmm5");
}

/* One past the last byte of `buf` that `save` changed, over two fill patterns. */
static size_t written(uint8_t *buf, size_t len, void (*save)(uint8_t *, uint64_t), uint64_t xcr0) {
    size_t end = 0;
    for (int pat = 0; pat < 2; pat++) {
        uint8_t fill = pat ? 0x5a : 0xa5;
        memset(buf, fill, len);
        dirty(xcr0);
        save(buf, xcr0);
        for (size_t i = len; i > end; i--)
            if (buf[i - 1] != fill) {
                end = i;
                break;
            }
    }
    return end;
}

static void do_xsave(uint8_t *buf, uint64_t mask) {
    __asm__ volatile("xsave64 (%0)" ::"r"(buf), "a"((unsigned)mask), "d"((unsigned)(mask >> 32)) : "memory");
}
static void do_xsavec(uint8_t *buf, uint64_t mask) {
    __asm__ volatile("xsavec64 (%0)" ::"r"(buf), "a"((unsigned)mask), "d"((unsigned)(mask >> 32)) : "memory");
}

static uint8_t area[64 * 1024] __attribute__((aligned(64)));

static void check_state(void) {
    unsigned r[4];
    cpuid(1, 0, r);
    if (!(r[2] & (1u << 27))) {
        printf("ok no xsave\n");
        return;
    }
    uint64_t xcr0 = xgetbv0();
    unsigned d0[4], d1[4];
    cpuid(0xd, 0, d0);
    cpuid(0xd, 1, d1);
    int described = 1;
    unsigned compact = 576;
    for (int b = 2; b < 64; b++) {
        if (!(xcr0 & (1ull << b)))
            continue;
        unsigned s[4];
        cpuid(0xd, b, s);
        if (s[0] == 0 || s[1] + s[0] > d0[1]) {
            printf("FAIL component %d: size %u offset %u, area %u\n", b, s[0], s[1], d0[1]);
            described = 0;
            failures++;
        }
        if (s[2] & 2)
            compact = (compact + 63) & ~63u;
        compact += s[0];
    }
    if (described)
        printf("ok every enabled component described\n");
    size_t std_end = written(area, sizeof area, do_xsave, xcr0);
    if (std_end > d0[1]) {
        printf("FAIL xsave wrote %zu bytes, cpuid says %u\n", std_end, d0[1]);
        failures++;
    } else {
        printf("ok xsave area\n");
    }
    if (d1[0] & 2) {
        size_t c_end = written(area, sizeof area, do_xsavec, xcr0);
        if (c_end > compact || c_end > d1[1]) {
            printf("FAIL xsavec wrote %zu bytes, sub-leaves sum to %u, cpuid says %u\n", c_end, compact, d1[1]);
            failures++;
        } else {
            printf("ok xsavec area\n");
        }
    } else {
        printf("ok xsavec area\n");
    }
}

struct feature {
    const char *name;
    unsigned leaf, sub, reg, bit;
    void (*run)(void);
};

static uint64_t scratch[16] __attribute__((aligned(64)));

#define INSN(fn, text, ...)                                                                                   \
    static void fn(void) { __asm__ volatile(text ::"r"(scratch) : "memory", "rax", "rcx", "rdx", ##__VA_ARGS__); }

INSN(t_avx, "vaddps %%ymm0, %%ymm0, %%ymm0", "xmm0")
INSN(t_fma, "vfmadd231ps %%xmm0, %%xmm0, %%xmm0", "xmm0")
INSN(t_f16c, "vcvtph2ps %%xmm0, %%ymm0", "xmm0")
INSN(t_avx2, "vpaddd %%ymm0, %%ymm0, %%ymm0", "xmm0")
INSN(t_bmi1, "andn %%rax, %%rcx, %%rdx")
INSN(t_bmi2, "pdep %%rax, %%rcx, %%rdx")
INSN(t_adx, "adcx %%rax, %%rcx")
INSN(t_popcnt, "popcnt %%rax, %%rcx")
INSN(t_movbe, "movbe (%0), %%rax")
INSN(t_aes, "aesenc %%xmm0, %%xmm0", "xmm0")
INSN(t_pclmul, "pclmulqdq $0, %%xmm0, %%xmm0", "xmm0")
INSN(t_sse42, "crc32q %%rax, %%rcx")
INSN(t_sha, "sha1nexte %%xmm0, %%xmm0", "xmm0")
INSN(t_lzcnt, "lzcnt %%rax, %%rcx")
INSN(t_clflushopt, "clflushopt (%0)")
INSN(t_clwb, "clwb (%0)")
INSN(t_rdpid, "rdpid %%rax")
INSN(t_gfni, "gf2p8affineqb $0, %%xmm0, %%xmm0", "xmm0")
INSN(t_vaes, "vaesenc %%ymm0, %%ymm0, %%ymm0", "xmm0")
INSN(t_vpclmul, "vpclmulqdq $0, %%ymm0, %%ymm0, %%ymm0", "xmm0")
INSN(t_avx512f, "vpaddd %%zmm0, %%zmm0, %%zmm0", "xmm0")
INSN(t_avx512dq, "vpmullq %%zmm0, %%zmm0, %%zmm0", "xmm0")
INSN(t_avx512cd, "vpconflictd %%zmm0, %%zmm0", "xmm0")
INSN(t_avx512bw, "vpaddb %%zmm0, %%zmm0, %%zmm0", "xmm0")
INSN(t_avx512vl, "%{evex%} vpaddd %%xmm0, %%xmm0, %%xmm0", "xmm0")
INSN(t_avx512ifma, "vpmadd52luq %%zmm0, %%zmm0, %%zmm0", "xmm0")
INSN(t_avx512vbmi, "vpermb %%zmm0, %%zmm0, %%zmm0", "xmm0")
INSN(t_avx512vbmi2, "vpshldw $1, %%zmm0, %%zmm0, %%zmm0", "xmm0")
INSN(t_avx512vnni, "vpdpbusd %%zmm0, %%zmm0, %%zmm0", "xmm0")
INSN(t_avx512bitalg, "vpopcntb %%zmm0, %%zmm0", "xmm0")
INSN(t_avx512vpopcntdq, "vpopcntd %%zmm0, %%zmm0", "xmm0")
INSN(t_avx512bf16, "vcvtne2ps2bf16 %%zmm0, %%zmm0, %%zmm0", "xmm0")
INSN(t_avx512fp16, "vaddph %%zmm0, %%zmm0, %%zmm0", "xmm0")
INSN(t_avxvnni, "%{vex%} vpdpbusd %%ymm0, %%ymm0, %%ymm0", "xmm0")
INSN(t_movdiri, "movdiri %%rax, (%0)")
INSN(t_serialize, "serialize")

/* EAX=0, EBX=1, ECX=2, EDX=3. */
static const struct feature features[] = {
    {"avx", 1, 0, 2, 28, t_avx},
    {"fma", 1, 0, 2, 12, t_fma},
    {"f16c", 1, 0, 2, 29, t_f16c},
    {"popcnt", 1, 0, 2, 23, t_popcnt},
    {"movbe", 1, 0, 2, 22, t_movbe},
    {"aes", 1, 0, 2, 25, t_aes},
    {"pclmulqdq", 1, 0, 2, 1, t_pclmul},
    {"sse4_2", 1, 0, 2, 20, t_sse42},
    {"avx2", 7, 0, 1, 5, t_avx2},
    {"bmi1", 7, 0, 1, 3, t_bmi1},
    {"bmi2", 7, 0, 1, 8, t_bmi2},
    {"adx", 7, 0, 1, 19, t_adx},
    {"sha_ni", 7, 0, 1, 29, t_sha},
    {"clflushopt", 7, 0, 1, 23, t_clflushopt},
    {"clwb", 7, 0, 1, 24, t_clwb},
    {"avx512f", 7, 0, 1, 16, t_avx512f},
    {"avx512dq", 7, 0, 1, 17, t_avx512dq},
    {"avx512ifma", 7, 0, 1, 21, t_avx512ifma},
    {"avx512cd", 7, 0, 1, 28, t_avx512cd},
    {"avx512bw", 7, 0, 1, 30, t_avx512bw},
    {"avx512vl", 7, 0, 1, 31, t_avx512vl},
    {"avx512vbmi", 7, 0, 2, 1, t_avx512vbmi},
    {"avx512_vbmi2", 7, 0, 2, 6, t_avx512vbmi2},
    {"gfni", 7, 0, 2, 8, t_gfni},
    {"vaes", 7, 0, 2, 9, t_vaes},
    {"vpclmulqdq", 7, 0, 2, 10, t_vpclmul},
    {"avx512_vnni", 7, 0, 2, 11, t_avx512vnni},
    {"avx512_bitalg", 7, 0, 2, 12, t_avx512bitalg},
    {"avx512_vpopcntdq", 7, 0, 2, 14, t_avx512vpopcntdq},
    {"rdpid", 7, 0, 2, 22, t_rdpid},
    {"movdiri", 7, 0, 2, 27, t_movdiri},
    {"serialize", 7, 0, 3, 14, t_serialize},
    {"avx512_fp16", 7, 0, 3, 23, t_avx512fp16},
    {"avx_vnni", 7, 1, 0, 4, t_avxvnni},
    {"avx512_bf16", 7, 1, 0, 5, t_avx512bf16},
    {"abm", 0x80000001, 0, 2, 5, t_lzcnt},
};

static void check_features(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ill;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGILL, &sa, 0);
    unsigned max[4];
    cpuid(0, 0, max);
    volatile int ran = 0, bad = 0;
    for (volatile size_t i = 0; i < sizeof features / sizeof *features; i++) {
        const struct feature *f = &features[i];
        if (f->leaf < 0x80000000 && f->leaf > max[0])
            continue;
        unsigned r[4];
        cpuid(f->leaf, f->sub, r);
        if (!(r[f->reg] & (1u << f->bit)))
            continue;
        if (sigsetjmp(on_ill, 1) == 0) {
            f->run();
            ran++;
        } else {
            printf("FAIL %s is advertised but raises SIGILL\n", f->name);
            bad++;
        }
    }
    failures += bad;
    if (!bad)
        printf("ok advertised features execute\n");
    if (ran)
        printf("features checked\n");
}

int main(void) {
    check_state();
    check_features();
    if (failures)
        fail("cpu view");
    return failures != 0;
}
