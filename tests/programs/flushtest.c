/* Writes /a (fsynced) and /b (not), waits 40 s of guest time so the flusher writes /b back
   too, then spins so that the VMM can be killed. usage: flushtest */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    int a = open("/a", O_CREAT | O_WRONLY, 0644), b = open("/b", O_CREAT | O_WRONLY, 0644);
    write(a, "fsynced data\n", 13);
    fsync(a);
    write(b, "flushed by the flusher\n", 23);
    printf("synced\n");
    fflush(stdout);
    struct timespec t = {40, 0};
    nanosleep(&t, 0);
    printf("slept\n");
    fflush(stdout);
    for (;;) { }
}
