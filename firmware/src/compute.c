/*
 * compute [ITERATIONS]
 *
 * Runs compute_loop(ITERATIONS) (default 10000000) and prints
 *   compute: ITERATIONS iterations, result 0x%016llx
 *
 * compute_loop is a global, non-inlined function whose loop is
 * register-only (no loads or stores inside the loop), so a benchmark can
 * locate it via the symbol table and run it on bare Unicorn with nothing
 * but a stack for call/ret.  Per iteration it does one xorshift64 step
 * (Marsaglia 13/7/17) on the state and adds the state into an
 * accumulator; the serial dependency chain prevents vectorisation and has
 * no closed form the compiler could substitute.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define COMPUTE_SEED 0x2545F4914F6CDD1DULL

__attribute__((noinline))
uint64_t compute_loop(uint64_t iterations)
{
    uint64_t x = COMPUTE_SEED;
    uint64_t acc = 0;
    for (uint64_t n = 0; n < iterations; n++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc += x;
    }
    return acc;
}

static char outbuf[4096];   /* static stdout buffer: no fstat/malloc in stdio */

int main(int argc, char **argv)
{
    uint64_t iterations = 10000000ULL;

    setvbuf(stdout, outbuf, _IOLBF, sizeof outbuf);
    if (argc > 1)
        iterations = strtoull(argv[1], NULL, 0);
    printf("compute: %llu iterations, result 0x%016llx\n",
           (unsigned long long)iterations,
           (unsigned long long)compute_loop(iterations));
    return 0;
}
