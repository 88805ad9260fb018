/*
 * args.c - exercises the initial process stack built by the loader: argc,
 * argv, envp and the auxiliary vector.  Prints "argc=N", then "argv[i]=..."
 * for each argument (argv[0] reduced to its basename), then every environment
 * variable whose name starts with "TB_" in environ order ("env NAME=VALUE"),
 * then one line per auxv key of interest saying whether it is present in the
 * real auxv (found by walking past the NULL that ends envp on the initial
 * stack, not via getauxval, so a missing key is visible) and a stable fact
 * about it: AT_PAGESZ/AT_PHENT/AT_SECURE/AT_CLKTCK values, AT_PHNUM "nonzero",
 * AT_UID/EUID/GID/EGID "matches" the corresponding get*id() call, AT_PLATFORM
 * string, AT_EXECFN basename, AT_RANDOM "16 readable bytes", AT_PHDR "has
 * PT_LOAD", AT_ENTRY "nonzero", AT_BASE "zero"/"nonzero" (zero for static
 * and static-pie, which have no interpreter, nonzero for dynamic; the same
 * natively and in the box), AT_HWCAP "matches cpuid" (leaf 1 EDX), AT_HWCAP2
 * "present".  Absent keys print "absent".  Exit status 0.
 */
#include <cpuid.h>
#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

struct key {
    unsigned long type;
    const char *name;
};

static const struct key keys[] = {
    {AT_PHDR, "AT_PHDR"},     {AT_PHENT, "AT_PHENT"},   {AT_PHNUM, "AT_PHNUM"},
    {AT_PAGESZ, "AT_PAGESZ"}, {AT_BASE, "AT_BASE"},     {AT_ENTRY, "AT_ENTRY"},
    {AT_RANDOM, "AT_RANDOM"}, {AT_EXECFN, "AT_EXECFN"}, {AT_HWCAP, "AT_HWCAP"},
    {AT_HWCAP2, "AT_HWCAP2"}, {AT_UID, "AT_UID"},       {AT_EUID, "AT_EUID"},
    {AT_GID, "AT_GID"},       {AT_EGID, "AT_EGID"},     {AT_SECURE, "AT_SECURE"},
    {AT_CLKTCK, "AT_CLKTCK"}, {AT_PLATFORM, "AT_PLATFORM"},
};

static const Elf64_auxv_t *find(const Elf64_auxv_t *auxv, unsigned long type)
{
    for (const Elf64_auxv_t *a = auxv; a->a_type != AT_NULL; a++)
        if (a->a_type == type)
            return a;
    return NULL;
}

int main(int argc, char **argv)
{
    /* Locate auxv before anything could modify environ. */
    char **ep = environ;
    while (*ep)
        ep++;
    const Elf64_auxv_t *auxv = (const Elf64_auxv_t *)(ep + 1);

    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, i == 0 ? base_name(argv[0]) : argv[i]);

    for (char **e = environ; *e; e++)
        if (strncmp(*e, "TB_", 3) == 0)
            printf("env %s\n", *e);

    const Elf64_auxv_t *phent = find(auxv, AT_PHENT);
    const Elf64_auxv_t *phnum = find(auxv, AT_PHNUM);

    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        const Elf64_auxv_t *a = find(auxv, keys[k].type);
        printf("%s: ", keys[k].name);
        if (!a) {
            printf("absent\n");
            continue;
        }
        unsigned long v = a->a_un.a_val;
        printf("present");
        switch (keys[k].type) {
        case AT_PAGESZ:
        case AT_PHENT:
        case AT_SECURE:
        case AT_CLKTCK:
            printf(" %lu\n", v);
            break;
        case AT_UID:
            printf(" %s\n", v == (unsigned long)getuid() ? "matches" : "MISMATCH");
            break;
        case AT_EUID:
            printf(" %s\n", v == (unsigned long)geteuid() ? "matches" : "MISMATCH");
            break;
        case AT_GID:
            printf(" %s\n", v == (unsigned long)getgid() ? "matches" : "MISMATCH");
            break;
        case AT_EGID:
            printf(" %s\n", v == (unsigned long)getegid() ? "matches" : "MISMATCH");
            break;
        case AT_PLATFORM:
            printf(" %s\n", v ? (const char *)v : "(null)");
            break;
        case AT_EXECFN:
            printf(" %s\n", v ? base_name((const char *)v) : "(null)");
            break;
        case AT_RANDOM: {
            const volatile unsigned char *r = (const volatile unsigned char *)v;
            unsigned sum = 0;
            for (int i = 0; i < 16; i++)
                sum += r[i];
            (void)sum;
            printf(" 16 readable bytes\n");
            break;
        }
        case AT_PHDR: {
            int has_load = 0;
            if (v && phent && phnum && phent->a_un.a_val == sizeof(Elf64_Phdr)) {
                const Elf64_Phdr *ph = (const Elf64_Phdr *)v;
                for (unsigned long i = 0; i < phnum->a_un.a_val; i++)
                    if (ph[i].p_type == PT_LOAD)
                        has_load = 1;
            }
            printf(" %s\n", has_load ? "has PT_LOAD" : "NO PT_LOAD");
            break;
        }
        case AT_PHNUM:
        case AT_ENTRY:
        case AT_BASE:
            printf(" %s\n", v ? "nonzero" : "zero");
            break;
        case AT_HWCAP: {
            unsigned int eax, ebx, ecx, edx;
            if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
                printf(" cpuid leaf 1 unavailable\n");
            else
                printf(" %s\n", v == edx ? "matches cpuid" : "DIFFERS from cpuid");
            break;
        }
        default:
            printf("\n");
            break;
        }
    }
    return 0;
}
