/* Bad descriptors, paths and pointers: each call's errno, and /proc/meminfo before and after
   mapping a file. usage: errnotest FILE */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static long field(const char *name) {
    char buf[4096]; int fd = open("/proc/meminfo", O_RDONLY); int n = read(fd, buf, sizeof buf - 1);
    close(fd); buf[n > 0 ? n : 0] = 0;
    char *p = strstr(buf, name);
    long v = -1;
    if (p) sscanf(p + strlen(name), ": %ld", &v);
    return v;
}

#define TRY(expr) do { errno = 0; long r = (long)(expr); printf("%-40s -> %ld errno %d\n", #expr, r, r < 0 ? errno : 0); } while (0)

int main(int argc, char **argv) {
    char buf[16];
    struct stat st;
    TRY(read(99, buf, 1));
    TRY(write(-5, buf, 1));
    TRY(close(1234));
    TRY(open("/no/such/file", O_RDONLY));
    TRY(open("/data.bin/child", O_RDONLY));
    TRY(mkdir("/data.bin", 0755));
    TRY(stat("/nope", &st));
    TRY(read(open(argv[1], O_RDONLY), (void *)1, 10));
    TRY(open((char *)16, O_RDONLY));
    TRY(rmdir("/"));
    TRY(unlink("/missing"));
    TRY(lseek(-1, 0, SEEK_SET));
    int fd = open(argv[1], O_RDONLY);
    volatile long sum = 0;
    /* run every code path once first: the program's own text is mapped file pages too */
    char *p = mmap(0, 64 * 4096, PROT_READ, MAP_SHARED, fd, 0);
    for (int i = 0; i < 1; i++) sum += p[i * 4096];
    munmap(p, 64 * 4096);
    long before = field("Mapped");
    before = field("Mapped");
    p = mmap(0, 64 * 4096, PROT_READ, MAP_SHARED, fd, 0);
    for (int i = 0; i < 64; i++) sum += p[i * 4096];
    long after = field("Mapped");
    printf("Mapped grew by %ld kB\n", after - before);
    munmap(p, 64 * 4096);
    printf("Mapped back to %s\n", field("Mapped") == before ? "before" : "other");
    return 0;
}
