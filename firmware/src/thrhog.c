/*
 * thrhog SIZE_MIB THREADS PASSES
 *
 * A multithreaded memory hog: one anonymous private mapping of SIZE_MIB MiB shared by THREADS
 * threads. In each pass every thread writes the first and last word of its own pages (page i
 * belongs to thread i % THREADS) with a pattern of (page, pass), yielding now and then so that
 * the threads interleave; after a barrier every thread checks every page (its own and the
 * others'). Between passes the main thread sleeps 10 ms, which lets a host squeeze the guest
 * (balloon, reclaim, swap) while the data sits there.
 *
 * Output: "thrhog: SIZE MiB, THREADS threads, PASSES passes, PAGES pages verified by each thread"
 * and exit 0; "thrhog: mismatch at page N pass P seen by thread T" and exit 1.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static uint64_t *mem;
static long pages, nthreads, passes;
static pthread_barrier_t barrier;
static volatile int failed;

static inline uint64_t pattern(uint64_t page, uint64_t pass, uint64_t word)
{
    return 0x9E3779B97F4A7C15ULL * (page + 1) ^ (pass << 56) ^ word;
}

static void *worker(void *arg)
{
    long id = (long)arg;
    for (long p = 0; p < passes; p++) {
        for (long i = id; i < pages; i += nthreads) {
            uint64_t *page = mem + i * 512;
            page[0] = pattern(i, p, 0);
            page[511] = pattern(i, p, 1);
            if (i % 256 == id)
                sched_yield();
        }
        pthread_barrier_wait(&barrier);
        for (long i = 0; i < pages; i++) {
            uint64_t *page = mem + i * 512;
            if (page[0] != pattern(i, p, 0) || page[511] != pattern(i, p, 1)) {
                if (!failed)
                    printf("thrhog: mismatch at page %ld pass %ld seen by thread %ld\n", i, p, id);
                failed = 1;
                break;
            }
        }
        pthread_barrier_wait(&barrier);
        if (id == 0) {
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: thrhog SIZE_MIB THREADS PASSES\n");
        return 2;
    }
    long mib = atol(argv[1]);
    nthreads = atol(argv[2]);
    passes = atol(argv[3]);
    if (mib <= 0 || nthreads <= 0 || nthreads > 64 || passes <= 0)
        return 2;
    pages = mib * 256;
    mem = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return 3;
    pthread_barrier_init(&barrier, NULL, nthreads);
    pthread_t t[64];
    for (long i = 1; i < nthreads; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    worker((void *)0);
    for (long i = 1; i < nthreads; i++)
        pthread_join(t[i], NULL);
    if (failed)
        return 1;
    printf("thrhog: %ld MiB, %ld threads, %ld passes, %ld pages verified by each thread\n", mib, nthreads,
           passes, pages);
    return 0;
}
