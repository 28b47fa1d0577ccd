"""The Linux ABI as static programs see it: compiled here with the system gcc, run as init."""
import shutil
import subprocess
from pathlib import Path

import pytest

from vmm.machine import Machine, MachineConfig

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

ABI_PROGRAM = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

int main(void) {
    char exe[256];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n < 0 ? 0 : n] = 0;
    printf("exe=%s\n", exe);
    long r = syscall(999);
    printf("unknown=%ld errno=%d\n", r, errno);
    r = syscall(999);
    struct utsname u;
    uname(&u);
    printf("sysname=%s machine=%s\n", u.sysname, u.machine);
    unsigned char rnd[8];
    getrandom(rnd, sizeof rnd, 0);
    printf("random=%02x%02x%02x%02x\n", rnd[0], rnd[1], rnd[2], rnd[3]);
    char *p = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(p, 7, 3 * 4096);
    printf("mprotect=%d\n", mprotect(p + 4096, 4096, PROT_READ));
    printf("read-after-mprotect=%d\n", p[4096]);
    printf("munmap=%d\n", munmap(p, 4096));
    madvise(p + 8192, 4096, MADV_DONTNEED);
    printf("after-dontneed=%d\n", p[8192]);
    void *b0 = sbrk(0);
    sbrk(1 << 20);
    memset(b0, 1, 1 << 20);
    printf("brk-grew=%d\n", (char *)sbrk(0) - (char *)b0 == (1 << 20));
    fflush(stdout);
    if (getenv("CRASH_RO")) p[4096] = 1;        /* write to read-only memory */
    if (getenv("CRASH_UNMAPPED")) p[0] = 1;     /* touch what munmap removed */
    return 0;
}
"""


@pytest.fixture(scope="module")
def abi_binary(tmp_path_factory):
    d = tmp_path_factory.mktemp("abi")
    (d / "abi.c").write_text(ABI_PROGRAM)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(d / "abi"), str(d / "abi.c")], check=True)
    return (d / "abi").read_bytes()


def boot(program: bytes, cmdline: str = "", mem: int = 128 << 20):
    m = Machine(MachineConfig(mem=mem, cmdline=cmdline))
    m.load(program, "/bin/abi", [])
    status = m.boot()
    return m, status


def test_abi_calls_behave_as_on_linux(abi_binary):
    m, status = boot(abi_binary)
    out = m.console_output.decode()
    assert status == 0, out
    assert "exe=/bin/abi\n" in out
    assert "unknown=-1 errno=38\n" in out                   # -ENOSYS
    assert "sysname=Linux machine=x86_64\n" in out
    assert "mprotect=0\nread-after-mprotect=7\nmunmap=0\n" in out
    assert "after-dontneed=0\n" in out                       # MADV_DONTNEED: anonymous reads zero
    assert "brk-grew=1\n" in out
    k = m.kernel
    assert k.unknown_syscalls == {999: 2}
    logged = [text for _, _, text in k.printk.log if "unknown system call 999" in text]
    assert len(logged) == 1                                  # logged once


def test_getrandom_is_deterministic_and_seeded(abi_binary):
    a = boot(abi_binary)[0].console_output
    b = boot(abi_binary)[0].console_output
    c = boot(abi_binary, "random.seed=42")[0].console_output
    line = lambda out: [ln for ln in out.decode().splitlines() if ln.startswith("random=")][0]
    assert line(a) == line(b)
    assert line(a) != line(c)


@pytest.mark.parametrize("env", ["CRASH_RO", "CRASH_UNMAPPED"])
def test_bad_writes_kill_with_sigsegv_and_the_kernel_survives(abi_binary, env):
    # the program reads its environment; our init's environment is fixed, so pass the
    # variable through a wrapper: rebuild with the getenv result forced on.
    m = Machine(MachineConfig(mem=128 << 20))
    m.load(abi_binary, "/bin/abi", [])
    k_env = [env.encode() + b"=1"]
    import guestos.kernel.main as kmain
    orig = kmain.load_elf_binary

    def with_env(k, task, inode, argv, envp):
        return orig(k, task, inode, argv, envp + k_env)

    kmain.load_elf_binary = with_env
    try:
        status = m.boot()
    finally:
        kmain.load_elf_binary = orig
    assert status & 0x7F == 11                               # SIGSEGV
    k = m.kernel
    signame, what, rip, insn = k.last_fatal
    assert signame == "SIGSEGV" and "write" in what and insn.startswith("mov")
    # every page went back: the kernel cleaned up after the dead process
    assert k.vmstat_snapshot()["nr_anon_pages"] == 0
    assert k.vmstat_snapshot()["nr_page_table_pages"] == 0


def test_preemption_is_deterministic():
    firmware = Path(__file__).resolve().parents[1] / "firmware" / "bin" / "compute"
    runs = []
    for _ in range(2):
        m = Machine(MachineConfig(mem=64 << 20, cmdline="sched_quantum=100000"))
        m.load(firmware.read_bytes(), "/bin/compute", ["300000"])
        assert m.boot() == 0
        runs.append((m.kernel.scheduler.preemptions, m.cpu.icount, m.clock.now_ns(), bytes(m.console_output)))
    assert runs[0] == runs[1]
    assert runs[0][0] >= 30                                  # 3.6M instructions in 100k slices


def test_host_frames_taken_back_are_detected():
    """The second stage: a frame the host no longer backs is reported when touched."""
    firmware = Path(__file__).resolve().parents[1] / "firmware" / "bin" / "hello"
    m = Machine(MachineConfig(mem=64 << 20))
    m.load(firmware.read_bytes(), "/bin/hello", [])
    import guestos.kernel.main as kmain
    orig = kmain.load_elf_binary
    taken = []

    def take_stack_frame(k, task, inode, argv, envp):
        orig(k, task, inode, argv, envp)
        paddr, _ = k.hw.cpu.walk(k.hw.cpu.reg("rsp"), "read")
        m.ram.discard(paddr >> 12)                         # the host reclaims it behind the guest's back
        m.cpu.flush_tlb()
        taken.append(paddr >> 12)

    kmain.load_elf_binary = take_stack_frame
    try:
        m.boot()
    finally:
        kmain.load_elf_binary = orig
    counters = m.cpu.native.counters()
    assert counters["backing_violations"] >= 1
    assert m.cpu.native.last_violation()[0] == taken[0]
