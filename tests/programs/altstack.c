/* sigaltstack(2) and SA_ONSTACK: what the calls return and report, where a handler runs, and the
   uc_stack its ucontext shows; printed relative to the alternate stack so runs compare. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

static char altstack[65536] __attribute__((aligned(16)));

static void show(const char *what, const stack_t *ss) {
    long sp = ss->ss_sp ? (char *)ss->ss_sp - altstack : -1;
    printf("%s: sp %ld flags %d size %zu\n", what, sp, ss->ss_flags, ss->ss_size);
}

static void on_usr1(int sig, siginfo_t *si, void *ctx) {
    ucontext_t *uc = ctx;
    char here;
    (void)si;
    printf("handler %d on altstack %d\n", sig, &here > altstack && &here <= altstack + sizeof altstack);
    show("uc_stack", &uc->uc_stack);
    stack_t now, other = {.ss_sp = altstack, .ss_size = 8192};
    sigaltstack(0, &now);
    show("inside", &now);
    int r = sigaltstack(&other, 0);
    printf("change while on it: %d errno %d\n", r, r ? errno : 0);
}

int main(void) {
    setvbuf(stdout, 0, _IONBF, 0);
    stack_t ss, old;
    sigaltstack(0, &old);
    show("initial", &old);
    ss = (stack_t){.ss_sp = altstack, .ss_size = 1024};
    int r = sigaltstack(&ss, 0);
    printf("too small: %d errno %d\n", r, errno);
    ss = (stack_t){.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 7};
    r = sigaltstack(&ss, 0);
    printf("bad flags: %d errno %d\n", r, errno);
    ss = (stack_t){.ss_sp = altstack, .ss_size = sizeof altstack};
    printf("set: %d\n", sigaltstack(&ss, &old));
    show("old", &old);
    sigaltstack(0, &old);
    show("now", &old);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGUSR1, &sa, 0);
    raise(SIGUSR1);
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, 0);
    raise(SIGUSR1);
    ss.ss_flags = SS_DISABLE;
    printf("disable: %d\n", sigaltstack(&ss, 0));
    sigaltstack(0, &old);
    show("disabled", &old);
    return 0;
}
