/* Unmasked floating-point exceptions: x87 (#MF at the next wait-form instruction) and SSE (#XM).
   The handler prints signo, si_code and the sigcontext's trap number. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>
static void h(int sig, siginfo_t *si, void *ctx){ ucontext_t *uc=ctx; dprintf(1, "sig %d code %d trapno %lld\n", sig, si->si_code, uc->uc_mcontext.gregs[REG_TRAPNO]); _exit(0);}
int main(int argc, char **argv) {
    struct sigaction sa; memset(&sa,0,sizeof sa); sa.sa_sigaction=h; sa.sa_flags=SA_SIGINFO; sigaction(SIGFPE,&sa,0);
    volatile double z = 0.0, one = 1.0; volatile long double lz = 0.0L, lone = 1.0L;
    unsigned short cw; unsigned int mxcsr;          /* unmask invalid and divide-by-zero */
    __asm__ volatile("fnstcw %0" : "=m"(cw)); cw &= ~0x5; __asm__ volatile("fldcw %0" :: "m"(cw));
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr)); mxcsr &= ~0x280; __asm__ volatile("ldmxcsr %0" :: "m"(mxcsr));
    if (argv[1][0] == 's') { volatile double r = one / z; (void)r; }
    else { volatile long double r = lone / lz; (void)r; __asm__ volatile("fwait"); }
    dprintf(1, "no fault\n");
    return 1;
}
