"""A task that waits inside the kernel (for its disk read, a write, a reclaim nap) sleeps
uninterruptibly on its own kernel stack while other tasks and kernel threads run, and goes on from
where it waited (guestos/kernel/sched.py: io_schedule); direct reclaim naps in congestion_wait
between priorities as 2.6.35's do_try_to_free_pages; the series' pass in kswapd yields per batch."""
from pathlib import Path

import pytest

from guestos.fs.proc import NS_PER_TICK, _render_stat
from guestos.kernel import exit as kexit
from guestos.kernel import syscall_64
from guestos.kernel.sched import Scheduler
from guestos.mm import vmscan
from tests.ballast_testlib import boot, firmware
from vmm.machine import MachineConfig
from vmm.rootfs import builtin_root
from vmm.session import GuestSession

MiB = 1 << 20
PROGRAMS = Path(__file__).resolve().parent / "programs"
COMPUTE = "30000000"                     # ~200 ms of virtual CPU time


@pytest.fixture(scope="module")
def root(compile_c):
    exe = compile_c((PROGRAMS / "pair.c").read_text(), "pair", flags=("-static", "-O1"))
    return builtin_root({"pair": exe.read_bytes()})


def guest(root, cmdline="", mem=64):
    return GuestSession(MachineConfig(mem=mem * MiB, cmdline=cmdline), root=root).start()


def record(k):
    """Log every switch_to [(pid, kthread, ns, retired instructions)] and every sleep inside the
    kernel [(pid, start ns, end ns)]."""
    sched, clock = k.scheduler, k.hw.clock
    switches, sleeps = [], []
    switch_to, io_schedule = sched.switch_to, sched.io_schedule

    def logged_switch(task):
        switches.append((task.pid, task.kthread, clock.now_ns(), clock.instructions))
        switch_to(task)

    def logged_sleep(condition):
        pid, start = sched.current.pid, clock.now_ns()
        io_schedule(condition)
        sleeps.append((pid, start, clock.now_ns()))
    sched.switch_to, sched.io_schedule = logged_switch, logged_sleep
    return switches, sleeps


def others_ran_within(switches, pid, start_ns, end_ns) -> bool:
    """A user task other than pid got the CPU between start and end and retired instructions there."""
    for (who, kthread, at, icount), (_, _, _, next_icount) in zip(switches, switches[1:]):
        if start_ns <= at < end_ns and not kthread and who not in (0, pid) and next_icount > icount:
            return True
    return False


def timed_run(root, argv, **kw):
    """(virtual ns the program took, the kernel, switches, sleeps)."""
    with guest(root, **kw) as s:
        k = s.machine.kernel
        switches, sleeps = record(k)
        start = s.virtual_ns()
        result = s.run(argv)
        assert result.exit_code == 0, result.output
        k.scheduler.account()
        return s.virtual_ns() - start, k, switches, sleeps, result.output


READER = ["/bin/seqread", "/data/stream.bin"]
PAIR = ["/bin/pair", *READER, "/bin/compute", COMPUTE]


def test_a_cpu_bound_task_runs_while_a_reader_waits_for_its_disk(root):
    """A cold 64 MiB read beside a CPU-bound task: while the reader sleeps in read() for its disk,
    the other task computes; the pair takes less virtual time than the two one after the other, and
    the idle time the reader alone leaves (iowait in /proc/stat) is mostly filled."""
    reader_ns, k, _, sleeps, _ = timed_run(root, READER)
    reader_iowait = k.scheduler.iowait_ns
    assert sleeps and reader_iowait > 0
    user, nice, system, idle, iowait = (int(v) for v in _render_stat(k, None).split()[1:6])
    assert iowait == reader_iowait // NS_PER_TICK > 0
    assert abs((user + system + idle + iowait) * NS_PER_TICK - k.hw.clock.now_ns()) < 5 * NS_PER_TICK
    compute_ns, *_ = timed_run(root, ["/bin/compute", COMPUTE])
    pair_ns, k, switches, sleeps, output = timed_run(root, PAIR)
    assert "pair: 0 0" in output
    # the compute task ran while the reader slept inside its read
    overlapped = [s for s in sleeps if others_ran_within(switches, *s)]
    assert len(overlapped) > len(sleeps) // 2
    # so the pair took less than the sum, by most of the reader's own iowait, and left little idle
    assert pair_ns < reader_ns + compute_ns - reader_iowait // 2
    assert k.scheduler.iowait_ns < reader_iowait // 4


def test_tasks_sleeping_in_the_kernel_run_the_same_every_time(root):
    runs = []
    for _ in range(2):
        ns, k, switches, sleeps, output = timed_run(root, PAIR)
        runs.append((ns, output, switches, sleeps, k.vmstat_snapshot(), k.scheduler.iowait_ns,
                     sorted((t.pid, t.instructions, t.stime_ns) for t in k.tasks.values())))
    assert runs[0] == runs[1]


def test_a_task_killed_while_it_sleeps_in_the_kernel_dies_when_it_comes_out(root, monkeypatch):
    """pair SIGKILLs the reader while the reader sleeps in read() (the parent runs only then or
    between slices): the reader's exit waits until its read is over; then it dies of SIGKILL."""
    deferred = []
    exit_with_status = kexit.exit_with_status

    def logged(k, task, status):
        if task.in_kernel_sleep:
            deferred.append(task.pid)
        exit_with_status(k, task, status)
    monkeypatch.setattr(kexit, "exit_with_status", logged)
    with guest(root) as s:
        result = s.run(["/bin/pair", "-k", "2000000", *READER, "/bin/compute", "1000"])
        k = s.machine.kernel
        assert result.exit_code == 0
        assert "pair: 9 0" in result.output            # killed by SIGKILL; the other exited 0
        assert deferred
        assert all(k.find_task(pid) is None for pid in deferred)      # reaped by pair
        assert not k.scheduler.blocked


def test_a_direct_reclaimer_naps_in_congestion_wait_and_another_task_runs_then(root, monkeypatch):
    """memhog fills a 48 MiB guest with kswapd kept asleep: its own reclaim passes fail toward the
    OOM kill, napping HZ/10 between the low priorities (do_try_to_free_pages) and HZ/50 between
    retries (__alloc_pages_slowpath); the CPU-bound task beside it runs in those naps."""
    naps = []
    with guest(root, mem=48) as s:
        k = s.machine.kernel
        k.page_alloc.wake_kswapd = lambda *args, **kwargs: None
        switches, _ = record(k)
        congestion_wait = k.congestion_wait

        def logged(timeout_ns):
            pid, start = k.scheduler.current.pid, k.hw.clock.now_ns()
            congestion_wait(timeout_ns)
            naps.append((pid, start, k.hw.clock.now_ns(), timeout_ns))
        k.congestion_wait = k.page_alloc.congestion_wait = logged
        result = s.run(["/bin/pair", "/bin/memhog", "64M", "/bin/compute", COMPUTE])
        assert result.exit_code == 0
        assert "pair: 9 0" in result.output             # memhog was OOM-killed, compute finished
    assert {timeout for *_, timeout in naps} >= {vmscan.HZ_NS // 10}
    assert any(others_ran_within(switches, pid, start, end) for pid, start, end, _ in naps)


def test_the_series_pass_in_kswapd_yields_between_batches(root, monkeypatch):
    """unmapped_page_control (v4): kswapd's pass over unmapped page cache is preemptible after each
    SWAP_CLUSTER_MAX batch, like the rest of its work: the reader runs between two batches of one pass."""
    batches = []                                        # (pass, ns) after each batch of the series' pass
    shrink_zone_batches = vmscan.shrink_zone_batches

    def logged(k, sc):
        for step in shrink_zone_batches(k, sc):
            if sc.policy == "unmapped":
                batches.append((id(sc), k.hw.clock.now_ns()))
            yield step
    monkeypatch.setattr(vmscan, "shrink_zone_batches", logged)
    with guest(root, "unmapped_page_control sched_quantum=20000", mem=128) as s:
        k = s.machine.kernel
        switches, _ = record(k)
        assert s.run(READER).exit_code == 0
        assert k.vmstat["pgsteal_unmapped"] > 0
    pairs = [(a[1], b[1]) for a, b in zip(batches, batches[1:]) if a[0] == b[0]]
    assert pairs and any(others_ran_within(switches, k.kswapd_task.pid, a, b) for a, b in pairs)


def test_a_task_asleep_in_the_kernel_that_nothing_can_wake_panics(monkeypatch):
    """getppid made to wait for a condition that never comes: nothing else can run or wake it."""
    def never(k, task, *args):
        k.wait_event(lambda: False)
        return 0
    monkeypatch.setitem(syscall_64.SYSCALL_ENTRIES, 110, never)
    run = boot(firmware("syscalls"))
    assert b"Kernel panic - not syncing: waiting for an event that can never come" in run.output
