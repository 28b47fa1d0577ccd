/*
 * seqread FILE [PASSES]
 *
 * Reads FILE sequentially from the start with 64 KiB read() calls until
 * end of file, PASSES times (default 1), reopening the file for each pass.
 * Every byte is hashed with FNV-1a 64 (offset basis 0xcbf29ce484222325,
 * prime 0x100000001b3); the checksum of each pass must equal that of the
 * first pass, and so must the byte count.
 *
 * Output on success (stdout, exit 0):
 *   seqread: FILE BYTES bytes x PASSES, checksum %016llx
 *   time: S s, R MiB/s          (all passes; ignore in comparisons)
 * Errors (stderr):
 *   bad arguments              -> usage line, exit 2
 *   open/read failure          -> message, exit 1
 *   pass differs from pass 0   -> "seqread: pass P differs", exit 1
 */
#include <fcntl.h>
#include <unistd.h>

#include "workload.h"

#define BUFSZ (64 * 1024)

static unsigned char buf[BUFSZ] __attribute__((aligned(4096)));

static void usage(void)
{
    fprintf(stderr, "usage: seqread FILE [PASSES]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    uint64_t passes = 1, bytes0 = 0, sum0 = 0;
    double t0;

    wl_init_stdout();
    if (argc < 2 || argc > 3)
        usage();
    if (argc == 3 && (!parse_num(argv[2], &passes) || passes == 0))
        usage();

    t0 = wl_now();
    for (uint64_t p = 0; p < passes; p++) {
        uint64_t h = FNV64_OFFSET, bytes = 0;
        ssize_t n;
        int fd = open(argv[1], O_RDONLY);
        if (fd < 0) {
            perror(argv[1]);
            return 1;
        }
        while ((n = read(fd, buf, BUFSZ)) > 0) {
            h = fnv1a64(h, buf, (size_t)n);
            bytes += (uint64_t)n;
        }
        if (n < 0) {
            perror("seqread: read");
            return 1;
        }
        close(fd);
        if (p == 0) {
            sum0 = h;
            bytes0 = bytes;
        } else if (h != sum0 || bytes != bytes0) {
            fprintf(stderr, "seqread: pass %llu differs\n", (unsigned long long)p);
            return 1;
        }
    }

    printf("seqread: %s %llu bytes x %llu, checksum %016llx\n", argv[1],
           (unsigned long long)bytes0, (unsigned long long)passes,
           (unsigned long long)sum0);
    wl_print_time(wl_now() - t0, bytes0 * passes);
    return 0;
}
