/* Sequential read of PATH with BUFSIZE reads (default 64 KiB); prints bytes read and a
   checksum of one word per 4 KiB page, so the data is touched but hardly computed on.
   PASSES (default 1) reads it that many times, each through a new open.
   usage: vdread PATH [BUFSIZE] [PASSES] */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: vdread PATH [BUFSIZE] [PASSES]\n"); return 2; }
    size_t bufsize = argc > 2 ? strtoul(argv[2], 0, 0) : 65536;
    int passes = argc > 3 ? atoi(argv[3]) : 1;
    uint64_t *buf = aligned_alloc(4096, bufsize), total = 0, sum = 0;
    for (int p = 0; p < passes; p++) {
        int fd = open(argv[1], O_RDONLY);
        if (fd < 0) { perror(argv[1]); return 1; }
        ssize_t n;
        while ((n = read(fd, buf, bufsize)) > 0) {
            for (size_t i = 0; i < (size_t)n / 8; i += 512) sum += buf[i];
            total += n;
        }
        if (n < 0) { perror("read"); return 1; }
        close(fd);
    }
    printf("%llu bytes, sum %016llx\n", (unsigned long long)total, (unsigned long long)sum);
    return 0;
}
