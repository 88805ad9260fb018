/*
 * A parent and its forked child share memory (MAP_SHARED | MAP_ANONYMOUS): ROUNDS times
 * (argument, default 5) the child puts 8 random bytes (getrandom) there and posts a
 * process-shared semaphore; the parent waits on it, prints the bytes in hex, and posts a
 * second one for the next round. Then the parent reaps the child and prints "child exited N".
 * The child's bytes reach the parent only through memory.
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
    if (s == MAP_FAILED || sem_init(&s->ready, 1, 0) || sem_init(&s->taken, 1, 0))
        return 1;
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        for (int i = 0; i < rounds; i++) {
            if (getrandom(s->bytes, sizeof s->bytes, 0) != sizeof s->bytes)
                _exit(2);
            sem_post(&s->ready);
            while (sem_wait(&s->taken) != 0) {
            }
        }
        _exit(0);
    }
    for (int i = 0; i < rounds; i++) {
        while (sem_wait(&s->ready) != 0) {
        }
        printf("round %d:", i);
        for (int j = 0; j < 8; j++)
            printf(" %02x", s->bytes[j]);
        printf("\n");
        fflush(stdout);
        sem_post(&s->taken);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return 1;
    printf("child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 0;
}
