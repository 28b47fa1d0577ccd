/* Prints MemTotal and MemFree, sleeps 2 s of guest time (the host inflates), prints them again,
   sleeps (the host deflates) and prints them a last time. */
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
static long field(const char *name) {
    char buf[4096]; int fd = open("/proc/meminfo", O_RDONLY); int n = read(fd, buf, sizeof buf - 1);
    close(fd); buf[n > 0 ? n : 0] = 0; char *p = strstr(buf, name); long v = -1;
    if (p) sscanf(p + strlen(name), ": %ld", &v); return v;
}
int main(void) {
    setvbuf(stdout, 0, _IONBF, 0);
    printf("before: MemTotal %ld MemFree %ld\n", field("MemTotal"), field("MemFree"));
    struct timespec t = {2, 0}; nanosleep(&t, 0);
    printf("inflated: MemTotal %ld MemFree %ld\n", field("MemTotal"), field("MemFree"));
    nanosleep(&t, 0);
    printf("deflated: MemTotal %ld MemFree %ld\n", field("MemTotal"), field("MemFree"));
    return 0;
}
