/* pair [-k SPIN] PROG1 ARG1 PROG2 ARG2: run both programs at once and wait for both; print
 * "pair: STATUS1 STATUS2" (the wait statuses). With -k, after starting them spin SPIN iterations
 * and SIGKILL the first one. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t start(char *prog, char *arg) {
    pid_t pid = fork();
    if (pid == 0) {
        execl(prog, prog, arg, (char *)0);
        _exit(127);
    }
    return pid;
}

int main(int argc, char **argv) {
    long spin = -1;
    int at = 1;
    if (argc > 2 && strcmp(argv[1], "-k") == 0) {
        spin = atol(argv[2]);
        at = 3;
    }
    if (argc - at != 4) {
        fprintf(stderr, "usage: pair [-k SPIN] PROG1 ARG1 PROG2 ARG2\n");
        return 2;
    }
    pid_t a = start(argv[at], argv[at + 1]);
    pid_t b = start(argv[at + 2], argv[at + 3]);
    if (spin >= 0) {
        for (volatile long i = 0; i < spin; i++)
            ;
        kill(a, SIGKILL);
    }
    int sa = 0, sb = 0;
    waitpid(a, &sa, 0);
    waitpid(b, &sb, 0);
    printf("pair: %d %d\n", sa, sb);
    return 0;
}
