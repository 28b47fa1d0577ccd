/*
 * mixed DIR [ROUNDS [WORK]]
 *
 * A stand-in for a kernel build: read a source tree, spend some CPU on
 * every file, write one small object file per input.  Each of ROUNDS rounds
 * (default 1):
 *   - mkdir DIR/../mixed-out (an existing directory is fine);
 *   - walk DIR recursively with opendir/readdir (getdents64); entries whose
 *     d_type is DT_UNKNOWN are classified with fstatat(AT_SYMLINK_NOFOLLOW);
 *     only directories and regular files are followed (symlinks and other
 *     types are skipped);
 *   - open every regular file, fstat it, read it fully with read() and hash
 *     the contents (hash below);
 *   - write DIR/../mixed-out/<st_ino>.o holding the 8-byte hash
 *     (little-endian), created or truncated.
 *
 * File hash (CPU-bound, WORK dependent multiply/xor-shift rounds per 8 bytes,
 * default 4, i.e. well over a few hundred instructions per KiB; a larger WORK
 * stands for a compiler's many instructions per source byte):
 *   h = 0x6D69786564000000 ^ size
 *   for each 8-byte little-endian word w (the last one zero-padded):
 *       h ^= w;  WORK x { h *= 0xff51afd7ed558ccd; h ^= h >> 29; h += 0x9E3779B97F4A7C15 }
 *   hash = mix64(h)
 *
 * Checksum of a round: FNV-1a 64, in strcmp order of the paths relative to
 * DIR (e.g. "sub03/f061.c"), over each relative path, a NUL byte and the
 * file's 8-byte hash.  It therefore does not depend on readdir order, inode
 * numbers or the spelling of DIR.  Every round must give the same file
 * count, byte count and checksum as the first one.
 *
 * Output on success (stdout, exit 0):
 *   mixed: FILES files, BYTES bytes, ROUNDS rounds, checksum %016llx
 *   time: S s                   (all rounds; ignore in comparisons)
 * FILES and BYTES are per round.
 * Errors (stderr): bad arguments -> usage line, exit 2; any I/O failure ->
 * message, exit 1; a round differing from round 0 -> "mixed: round R
 * differs", exit 1.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workload.h"

#define PATH_MAXLEN 4096

struct entry {
    char *rel;          /* path relative to DIR */
    uint64_t hash;
};

static struct entry *entries;
static size_t nentries, capentries;
static uint64_t total_bytes;
static unsigned char *filebuf;
static size_t filecap;
static char outdir[PATH_MAXLEN];
static const char *root;
static size_t rootlen;
static uint64_t work = 4;        /* mix rounds per 8-byte word */

static void usage(void)
{
    fprintf(stderr, "usage: mixed DIR [ROUNDS [WORK]]\n");
    exit(2);
}

static void fail(const char *what)
{
    fflush(stdout);
    perror(what);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fprintf(stderr, "mixed: out of memory\n");
        exit(1);
    }
    return p;
}

static uint64_t hash_contents(const unsigned char *p, uint64_t len)
{
    uint64_t h = 0x6D69786564000000ULL ^ len;
    for (uint64_t i = 0; i < len; i += 8) {
        uint64_t w = 0;
        memcpy(&w, p + i, len - i < 8 ? len - i : 8);
        h ^= w;
        for (int r = 0; r < 4; r++) {
            h *= 0xff51afd7ed558ccdULL;
            h ^= h >> 29;
            h += 0x9E3779B97F4A7C15ULL;
        }
    }
    return mix64(h);
}

/* The same hash with WORK rounds per word (a separate function, so the
 * default runs exactly the instructions it always did). */
static uint64_t hash_contents_work(const unsigned char *p, uint64_t len)
{
    uint64_t h = 0x6D69786564000000ULL ^ len;
    for (uint64_t i = 0; i < len; i += 8) {
        uint64_t w = 0;
        memcpy(&w, p + i, len - i < 8 ? len - i : 8);
        h ^= w;
        for (uint64_t r = 0; r < work; r++) {
            h *= 0xff51afd7ed558ccdULL;
            h ^= h >> 29;
            h += 0x9E3779B97F4A7C15ULL;
        }
    }
    return mix64(h);
}

static void process_file(const char *path)
{
    struct stat st;
    size_t len = 0;
    ssize_t n;
    uint64_t h;
    char out[PATH_MAXLEN];
    int fd = open(path, O_RDONLY);

    if (fd < 0)
        fail(path);
    if (fstat(fd, &st) != 0)
        fail("mixed: fstat");
    if (filecap < (size_t)st.st_size + 1) {
        filecap = (size_t)st.st_size + 1;
        filebuf = xrealloc(filebuf, filecap);
    }
    for (;;) {
        if (len == filecap) {                         /* file grew: keep reading */
            filecap *= 2;
            filebuf = xrealloc(filebuf, filecap);
        }
        n = read(fd, filebuf + len, filecap - len);
        if (n < 0)
            fail("mixed: read");
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);

    h = work == 4 ? hash_contents(filebuf, len) : hash_contents_work(filebuf, len);
    total_bytes += len;

    if (snprintf(out, sizeof out, "%s/%llu.o", outdir,
                 (unsigned long long)st.st_ino) >= (int)sizeof out) {
        fprintf(stderr, "mixed: path too long\n");
        exit(1);
    }
    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        fail(out);
    if (write(fd, &h, sizeof h) != (ssize_t)sizeof h)
        fail("mixed: write");
    if (close(fd) != 0)
        fail("mixed: close");

    if (nentries == capentries) {
        capentries = capentries ? 2 * capentries : 256;
        entries = xrealloc(entries, capentries * sizeof *entries);
    }
    entries[nentries].rel = strdup(path + rootlen + 1);
    if (!entries[nentries].rel)
        fail("mixed: strdup");
    entries[nentries].hash = h;
    nentries++;
}

static void walk(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[PATH_MAXLEN];

    if (!d)
        fail(dir);
    for (;;) {
        int type;
        errno = 0;
        de = readdir(d);
        if (!de) {
            if (errno)
                fail("mixed: readdir");
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path) {
            fprintf(stderr, "mixed: path too long\n");
            exit(1);
        }
        type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) != 0)
                fail(path);
            type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
        }
        if (type == DT_DIR)
            walk(path);
        else if (type == DT_REG)
            process_file(path);
    }
    closedir(d);
}

/* Bottom-up merge sort by strcmp of the relative path.  (Not qsort: glibc's
 * qsort calls sysinfo() to size its buffer, a syscall the guest lacks.) */
static void sort_entries(void)
{
    struct entry *tmp = xrealloc(NULL, (nentries ? nentries : 1) * sizeof *tmp);
    struct entry *a = entries, *b = tmp, *t;

    for (size_t width = 1; width < nentries; width *= 2) {
        for (size_t lo = 0; lo < nentries; lo += 2 * width) {
            size_t mid = lo + width < nentries ? lo + width : nentries;
            size_t hi = lo + 2 * width < nentries ? lo + 2 * width : nentries;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                b[k++] = strcmp(a[j].rel, a[i].rel) < 0 ? a[j++] : a[i++];
            while (i < mid)
                b[k++] = a[i++];
            while (j < hi)
                b[k++] = a[j++];
        }
        t = a;
        a = b;
        b = t;
    }
    if (a != entries)
        memcpy(entries, a, nentries * sizeof *entries);
    free(tmp);
}

int main(int argc, char **argv)
{
    uint64_t rounds = 1, files0 = 0, bytes0 = 0, sum0 = 0;
    double t0;

    wl_init_stdout();
    if (argc < 2 || argc > 4)
        usage();
    if (argc >= 3 && (!parse_num(argv[2], &rounds) || rounds == 0))
        usage();
    if (argc == 4 && (!parse_num(argv[3], &work) || work == 0 || work > 1000000))
        usage();

    /* Strip trailing slashes so relative paths start right after DIR/. */
    rootlen = strlen(argv[1]);
    while (rootlen > 1 && argv[1][rootlen - 1] == '/')
        argv[1][--rootlen] = '\0';
    root = argv[1];
    if (rootlen == 0 || rootlen + 16 >= PATH_MAXLEN)
        usage();
    snprintf(outdir, sizeof outdir, "%s/../mixed-out", root);

    t0 = wl_now();
    for (uint64_t r = 0; r < rounds; r++) {
        uint64_t h = FNV64_OFFSET;

        if (mkdir(outdir, 0755) != 0 && errno != EEXIST)
            fail(outdir);
        for (size_t i = 0; i < nentries; i++)
            free(entries[i].rel);
        nentries = 0;
        total_bytes = 0;

        walk(root);

        sort_entries();
        for (size_t i = 0; i < nentries; i++) {
            h = fnv1a64(h, entries[i].rel, strlen(entries[i].rel) + 1);
            h = fnv1a64(h, &entries[i].hash, sizeof entries[i].hash);
        }
        if (r == 0) {
            files0 = nentries;
            bytes0 = total_bytes;
            sum0 = h;
        } else if (files0 != nentries || bytes0 != total_bytes || sum0 != h) {
            fprintf(stderr, "mixed: round %llu differs\n", (unsigned long long)r);
            return 1;
        }
    }

    printf("mixed: %llu files, %llu bytes, %llu rounds, checksum %016llx\n",
           (unsigned long long)files0, (unsigned long long)bytes0,
           (unsigned long long)rounds, (unsigned long long)sum0);
    wl_print_time(wl_now() - t0, 0);
    return 0;
}
