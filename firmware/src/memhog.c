/*
 * memhog SIZE [PASSES]
 *
 * Maps SIZE bytes of anonymous private memory once and touches it page by
 * page, PASSES times (default 1).  Meant to exercise page-fault handling
 * in the Ballast emulator, so each touch is as cheap as possible: only
 * two 8-byte words per 4096-byte page are ever read or written (the first
 * and the last word of the page).
 *
 * SIZE is plain bytes or a number with a K, M or G suffix (powers of 1024,
 * case-insensitive), e.g. 4096, 64k, 256M, 1G.  The mapping length is
 * SIZE rounded up to a whole number of 4096-byte pages (which is what the
 * kernel maps anyway); PAGES = ceil(SIZE / 4096).
 *
 * Pass p (0-based) over page i:
 *   if p > 0: check both words still hold the pattern of pass p-1;
 *   then write the pattern of pass p into both words.
 * After the last pass, every page is checked once more against the final
 * pattern (reads only).
 *
 * Pattern for page i, pass p, word w (0 = first word, 1 = last word):
 *   0x9E3779B97F4A7C15 * (i + 1)  ^  ((uint64_t)p << 56)  ^  w
 * (golden-ratio multiplicative hash of the page number, with the pass in
 * the top byte and the word index in the low bit, so a stale or swapped
 * word is always detected).
 *
 * Output on success (stdout, exit 0):
 *   memhog: SIZE_BYTES bytes, PASSES passes, PAGES pages verified
 * Errors (stderr):
 *   bad arguments         -> usage line, exit 2
 *   mmap failure          -> "memhog: mmap failed", exit 3
 *   verification mismatch -> "memhog: pattern mismatch at page N pass P",
 *                            exit 1 (P is the pass whose pattern was
 *                            expected, i.e. PASSES-1 for the final check)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "workload.h"        /* parse_size() */

#define PAGE_SIZE 4096ULL
#define WORDS_PER_PAGE (PAGE_SIZE / sizeof(uint64_t))

static char outbuf[4096];   /* static stdout buffer: no fstat/malloc in stdio */

static inline uint64_t pattern(uint64_t page, uint64_t pass, uint64_t word)
{
    return 0x9E3779B97F4A7C15ULL * (page + 1) ^ (pass << 56) ^ word;
}

static void usage(void)
{
    fprintf(stderr, "usage: memhog SIZE[K|M|G] [PASSES]\n");
    exit(2);
}

static void mismatch(uint64_t page, uint64_t pass)
{
    fflush(stdout);
    fprintf(stderr, "memhog: pattern mismatch at page %llu pass %llu\n",
            (unsigned long long)page, (unsigned long long)pass);
    exit(1);
}

int main(int argc, char **argv)
{
    uint64_t size, passes = 1, pages, p, i;
    volatile uint64_t *mem;
    void *m;

    setvbuf(stdout, outbuf, _IOLBF, sizeof outbuf);

    if (argc < 2 || argc > 3)
        usage();
    if (!parse_size(argv[1], &size) || size == 0 || size > UINT64_MAX - (PAGE_SIZE - 1))
        usage();
    if (argc == 3) {
        const char *end;
        if (!parse_u64(argv[2], &passes, &end) || *end != '\0' || passes == 0)
            usage();
    }

    pages = (size + PAGE_SIZE - 1) / PAGE_SIZE;
    m = mmap(NULL, pages * PAGE_SIZE, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        fprintf(stderr, "memhog: mmap failed\n");
        return 3;
    }
    mem = (volatile uint64_t *)m;

    for (p = 0; p < passes; p++) {
        for (i = 0; i < pages; i++) {
            volatile uint64_t *first = mem + i * WORDS_PER_PAGE;
            volatile uint64_t *last = first + (WORDS_PER_PAGE - 1);
            if (p > 0) {
                if (*first != pattern(i, p - 1, 0) || *last != pattern(i, p - 1, 1))
                    mismatch(i, p - 1);
            }
            *first = pattern(i, p, 0);
            *last = pattern(i, p, 1);
        }
    }

    /* Final read-only verification of the last pass's pattern. */
    p = passes - 1;
    for (i = 0; i < pages; i++) {
        volatile uint64_t *first = mem + i * WORDS_PER_PAGE;
        volatile uint64_t *last = first + (WORDS_PER_PAGE - 1);
        if (*first != pattern(i, p, 0) || *last != pattern(i, p, 1))
            mismatch(i, p);
    }

    printf("memhog: %llu bytes, %llu passes, %llu pages verified\n",
           (unsigned long long)size, (unsigned long long)passes,
           (unsigned long long)pages);
    return 0;
}
