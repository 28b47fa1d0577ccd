#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    if (argc > 2 && !strcmp(argv[1], "child")) { printf("child %s\n", argv[2]); return 7; }
    int p[2], st;
    pipe(p);
    pid_t pid = fork();
    if (pid == 0) { close(p[0]); dup2(p[1], 1); printf("hello through the pipe\n"); fflush(stdout); _exit(3); }
    close(p[1]);
    char buf[100]; int n = read(p[0], buf, sizeof buf - 1); buf[n < 0 ? 0 : n] = 0;
    printf("parent got: %s", buf);
    waitpid(pid, &st, 0); printf("child exit %d\n", WEXITSTATUS(st));
    int *x = malloc(4); *x = 1;
    pid = fork(); if (pid == 0) { *x = 2; _exit(*x); }
    waitpid(pid, &st, 0); printf("cow x=%d child=%d\n", *x, WEXITSTATUS(st));
    fflush(stdout);
    char *av[] = {argv[0], "child", "spawned", 0};
    if (posix_spawn(&pid, argv[0], 0, 0, av, environ)) printf("spawn failed\n");
    waitpid(pid, &st, 0); printf("spawn exit %d\n", WEXITSTATUS(st));
    fflush(stdout);
    pid = fork(); if (!pid) { char *av2[] = {argv[0], "child", "execd", 0}; execv(argv[0], av2); _exit(127); }
    waitpid(pid, &st, 0); printf("exec exit %d\n", WEXITSTATUS(st));
    pid = fork(); if (!pid) { *(volatile int *)0 = 1; }
    waitpid(pid, &st, 0); printf("signaled %d sig %d\n", WIFSIGNALED(st), WTERMSIG(st));
    return 0;
}
