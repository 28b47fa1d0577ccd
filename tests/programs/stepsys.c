/* Single-stepping (TF) across a system call: a trap after each instruction, none reported for the
   `syscall` itself (Linux masks TF for the call and the next trap follows the instruction after it),
   and the call does run (rax holds its result). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>
extern char after_mov[], after_syscall[], after_nop[];
static int hits;
static void h(int sig, siginfo_t *si, void *ctx){ ucontext_t *uc=ctx; long rip = uc->uc_mcontext.gregs[REG_RIP];
  const char *where = rip == (long)after_mov ? "after_mov" : rip == (long)after_syscall ? "after_syscall" : rip == (long)after_nop ? "after_nop" : "other";
  dprintf(1, "sig %d code %d at %s rax_is_pid %d\n", sig, si->si_code, where, uc->uc_mcontext.gregs[REG_RAX] == getpid());
  if (++hits > 5 || rip == (long)after_nop) uc->uc_mcontext.gregs[REG_EFL] &= ~0x100; }
int main(void) {
    struct sigaction sa; memset(&sa,0,sizeof sa); sa.sa_sigaction=h; sa.sa_flags=SA_SIGINFO; sigaction(SIGTRAP,&sa,0);
    __asm__ volatile("pushfq; orq $0x100,(%%rsp); popfq; mov $39, %%eax\n.globl after_mov\nafter_mov: syscall\n.globl after_syscall\nafter_syscall: nop\n.globl after_nop\nafter_nop: nop" ::: "rax","rcx","r11","memory");
    dprintf(1, "done\n");
    return 0;
}
