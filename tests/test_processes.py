"""Processes as static binaries expect them: fork with copy-on-write, posix_spawn's
clone(CLONE_VM|CLONE_VFORK), execve, wait4, pipes and dup2, and a child killed by a signal."""
import subprocess
from pathlib import Path

from ballast_testlib import REPO
from vmm.machine import Machine, MachineConfig

SOURCE = Path(__file__).resolve().parent / "programs" / "forktest.c"


def test_fork_exec_wait_pipe_match_native(compile_c):
    exe = compile_c(SOURCE.read_text(), "forktest", flags=("-static", "-O1"))
    native = subprocess.run([str(exe)], capture_output=True, cwd=REPO).stdout.decode()
    m = Machine(MachineConfig(mem=128 << 20))
    m.load(exe.read_bytes(), "/bin/forktest", [])
    status = m.boot()
    out = m.console_output.decode()
    assert status == 0, out
    program_lines = [ln for ln in out.splitlines() if not ln.startswith("[")]
    assert sorted(program_lines) == sorted(native.splitlines())
    assert "cow x=1 child=2" in program_lines                 # the child's write stayed its own
    k = m.kernel
    # the child killed by SIGSEGV was reported, and every process was reaped and freed
    assert any("segfault at 0" in text for _, _, text in k.printk.log)
    assert list(k.tasks) == [1]
    vmstat = k.vmstat_snapshot()
    assert vmstat["nr_anon_pages"] == 0 and vmstat["nr_page_table_pages"] == 0
    assert k.scheduler.nr_switches > 5
    m.close()


def test_signal_handlers_run_like_native(compile_c):
    exe = compile_c((Path(__file__).resolve().parent / "programs" / "sigtest.c").read_text(), "sigtest",
                    flags=("-static", "-O1"))
    native = subprocess.run([str(exe)], capture_output=True, cwd=REPO)
    m = Machine(MachineConfig(mem=64 << 20))
    m.load(exe.read_bytes(), "/bin/sigtest", [])
    status = m.boot()
    assert native.returncode == -10                          # killed by SIGUSR1 at the end
    assert status & 0x7F == 10
    assert m.console_output == native.stdout
    assert b"SIGSEGV at 0x1234 code 1" in m.console_output
    assert not any("segfault" in text for _, _, text in m.kernel.printk.log)   # handled: no report
    m.close()


SIGCHLD_PROGRAM = r"""
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile int children;
static void on_chld(int sig) { (void)sig; children++; }
int main(void) {
    setvbuf(stdout, 0, _IONBF, 0);
    signal(SIGCHLD, on_chld);
    for (int i = 0; i < 3; i++) { pid_t p = fork(); if (!p) _exit(i); int st; waitpid(p, &st, 0); }
    printf("SIGCHLD handled %d times\n", children);
    return 0;
}
"""


def test_parent_gets_sigchld(compile_c):
    exe = compile_c(SIGCHLD_PROGRAM, "sigchld", flags=("-static", "-O1"))
    m = Machine(MachineConfig(mem=64 << 20))
    m.load(exe.read_bytes(), "/bin/sigchld", [])
    assert m.boot() == 0
    assert m.console_output == b"SIGCHLD handled 3 times\n"
    m.close()
