/* Writes COUNT bytes of BYTE at OFFSET of PATH with pwrite, optionally fsyncs, reads them
   back, and optionally spins forever so that a test can kill the VMM at that moment.
   usage: vdwrite PATH OFFSET BYTE COUNT [fsync] [spin] */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: vdwrite PATH OFFSET BYTE COUNT [fsync] [spin]\n"); return 2; }
    long offset = strtol(argv[2], 0, 0), count = strtol(argv[4], 0, 0);
    int byte = (int)strtol(argv[3], 0, 0), do_fsync = 0, spin = 0;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "fsync")) do_fsync = 1;
        if (!strcmp(argv[i], "spin")) spin = 1;
    }
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) { printf("open: errno %d\n", errno); return 1; }
    char *buf = malloc(count), *back = malloc(count);
    memset(buf, byte, count);
    ssize_t n = pwrite(fd, buf, count, offset);
    if (n != count) { printf("pwrite: %zd errno %d\n", n, errno); return 1; }
    if (do_fsync && fsync(fd) != 0) { printf("fsync: errno %d\n", errno); return 1; }
    if (pread(fd, back, count, offset) != count || memcmp(buf, back, count)) { printf("readback differs\n"); return 1; }
    printf(do_fsync ? "synced\n" : "written\n");
    fflush(stdout);
    while (spin) { }
    return 0;
}
