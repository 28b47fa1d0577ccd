/* File mappings: private copy-on-write, shared writes seen by read() and kept on the file.
   usage: mmaptest FILE */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) { perror("open"); return 1; }
    long size = lseek(fd, 0, SEEK_END);
    char *priv = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    unsigned long h = 0;
    for (long i = 0; i < size; i++) h = h * 31 + (unsigned char)priv[i];
    printf("size %ld hash %lx first '%.10s'\n", size, h, priv);
    memcpy(priv, "PRIVATE!", 8);
    char buf[16] = {0};
    pread(fd, buf, 8, 0);
    printf("private write: map '%.8s' file '%.8s'\n", priv, buf);
    char *shared = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    memcpy(shared + 4096, "SHARED!!", 8);
    msync(shared, size, MS_SYNC);
    pread(fd, buf, 8, 4096);
    printf("shared write seen by read: '%.8s'\n", buf);
    memcpy(shared + 8192, "UNSYNCED", 8);
    munmap(shared, size);
    munmap(priv, size);
    pread(fd, buf, 8, 8192);
    printf("after munmap: '%.8s'\n", buf);
    char *ro = mmap(0, 4096, PROT_READ, MAP_SHARED, fd, 0);
    printf("read-only shared map: '%.8s'\n", ro + 0);
    return 0;
}
