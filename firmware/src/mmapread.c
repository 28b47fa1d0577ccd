/*
 * mmapread FILE [PASSES]
 *
 * Maps the whole of FILE once with mmap(PROT_READ, MAP_SHARED) and, on
 * each of PASSES passes (default 1), reads the first byte of every 4096-byte
 * page (PAGES = ceil(size / 4096)), adding the byte values (0..255) into one
 * 64-bit sum that runs across all passes (so SUM = PASSES * per-pass sum).
 * The reads go through a volatile pointer, so every pass really touches
 * every page.  An empty file is not mapped (PAGES = 0, sum 0).
 *
 * Output on success (stdout, exit 0):
 *   mmapread: FILE PAGES pages x PASSES, sum %llu
 *   time: S s                   (ignore in comparisons)
 * Errors (stderr): bad arguments -> usage line, exit 2; open/fstat/mmap
 * failure -> message, exit 1.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workload.h"

#define PAGE_SIZE 4096ULL

static void usage(void)
{
    fprintf(stderr, "usage: mmapread FILE [PASSES]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    uint64_t passes = 1, pages, size, sum = 0;
    struct stat st;
    double t0;
    int fd;

    wl_init_stdout();
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
        for (uint64_t p = 0; p < passes; p++)
            for (uint64_t i = 0; i < pages; i++)
                sum += mem[i * PAGE_SIZE];
        munmap(m, size);
    }
    close(fd);

    printf("mmapread: %s %llu pages x %llu, sum %llu\n", argv[1],
           (unsigned long long)pages, (unsigned long long)passes,
           (unsigned long long)sum);
    wl_print_time(wl_now() - t0, 0);
    return 0;
}
