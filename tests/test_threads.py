"""Threads: glibc pthread programs and a Go program run in the guest exactly as natively (the same
static binary run on this host from a temporary directory), a multithreaded memory hog keeps its
data while the balloon and swap squeeze it, and threaded runs repeat exactly.

Every guest run has a virtual-time limit (Machine.stop_at, as `ballast run --timeout`), so a
broken wake-up fails the test instead of hanging the suite."""
import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from ballast_testlib import FIRMWARE, console_text
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.oracle import decode_wait_status
from vmm.swapdisk import make_swap_image

MiB = 1 << 20
GUEST_LIMIT_NS = 20 * 10**9           # virtual seconds: far above what any scenario needs
PTHREAD_SCENARIOS = ["mutex", "condvar", "barrier", "tls", "join", "many", "sigthread", "altstack",
                     "fatal", "cancel", "robust", "mainexit", "forkwait", "exec", "futex", "fs", "proc", "epoll"]


def native(tmp_path, name: str, args) -> tuple:
    """(wait status, stdout) of the binary run on this host, from a scratch directory, stdin a file."""
    exe = tmp_path / name
    shutil.copy(FIRMWARE / name, exe)
    stdin = tmp_path / "stdin"
    stdin.write_bytes(b"")
    with open(stdin, "rb") as f:
        proc = subprocess.run([str(exe), *args], cwd=tmp_path, stdin=f, capture_output=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
    rc = proc.returncode
    status = -rc if rc < 0 else rc << 8
    return status, proc.stdout.decode()


def guest(name, args, mem: int = 64 * MiB, cmdline: str = "", config=None, before_boot=None):
    """(wait status or None on the time limit, program output, machine facts) of a guest run of a
    firmware program by name, or of a program built by the test (a path)."""
    program = name if isinstance(name, Path) else FIRMWARE / name
    m = Machine(config or MachineConfig(mem=mem, cmdline=cmdline))
    try:
        m.load(program.read_bytes(), "/bin/" + program.name, list(args))
        m.stop_at(GUEST_LIMIT_NS, "timeout")
        if before_boot is not None:
            before_boot(m)
        status = m.boot()
        k = m.kernel
        facts = {"now_ns": m.clock.now_ns(), "icount": m.cpu.icount, "vmstat": k.vmstat_snapshot(),
                 "switches": k.scheduler.nr_switches, "preemptions": k.scheduler.preemptions,
                 "console": bytes(m.console_output), "stop_reason": m.stop_reason,
                 "actual": m.balloon.actual_pages if m.balloon is not None else None}
        return status, console_text(bytes(m.console_output)), facts
    finally:
        m.close()


def comparable(status: int) -> dict:
    d = decode_wait_status(status)
    d.pop("core_dumped", None)            # whether a core was written is the host's business
    return d


@pytest.mark.parametrize("scenario", PTHREAD_SCENARIOS)
def test_pthread_program_matches_native(tmp_path, scenario):
    want_status, want_out = native(tmp_path, "pthreads", [scenario])
    status, out, facts = guest("pthreads", [scenario])
    assert status is not None, f"{scenario}: the guest did not finish ({facts['stop_reason']})"
    assert out == want_out
    assert comparable(status) == comparable(want_status)


def test_pthread_scenarios_say_what_they_checked(tmp_path):
    """The native runs themselves show the behaviour the guest is held to (a guard against a
    scenario that would pass by printing nothing)."""
    outputs = {s: native(tmp_path, "pthreads", [s]) for s in ("fatal", "robust", "futex", "mainexit")}
    assert outputs["fatal"][0] == signal.SIGTERM
    assert "EOWNERDEAD" in outputs["robust"][1]
    assert "WAKE_OP set 5, cmp eq 0: 2" in outputs["futex"][1]
    assert outputs["mainexit"][0] == 3 << 8


GO_ARGS = ["all", "64"]                  # 64 MiB allocated by a guest of 24 MiB


def test_go_program_matches_native(tmp_path):
    want_status, want_out = native(tmp_path, "gothreads", GO_ARGS)
    status, out, facts = guest("gothreads", GO_ARGS, mem=24 * MiB)
    assert status is not None, facts["stop_reason"]
    assert "gc: allocated 64 MiB" in out and "done" in out
    assert out == want_out
    assert status == want_status == 0


def test_threaded_runs_repeat_exactly():
    runs = [guest("pthreads", ["condvar"]) for _ in range(2)]
    (s1, o1, f1), (s2, o2, f2) = runs
    assert s1 == s2 == 0 and o1 == o2
    for key in ("now_ns", "icount", "vmstat", "switches", "preemptions", "console"):
        assert f1[key] == f2[key], key
    assert f1["switches"] > 100                  # the threads really took turns


def test_threads_share_one_address_space_under_balloon_and_swap(tmp_path):
    """Three threads fill and check 14 MiB of one mm in a 24 MiB guest while the balloon takes
    7.5 MiB: pages go to swap and come back, and every thread reads every page intact."""
    image = make_swap_image(64 * MiB)
    try:
        config = MachineConfig(mem=24 * MiB, cmdline="swap=/dev/vda", disks=[DiskConfig(image)],
                               balloon_features=1)
        seen = {}

        def look(m):
            live = [t for t in m.kernel.tasks.values() if not t.exited]
            seen.update(threads=len(live), mms={id(t.mm) for t in live}, users=live[0].mm.users)

        def before_boot(m):
            m.clock.schedule(5_000_000, lambda: m.balloon.set_target_pages(1920))
            m.clock.schedule(20_000_000, lambda: look(m))
        status, out, facts = guest("thrhog", ["14", "3", "2"], config=config, before_boot=before_boot)
    finally:
        os.unlink(image)
    assert seen["threads"] == 3 and len(seen["mms"]) == 1 and seen["users"] == 3     # one mm, three users
    assert status == 0, facts["stop_reason"] or out
    assert out == "thrhog: 14 MiB, 3 threads, 2 passes, 3584 pages verified by each thread\n"
    assert facts["actual"] == 1920
    vm = facts["vmstat"]
    assert vm["pswpout"] > 1000 and vm["pswpin"] > 1000 and vm["oom_kill"] == 0


def test_go_runs_repeat_exactly():
    """The Go runtime reads the TSC (rdtsc/rdtscp: seeds, pacing); the machine answers it from the
    virtual clock, so a Go run repeats exactly too."""
    runs = [guest("gothreads", ["sleep"], mem=24 * MiB) for _ in range(2)]
    (s1, o1, f1), (s2, o2, f2) = runs
    assert s1 == s2 == 0 and "time.After fired" in o1 and o1 == o2
    for key in ("now_ns", "icount", "vmstat", "switches", "console"):
        assert f1[key] == f2[key], key


RDTSC = r'''
#include <stdio.h>
#include <x86intrin.h>
int main(void) {
    unsigned long long first = __rdtsc(), prev = first, now = 0;
    unsigned aux = 7;
    int monotonic = 1;
    for (int i = 0; i < 1000; i++) {
        now = i % 2 ? __rdtsc() : __rdtscp(&aux);
        monotonic &= now > prev;
        prev = now;
    }
    printf("rdtsc: 1001 reads, monotonic %d, aux %u, first %llu last %llu\n", monotonic, aux, first, now);
    return 0;
}
'''


def test_rdtsc_reads_the_virtual_clock(compile_c):
    exe = compile_c(RDTSC, "rdtsc", flags=("-static", "-O1"))
    outs = []
    for _ in range(2):
        m = Machine(MachineConfig(mem=32 * MiB))
        try:
            m.load(exe.read_bytes(), "/bin/rdtsc", [])
            assert m.boot() == 0
            outs.append(console_text(bytes(m.console_output)))
        finally:
            m.close()
    assert outs[0] == outs[1]                       # the host's TSC would differ between the runs
    assert "monotonic 1, aux 0," in outs[0]         # rdtscp: TSC_AUX is cpu 0


THREAD_BOMB = r'''
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
static char stack[4096];
int main(void) {
    long n = 0, r;
    for (;;) {
        r = syscall(SYS_clone, CLONE_VM | CLONE_SIGHAND | CLONE_THREAD, stack + sizeof stack, 0, 0, 0);
        if (r == 0) for (;;) syscall(SYS_pause);
        if (r < 0) break;
        n++;
    }
    dprintf(1, "clone stopped after %ld threads: %s\n", n, strerrorname_np(errno));
    syscall(SYS_exit_group, 0);
}
'''


def test_a_thread_bomb_meets_threads_max(compile_c):
    """Guest only (natively it would take the host's threads): clone fails with EAGAIN at threads-max,
    an eighth of RAM in kernel stacks, as Linux's copy_process."""
    exe = compile_c(THREAD_BOMB, "threadbomb", flags=("-static", "-O1"))
    status, out, _ = guest(exe, [])
    assert status == 0
    assert out.startswith("clone stopped after ") and out.endswith(" threads: EAGAIN\n")
    assert 100 < int(out.split()[3]) < 1000


MUSL_TURNS = r'''
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int turn, total;
static void *w(void *a) {
    int id = (int)(long)a;
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&m);
        while (turn != id) pthread_cond_wait(&c, &m);
        total += id; turn = (turn + 1) % 4;
        pthread_cond_broadcast(&c);
        pthread_mutex_unlock(&m);
    }
    return (void *)(long)(syscall(SYS_gettid) != getpid());
}
int main(void) {
    pthread_t t[4]; long ok = 0;
    for (long i = 0; i < 4; i++) pthread_create(&t[i], 0, w, (void *)i);
    for (int i = 0; i < 4; i++) { void *r; pthread_join(t[i], &r); ok += (long)r; }
    printf("musl: total %d, threads with their own tid %ld\n", total, ok);
    return 0;
}
'''


def test_musl_threads_take_turns_as_natively(compile_c, tmp_path):
    """musl's pthreads (clone, not clone3, with CLONE_DETACHED) and four threads that take strict
    turns through one condition variable: every turn is a futex wake of the right thread."""
    exe = compile_c(MUSL_TURNS, "musl_turns", cc="musl-gcc", flags=("-static", "-O1"))
    stdin = tmp_path / "stdin"
    stdin.write_bytes(b"")
    with open(stdin, "rb") as f:
        native_out = subprocess.run([str(exe)], cwd=tmp_path, stdin=f, capture_output=True, timeout=60).stdout.decode()
    status, out, _ = guest(exe, [], mem=32 * MiB)
    assert status == 0
    assert out == native_out == "musl: total 1200, threads with their own tid 4\n"


REPEATED_GP = r'''
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <ucontext.h>
static int n, traps[4];
static void h(int sig, siginfo_t *si, void *uc_) {
    ucontext_t *uc = uc_;
    traps[n++] = (int)uc->uc_mcontext.gregs[REG_TRAPNO];
    uc->uc_mcontext.gregs[REG_RIP] += 1;          /* skip the cli */
}
int main(void) {
    struct sigaction sa = {0}; sa.sa_sigaction = h; sa.sa_flags = SA_SIGINFO; sigaction(SIGSEGV, &sa, 0);
    for (int i = 0; i < 4; i++) __asm__ volatile("cli");
    printf("traps %d %d %d %d\n", traps[0], traps[1], traps[2], traps[3]);
    return 0;
}
'''


def test_every_general_protection_fault_is_one(compile_c, tmp_path):
    """Four `cli` at CPL 3, each a #GP (trap 13) that a SIGSEGV handler skips, as natively: the vCPU
    clears the exception Unicorn leaves in flight (without that, the second is a double fault and the
    third halts the CPU; the rdtsc answers above rely on it)."""
    exe = compile_c(REPEATED_GP, "repeated_gp", flags=("-static", "-O1"))
    stdin = tmp_path / "stdin"
    stdin.write_bytes(b"")
    with open(stdin, "rb") as f:
        native_out = subprocess.run([str(exe)], cwd=tmp_path, stdin=f, capture_output=True, timeout=60).stdout.decode()
    m = Machine(MachineConfig(mem=32 * MiB))
    try:
        m.load(exe.read_bytes(), "/bin/repeated_gp", [])
        assert m.boot() == 0
        out = console_text(bytes(m.console_output))
    finally:
        m.close()
    assert out == native_out == "traps 13 13 13 13\n"


PROCESS_ITIMERS = r'''
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <unistd.h>
static volatile int vt, prof;
static volatile int stop;
static void on_vt(int s) { vt++; }
static void on_prof(int s) { prof++; }
static void *spin(void *arg) { volatile unsigned long x = 0; while (!stop) x++; return 0; }
static void *syscalls(void *arg) { while (!stop) getppid(); return 0; }
int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_vt; sigaction(SIGVTALRM, &sa, 0);
    sa.sa_handler = on_prof; sigaction(SIGPROF, &sa, 0);
    pthread_t t;
    /* the main thread only waits: the timers count the other thread's time, for the process */
    struct itimerval it = {{0, 10000}, {0, 10000}}, off = {{0, 0}, {0, 0}}, left;
    setitimer(ITIMER_VIRTUAL, &it, 0);
    pthread_create(&t, 0, spin, 0);
    while (vt < 3) { struct timespec ts = {0, 1000000}; nanosleep(&ts, 0); }
    stop = 1; pthread_join(t, 0); stop = 0;
    setitimer(ITIMER_VIRTUAL, &off, &left);
    printf("SIGVTALRM from another thread's user time: %d\n", vt >= 3);
    /* ITIMER_PROF counts system time too: with a thread that lives in system calls, the same value
       runs out on ITIMER_PROF long before ITIMER_VIRTUAL */
    struct itimerval once = {{0, 0}, {0, 30000}};
    setitimer(ITIMER_PROF, &once, 0);
    setitimer(ITIMER_VIRTUAL, &once, 0);
    vt = 0;
    pthread_create(&t, 0, syscalls, 0);
    while (prof < 1) { struct timespec ts = {0, 1000000}; nanosleep(&ts, 0); }
    stop = 1; pthread_join(t, 0);
    printf("SIGPROF from another thread's system time, before SIGVTALRM: %d\n", prof == 1 && vt == 0);
    setitimer(ITIMER_VIRTUAL, &off, 0);
    getitimer(ITIMER_VIRTUAL, &left);
    printf("VIRTUAL disarmed: %d\n", left.it_value.tv_sec == 0 && left.it_value.tv_usec == 0);
    return 0;
}
'''


def test_cpu_time_itimers_count_the_whole_process(compile_c, tmp_path):
    """ITIMER_VIRTUAL and ITIMER_PROF are the process's (signal_struct): they fire on the time of any of
    its threads, here a thread spinning in user mode and one living in system calls while the main thread
    only sleeps; ITIMER_PROF counts system time. As natively."""
    exe = compile_c(PROCESS_ITIMERS, "process_itimers", flags=("-static", "-O1", "-pthread"))
    stdin = tmp_path / "stdin"
    stdin.write_bytes(b"")
    with open(stdin, "rb") as f:
        native_out = subprocess.run([str(exe)], cwd=tmp_path, stdin=f, capture_output=True, timeout=60).stdout.decode()
    status, out, facts = guest(exe, [], mem=32 * MiB)
    assert status == 0, facts["stop_reason"]
    assert out == native_out == ("SIGVTALRM from another thread's user time: 1\n"
                                 "SIGPROF from another thread's system time, before SIGVTALRM: 1\n"
                                 "VIRTUAL disarmed: 1\n")
