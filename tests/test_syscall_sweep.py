"""The system call sweep: every x86-64 system call number 0..334, 424..450 and some beyond, called from a
user program with hostile argument patterns, in the guest and natively.

Each call runs in a fresh forked child (a crash only ends that child) and reports its result through a
pipe; the parent prints one line per case. The guest must never end in an internal error or hang; for
every call Ballast implements its result must equal native Linux's (the same static binary run natively
in `unshare --pid --mount --net --ipc --uts` with a chroot into an empty directory); a call Ballast does
not implement must return ENOSYS.

Patterns: every register 0, 1, -1, 2**63 or a kernel address (0xffff888000000000), and one "valid pointer,
huge length" case: pointer arguments point at an 8 KiB buffer followed by an unmapped page, length-like
arguments (size_t, long, off_t...) are 2**62, int-like ones 0. The types come from the kernel's own
table (guestos/kernel/syscall_tbl.py), so the sweep also exercises the typed dispatch.

Eight more cases per call draw each register from edge values (0, 1, 2**31, 2**32 - 1, the top of the user
half, 2**63, -1, -100, the kernel address, a length of 2**62, the buffer and its last bytes), seeded.

The default run (CI) takes three patterns and one mixed case of every call; BALLAST_SWEEP=full runs all
six patterns and eight mixed cases (BALLAST_SWEEP_MIXED=N for N)."""
import os
import random
import re
import shutil
import subprocess

import pytest

from ballast_testlib import boot, console_text
from guestos.kernel.syscall_64 import SYSCALL_TABLE, arg_conversion
from guestos.kernel.syscall_tbl import SYSCALLS

M64 = (1 << 64) - 1
KERNEL_ADDR = 0xFFFF888000000000
HUGE = 1 << 62
BUF = 0xB0FFE4B0FFE40000          # marker: BUF + n becomes the valid buffer's address + n at run time
PATTERNS = {"zero": 0, "one": 1, "minus1": M64, "bit63": 1 << 63, "kernel": KERNEL_ADDR, "valid": None}
# "mixedK": each register drawn (seeded by call and K) from values that sit on the edges
# (the buffer's address only where a pointer goes: its low bits differ between the runs)
MIXED_POOL = (0, 1, 2, 3, 4096, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, (1 << 32) | 1, (1 << 47) - 4096, 1 << 47,
              1 << 63, M64, M64 - 99, KERNEL_ADDR, HUGE)
MIXED_POINTERS = MIXED_POOL + (BUF, BUF + 4093, BUF + 8191)
MIXED = tuple(f"mixed{k}" for k in range(int(os.environ.get("BALLAST_SWEEP_MIXED", "8"))))
CI_PATTERNS = ("minus1", "kernel", "valid", "mixed0")
ENOSYS = 38

EXTRA_NUMBERS = [335, 387, 400, 423, 451, 512, 1000, 0x40000000 | 39, (1 << 32) | 39, M64]
NUMBERS = sorted(SYSCALLS) + EXTRA_NUMBERS

# Never run natively (this host runs the test as root), for the reason given; the guest still runs them.
NATIVE_EXCLUDED = {
    **dict.fromkeys(("reboot", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
                     "swapon", "swapoff", "acct", "syslog", "vhangup", "quotactl", "quotactl_fd"),
                    "changes the host system"),
    **dict.fromkeys(("mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig",
                     "fsmount", "fspick", "mount_setattr", "unshare", "setns"), "changes mounts or namespaces"),
    **dict.fromkeys(("setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid",
                     "setfsgid", "setgroups", "capset"), "changes credentials"),
    **dict.fromkeys(("sethostname", "setdomainname", "settimeofday", "clock_settime", "adjtimex",
                     "clock_adjtime"), "changes host-wide settings"),
    **dict.fromkeys(("ptrace", "iopl", "ioperm", "modify_ldt", "personality", "prctl", "seccomp", "bpf",
                     "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "fanotify_init",
                     "fanotify_mark", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"),
                    "privileged or process-wide controls"),
    **dict.fromkeys(("unlink", "unlinkat", "rmdir", "rename", "renameat", "renameat2", "truncate", "chmod",
                     "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat", "link", "linkat", "symlink",
                     "symlinkat", "mknod", "mknodat", "mkdir", "mkdirat", "creat", "utime", "utimes",
                     "futimesat", "utimensat", "setxattr", "lsetxattr", "fsetxattr", "removexattr",
                     "lremovexattr", "fremovexattr"), "changes files by path"),
    **dict.fromkeys(("setpriority", "sched_setscheduler", "sched_setparam", "sched_setattr", "sched_setaffinity",
                     "ioprio_set", "setpgid", "migrate_pages", "move_pages", "process_vm_writev",
                     "process_madvise", "process_mrelease", "prlimit64", "set_mempolicy", "mbind",
                     "set_mempolicy_home_node"), "acts on another process (pid 1 is the sweep's parent)"),
}
# Not run at all: they sleep until a signal or a timeout that the patterns leave infinite
# (select/poll with no timeout, FUTEX_WAIT on a zero word, sigsuspend...), in both runs alike.
BLOCKING = {"pause", "rt_sigsuspend", "rt_sigtimedwait", "select", "pselect6", "poll", "ppoll", "epoll_wait",
            "epoll_pwait", "epoll_pwait2", "futex", "futex_waitv", "msgrcv", "msgsnd", "semop", "semtimedop",
            "mq_timedreceive", "mq_timedsend", "io_getevents", "io_pgetevents", "nanosleep", "clock_nanosleep",
            "wait4", "waitid", "accept", "accept4", "recvfrom", "recvmsg", "recvmmsg", "read", "readv", "pread64",
            "preadv", "preadv2"}
# calls that send signals are run only with signal 0 (kill(1, 1) would hang up the sweep's parent)
SIGNALLING = {"kill": 1, "tkill": 1, "tgkill": 2, "rt_sigqueueinfo": 1, "rt_tgsigqueueinfo": 2,
              "pidfd_send_signal": 1}
# results that name a process, an address or a time: compared as success/failure only
VALUE_VARIES = {"getpid", "getppid", "gettid", "brk", "mmap", "mremap", "time", "set_tid_address", "fork",
                "vfork", "clone", "clone3", "getpgrp", "getpgid", "getsid", "setsid", "getrandom", "times",
                "getcpu", "getrusage", "getpriority", "shmat", "shmget", "semget", "msgget", "getuid"}

# the blocking reads are safe where they cannot block: fd 0 is /dev/null natively and the console here
for name in ("read", "readv", "pread64", "preadv", "preadv2", "wait4", "waitid", "nanosleep", "clock_nanosleep"):
    BLOCKING.discard(name)


def _name(nr: int) -> str:
    """The call's name; a number with garbage above bit 31 is the call of its low half."""
    return SYSCALLS[nr][0] if nr in SYSCALLS else SYSCALLS[nr & 0xFFFFFFFF][0] + f"#{nr:#x}" \
        if nr & 0xFFFFFFFF in SYSCALLS else f"#{nr}"


def case_args(nr: int, pattern: str) -> tuple:
    """The six register values of one case."""
    if pattern.startswith("mixed"):
        rng = random.Random(f"{nr}/{pattern}")
        types = [t for t, _ in SYSCALLS.get(nr, ("", ()))[1]] + [""] * 6
        return tuple(rng.choice(MIXED_POINTERS if "*" in types[i] else MIXED_POOL) for i in range(6))
    value = PATTERNS[pattern]
    if value is not None:
        return (value,) * 6
    args = SYSCALLS.get(nr, ("", ()))[1]
    out = []
    for ctype, _ in args:
        bits, signed = arg_conversion(ctype)
        out.append(BUF if "*" in ctype or ctype.endswith("_t") and "cap_user" in ctype
                   else HUGE if bits == 64 else 0)
    return tuple(out) + (0,) * (6 - len(out))


# native results that depend on timing: clone(1, stack 1, ...) makes a child that crashes at once and
# sends SIGHUP (exit signal 1) to the caller, before or after it reports
RACY = {("clone", "one")}
FORKING = {"clone", "clone3", "fork", "vfork"}          # with random flags and stacks: racy natively


def skip_reason(nr: int, pattern: str, native: bool):
    name = _name(nr)
    if native and ((name, pattern) in RACY or pattern in MIXED and name in FORKING):
        return "timing-dependent natively"
    if name in BLOCKING:
        return "may block forever"
    if name in SIGNALLING:
        sig = case_args(nr, pattern)[SIGNALLING[name]] & 0xFFFFFFFF
        if sig:
            return "sends a signal"
    if native and name in NATIVE_EXCLUDED:
        return NATIVE_EXCLUDED[name]
    return None


SOURCE = r"""
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUF_MARK 0xB0FFE4B0FFE40000UL
struct sweep_case { int id; unsigned long nr, a[6]; };
static const struct sweep_case cases[] = {
%CASES%
};

static long raw_syscall(unsigned long nr, const unsigned long *a)
{
    long ret;
    register unsigned long r10 __asm__("r10") = a[3];
    register unsigned long r8 __asm__("r8") = a[4];
    register unsigned long r9 __asm__("r9") = a[5];
    __asm__ volatile ("syscall" : "=a"(ret) : "a"(nr), "D"(a[0]), "S"(a[1]), "d"(a[2]), "r"(r10), "r"(r8),
                      "r"(r9) : "rcx", "r11", "memory");
    return ret;
}

int main(void)
{
    /* fds 0-2 the same in both runs (natively /dev/null and pipes, in the guest the console): 0 the
       read end of a pipe without writers, 1 and 2 the write end of a pipe without readers; the
       results go to the original stdout, now fd 199 */
    struct rlimit files = {1024, 4096};           /* the guest's RLIMIT_NOFILE, natively too */
    setrlimit(RLIMIT_NOFILE, &files);
    int p0[2], p1[2];
    if (dup2(1, 199) != 199 || pipe(p0) != 0 || dup2(p0[0], 0) != 0 || pipe(p1) != 0 ||
        dup2(p1[1], 1) != 1 || dup2(p1[1], 2) != 2)
        return 2;
    close(p0[0]);
    close(p0[1]);
    close(p1[0]);                 /* writes to 1 and 2 fail with EPIPE (SIGPIPE ignored) */
    close(p1[1]);
    signal(SIGPIPE, SIG_IGN);
    /* the valid buffer: two pages, then an unmapped page, at the same address in both runs */
    char *buf = mmap((void *)0x200000000000UL, 3 * 4096, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (buf != (void *)0x200000000000UL)
        return 3;
    munmap(buf + 2 * 4096, 4096);
    char line[96];
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct sweep_case *c = &cases[i];
        unsigned long a[6];
        for (int j = 0; j < 6; j++)
            a[j] = c->a[j] - BUF_MARK < 8192 ? (unsigned long)buf + (c->a[j] - BUF_MARK) : c->a[j];
        int fds[2];
        if (pipe(fds) != 0 || dup2(fds[1], 200) != 200)
            return 2;
        close(fds[1]);
        pid_t child = fork();
        if (child == 0) {
            pid_t me = getpid();
            close(fds[0]);
            alarm(10);                                   /* natively: a call that blocks after all */
            long r = raw_syscall(c->nr, a);
            if (getpid() != me)                          /* the child of a fork-like call */
                _exit(0);
            write(200, &r, sizeof r);
            _exit(0);
        }
        close(200);
        int status = 0;
        waitpid(child, &status, 0);
        long r;
        int n;
        if (read(fds[0], &r, sizeof r) == sizeof r)
            n = snprintf(line, sizeof line, "%d r=%ld\n", c->id, r);
        else if (WIFSIGNALED(status))
            n = snprintf(line, sizeof line, "%d sig=%d\n", c->id, WTERMSIG(status));
        else
            n = snprintf(line, sizeof line, "%d exit=%d\n", c->id, WEXITSTATUS(status));
        close(fds[0]);
        write(199, line, n);
    }
    write(199, "sweep done\n", 11);
    return 0;
}
"""


def build_cases(patterns, native: bool):
    cases, skipped = [], {}
    for nr in NUMBERS:
        for pattern in patterns:
            reason = skip_reason(nr, pattern, native)
            if reason:
                skipped[(nr, pattern)] = reason
                continue
            cases.append((nr, pattern))
    return cases, skipped


def c_source(cases) -> str:
    rows = []
    for i, (nr, pattern) in enumerate(cases):
        args = ", ".join(f"{a:#x}UL" for a in case_args(nr, pattern))
        rows.append(f"    {{{i}, {nr:#x}UL, {{{args}}}}},")
    return SOURCE.replace("%CASES%", "\n".join(rows))


def parse(output: str) -> dict:
    results = {}
    for line in output.splitlines():
        m = re.fullmatch(r"(\d+) (r|sig|exit)=(-?\d+)", line.strip())
        if m:
            results[int(m.group(1))] = (m.group(2), int(m.group(3)))
    return results


def native_available() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("chroot") is not None


def run_native(binary, tmp_path) -> str:
    root = tmp_path / "native-root"
    root.mkdir()
    shutil.copy(binary, root / "sweep")
    proc = subprocess.run(["unshare", "--pid", "--mount", "--net", "--ipc", "--uts", "--fork", "--kill-child",
                           "chroot", str(root), "/sweep"], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=600)
    out = proc.stdout.decode(errors="replace")
    assert "sweep done" in out, proc.stderr.decode(errors="replace")[-2000:]
    return out


def same(name: str, guest, native) -> bool:
    if guest == native:
        return True
    (gk, gv), (nk, nv) = guest, native
    if gk == nk == "r" and name.split("#")[0] in VALUE_VARIES and (gv < 0) == (nv < 0) and (gv >= 0 or gv == nv):
        return True
    return False


def sweep(compile_c, tmp_path, patterns):
    cases, skipped = build_cases(patterns, native=False)
    binary = compile_c(c_source(cases), name="sweep")
    run = boot(binary.read_bytes(), name="sweep", mem=64 << 20)
    text = console_text(run.output)
    assert "internal error" not in run.output.decode(errors="replace")
    assert "sweep done" in text, (run.code, run.last_fatal, text[-2000:])
    guest = parse(text)
    assert len(guest) == len(cases)
    # without root (unshare, chroot) only the guest side is checked: no internal error, ENOSYS
    native_all = parse(run_native(binary, tmp_path)) if native_available() else None
    findings, compared, enosys, native_skipped = [], 0, 0, 0
    for i, (nr, pattern) in enumerate(cases):
        name = _name(nr)
        g = guest[i]
        if (nr & 0xFFFFFFFF) not in SYSCALL_TABLE:
            enosys += 1
            if g != ("r", -ENOSYS):
                findings.append(f"{name}({pattern}): guest {g}, expected ENOSYS")
            continue
        if skip_reason(nr, pattern, native=True) or native_all is None:
            native_skipped += 1
            continue
        compared += 1
        if not same(name, g, native_all[i]):
            findings.append(f"{name}({pattern}): guest {g}, native {native_all[i]}")
    counts = dict(numbers=len(NUMBERS), patterns=len(patterns), tried=len(cases), skipped=len(skipped),
                  compared=compared, enosys=enosys, native_skipped=native_skipped, findings=len(findings),
                  native=native_all is not None)
    return counts, findings


def test_syscall_sweep_ci(compile_c, tmp_path):
    """Three patterns and one mixed one of every call: the CI slice."""
    counts, findings = sweep(compile_c, tmp_path, CI_PATTERNS)
    print(counts)
    assert not findings, "\n".join([str(counts)] + findings)


@pytest.mark.skipif(os.environ.get("BALLAST_SWEEP") != "full", reason="the full sweep: BALLAST_SWEEP=full")
def test_syscall_sweep_full(compile_c, tmp_path):
    counts, findings = sweep(compile_c, tmp_path, tuple(PATTERNS) + MIXED)
    print(counts)
    assert not findings, "\n".join([str(counts)] + findings)
