/*
 * pthread_stress.c - threads: 8 workers with a mutex-protected counter, a condvar
 * hand-off chain, and barriers; per-thread __thread values; gettid != getpid on
 * workers; and memory shared across threads: thread 0 maps a page and writes it,
 * thread 1 reads it after a barrier, then thread 0 unmaps it and thread 1 probes it
 * with write(pipe, ptr, 1), which must fail with EFAULT (no fault, no stale page).
 * Prints (all deterministic):
 *   counter 16000
 *   chain 8 turns in order: yes
 *   barrier rounds 3 ok: yes
 *   tls distinct and intact: yes
 *   main tid == pid: yes
 *   worker tids distinct from pid: yes
 *   worker tids distinct from each other: yes
 *   shared page seen by thread 1: yes
 *   probe after munmap: EFAULT
 *   probe after mprotect(PROT_NONE): EFAULT
 *   joined 8, sum of results 28
 * Exit status 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NT 8
#define ITERS 2000

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_barrier_t bar;
static long counter;
static int turn;           /* whose turn in the condvar chain */
static int order[NT], norder;
static int barrier_bad;
static pid_t tids[NT];
static int tls_bad;

static __thread int tls_id = -1;
static __thread char tls_buf[256];

/* Shared-memory hand-off between thread 0 and thread 1. */
static char *volatile shared;
static int pipefd[2];
static const char *probe_unmap = "?", *probe_prot = "?";
static int shared_seen;

static const char *probe(const void *p)
{
    ssize_t r = write(pipefd[1], p, 1);
    if (r >= 0) {
        char c;
        if (read(pipefd[0], &c, 1) != 1)
            return "read back failed";
        return "readable";
    }
    return errno == EFAULT ? "EFAULT" : strerror(errno);
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    tls_id = id;
    memset(tls_buf, 'a' + id, sizeof tls_buf);
    tids[id] = (pid_t)syscall(SYS_gettid);

    for (int i = 0; i < ITERS; i++) {
        pthread_mutex_lock(&mu);
        counter++;
        pthread_mutex_unlock(&mu);
    }

    /* Condvar chain: thread k waits for turn == k, records itself, passes the turn on. */
    pthread_mutex_lock(&mu);
    while (turn != id)
        pthread_cond_wait(&cv, &mu);
    order[norder++] = id;
    turn++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);

    /* Barrier rounds: after each, every thread sees the same round count. */
    static int round_count[3];
    for (int r = 0; r < 3; r++) {
        __atomic_fetch_add(&round_count[r], 1, __ATOMIC_SEQ_CST);
        pthread_barrier_wait(&bar);
        if (__atomic_load_n(&round_count[r], __ATOMIC_SEQ_CST) != NT)
            __atomic_store_n(&barrier_bad, 1, __ATOMIC_SEQ_CST);
        pthread_barrier_wait(&bar);
    }

    /* Memory shared between threads 0 and 1 (the others just keep the barrier count). */
    if (id == 0) {
        char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("mmap");
            p = NULL;
        } else {
            strcpy(p, "written by thread 0");
            strcpy(p + 4096, "second page");
        }
        shared = p;
    }
    pthread_barrier_wait(&bar); /* A: page written */
    if (id == 1 && shared)
        shared_seen = strcmp(shared, "written by thread 0") == 0;
    pthread_barrier_wait(&bar); /* B: page read */
    if (id == 0 && shared) {
        munmap(shared, 4096);
        mprotect(shared + 4096, 4096, PROT_NONE);
    }
    pthread_barrier_wait(&bar); /* C: page gone */
    if (id == 1 && shared) {
        probe_unmap = probe(shared);
        probe_prot = probe(shared + 4096);
    }
    pthread_barrier_wait(&bar);

    /* TLS must still hold this thread's values after all the switching. */
    if (tls_id != id)
        __atomic_store_n(&tls_bad, 1, __ATOMIC_SEQ_CST);
    for (size_t i = 0; i < sizeof tls_buf; i++)
        if (tls_buf[i] != 'a' + id) {
            __atomic_store_n(&tls_bad, 1, __ATOMIC_SEQ_CST);
            break;
        }
    return (void *)(intptr_t)id;
}

int main(void)
{
    pthread_t th[NT];
    tls_id = 100;
    if (pipe(pipefd) != 0) {
        perror("pipe");
        return 1;
    }
    pthread_barrier_init(&bar, NULL, NT);
    for (int i = 0; i < NT; i++) {
        int e = pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
        if (e) {
            printf("pthread_create: %s\n", strerror(e));
            return 1;
        }
    }
    long sum = 0;
    int joined = 0;
    for (int i = 0; i < NT; i++) {
        void *res;
        if (pthread_join(th[i], &res) == 0) {
            joined++;
            sum += (intptr_t)res;
        }
    }
    pid_t pid = getpid();
    int in_order = norder == NT;
    for (int i = 0; i < norder; i++)
        in_order &= order[i] == i;
    int from_pid = 1, distinct = 1;
    for (int i = 0; i < NT; i++) {
        from_pid &= tids[i] != pid && tids[i] > 0;
        for (int j = 0; j < i; j++)
            distinct &= tids[i] != tids[j];
    }
    printf("counter %ld\n", counter);
    printf("chain %d turns in order: %s\n", norder, in_order ? "yes" : "no");
    printf("barrier rounds 3 ok: %s\n", barrier_bad ? "no" : "yes");
    printf("tls distinct and intact: %s\n", !tls_bad && tls_id == 100 ? "yes" : "no");
    printf("main tid == pid: %s\n", syscall(SYS_gettid) == pid ? "yes" : "no");
    printf("worker tids distinct from pid: %s\n", from_pid ? "yes" : "no");
    printf("worker tids distinct from each other: %s\n", distinct ? "yes" : "no");
    printf("shared page seen by thread 1: %s\n", shared_seen ? "yes" : "no");
    printf("probe after munmap: %s\n", probe_unmap);
    printf("probe after mprotect(PROT_NONE): %s\n", probe_prot);
    printf("joined %d, sum of results %ld\n", joined, sum);
    return 0;
}
