"""`strace` of the guest: the lines for the common calls are what real strace prints for the same
static binary run natively (addresses masked), every call is named, and tracing is deterministic."""
import re
import shutil
import subprocess

import pytest

from vmm import cli
from vmm.machine import Machine, MachineConfig

PROGRAM = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
static void on_usr1(int sig) { (void)sig; write(1, "usr1\n", 5); }
int main(void) {
    openat(AT_FDCWD, "/no/such/file", O_RDONLY | O_CLOEXEC);
    open("/no/such/dir/x", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(1, "hi\n\t\001\0012\"x\\", 11);
    int p[2];
    pipe(p);
    const char *msg = "a line longer than strace's thirty-two characters\n";
    write(p[1], msg, strlen(msg));
    char buf[100];
    read(p[0], buf, sizeof buf);
    lseek(p[0], -1, SEEK_CUR);
    close(p[1]);
    close(99);
    struct timespec ts = {0, 1000};
    nanosleep(&ts, NULL);
    signal(SIGINT, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    kill(getpid(), 0);
    signal(SIGUSR1, on_usr1);
    kill(getpid(), SIGUSR1);
    int q[2];
    pipe2(q, O_CLOEXEC);
    dup3(q[0], 9, O_CLOEXEC);
    pid_t child = fork();
    if (child == 0)
        _exit(5);
    int status;
    waitpid(child, &status, 0);
    syscall(157, 15, "x", 0, 0, 0);          /* prctl(PR_SET_NAME) */
    return 3;
}
"""
COMMON = ("openat(", "open(", "write(", "pipe(", "read(", "lseek(", "close(", "nanosleep(", "rt_sigaction(",
          "rt_sigprocmask(", "kill(", "pipe2(", "dup3(", "clone(", "wait4(", "exit_group(", "--- SIG", "rt_sigreturn(")


def normalize(line: str) -> str:
    line = re.sub(r"^(\[pid +\d+\] |\d+ +)", "", line)       # ours, and strace -f -o's prefix
    line = re.sub(r"0x[0-9a-f]{5,}", "ADDR", line)
    line = re.sub(r"^(kill|wait4)\(\d+,", r"\1(PID,", line)      # pids: 1 and 2 in the guest
    line = re.sub(r"si_pid=\d+", "si_pid=PID", line)
    line = re.sub(r"^(clone|wait4)(\(.*\) = )\d+$", r"\1\2PID", line)
    return re.sub(r"\)\s+= ", ") = ", line)


def join_resumed(lines: list) -> list:
    """strace -f splits a call another process interrupts: `wait4(-1,  <unfinished ...>` ...
    `<... wait4 resumed>[...], 0, NULL) = 2`; the guest has one CPU and prints each call whole."""
    pending, out = {}, []
    for line in lines:
        pid = line.split()[0]
        if line.endswith(" <unfinished ...>"):
            pending[pid] = line[:-len(" <unfinished ...>")]
            continue
        resumed = re.match(r"^(\d+) +<\.\.\. \w+ resumed>(.*)$", line)
        if resumed and pid in pending:
            head = pending.pop(pid)
            line = head + resumed.group(2)
        out.append(line)
    return out


def guest_trace(binary, cmdline="strace"):
    trace = bytearray()
    m = Machine(MachineConfig(mem=64 << 20, cmdline=cmdline), debugcon_sink=trace.extend)
    try:
        m.load(binary.read_bytes(), "/bin/prog", [])
        status = m.boot()
        return status, m.console_output, trace.decode()
    finally:
        m.close()


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    d = tmp_path_factory.mktemp("strace")
    (d / "prog.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-static", "-O0", "-o", str(d / "prog"), str(d / "prog.c")], check=True)
    return d / "prog"


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (.ci/run installs it)")
def test_common_calls_print_as_real_strace_prints_them(program, tmp_path):
    out = tmp_path / "native.trace"
    subprocess.run(["strace", "-f", "-o", str(out), str(program)], capture_output=True)
    text = join_resumed(out.read_text().splitlines())
    parent = text[0].split()[0]
    native = [normalize(line) for line in text if line.split()[0] == parent and normalize(line).startswith(COMMON)]
    status, _, trace = guest_trace(program)
    assert status == 3 << 8
    lines = trace.splitlines()
    # init and its child (its pid comes after the kernel threads', as in Linux)
    assert {line[:12] for line in lines} == {"[pid     1] ", "[pid     3] "}
    guest = [normalize(line) for line in lines if line.startswith("[pid     1] ") and normalize(line).startswith(COMMON)]
    # the guest makes the same calls from main(); glibc's start-up differs (no ld.so.cache, vDSO...)
    tail = guest[-len(native[-25:]):]
    assert tail == native[-25:], "\n".join(f"{g!r}\n{n!r}" for g, n in zip(tail, native[-25:]) if g != n)
    # the alignment is strace's: the result at column 40 when the call is shorter
    assert "[pid     1] close(99)                   = -1 EBADF (Bad file descriptor)" in lines


def test_unknown_calls_are_named_and_exit_is_reported(program):
    _, _, trace = guest_trace(program)
    lines = trace.splitlines()
    assert any(re.match(r"\[pid +1\] (prctl|syscall_0x9d)\(", line) for line in lines)
    assert lines[-2:] == ["[pid     1] exit_group(3)               = ?", "[pid     1] +++ exited with 3 +++"]


def test_tracing_is_deterministic_and_off_by_default(program):
    first, second = guest_trace(program), guest_trace(program)
    assert first == second
    status, console, trace = guest_trace(program, cmdline="")
    assert trace == "" and status == first[0] and console == first[1]


def test_without_a_debug_console_the_trace_goes_to_the_console(program):
    m = Machine(MachineConfig(mem=64 << 20, cmdline="strace"))
    try:
        m.load(program.read_bytes(), "/bin/prog", [])
        assert m.boot() == 3 << 8
        out = m.console_output.decode()
    finally:
        m.close()
    assert "[pid     1] exit_group(3)               = ?\n" in out and "usr1\n" in out


def test_cli_strace_to_stderr_and_to_a_file(program, tmp_path, capfd):
    assert cli.main(["run", "--strace", str(program)]) == 3
    captured = capfd.readouterr()
    assert "[pid     1] exit_group(3)" in captured.err and "exit_group" not in captured.out
    out = tmp_path / "t.txt"
    assert cli.main(["run", f"--strace={out}", str(program)]) == 3
    assert out.read_text().splitlines()[-1] == "[pid     1] +++ exited with 3 +++"
    assert cli.main(["run", "--strace=/no/such/dir/t", str(program)]) == 2
    assert capfd.readouterr().err.splitlines()[-1] == "ballast: --strace: directory '/no/such/dir' does not exist"


class _FakeCpu:
    def __init__(self, memory):
        self.memory = memory

    def user_segments(self, addr, length, write):
        return [(addr & 0xFFFF, length)] if self.memory else None

    def reg(self, name):
        return 0x7FFFFFFF0000


class _FakeKernel:
    def __init__(self, memory: bytes):
        class Hw:
            pass
        self.hw = Hw()
        self.hw.cpu = _FakeCpu(memory)
        self.hw.ram = (memory * (0x20000 // max(1, len(memory)) + 1))[:0x20000] if memory else b""


def test_decoding_never_fails_whatever_the_guest_passes():
    """Every decoder, on arbitrary registers and memory: a line, never an exception."""
    from hypothesis import given, settings, strategies as st

    from guestos.kernel.strace import Call, Strace, syscall_name

    lines = []

    register = st.one_of(st.integers(0, 64), st.integers(0x1000, 0xFFFFF), st.integers(0, (1 << 64) - 1),
                         st.sampled_from([0xFFFFFF9C, (1 << 64) - 100, 1 << 63]))

    @settings(max_examples=300, deadline=None)
    @given(nr=st.integers(0, 450), args=st.lists(register, min_size=6, max_size=6),
           memory=st.binary(max_size=64), ret=st.integers(-4095, (1 << 63) - 1))
    def check(nr, args, memory, ret):
        tracer = Strace(_FakeKernel(memory), lines.append)
        call = Call(tracer, type("T", (), {"pid": 7})(), nr, tuple(args))
        call.ret = ret
        line = tracer.line(call, tracer.format_args(call), tracer.format_result(call))
        assert line.startswith("[pid     7] ") and line.endswith("\n")
        assert (syscall_name(nr) or f"syscall_{nr:#x}") + "(" in line

    check()


def test_every_call_is_decoded_by_its_table_types():
    """Calls without a special decoder print by syscall_tbl's argument types (a path as a string, a
    descriptor as an int, a size unsigned, a pointer in hex), with the table's number of arguments;
    special decoders take as many arguments as the table says (futex: by its operation, as strace)."""
    from guestos.kernel.strace import DECODERS, TABLE_PRINTERS, Call, Strace
    from guestos.kernel.syscall_tbl import SYSCALLS

    for name, args in SYSCALLS.values():
        spec = DECODERS.get(name)
        if spec is not None and not callable(spec[0]) and name != "futex":
            assert len(spec[0]) == len(args), name
        assert len(TABLE_PRINTERS[name]) == len(args), name
    tracer = Strace(_FakeKernel(b"/some/path\0"), print)
    nr = next(nr for nr, (name, _) in SYSCALLS.items() if name == "fchownat")
    call = Call(tracer, type("T", (), {"pid": 7})(), nr, (0xFFFFFF9C, 11 * 372, 1000, (1 << 32) - 1, 0x100, 0))
    call.ret = 0
    assert tracer.format_args(call) == 'AT_FDCWD, "/some/path", 1000, 4294967295, 0x100'
    nr = next(nr for nr, (name, _) in SYSCALLS.items() if name == "mlock")
    call = Call(tracer, type("T", (), {"pid": 7})(), nr, (0x7F0000001000, 8192, 0, 0, 0, 0))
    call.ret = 0
    assert tracer.format_args(call) == "0x7f0000001000, 8192"


JOBS_PROGRAM = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 1) return 4;
    void *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(p, 8192);
    syscall(SYS_brk, 0);
    setpriority(PRIO_PROCESS, 0, 5);
    getpriority(PRIO_PROCESS, 0);
    gid_t groups[2] = {7, 3};
    setgroups(2, groups);
    struct itimerval it = {{0, 0}, {5, 0}}, old;
    setitimer(ITIMER_REAL, &it, &old);
    it.it_value.tv_sec = 0;
    setitimer(ITIMER_REAL, &it, NULL);
    pid_t child = fork();
    if (child == 0) { pause(); _exit(0); }
    kill(child, SIGSTOP);
    siginfo_t si;
    waitid(P_PID, child, &si, WSTOPPED);
    kill(child, SIGKILL);
    int status;
    wait4(child, &status, 0, NULL);
    child = fork();
    if (child == 0) execl("/proc/self/exe", "prog", "again", (char *)NULL);
    wait4(child, &status, 0, NULL);
    return 0;
}
"""
JOBS_CALLS = ("mmap(NULL", "munmap(", "brk(NULL", "setpriority(", "getpriority(", "setgroups(", "setitimer(",
              "kill(", "waitid(", "wait4(", "exit_group(")


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (.ci/run installs it)")
def test_job_calls_print_as_real_strace_prints_them(tmp_path):
    """mmap, munmap, brk, the priority, group, timer and wait calls, and exec'ing /proc/self/exe: the
    same lines as strace -f natively (pointers and pids masked)."""
    (tmp_path / "prog.c").write_text(JOBS_PROGRAM)
    prog = tmp_path / "prog"
    subprocess.run(["gcc", "-static", "-O1", "-o", str(prog), str(tmp_path / "prog.c")], check=True)
    out = tmp_path / "native.trace"
    subprocess.run(["strace", "-f", "-o", str(out), str(prog)], capture_output=True, stdin=subprocess.DEVNULL)
    native_lines = join_resumed(out.read_text().splitlines())
    parent = native_lines[0].split()[0]
    start = next(i for i, line in enumerate(native_lines) if "mmap(NULL, 8192" in line)
    native = [normalize(line) for line in native_lines[start:] if line.split()[0] == parent]
    native = [line for line in native if line.startswith(JOBS_CALLS)]
    status, _, trace = guest_trace(prog)
    assert status == 0
    lines = [normalize(line) for line in trace.splitlines() if line.startswith("[pid     1] ")]
    start = next(i for i, line in enumerate(lines) if line.startswith("mmap(NULL, 8192"))
    guest = [line for line in lines[start:] if line.startswith(JOBS_CALLS)]
    guest = [re.sub(r"^(waitid\(P_PID, )\d+", r"\1PID", line) for line in guest]
    native = [re.sub(r"^(waitid\(P_PID, )\d+", r"\1PID", line) for line in native]
    # si_utime/si_stime: CPU time (ours is virtual); strace adds a comment for the huge values
    guest = [re.sub(r", si_utime=.*\}", "}", line) for line in guest]
    native = [re.sub(r", si_utime=.*\}", "}", line) for line in native]
    assert guest == native, "\n".join(f"{g!r}\n{n!r}" for g, n in zip(guest, native) if g != n)
