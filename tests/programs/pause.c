/* pause() until a signal: from alarm(), from a child (SIGCHLD), the default action of SIGALRM, and
   pause through int $0x80 (32-bit number 29). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
static void on_sig(int sig) { char m[32]; int n = snprintf(m, sizeof m, "handler %d\n", sig); write(1, m, n); }
int main(int argc, char **argv) {
    setvbuf(stdout, 0, _IONBF, 0);
    const char *mode = argc > 1 ? argv[1] : "alarm";
    signal(SIGALRM, on_sig);
    signal(SIGCHLD, on_sig);
    if (!strcmp(mode, "alarm")) {
        printf("alarm(2)=%u\n", alarm(2));
        printf("alarm(1)=%u\n", alarm(1));
        int r = pause();
        printf("pause=%d errno=%d\n", r, errno);
        printf("alarm(0)=%u\n", alarm(0));
    } else if (!strcmp(mode, "child")) {
        pid_t pid = fork();
        /* the child waits so that the parent is in pause() when SIGCHLD comes, natively too */
        if (pid == 0) { struct timespec t = {0, 100000000}; nanosleep(&t, 0); _exit(3); }
        int r = pause();
        printf("pause=%d errno=%d\n", r, errno);
        int st; waitpid(pid, &st, 0); printf("child status %d\n", WEXITSTATUS(st));
    } else if (!strcmp(mode, "default")) {
        signal(SIGALRM, SIG_DFL);
        alarm(1);
        pause();
        printf("not reached\n");
    } else if (!strcmp(mode, "int80")) {
        alarm(1);
        long ret;
        __asm__ volatile("int $0x80" : "=a"(ret) : "a"(29L) : "memory");
        printf("int80 pause=%ld\n", ret);
    }
    return 0;
}
