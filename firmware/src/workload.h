/*
 * Shared helpers for the Ballast file-system workload programs
 * (seqread, randread, mmapread, writer, mixed, mkdata).
 *
 * Everything here is static so each program stays a single translation
 * unit; the Makefile lists this header as a prerequisite of those programs.
 *
 * Determinism rules followed by the workloads:
 *   - all pseudo-random numbers come from xorshift64* with fixed seeds;
 *   - no libm (glibc's libm picks FMA/non-FMA code paths at run time from
 *     CPUID, which could differ between the guest and the host);
 *   - timings are measured with clock_gettime(CLOCK_MONOTONIC) and printed
 *     only on a separate line starting with "time:".
 */
#ifndef BALLAST_WORKLOAD_H
#define BALLAST_WORKLOAD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char wl_outbuf[4096];   /* static stdout buffer: no fstat/malloc in stdio */

static __attribute__((unused)) void wl_init_stdout(void)
{
    setvbuf(stdout, wl_outbuf, _IOLBF, sizeof wl_outbuf);
}

/* ---- FNV-1a 64 ---------------------------------------------------------- */

#define FNV64_OFFSET 0xcbf29ce484222325ULL
#define FNV64_PRIME  0x00000100000001b3ULL

static inline uint64_t fnv1a64(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV64_PRIME;
    }
    return h;
}

/* ---- PRNGs -------------------------------------------------------------- */

/* xorshift64* (Vigna): state must be non-zero. */
static inline uint64_t xorshift64s(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* splitmix64 finalizer: a bijective 64-bit mix. */
static inline uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* ---- argument parsing (same syntax as memhog) --------------------------- */

/* Parse a non-negative decimal number; returns 0 on any syntax error or
 * overflow.  *end receives the first unparsed character. */
static __attribute__((unused)) int parse_u64(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    if (*s < '0' || *s > '9')
        return 0;
    while (*s >= '0' && *s <= '9') {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
        s++;
    }
    *out = v;
    *end = s;
    return 1;
}

/* A whole argument that is a plain decimal number. */
static __attribute__((unused)) int parse_num(const char *s, uint64_t *out)
{
    const char *end;
    return parse_u64(s, out, &end) && *end == '\0';
}

/* Bytes, or a number with a K, M or G suffix (powers of 1024,
 * case-insensitive), e.g. 4096, 64k, 256M, 1G. */
static __attribute__((unused)) int parse_size(const char *s, uint64_t *out)
{
    const char *end;
    uint64_t v, shift = 0;
    if (!parse_u64(s, &v, &end))
        return 0;
    switch (*end) {
    case '\0':           break;
    case 'k': case 'K':  shift = 10; end++; break;
    case 'm': case 'M':  shift = 20; end++; break;
    case 'g': case 'G':  shift = 30; end++; break;
    default:             return 0;
    }
    if (*end != '\0')
        return 0;
    if (shift && v > (UINT64_MAX >> shift))
        return 0;
    *out = v << shift;
    return 1;
}

/* ---- timing ------------------------------------------------------------- */

static __attribute__((unused)) double wl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Prints "time: S s[, R MiB/s]" (bytes == 0: no rate). */
static __attribute__((unused)) void wl_print_time(double seconds, uint64_t bytes)
{
    if (bytes && seconds > 0)
        printf("time: %.6f s, %.1f MiB/s\n", seconds,
               (double)bytes / (1024.0 * 1024.0) / seconds);
    else
        printf("time: %.6f s\n", seconds);
}

#endif
