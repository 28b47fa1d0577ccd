/* Signal handlers: raise() to a handler, the FPU state kept across it, a SIGSEGV handler that
   siglongjmps out with the faulting address, SIG_IGN, and the default action at the end. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static sigjmp_buf env;
static volatile int got;
static void on_usr1(int sig) { got = sig; }
static void on_segv(int sig, siginfo_t *si, void *uc) { (void)uc; printf("SIGSEGV at %p code %d\n", si->si_addr, si->si_code); siglongjmp(env, 1); }
int main(void) {
    setvbuf(stdout, 0, _IONBF, 0);
    signal(SIGUSR1, on_usr1);
    raise(SIGUSR1);
    printf("handler ran: %d\n", got);
    double x = 1.5; for (int i = 0; i < 3; i++) { raise(SIGUSR1); x *= 1.25; }
    printf("float state kept: %.4f\n", x);
    struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_sigaction = on_segv; sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    if (!sigsetjmp(env, 1)) { *(volatile int *)0x1234 = 5; printf("not reached\n"); }
    printf("recovered\n");
    signal(SIGUSR1, SIG_IGN); raise(SIGUSR1); printf("ignored\n");
    signal(SIGUSR1, SIG_DFL); raise(SIGUSR1); printf("not reached either\n");
    return 0;
}
