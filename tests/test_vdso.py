"""The vDSO and the vsyscall page: glibc's and musl's time calls go through the vDSO (no system
call, seen by the guest's strace), read the same virtual clock as the system calls, and dietlibc-
style callers of the legacy vsyscall entries get what they get natively."""
import shutil
import subprocess

import pytest

from vmm.machine import Machine, MachineConfig

VDSO_PROGRAM = r"""
#include <elf.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* the vDSO's symbol NAME at version VERSION, as parse_vdso.c in Linux's selftests finds it */
static void *vdso_sym(const char *version, const char *name) {
    unsigned long base = getauxval(AT_SYSINFO_EHDR);
    if (!base) return 0;
    Elf64_Ehdr *eh = (Elf64_Ehdr *)base;
    Elf64_Phdr *ph = (Elf64_Phdr *)(base + eh->e_phoff);
    Elf64_Dyn *dyn = 0;
    for (int i = 0; i < eh->e_phnum; i++) if (ph[i].p_type == PT_DYNAMIC) dyn = (Elf64_Dyn *)(base + ph[i].p_offset);
    Elf64_Sym *sym = 0; const char *str = 0; Elf64_Word *hash = 0; Elf64_Versym *versym = 0; Elf64_Verdef *vd = 0;
    for (; dyn && dyn->d_tag; dyn++) {
        if (dyn->d_tag == DT_SYMTAB) sym = (Elf64_Sym *)(base + dyn->d_un.d_ptr);
        if (dyn->d_tag == DT_STRTAB) str = (const char *)(base + dyn->d_un.d_ptr);
        if (dyn->d_tag == DT_HASH) hash = (Elf64_Word *)(base + dyn->d_un.d_ptr);
        if (dyn->d_tag == DT_VERSYM) versym = (Elf64_Versym *)(base + dyn->d_un.d_ptr);
        if (dyn->d_tag == DT_VERDEF) vd = (Elf64_Verdef *)(base + dyn->d_un.d_ptr);
    }
    if (!sym || !str || !hash || !versym || !vd) return 0;
    for (Elf64_Word i = 0; i < hash[1]; i++) {
        if (strcmp(str + sym[i].st_name, name) || sym[i].st_shndx == SHN_UNDEF) continue;
        for (Elf64_Verdef *d = vd;; d = (Elf64_Verdef *)((char *)d + d->vd_next)) {
            Elf64_Verdaux *aux = (Elf64_Verdaux *)((char *)d + d->vd_aux);
            if (d->vd_ndx == (versym[i] & 0x7fff) && !strcmp(str + aux->vda_name, version))
                return (void *)(base + sym[i].st_value);
            if (!d->vd_next) break;
        }
    }
    return 0;
}

int main(void) {
    struct timespec a, b, c;
    clock_gettime(CLOCK_REALTIME, &a);
    syscall(SYS_clock_gettime, CLOCK_REALTIME, &b);
    clock_gettime(CLOCK_REALTIME, &c);
    long long na = a.tv_sec * 1000000000LL + a.tv_nsec, nb = b.tv_sec * 1000000000LL + b.tv_nsec,
              nc = c.tv_sec * 1000000000LL + c.tv_nsec;
    printf("realtime: vdso %lld sys %lld vdso %lld\n", na, nb, nc);
    struct timespec m1, m2;
    clock_gettime(CLOCK_MONOTONIC, &m1);
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &m2);
    printf("monotonic: vdso %lld sys %lld\n", m1.tv_sec * 1000000000LL + m1.tv_nsec,
           m2.tv_sec * 1000000000LL + m2.tv_nsec);
    struct timeval tv, tv2;
    gettimeofday(&tv, 0);
    syscall(SYS_gettimeofday, &tv2, 0);
    printf("gettimeofday: vdso %ld.%06ld sys %ld.%06ld\n", tv.tv_sec, tv.tv_usec, tv2.tv_sec, tv2.tv_usec);
    printf("time: vdso %ld sys %ld\n", (long)time(0), (long)syscall(SYS_time, 0));
    long (*getcpu)(unsigned *, unsigned *, void *) = vdso_sym("LINUX_2.6", "__vdso_getcpu");
    unsigned cpu = 99, node = 99;
    long r = getcpu ? getcpu(&cpu, &node, 0) : -1;
    printf("getcpu: found %d ret %ld cpu<ncpu %d node %u\n", getcpu != 0, r, cpu < 1024, node);
    printf("symbols: %d %d %d %d\n", vdso_sym("LINUX_2.6", "__vdso_clock_gettime") != 0,
           vdso_sym("LINUX_2.6", "__vdso_gettimeofday") != 0, vdso_sym("LINUX_2.6", "__vdso_time") != 0,
           vdso_sym("LINUX_2.6", "clock_gettime") != 0);
    return 0;
}
"""

VSYSCALL_PROGRAM = r"""
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
static sigjmp_buf jb;
static void on_segv(int sig) { (void)sig; siglongjmp(jb, 1); }
int main(void) {
    struct timeval tv = {0, 0};
    long r = ((long (*)(struct timeval *, void *))0xffffffffff600000UL)(&tv, 0);
    long t2 = 0, t = ((long (*)(long *))0xffffffffff600400UL)(&t2);
    unsigned cpu = 99, node = 99;
    long g = ((long (*)(unsigned *, unsigned *, void *))0xffffffffff600800UL)(&cpu, &node, 0);
    printf("gettimeofday %ld plausible %d time %ld agrees %d getcpu %ld cpu<ncpu %d node %u\n", r,
           tv.tv_sec > 1000000000, t > 1000000000, t == t2 && t - tv.tv_sec <= 1, g, cpu < 1024, node);
    signal(SIGSEGV, on_segv);
    if (sigsetjmp(jb, 1) == 0)
        printf("read the page: %d\n", *(volatile unsigned char *)0xffffffffff600000UL);
    else
        printf("reading the vsyscall page: SIGSEGV\n");
    return 0;
}
"""


def run_traced(binary, cmdline=""):
    trace = bytearray()
    m = Machine(MachineConfig(mem=64 << 20, cmdline=f"strace {cmdline}".strip()), debugcon_sink=trace.extend)
    try:
        m.load(binary.read_bytes(), "/bin/prog", [])
        status = m.boot()
        return status, m.console_output.decode(), trace.decode()
    finally:
        m.close()


def time_calls(trace: str) -> list:
    return [line for line in trace.splitlines()
            if any(f"] {name}(" in line for name in ("clock_gettime", "gettimeofday", "time"))]


def values(out: str) -> dict:
    return {line.split(":")[0]: line.split(":", 1)[1].split() for line in out.splitlines() if ":" in line}


def test_glibc_time_calls_use_the_vdso_and_agree_with_the_system_calls(compile_c):
    binary = compile_c(VDSO_PROGRAM, name="vdsotime")
    status, out, trace = run_traced(binary)
    assert status == 0, out
    v = values(out)
    # only the program's own syscall() calls enter the kernel: glibc's go through the vDSO
    assert len(time_calls(trace)) == 4, trace
    a, b, c = int(v["realtime"][1]), int(v["realtime"][3]), int(v["realtime"][5])
    assert a <= b <= c and b - a < 100_000          # the same clock, a syscall's cost apart
    m1, m2 = int(v["monotonic"][1]), int(v["monotonic"][3])
    assert m1 <= m2 < m1 + 100_000
    assert b - m2 == pytest.approx(1276473600 * 10**9, abs=1_000_000)   # CLOCK_REALTIME's epoch
    assert v["gettimeofday"][1].split(".")[0] == v["gettimeofday"][3].split(".")[0]
    assert v["time"][1] == v["time"][3]
    assert v["getcpu"] == ["found", "1", "ret", "0", "cpu<ncpu", "1", "node", "0"]
    assert v["symbols"] == ["1", "1", "1", "1"]
    # deterministic: the same run gives the same clock readings
    assert run_traced(binary)[1] == out
    # natively the program agrees on everything but the clock's values
    native = values(subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout)
    assert native["getcpu"][:4] == v["getcpu"][:4] and native["symbols"] == v["symbols"]


def test_without_the_vdso_glibc_makes_system_calls(compile_c):
    """vdso=0 (the mechanism off): no AT_SYSINFO_EHDR, so glibc's time calls become syscalls."""
    binary = compile_c(VDSO_PROGRAM, name="vdsotime")
    status, out, trace = run_traced(binary, "vdso=0")
    assert status == 0
    assert len(time_calls(trace)) == 4 + 5             # the program's four, and glibc's five
    assert "found 0" in out
    assert "[vdso]" not in out


@pytest.mark.skipif(shutil.which("musl-gcc") is None, reason="needs musl-gcc")
def test_musl_finds_the_vdso(compile_c):
    source = r"""
#include <stdio.h>
#include <time.h>
int main(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); printf("%d\n", t.tv_sec >= 0); return 0; }
"""
    binary = compile_c(source, name="muslclock", cc="musl-gcc", flags=("-static", "-O1"))
    status, out, trace = run_traced(binary)
    assert status == 0 and out == "1\n"
    assert time_calls(trace) == []
    assert time_calls(run_traced(binary, "vdso=0")[2]) != []


def test_vsyscall_entries_run_and_reading_the_page_faults_as_natively(compile_c):
    binary = compile_c(VSYSCALL_PROGRAM, name="vsyscall")
    native = subprocess.run([str(binary)], capture_output=True, text=True)
    status, out, _ = run_traced(binary)
    assert status == native.returncode << 8 == 0
    assert out == native.stdout
    assert "getcpu 0 cpu<ncpu 1 node 0" in out and "SIGSEGV" in out


def test_maps_show_vvar_vdso_and_vsyscall(compile_c):
    source = r"""
#include <stdio.h>
int main(void) { FILE *f = fopen("/proc/self/maps", "r"); char l[512];
  while (fgets(l, sizeof l, f)) fputs(l, stdout); return 0; }
"""
    binary = compile_c(source, name="maps")
    _, out, _ = run_traced(binary)
    names = [line[73:] for line in out.splitlines() if len(line) > 73]
    assert names[-4:] == ["[vvar]", "[vdso]", "[stack]", "[vsyscall]"]
    native = subprocess.run([str(binary)], capture_output=True, text=True).stdout
    assert out.splitlines()[-1] == [l for l in native.splitlines() if "[vsyscall]" in l][0]


EXACT = r"""
#include <stdio.h>
#include <time.h>
/* the vDSO's clock read, then at once clock_gettime(CLOCK_MONOTONIC) by syscall: from the cpuid
   to the syscall, 6 instructions retire (cpuid, 4 movs, syscall) */
long long clock_pair(struct timespec *ts);
__asm__(".globl clock_pair\nclock_pair:\n\tpush %rbx\n\tmov %rdi, %rsi\n\tmov $0x40000001, %eax\n"
        "\txor %ecx, %ecx\n\tcpuid\n\tmov %eax, %r8d\n\tmov %edx, %r9d\n\tmov $228, %eax\n\tmov $1, %edi\n"
        "\tsyscall\n\tmov %r9, %rax\n\tshl $32, %rax\n\tor %r8, %rax\n\tpop %rbx\n\tret\n");
int main(void) {
    for (int i = 0; i < 3; i++) {
        struct timespec ts;
        long long leaf = clock_pair(&ts);
        printf("%lld\n", ts.tv_sec * 1000000000LL + ts.tv_nsec - leaf);
    }
    return 0;
}
"""


def test_the_clock_leaf_is_the_syscalls_clock_to_the_instruction(compile_c):
    """The clock the vDSO reads and the one clock_gettime returns are the same function of virtual
    time: 6 instructions later (3 ns at CPI 1 and 2 GHz) plus the system call's modelled cost
    (syscall_ns) is the whole difference, every time."""
    binary = compile_c(EXACT, name="exactclock", flags=("-static", "-O1"))
    status, out, _ = run_traced(binary)
    assert status == 0
    from guestos.kernel.costs import CostModel
    assert out.split() == [str(CostModel().syscall_ns + 3)] * 3, out
