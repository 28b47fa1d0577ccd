/*
 * mmapread FILE [PASSES] [--beside STREAM]
 *
 * Maps the whole of FILE once with mmap(PROT_READ, MAP_SHARED) and, on
 * each of PASSES passes (default 1), reads the first byte of every 4096-byte
 * page (PAGES = ceil(size / 4096)), adding the byte values (0..255) into one
 * 64-bit sum that runs across all passes (so SUM = PASSES * per-pass sum).
 * The reads go through a volatile pointer, so every pass really touches
 * every page.  An empty file is not mapped (PAGES = 0, sum 0).
 *
 * With --beside STREAM, each pass then reads STREAM from the start to end of
 * file with 64 KiB read() calls (reopened every pass), while the mapping
 * stays: mapped pages used once a pass beside a stream read once a pass
 * (the workload of the 2010 review's shrink_page_list bias).  Its bytes are
 * hashed with FNV-1a 64 as seqread does; every pass must give the same
 * count and checksum.
 *
 * Output on success (stdout, exit 0):
 *   mmapread: FILE PAGES pages x PASSES, sum %llu
 *   mmapread: beside STREAM BYTES bytes x PASSES, checksum %016llx   (--beside)
 *   time: S s                   (ignore in comparisons)
 * Errors (stderr): bad arguments -> usage line, exit 2; open/fstat/mmap/read
 * failure -> message, exit 1; a stream pass differing from the first ->
 * "mmapread: pass P differs", exit 1.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workload.h"

#define PAGE_SIZE 4096ULL

static unsigned char buf[64 * 1024];

static void usage(void)
{
    fprintf(stderr, "usage: mmapread FILE [PASSES] [--beside STREAM]\n");
    exit(2);
}

/* One pass over STREAM: its byte count and FNV-1a 64 checksum. */
static int read_stream(const char *path, uint64_t *bytes, uint64_t *sum)
{
    uint64_t h = FNV64_OFFSET, n = 0;
    ssize_t got;
    int fd = open(path, O_RDONLY);

    if (fd < 0) {
        perror(path);
        return -1;
    }
    while ((got = read(fd, buf, sizeof buf)) > 0) {
        h = fnv1a64(h, buf, (size_t)got);
        n += (uint64_t)got;
    }
    if (got < 0) {
        perror("mmapread: read");
        return -1;
    }
    close(fd);
    *bytes = n;
    *sum = h;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t passes = 1, pages, size, sum = 0, stream_bytes = 0, stream_sum = 0;
    const char *beside = NULL;
    struct stat st;
    double t0;
    int fd;

    wl_init_stdout();
    if (argc >= 4 && !strcmp(argv[argc - 2], "--beside")) {
        beside = argv[argc - 1];
        argc -= 2;
    }
    if (argc < 2 || argc > 3)
        usage();
    if (argc == 3 && (!parse_num(argv[2], &passes) || passes == 0))
        usage();

    fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    if (fstat(fd, &st) != 0) {
        perror("mmapread: fstat");
        return 1;
    }
    size = (uint64_t)st.st_size;
    pages = (size + PAGE_SIZE - 1) / PAGE_SIZE;

    t0 = wl_now();
    if (size > 0) {
        void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        const volatile unsigned char *mem;
        if (m == MAP_FAILED) {
            perror("mmapread: mmap");
            return 1;
        }
        mem = m;
        for (uint64_t p = 0; p < passes; p++) {
            uint64_t bytes, h;
            for (uint64_t i = 0; i < pages; i++)
                sum += mem[i * PAGE_SIZE];
            if (!beside)
                continue;
            if (read_stream(beside, &bytes, &h) != 0)
                return 1;
            if (p == 0) {
                stream_bytes = bytes;
                stream_sum = h;
            } else if (bytes != stream_bytes || h != stream_sum) {
                fprintf(stderr, "mmapread: pass %llu differs\n", (unsigned long long)p);
                return 1;
            }
        }
        munmap(m, size);
    }
    close(fd);

    printf("mmapread: %s %llu pages x %llu, sum %llu\n", argv[1],
           (unsigned long long)pages, (unsigned long long)passes,
           (unsigned long long)sum);
    if (beside)
        printf("mmapread: beside %s %llu bytes x %llu, checksum %016llx\n", beside,
               (unsigned long long)stream_bytes, (unsigned long long)passes,
               (unsigned long long)stream_sum);
    wl_print_time(wl_now() - t0, 0);
    return 0;
}
