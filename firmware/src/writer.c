/*
 * writer FILE SIZE [--fsync] [--block B]
 *
 * Creates (or truncates) FILE and writes SIZE bytes (plain bytes or K/M/G
 * suffixes as for memhog) of a deterministic pattern with write() calls of
 * B bytes (default 64 KiB, the last one may be shorter).  With --fsync the
 * file is fsync()ed after the last write.  The file is then closed,
 * reopened read-only and read back with B-byte read() calls; the contents
 * and the length must match exactly.
 *
 * Pattern: the file is a sequence of little-endian 64-bit words; word i
 * (bytes 8i .. 8i+7) holds mix64(i ^ 0x5752495445520000) (splitmix64
 * finalizer, see workload.h).  A SIZE that is not a multiple of 8 ends with
 * the first SIZE % 8 bytes of the next word.  Every byte thus depends on
 * its offset, so misplaced, stale or lost blocks are detected.
 *
 * Output on success (stdout, exit 0):
 *   writer: FILE SIZE bytes written, verified
 *   writer: FILE SIZE bytes written, fsynced, verified      (--fsync)
 *   time: S s, R MiB/s          (write+fsync+verify; ignore in comparisons)
 * Errors (stderr): bad arguments -> usage line, exit 2; open/write/fsync/
 * read failure -> message, exit 1; mismatch -> "writer: mismatch at byte
 * OFFSET" or "writer: length mismatch", exit 1.
 */
#include <fcntl.h>
#include <unistd.h>

#include "workload.h"

#define PATTERN_KEY 0x5752495445520000ULL   /* "WRITER\0\0" */

static void usage(void)
{
    fprintf(stderr, "usage: writer FILE SIZE[K|M|G] [--fsync] [--block B]\n");
    exit(2);
}

/* Fill buf with the pattern bytes of file range [off, off + len). */
static void fill(unsigned char *buf, uint64_t off, size_t len)
{
    size_t j = 0;
    while (j < len) {
        uint64_t pos = off + j, w = mix64((pos >> 3) ^ PATTERN_KEY);
        if ((pos & 7) == 0 && len - j >= 8) {
            memcpy(buf + j, &w, 8);                   /* x86-64: little-endian */
            j += 8;
        } else {
            buf[j++] = (unsigned char)(w >> (8 * (pos & 7)));
        }
    }
}

static void fail(const char *what)
{
    fflush(stdout);
    perror(what);
    exit(1);
}

int main(int argc, char **argv)
{
    uint64_t size, block = 64 * 1024, off;
    unsigned char *buf, *want;
    int do_fsync = 0, fd;
    double t0;

    wl_init_stdout();
    if (argc < 3 || !parse_size(argv[2], &size))
        usage();
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--fsync")) {
            do_fsync = 1;
        } else if (!strcmp(argv[i], "--block") && i + 1 < argc) {
            if (!parse_size(argv[++i], &block) || block == 0 || block > (1ULL << 30))
                usage();
        } else {
            usage();
        }
    }

    buf = aligned_alloc(4096, (block + 4095) & ~4095ULL);
    want = aligned_alloc(4096, (block + 4095) & ~4095ULL);
    if (!buf || !want) {
        fprintf(stderr, "writer: out of memory\n");
        return 1;
    }

    t0 = wl_now();
    fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        fail(argv[1]);
    for (off = 0; off < size; ) {
        size_t len = (size_t)(size - off < block ? size - off : block), done = 0;
        fill(buf, off, len);
        while (done < len) {
            ssize_t n = write(fd, buf + done, len - done);
            if (n <= 0)
                fail("writer: write");
            done += (size_t)n;
        }
        off += len;
    }
    if (do_fsync && fsync(fd) != 0)
        fail("writer: fsync");
    if (close(fd) != 0)
        fail("writer: close");

    fd = open(argv[1], O_RDONLY);
    if (fd < 0)
        fail(argv[1]);
    for (off = 0; ; ) {
        ssize_t n = read(fd, buf, block);
        if (n < 0)
            fail("writer: read");
        if (n == 0)
            break;
        if ((uint64_t)n > size - off) {
            fprintf(stderr, "writer: length mismatch\n");
            return 1;
        }
        fill(want, off, (size_t)n);
        if (memcmp(buf, want, (size_t)n) != 0) {
            size_t k = 0;
            while (buf[k] == want[k])
                k++;
            fprintf(stderr, "writer: mismatch at byte %llu\n",
                    (unsigned long long)(off + k));
            return 1;
        }
        off += (uint64_t)n;
    }
    close(fd);
    if (off != size) {
        fprintf(stderr, "writer: length mismatch\n");
        return 1;
    }

    printf("writer: %s %llu bytes written%s, verified\n", argv[1],
           (unsigned long long)size, do_fsync ? ", fsynced" : "");
    wl_print_time(wl_now() - t0, size);
    return 0;
}
