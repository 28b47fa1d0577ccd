/* Holds pages of every kind reclaim may not take from unmapped page-cache control: mapped file
   pages (a touched mapping of /data/mapped.bin), dirty page-cache pages (/tmp/dirty.bin, written,
   not synced) and anonymous memory. Prints "setup", sleeps, streams /data/stream.bin (clean,
   unmapped page cache), prints "holding", sleeps, and checks that everything still holds. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAPPED (16 << 20)
#define DIRTY (4 << 20)
#define ANON (16 << 20)

static void pause_s(int s) { struct timespec t = {s, 0}; nanosleep(&t, 0); }

int main(void) {
    setvbuf(stdout, 0, _IONBF, 0);
    int fd = open("/data/mapped.bin", O_RDONLY);
    unsigned char *map = mmap(0, MAPPED, PROT_READ, MAP_SHARED, fd, 0);
    unsigned long sum = 0;
    for (long i = 0; i < MAPPED; i += 4096) sum += map[i];
    int out = open("/tmp/dirty.bin", O_CREAT | O_TRUNC | O_WRONLY, 0644);
    static char block[65536];
    memset(block, 0x5a, sizeof block);
    for (long i = 0; i < DIRTY; i += sizeof block) write(out, block, sizeof block);
    unsigned char *anon = malloc(ANON);
    for (long i = 0; i < ANON; i += 4096) anon[i] = (unsigned char)(i >> 12);
    printf("setup\n");
    pause_s(1);
    int in = open("/data/stream.bin", O_RDONLY);
    static char buf[65536];
    while (read(in, buf, sizeof buf) > 0) {}
    printf("holding\n");
    pause_s(1);
    unsigned long again = 0;
    for (long i = 0; i < MAPPED; i += 4096) again += map[i];
    for (long i = 0; i < ANON; i += 4096) if (anon[i] != (unsigned char)(i >> 12)) return 3;
    printf("%s\n", again == sum ? "ok" : "mapped data changed");
    return again == sum ? 0 : 4;
}
