/*
 * esc_sysv_shm.c PLACE [N] - escape attempts with System V shared memory, which the kernel maps
 * at an address the caller names (see esc_common.h for PLACE, N and the output conventions).
 *
 * Two private segments (one page, 4 MiB) are made and removed again at the end. Lines:
 *   "shmat NULL: consistent" - attaching where the kernel chooses either fails or gives memory
 *     the program can write and read ("attached but unreachable" otherwise);
 *   "shmat over trapbox memory without SHM_REMAP: safe" - shmat at every foreign address;
 *   "shmat SHM_REMAP over trapbox memory: safe" - shmat with SHM_REMAP at trapbox's ELF header
 *     first (a page trapbox no longer reads, so a box that allows it survives to say so), then at
 *     every other foreign address (a box that allows those may crash: the line is printed first);
 *   "shmat SHM_REMAP over own memory: consistent" - replacing a page of the program's own
 *     mapping works and reads back what was written through it, or fails;
 *   "own memory after shmdt: not readable" - after shmdt of that page the address is unmapped;
 *   "hole left by shmdt, after trapbox allocates: not readable" - the same after shmdt of a 4 MiB
 *     attachment that replaced the program's own mapping, once two threads were created and
 *     joined (which makes a box allocate stacks and vCPUs on the host);
 *   "shmdt of trapbox addresses: safe".
 * Natively nothing of trapbox exists and the kernel gives these results. Exit status 0, or 99
 * after an escape.
 */
#include "esc_common.h"
#include <sys/ipc.h>
#include <sys/shm.h>

#define PAGE 4096UL
#define BIG (4UL << 20)

static int id_small = -1, id_big = -1;
static void *keep_small = (void *)-1, *keep_big = (void *)-1;
/* A foreign page the program itself attached over (a box that let it), or 0. */
static unsigned long remapped;

static void *thread_noop(void *arg)
{
    return arg;
}

/* Creates and joins two threads whose stacks exist already (so the program maps nothing). */
static void make_threads(void *stacks)
{
    pthread_t t[2];
    int made[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstack(&a, (char *)stacks + i * (256UL << 10), 256UL << 10);
        made[i] = pthread_create(&t[i], &a, thread_noop, NULL) == 0;
        pthread_attr_destroy(&a);
    }
    for (int i = 0; i < 2; i++)
        if (made[i])
            pthread_join(t[i], NULL);
}

static void attack(void)
{
    esc_find_foreign();
    id_small = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    id_big = shmget(IPC_PRIVATE, BIG, IPC_CREAT | 0600);
    if (id_small < 0 || id_big < 0) {
        esc_say("shmget: %s", esc_err(errno));
        return;
    }

    /* shmat NULL (it also keeps the segments alive once they are marked for removal). */
    keep_small = shmat(id_small, NULL, 0);
    keep_big = shmat(id_big, NULL, 0);
    esc_note("shmat NULL: %p %p", keep_small, keep_big);
    if (keep_small == (void *)-1) {
        esc_say("shmat NULL: consistent");
    } else {
        int w = esc_probe((unsigned long)keep_small, 1);
        if (w == 1)
            ((volatile char *)keep_small)[0] = 42;
        if (esc_is_foreign((unsigned long)keep_small))
            esc_escape("shmat NULL attached over trapbox memory at %p", keep_small);
        else if (w == 1 && ((volatile char *)keep_small)[0] == 42)
            esc_say("shmat NULL: consistent");
        else
            esc_say("shmat NULL: attached but unreachable");
    }
    if (keep_small != (void *)-1)
        shmctl(id_small, IPC_RMID, NULL);
    if (keep_big != (void *)-1)
        shmctl(id_big, IPC_RMID, NULL);

    int esc = 0;
    for (int i = 0; i < esc_ntg; i++) {
        unsigned long a = esc_tg[i].addr & ~(PAGE - 1);
        void *r = shmat(id_small, (void *)a, 0);
        esc_note("shmat %#lx (%s): %s", a, esc_tg[i].what, r == (void *)-1 ? esc_err(errno) : "attached");
        if (r != (void *)-1) {
            esc_escape("shmat without SHM_REMAP attached over trapbox memory at %#lx (%s)", a, esc_tg[i].what);
            esc = 1;
            break;
        }
    }
    if (!esc)
        esc_say("shmat over trapbox memory without SHM_REMAP: safe");

    esc = 0;
    if (esc_elf) {
        void *r = shmat(id_small, (void *)esc_elf, SHM_REMAP);
        esc_note("shmat SHM_REMAP over the ELF header %#lx: %s", esc_elf, r == (void *)-1 ? esc_err(errno) : "attached");
        if (r != (void *)-1) {
            esc_escape("shmat SHM_REMAP replaced trapbox's ELF header at %#lx", esc_elf);
            remapped = esc_elf;
            esc = 1;
        }
    }
    if (!esc) {
        printf("shmat SHM_REMAP over trapbox memory: ");
        fflush(stdout);
        for (int i = 0; i < esc_ntg && !esc; i++) {
            unsigned long a = esc_tg[i].addr & ~(PAGE - 1);
            if (a == esc_elf)
                continue;
            void *r = shmat(id_small, (void *)a, SHM_REMAP);
            esc_note("shmat SHM_REMAP %#lx (%s): %s", a, esc_tg[i].what, r == (void *)-1 ? esc_err(errno) : "attached");
            if (r != (void *)-1) {
                printf("\n");
                esc_escape("shmat SHM_REMAP replaced trapbox memory at %#lx (%s)", a, esc_tg[i].what);
                remapped = a;
                esc = 1;
            }
        }
        if (!esc)
            esc_say("safe");
    }

    /* Over the program's own page; then shmdt leaves a hole. */
    char *own = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (own == MAP_FAILED) {
        esc_say("mmap: %s", esc_err(errno));
        return;
    }
    void *r = shmat(id_small, own, SHM_REMAP);
    esc_note("shmat SHM_REMAP over own page %p: %s", (void *)own, r == (void *)-1 ? esc_err(errno) : "attached");
    if (r == (void *)-1) {
        esc_say("shmat SHM_REMAP over own memory: consistent");
        munmap(own, PAGE);
    } else {
        int ok = r == own && esc_probe((unsigned long)own, 1) == 1;
        if (ok) {
            own[1] = 'q';
            ok = keep_small == (void *)-1 || esc_probe((unsigned long)keep_small + 1, 0) != 1 ||
                 ((volatile char *)keep_small)[1] == 'q';
        }
        esc_say("shmat SHM_REMAP over own memory: %s", ok ? "consistent" : "inconsistent");
        shmdt(own);
        int p = esc_probe((unsigned long)own, 0);
        esc_say("own memory after shmdt: %s", p == 1 ? "readable" : "not readable");
    }

    void *stacks = mmap(NULL, 512UL << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *big = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (big == MAP_FAILED || stacks == MAP_FAILED) {
        esc_say("mmap: %s", esc_err(errno));
        return;
    }
    r = shmat(id_big, big, SHM_REMAP);
    esc_note("shmat SHM_REMAP over own 4 MiB %p: %s", (void *)big, r == (void *)-1 ? esc_err(errno) : "attached");
    if (r == (void *)-1) {
        munmap(big, BIG);
        esc_say("hole left by shmdt, after trapbox allocates: not readable");
    } else {
        shmdt(big);
        make_threads(stacks);
        int found = 0;
        for (unsigned long off = 0; off < BIG && !found; off += PAGE) {
            if (esc_probe((unsigned long)big + off, 0) != 1)
                continue;
            found = 1;
            esc_read_maps();
            struct esc_map *m = esc_map_at((unsigned long)big + off);
            unsigned char b[16];
            memcpy(b, big + off, sizeof b);
            esc_hex("hole", b, sizeof b);
            int nonzero = 0;
            for (size_t k = 0; k < sizeof b; k++)
                nonzero |= b[k];
            if (nonzero || (m && m->path[0]))
                esc_escape("the hole shmdt left at %p shows memory the program did not map (%s)",
                           (void *)(big + off), m ? m->path : "?");
            else
                esc_say("hole left by shmdt, after trapbox allocates: readable");
        }
        if (!found)
            esc_say("hole left by shmdt, after trapbox allocates: not readable");
    }
    munmap(stacks, 512UL << 10);

    esc = 0;
    for (int i = 0; i < esc_ntg; i++) {
        unsigned long a = esc_tg[i].addr & ~(PAGE - 1);
        if (a == remapped)
            continue;
        if (shmdt((void *)a) == 0 && (void *)a != keep_small && (void *)a != keep_big) {
            esc_escape("shmdt detached something at trapbox address %#lx (%s)", a, esc_tg[i].what);
            esc = 1;
        }
    }
    if (!esc)
        esc_say("shmdt of trapbox addresses: safe");

    if (keep_small != (void *)-1)
        shmdt(keep_small);
    else
        shmctl(id_small, IPC_RMID, NULL);
    if (keep_big != (void *)-1)
        shmdt(keep_big);
    else
        shmctl(id_big, IPC_RMID, NULL);
}

int main(int argc, char **argv)
{
    return esc_main(argc, argv, 1, attack);
}
