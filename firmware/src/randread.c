/*
 * randread FILE N [--zipf S] [--seed SEED] [--block B]
 *
 * Makes N pread() calls of B bytes (default 4096; K/M/G suffixes allowed)
 * at offsets that are multiples of B.  The file is seen as
 * NBLOCKS = floor(size / B) whole blocks (a partial last block is never
 * read; NBLOCKS must be at least 1).
 *
 * Random numbers: xorshift64* whose state is seeded with mix64(SEED)
 * (splitmix64 finalizer, see workload.h; a zero result is replaced by 1),
 * SEED defaulting to 1.  One 64-bit draw r per read.
 *
 * Uniform (default): block = r % NBLOCKS.
 *
 * Zipf (--zipf S, 0 <= S <= 16, e.g. 1.1): rank k (0-based) has weight
 * 1 / (k+1)^S.  The cumulative weights are precomputed once into a table
 * (CDF[k] = sum of weights of ranks 0..k); a draw picks
 * u = (r >> 11) * 2^-53 * CDF[NBLOCKS-1] and the rank is the smallest k with
 * CDF[k] > u (binary search).  The power is computed with this file's own
 * exp/log (no libm), so the table is bit-identical on every CPU.
 * Rank k is then mapped to a block so that the hot ranks are spread over
 * the whole file:
 *     block = (k * M) mod NBLOCKS
 * where M is the first of C, C+2, C+4, ... (C = 0x9E3779B97F4A7C15, odd)
 * whose residue M mod NBLOCKS is coprime with NBLOCKS.  Multiplication by
 * a unit mod NBLOCKS is a bijection, so every block has exactly one rank,
 * and rank 0 (the hottest) is always block 0.
 *
 * Checksum: FNV-1a 64 over the bytes of all N reads, in read order.
 * DISTINCT: how many different blocks were read at least once.
 *
 * Output on success (stdout, exit 0):
 *   randread: N reads, DISTINCT distinct blocks, checksum %016llx
 *   time: S s, R MiB/s          (ignore in comparisons)
 * Errors (stderr): bad arguments -> usage line, exit 2; open/stat/read
 * failure, short read or file smaller than one block -> message, exit 1.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workload.h"

#define MULT_BASE 0x9E3779B97F4A7C15ULL

static void usage(void)
{
    fprintf(stderr, "usage: randread FILE N [--zipf S] [--seed N] [--block B]\n");
    exit(2);
}

/* ---- libm-free exp/log, deterministic IEEE double arithmetic ------------ */

static const double LN2 = 0.69314718055994530942;

/* Natural log for x > 0 (finite). */
static double wl_log(double x)
{
    uint64_t bits;
    int e;
    double m, t, t2, term, sum;

    memcpy(&bits, &x, sizeof bits);
    e = (int)((bits >> 52) & 0x7ff) - 1023;          /* x is normal here */
    bits = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
    memcpy(&m, &bits, sizeof m);                     /* m in [1, 2) */
    if (m > 1.4142135623730951) {                    /* m in [0.707, 1.414) */
        m *= 0.5;
        e++;
    }
    /* ln m = 2 atanh(t), t = (m-1)/(m+1), |t| < 0.172 */
    t = (m - 1.0) / (m + 1.0);
    t2 = t * t;
    term = t;
    sum = 0.0;
    for (int k = 1; k < 40; k += 2) {
        sum += term / k;
        term *= t2;
    }
    return 2.0 * sum + e * LN2;
}

/* e^y for y <= 0; returns 0 below the normal range. */
static double wl_exp_neg(double y)
{
    double nf, r, term, sum;
    int64_t n;
    uint64_t bits;

    if (y < -700.0)
        return 0.0;
    nf = y / LN2;
    n = (int64_t)(nf - 0.5);                         /* round to nearest, y <= 0 */
    r = y - (double)n * LN2;                         /* |r| <= ~0.35 */
    term = 1.0;
    sum = 1.0;
    for (int k = 1; k < 25; k++) {
        term *= r / k;
        sum += term;
    }
    if (n < -1021)
        return 0.0;
    bits = (uint64_t)(n + 1023) << 52;               /* 2^n */
    memcpy(&nf, &bits, sizeof nf);
    return sum * nf;
}

static uint64_t gcd_u64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Strict decimal for S: digits with an optional fractional part. */
static int parse_exponent(const char *s, double *out)
{
    char *end;
    const char *p = s;
    int digits = 0;
    while (*p >= '0' && *p <= '9') { p++; digits++; }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') { p++; digits++; }
    }
    if (*p != '\0' || digits == 0)
        return 0;
    *out = strtod(s, &end);
    return *end == '\0' && *out >= 0.0 && *out <= 16.0;
}

int main(int argc, char **argv)
{
    uint64_t n, seed = 1, block = 4096, nblocks, mult = 0, distinct = 0;
    uint64_t state, h = FNV64_OFFSET;
    int zipf = 0, fd;
    double s = 0.0, *cdf = NULL, total = 0.0, t0;
    unsigned char *buf, *seen;
    struct stat st;

    wl_init_stdout();
    if (argc < 3 || !parse_num(argv[2], &n))
        usage();
    for (int i = 3; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (!strcmp(argv[i], "--zipf")) {
            if (!parse_exponent(argv[++i], &s))
                usage();
            zipf = 1;
        } else if (!strcmp(argv[i], "--seed")) {
            if (!parse_num(argv[++i], &seed))
                usage();
        } else if (!strcmp(argv[i], "--block")) {
            if (!parse_size(argv[++i], &block) || block == 0 || block > (1ULL << 30))
                usage();
        } else {
            usage();
        }
    }

    fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    if (fstat(fd, &st) != 0) {
        perror("randread: fstat");
        return 1;
    }
    nblocks = (uint64_t)st.st_size / block;
    if (nblocks == 0) {
        fprintf(stderr, "randread: %s is smaller than one %llu-byte block\n",
                argv[1], (unsigned long long)block);
        return 1;
    }

    buf = aligned_alloc(4096, (block + 4095) & ~4095ULL);
    seen = calloc((nblocks + 7) / 8, 1);
    if (!buf || !seen) {
        fprintf(stderr, "randread: out of memory\n");
        return 1;
    }

    if (zipf) {
        cdf = malloc(nblocks * sizeof *cdf);
        if (!cdf) {
            fprintf(stderr, "randread: out of memory\n");
            return 1;
        }
        for (uint64_t k = 0; k < nblocks; k++) {
            double w = (k == 0 || s == 0.0) ? 1.0
                       : wl_exp_neg(-s * wl_log((double)(k + 1)));
            total += w;
            cdf[k] = total;
        }
        for (mult = MULT_BASE; gcd_u64(mult % nblocks, nblocks) != 1; mult += 2)
            ;
    }

    state = mix64(seed);
    if (state == 0)
        state = 1;

    t0 = wl_now();
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = xorshift64s(&state), blk;
        ssize_t got;
        if (zipf) {
            double u = (double)(r >> 11) * 0x1p-53 * total;
            uint64_t lo = 0, hi = nblocks - 1;       /* smallest k with cdf[k] > u */
            while (lo < hi) {
                uint64_t mid = lo + (hi - lo) / 2;
                if (cdf[mid] > u)
                    hi = mid;
                else
                    lo = mid + 1;
            }
            blk = (uint64_t)(((unsigned __int128)lo * (mult % nblocks)) % nblocks);
        } else {
            blk = r % nblocks;
        }
        got = pread(fd, buf, block, (off_t)(blk * block));
        if (got != (ssize_t)block) {
            if (got < 0)
                perror("randread: pread");
            else
                fprintf(stderr, "randread: short read at block %llu\n",
                        (unsigned long long)blk);
            return 1;
        }
        h = fnv1a64(h, buf, block);
        if (!(seen[blk >> 3] & (1u << (blk & 7)))) {
            seen[blk >> 3] |= (unsigned char)(1u << (blk & 7));
            distinct++;
        }
    }
    close(fd);

    printf("randread: %llu reads, %llu distinct blocks, checksum %016llx\n",
           (unsigned long long)n, (unsigned long long)distinct,
           (unsigned long long)h);
    wl_print_time(wl_now() - t0, n * block);
    return 0;
}
