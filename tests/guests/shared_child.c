/*
 * A parent and its forked child share memory (MAP_SHARED | MAP_ANONYMOUS): ROUNDS times
 * (argument, default 5) the child puts 8 random bytes (getrandom) there and posts a
 * process-shared semaphore; the parent takes it, prints the bytes in hex, and posts a second
 * one for the next round. Then the parent reaps the child and prints "child exited N".
 * The child's bytes reach the parent only through memory. Each side also writes a byte to a
 * pipe after its post and reads the other's before its wait, so a semaphore is always posted
 * before it is waited on: no wait ever blocks, and which futex calls the parent makes does
 * not depend on how the two processes happen to interleave (a recording sees what a child
 * wrote to shared memory at the parent's syscalls, and a replay must make the same ones).
 */
#define _GNU_SOURCE
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

struct shared {
    sem_t ready, taken;
    unsigned char bytes[8];
};

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    struct shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int to_parent[2], to_child[2];
    if (s == MAP_FAILED || sem_init(&s->ready, 1, 0) || sem_init(&s->taken, 1, 0) || pipe(to_parent) ||
        pipe(to_child))
        return 1;
    char token = 't';
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        for (int i = 0; i < rounds; i++) {
            if (getrandom(s->bytes, sizeof s->bytes, 0) != sizeof s->bytes)
                _exit(2);
            sem_post(&s->ready);
            if (write(to_parent[1], &token, 1) != 1 || read(to_child[0], &token, 1) != 1)
                _exit(3);
            while (sem_wait(&s->taken) != 0) {
            }
        }
        _exit(0);
    }
    for (int i = 0; i < rounds; i++) {
        if (read(to_parent[0], &token, 1) != 1)
            return 1;
        while (sem_wait(&s->ready) != 0) {
        }
        printf("round %d:", i);
        for (int j = 0; j < 8; j++)
            printf(" %02x", s->bytes[j]);
        printf("\n");
        fflush(stdout);
        sem_post(&s->taken);
        if (write(to_child[1], &token, 1) != 1)
            return 1;
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return 1;
    printf("child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 0;
}
