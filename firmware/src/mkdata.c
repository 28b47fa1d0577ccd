/*
 * mkdata DIR [TREE_SIZE]
 *
 * Creates the deterministic data tree of the workloads.  It is run natively
 * on the host by the image builder (not in the guest).  DIR and its
 * subdirectories are created if missing; existing files are overwritten
 * (other files already in DIR are left alone).
 *
 *   DIR/data/stream.bin   64 MiB  (seqread)
 *   DIR/data/random.bin   32 MiB  (randread)
 *   DIR/data/mapped.bin   16 MiB  (mmapread)
 *       Each is the output of one xorshift64* generator (see workload.h),
 *       stored as little-endian 64-bit words, with the fixed seeds
 *       0x73747265616D2E31, 0x72616E646F6D2E31 and 0x6D61707065642E31
 *       ("stream.1", "random.1", "mapped.1") respectively.
 *   DIR/src/subNN/fMMM.c  400 files (MMM = 000..399) in 20 directories
 *       (NN = MMM / 20, i.e. 20 files each), for mixed.  File MMM uses its
 *       own xorshift64* seeded with mix64(0x5352430000000000 + MMM): the
 *       first draw r gives the size 1024 + r % (23 * 1024 + 1) bytes
 *       (1 KiB .. 24 KiB); the contents are C-like text lines built from
 *       further draws, cut at exactly that size.
 *
 *   DIR/tree/dNNN/fMMMMM.c  only with TREE_SIZE (bytes, or with a K, M or G
 *       suffix): a source tree of exactly TREE_SIZE bytes for a build at the
 *       scale of a real machine (`mixed /tree`).  Files of 256 KiB .. 1.75 MiB
 *       (the first draw r of file MMMMM's xorshift64*, seeded with
 *       mix64(0x5452454500000000 + MMMMM), gives 256 KiB + r % 1.5 MiB; the
 *       last file is cut so the total is TREE_SIZE), 32 to a directory
 *       (NNN = MMMMM / 32), C-like text as for /src.
 *
 * Checksums printed: FNV-1a 64 of each data file (the same value seqread
 * prints for it); for the source tree, FNV-1a 64 over, for each file in
 * creation (= strcmp) order, its path relative to DIR/src, a NUL byte and
 * its contents.
 *
 * Output on success (stdout, exit 0):
 *   mkdata: DIR/data/stream.bin 67108864 bytes, checksum %016llx
 *   mkdata: DIR/data/random.bin 33554432 bytes, checksum %016llx
 *   mkdata: DIR/data/mapped.bin 16777216 bytes, checksum %016llx
 *   mkdata: DIR/src 400 files in 20 directories, BYTES bytes, checksum %016llx
 *   mkdata: DIR/tree FILES files in DIRS directories, BYTES bytes, checksum %016llx
 *       (only with TREE_SIZE; the checksum as for /src, paths relative to DIR/tree)
 *   time: S s
 * Errors (stderr): bad arguments -> usage line, exit 2; any I/O failure ->
 * message, exit 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workload.h"

#define CHUNK      (1 << 20)
#define NDIRS      20
#define NFILES     400
#define MAXSRC     (24 * 1024)
#define PATH_MAXLEN 4096

static uint64_t chunk[CHUNK / 8];
static char text[MAXSRC + 256];

static void usage(void)
{
    fprintf(stderr, "usage: mkdata DIR [TREE_SIZE]\n");
    exit(2);
}

static void fail(const char *what)
{
    fflush(stdout);
    perror(what);
    exit(1);
}

static void make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        fail(path);
}

static void write_all(int fd, const void *p, size_t len, const char *path)
{
    const char *c = p;
    while (len > 0) {
        ssize_t n = write(fd, c, len);
        if (n <= 0)
            fail(path);
        c += n;
        len -= (size_t)n;
    }
}

static void make_random_file(const char *dir, const char *name, uint64_t size,
                             uint64_t seed)
{
    char path[PATH_MAXLEN];
    uint64_t state = seed, h = FNV64_OFFSET;
    int fd;

    snprintf(path, sizeof path, "%s/data/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        fail(path);
    for (uint64_t off = 0; off < size; off += CHUNK) {
        for (size_t i = 0; i < CHUNK / 8; i++)
            chunk[i] = xorshift64s(&state);            /* x86-64: little-endian */
        h = fnv1a64(h, chunk, CHUNK);
        write_all(fd, chunk, CHUNK, path);
    }
    if (close(fd) != 0)
        fail(path);
    printf("mkdata: %s %llu bytes, checksum %016llx\n", path,
           (unsigned long long)size, (unsigned long long)h);
}

/* Deterministic C-like text of exactly `size` bytes for source file f, into
 * text (room for size + 256 bytes), headed by its path. */
static size_t make_text(char *text, const char *rel, unsigned f, uint64_t *state, size_t size)
{
    size_t len = (size_t)snprintf(text, size + 256, "/* %s */\n", rel);
    unsigned line = 0;
    while (len < size) {
        uint64_t r = xorshift64s(state);
        int n;
        switch (r % 4) {
        case 0:
            n = snprintf(text + len, size + 256 - len,
                         "static unsigned long fn_%03u_%u(unsigned long x) "
                         "{ return x * 0x%016llxUL + %u; }\n",
                         f, line, (unsigned long long)xorshift64s(state),
                         (unsigned)(r >> 40));
            break;
        case 1:
            n = snprintf(text + len, size + 256 - len, "#define K_%03u_%u 0x%08x\n",
                         f, line, (unsigned)(r >> 32));
            break;
        case 2:
            n = snprintf(text + len, size + 256 - len, "int v_%03u_%u = %u;\n",
                         f, line, (unsigned)(r >> 44));
            break;
        default:
            n = snprintf(text + len, size + 256 - len,
                         "/* %016llx %016llx */\n",
                         (unsigned long long)xorshift64s(state),
                         (unsigned long long)xorshift64s(state));
            break;
        }
        len += (size_t)n;          /* lines are < 256 bytes: never truncated */
        line++;
    }
    return size;                   /* cut at exactly `size` bytes */
}

static size_t make_source_text(unsigned f, uint64_t *state, size_t size)
{
    char rel[64];
    snprintf(rel, sizeof rel, "sub%02u/f%03u.c", f / (NFILES / NDIRS), f);
    return make_text(text, rel, f, state, size);
}

#define TREE_PER_DIR 32
#define TREE_MIN     (256 * 1024)
#define TREE_SPREAD  (1536 * 1024)

static void make_tree(const char *dir, uint64_t total)
{
    char path[PATH_MAXLEN], rel[64];
    char *buf = malloc(TREE_MIN + TREE_SPREAD + 256);
    uint64_t done = 0, h = FNV64_OFFSET;
    unsigned f = 0;

    if (!buf) {
        fprintf(stderr, "mkdata: out of memory\n");
        exit(1);
    }
    snprintf(path, sizeof path, "%s/tree", dir);
    make_dir(path);
    for (; done < total; f++) {
        uint64_t state = mix64(0x5452454500000000ULL + f);
        size_t size;
        int fd;

        if (state == 0)
            state = 1;
        if (f % TREE_PER_DIR == 0) {
            snprintf(path, sizeof path, "%s/tree/d%03u", dir, f / TREE_PER_DIR);
            make_dir(path);
        }
        size = TREE_MIN + (size_t)(xorshift64s(&state) % TREE_SPREAD);
        if (size > total - done)
            size = (size_t)(total - done);
        snprintf(rel, sizeof rel, "d%03u/f%05u.c", f / TREE_PER_DIR, f);
        size = make_text(buf, rel, f, &state, size);
        snprintf(path, sizeof path, "%s/tree/%s", dir, rel);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            fail(path);
        write_all(fd, buf, size, path);
        if (close(fd) != 0)
            fail(path);
        h = fnv1a64(h, rel, strlen(rel) + 1);
        h = fnv1a64(h, buf, size);
        done += size;
    }
    free(buf);
    printf("mkdata: %s/tree %u files in %u directories, %llu bytes, checksum %016llx\n",
           dir, f, (f + TREE_PER_DIR - 1) / TREE_PER_DIR, (unsigned long long)done,
           (unsigned long long)h);
}

int main(int argc, char **argv)
{
    char path[PATH_MAXLEN];
    uint64_t src_bytes = 0, h = FNV64_OFFSET;
    const char *dir;
    uint64_t tree = 0;
    double t0;

    wl_init_stdout();
    if (argc < 2 || argc > 3 || argv[1][0] == '\0' || strlen(argv[1]) > PATH_MAXLEN - 64)
        usage();
    if (argc == 3 && (!parse_size(argv[2], &tree) || tree == 0))
        usage();
    dir = argv[1];

    t0 = wl_now();
    make_dir(dir);
    snprintf(path, sizeof path, "%s/data", dir);
    make_dir(path);
    snprintf(path, sizeof path, "%s/src", dir);
    make_dir(path);

    make_random_file(dir, "stream.bin", 64ULL << 20, 0x73747265616D2E31ULL);
    make_random_file(dir, "random.bin", 32ULL << 20, 0x72616E646F6D2E31ULL);
    make_random_file(dir, "mapped.bin", 16ULL << 20, 0x6D61707065642E31ULL);

    for (unsigned f = 0; f < NFILES; f++) {
        unsigned d = f / (NFILES / NDIRS);
        uint64_t state = mix64(0x5352430000000000ULL + f);
        size_t size;
        char rel[64];
        int fd;

        if (state == 0)
            state = 1;
        if (f % (NFILES / NDIRS) == 0) {
            snprintf(path, sizeof path, "%s/src/sub%02u", dir, d);
            make_dir(path);
        }
        size = 1024 + (size_t)(xorshift64s(&state) % (23 * 1024 + 1));
        size = make_source_text(f, &state, size);

        snprintf(rel, sizeof rel, "sub%02u/f%03u.c", d, f);
        snprintf(path, sizeof path, "%s/src/%s", dir, rel);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            fail(path);
        write_all(fd, text, size, path);
        if (close(fd) != 0)
            fail(path);
        h = fnv1a64(h, rel, strlen(rel) + 1);
        h = fnv1a64(h, text, size);
        src_bytes += size;
    }
    printf("mkdata: %s/src %u files in %u directories, %llu bytes, checksum %016llx\n",
           dir, NFILES, NDIRS, (unsigned long long)src_bytes, (unsigned long long)h);
    if (tree)
        make_tree(dir, tree);
    wl_print_time(wl_now() - t0, 0);
    return 0;
}
