/* One CPU trap or privileged instruction per run: `traps CASE [handler]`.  With `handler`, a
   SA_SIGINFO handler prints the signal, si_code, si_addr, the interrupted RIP, and the sigcontext's
   trap number, error code and CR2 (addresses relative to the faulting instruction's label) and exits 0; without, the default action ends the program. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#define CASE(name, insns) \
    extern char name##_at[]; \
    static void name(void) { __asm__ volatile(".globl " #name "_at\n" #name "_at:\n\t" insns ::: "memory", "rax", "rcx", "rdx", "r11"); }

CASE(cli, "cli")
CASE(sti, "sti")
CASE(hlt, "hlt")
CASE(inb, "inb $0x80, %%al")
CASE(outb, "outb %%al, $0x80")
CASE(inb_dx, "mov $0x3f8, %%edx\n\t" ".globl inb_dx_insn\ninb_dx_insn: inb %%dx, %%al")
CASE(outb_dx, "mov $0x3f8, %%edx\n\t" ".globl outb_dx_insn\noutb_dx_insn: outb %%al, %%dx")
CASE(insb, "mov $0x80, %%edx\n\tlea -64(%%rsp), %%rdi\n\t" ".globl insb_insn\ninsb_insn: insb %%dx, (%%rdi)")
static char io_buf[64];
CASE(insl_regs, "movabs $0x1122334455667788, %%rax\n\tmov $3, %%ecx\n\tmov $0x80, %%edx\n\t"
                "lea io_buf(%%rip), %%rdi\n\t" ".globl insl_regs_insn\ninsl_regs_insn: rep insl %%dx, (%%rdi)")
CASE(rdmsr, "xor %%ecx, %%ecx\n\t" ".globl rdmsr_insn\nrdmsr_insn: rdmsr")
CASE(wrmsr, "xor %%ecx, %%ecx\n\txor %%eax, %%eax\n\txor %%edx, %%edx\n\t" ".globl wrmsr_insn\nwrmsr_insn: wrmsr")
CASE(read_cr3, "mov %%cr3, %%rax")
CASE(write_cr3, "xor %%eax, %%eax\n\t" ".globl write_cr3_insn\nwrite_cr3_insn: mov %%rax, %%cr3")
CASE(read_cr0, "mov %%cr0, %%rax")
CASE(lgdt, "lgdt -16(%%rsp)")
CASE(lidt, "lidt -16(%%rsp)")
CASE(invlpg, "invlpg (%%rsp)")
CASE(wbinvd, "wbinvd")
CASE(swapgs, "swapgs")
CASE(sysretq, "sysretq")
CASE(vmcall, "vmcall")
CASE(sysenter, "sysenter")
CASE(int3, "int3")
CASE(int_3, "int $3")
CASE(ud2, "ud2")
CASE(div0, "xor %%ecx, %%ecx\n\tmov $1, %%eax\n\txor %%edx, %%edx\n\t" ".globl div0_insn\ndiv0_insn: div %%ecx")
CASE(idiv_overflow, "mov $0x80000000, %%eax\n\tcdq\n\tmov $-1, %%ecx\n\t" ".globl idiv_overflow_insn\nidiv_overflow_insn: idiv %%ecx")
CASE(single_step, "pushfq\n\torq $0x100, (%%rsp)\n\tpopfq\n\t" ".globl single_step_insn\nsingle_step_insn: nop\n\tnop")
CASE(push_noncanonical, "mov %%rsp, %%rcx\n\tmovabs $0x8000000000000000, %%rax\n\tmov %%rax, %%rsp\n\t"
                       ".globl push_noncanonical_insn\npush_noncanonical_insn: push %%rax\n\tmov %%rcx, %%rsp")
CASE(load_noncanonical, "movabs $0x8000000000000000, %%rcx\n\t" ".globl load_noncanonical_insn\nload_noncanonical_insn: mov (%%rcx), %%rax")
CASE(int_0x81, "int $0x81")
CASE(read_kernel, "movabs $0xfffffe0000000000, %%rcx\n\t" ".globl read_kernel_insn\nread_kernel_insn: mov (%%rcx), %%rax")
CASE(clts, "clts")
CASE(lmsw, "xor %%eax, %%eax\n\t" ".globl lmsw_insn\nlmsw_insn: lmsw %%ax")
CASE(ltr, "xor %%eax, %%eax\n\t" ".globl ltr_insn\nltr_insn: ltr %%ax")
CASE(lldt, "xor %%eax, %%eax\n\t" ".globl lldt_insn\nlldt_insn: lldt %%ax")
CASE(invd, "invd")
CASE(xsetbv, "mov $7, %%eax\n\txor %%edx, %%edx\n\txor %%ecx, %%ecx\n\t" ".globl xsetbv_insn\nxsetbv_insn: xsetbv")
CASE(read_dr7, "mov %%dr7, %%rax")
CASE(write_dr7, "xor %%eax, %%eax\n\t" ".globl write_dr7_insn\nwrite_dr7_insn: mov %%rax, %%dr7")
CASE(rdpmc, "xor %%ecx, %%ecx\n\t" ".globl rdpmc_insn\nrdpmc_insn: rdpmc")
CASE(monitor, "lea -64(%%rsp), %%rax\n\txor %%ecx, %%ecx\n\txor %%edx, %%edx\n\t" ".globl monitor_insn\nmonitor_insn: monitor")
CASE(mwait, "xor %%eax, %%eax\n\txor %%ecx, %%ecx\n\t" ".globl mwait_insn\nmwait_insn: mwait")
CASE(int_0x0d, "int $0x0d")
CASE(int_1, "int $1")
CASE(int_4, "int $4")
CASE(icebp, ".byte 0xf1")
CASE(write_unmapped, "movl $1, 0x1234")
CASE(write_text, "lea write_text_at(%%rip), %%rcx\n\t" ".globl write_text_insn\nwrite_text_insn: movb $0, (%%rcx)")
/* not faults: a user program may load its own selectors (the CPU reads the GDT as a supervisor) */
CASE(segments, "mov $0x2b, %%eax\n\tmov %%eax, %%ds\n\tmov %%eax, %%es\n\tmov %%ss, %%eax\n\tmov %%eax, %%ss\n\t"
               "mov $0x33, %%ecx\n\tlsl %%ecx, %%eax\n\tlar %%ecx, %%eax")
/* nor these: unprivileged, or silently limited at CPL 3 */
CASE(user_ok, "cpuid\n\trdtscp\n\trdfsbase %%rax\n\t"
              "pushfq\n\tandq $~0x200, (%%rsp)\n\tpopfq\n\t"                  /* IF: ignored at IOPL 0 */
              "mov %%ss, %%eax\n\tpush %%rax\n\tlea 8(%%rsp), %%rax\n\tpush %%rax\n\tpushfq\n\t"
              "mov %%cs, %%eax\n\tpush %%rax\n\tlea 1f(%%rip), %%rax\n\tpush %%rax\n\tiretq\n"
              "1:\tmov %%cs, %%eax\n\tpush %%rax\n\tlea 2f(%%rip), %%rax\n\tpush %%rax\n\tlretq\n2:")

struct test { const char *name; void (*run)(void); const char *at; };
extern char insl_regs_insn[], inb_dx_insn[], outb_dx_insn[], insb_insn[], rdmsr_insn[], wrmsr_insn[], write_cr3_insn[], div0_insn[],
    idiv_overflow_insn[], single_step_insn[], lmsw_insn[], ltr_insn[], lldt_insn[], xsetbv_insn[], write_dr7_insn[],
    rdpmc_insn[], monitor_insn[], mwait_insn[], push_noncanonical_insn[], load_noncanonical_insn[], read_kernel_insn[], write_text_insn[];
#define T(name) {#name, name, name##_at}
#define TI(name) {#name, name, name##_insn}
static const struct test tests[] = {
    T(cli), T(sti), T(hlt), T(inb), T(outb), TI(inb_dx), TI(outb_dx), TI(insb), TI(insl_regs), TI(rdmsr), TI(wrmsr),
    T(read_cr3), TI(write_cr3), T(read_cr0), T(lgdt), T(lidt), T(invlpg), T(wbinvd), T(swapgs), T(sysretq),
    T(vmcall), T(sysenter), T(int3), T(int_3), T(ud2), TI(div0), TI(idiv_overflow), TI(single_step),
    TI(push_noncanonical), TI(load_noncanonical), T(int_0x81), TI(read_kernel), T(clts), TI(lmsw), TI(ltr), TI(lldt), T(invd), TI(xsetbv), T(read_dr7),
    TI(write_dr7), TI(rdpmc), TI(monitor), TI(mwait), T(int_0x0d), T(int_1), T(int_4), T(icebp), T(write_unmapped), TI(write_text), T(segments), T(user_ok),
};
static const char *label;

static void rel(char *out, size_t n, unsigned long v) {
    if (v == 0) snprintf(out, n, "0");
    else snprintf(out, n, "%+ld", (long)(v - (unsigned long)label));
}

static void on_signal(int sig, siginfo_t *si, void *ctx) {
    ucontext_t *uc = ctx;
    char addr[32], rip[32], cr2[32], line[200];
    rel(addr, sizeof addr, (unsigned long)si->si_addr);
    rel(rip, sizeof rip, (unsigned long)uc->uc_mcontext.gregs[REG_RIP]);
    rel(cr2, sizeof cr2, (unsigned long)uc->uc_mcontext.gregs[REG_CR2]);
    int len = snprintf(line, sizeof line, "signal %d code %d addr %s rip %s trapno %lld err %lld cr2 %s\n", sig,
                       si->si_code, addr, rip, (long long)uc->uc_mcontext.gregs[REG_TRAPNO],
                       (long long)uc->uc_mcontext.gregs[REG_ERR], cr2);
    write(1, line, len);
    if (label == insl_regs_insn) {     /* a faulting instruction changes no register */
        greg_t *g = uc->uc_mcontext.gregs;
        len = snprintf(line, sizeof line, "rax %llx rcx %lld rdi %+lld\n", (long long)g[REG_RAX], (long long)g[REG_RCX],
                       (long long)(g[REG_RDI] - (greg_t)io_buf));
        write(1, line, len);
    }
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (strcmp(argv[1], tests[i].name)) continue;
        label = tests[i].at;
        if (argc > 2) {
            static char altstack[65536];
            stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
            if (!strcmp(argv[2], "altstack")) sigaltstack(&ss, 0);
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = on_signal;
            sa.sa_flags = SA_SIGINFO | (!strcmp(argv[2], "altstack") ? SA_ONSTACK : 0);
            for (int s = 1; s < 32; s++) sigaction(s, &sa, 0);
        }
        write(1, "start\n", 6);
        tests[i].run();
        write(1, "no fault\n", 9);
        return 1;
    }
    return 2;
}
