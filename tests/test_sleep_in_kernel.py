"""A task that waits inside the kernel (for its disk read, a write, a reclaim nap) sleeps
uninterruptibly on its own kernel stack while other tasks and kernel threads run, and goes on from
where it waited (guestos/kernel/sched.py: io_schedule); direct reclaim naps in congestion_wait
between priorities as 2.6.35's do_try_to_free_pages; the series' pass in kswapd yields per batch."""
from pathlib import Path

import greenlet
import pytest

from guestos.fs.proc import NS_PER_TICK, _render_stat
from guestos.kernel import exit as kexit
from guestos.kernel import syscall_64
from guestos.kernel.sched import Scheduler
from guestos.mm import vmscan
from tests.ballast_testlib import boot, firmware
from vmm.errors import MachineStopped
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


# --- idling in place: a lone sleeper waits on its own stack (Scheduler.idle_in_place) ---

def fingerprint(root, argv, **kw):
    """Everything the scheduler's accounting shows after a run: every switch_to and sleep with the
    clock and idle time then, /proc/stat, vmstat, iowait, per-task times, output."""
    with guest(root, **kw) as s:
        k = s.machine.kernel
        sched, clock = k.scheduler, k.hw.clock
        log = []
        switch_to, idle = sched.switch_to, sched.idle

        def logged_switch(task):
            log.append(("switch", task.pid, clock.now_ns(), clock.instructions, clock.idle_ns, sched.iowait_ns))
            switch_to(task)

        def logged_idle():
            log.append(("idle", clock.now_ns(), len(sched.runqueue), len(sched.blocked), len(sched.sleeping)))
            idle()
        io_schedule = sched.io_schedule

        def logged_sleep(condition):
            pid, start = sched.current.pid, clock.now_ns()
            io_schedule(condition)
            log.append(("sleep", pid, start, clock.now_ns(), clock.instructions))
        sched.switch_to, sched.idle, sched.io_schedule = logged_switch, logged_idle, logged_sleep
        stacks = []                                         # greenlet switches while the program runs
        greenlet.settrace(lambda event, args: stacks.append(event) if event in ("switch", "throw") else None)
        try:
            result = s.run(argv)
        finally:
            greenlet.settrace(None)
        sched.account()
        return dict(output=result.output, status=result.status, ns=s.virtual_ns(), log=log,
                    stat=_render_stat(k, None), vmstat=k.vmstat_snapshot(), iowait=sched.iowait_ns,
                    switches=sched.nr_switches, preemptions=sched.preemptions, swapper=sched.swapper.stime_ns,
                    tasks=sorted((t.pid, t.instructions, t.stime_ns, t.nr_uninterruptible_sleeps)
                                 for t in list(k.tasks.values()) + sched.kthreads)), len(stacks)


def test_a_lone_sleeper_idles_on_its_own_stack_and_everything_counts_the_same(root, monkeypatch):
    """The reader alone: its ~550 disk waits idle on its own kernel stack (a handful of stack switches
    in the whole run instead of two per wait); the switches, idle and iowait time, /proc/stat, vmstat
    and every task's times are those of the scheduler's own stack (idle_in_place turned off)."""
    in_place, stack_switches = fingerprint(root, READER)
    sleeps = sum(1 for event in in_place["log"] if event[0] == "sleep")
    assert sleeps > 500 and in_place["iowait"] > 0
    assert stack_switches < sleeps // 10
    monkeypatch.setattr(Scheduler, "idle_in_place", lambda self, task: False)
    on_scheduler_stack, switches_off = fingerprint(root, READER)
    assert switches_off > 2 * sleeps
    assert in_place == on_scheduler_stack


def test_a_sleeper_that_another_task_can_follow_leaves_the_cpu_as_before(root, monkeypatch):
    """Reader and CPU-bound task: while the reader waits, the other task becomes runnable (the pair's
    start, its slices, the kill); the switch order, times and counters are those without idling in place."""
    runs = []
    for argv in (PAIR, ["/bin/pair", "-k", "2000000", *READER, "/bin/compute", "1000"]):
        runs.append(fingerprint(root, argv)[0])
    monkeypatch.setattr(Scheduler, "idle_in_place", lambda self, task: False)
    for argv, before in zip((PAIR, ["/bin/pair", "-k", "2000000", *READER, "/bin/compute", "1000"]), runs):
        assert fingerprint(root, argv)[0] == before


def test_what_runs_while_a_task_idles_in_place_cannot_sleep_on_its_stack(root):
    """A host event (a device completion, a session poll) that falls due while a task idles on its own
    stack runs there, but it is the scheduler's work: the task's stack is not a place to sleep in then
    (wait_event would nest a second sleep of the same task)."""
    seen = []
    with guest(root) as s:
        k = s.machine.kernel
        clock = s.machine.clock

        def look():
            task = k.scheduler.current
            if task is not None and task.in_kernel_sleep and greenlet.getcurrent() is task.kstack:
                seen.append(k.scheduler.in_task_context())        # on the stack of a task asleep in it
            if len(seen) < 400:
                clock.schedule(50_000, look)
        clock.schedule(50_000, look)
        assert s.run(READER).exit_code == 0
    assert len(seen) > 10
    assert not any(seen)


def test_a_panic_while_idling_in_place_is_raised_where_the_scheduler_would_raise_it(monkeypatch):
    """getppid made to wait for what never comes, with nothing else runnable: the task idles in place and
    the panic reaches the machine's run loop as before, on the scheduler's stack: the sleeping task's
    kernel code (here a handler that would swallow any error) never sees it."""
    entered, swallowed = [], []
    idle_in_place = Scheduler.idle_in_place

    def spy(self, task):
        entered.append(task.pid)
        return idle_in_place(self, task)

    def never(k, task, *args):
        try:
            k.wait_event(lambda: False)
        except Exception as e:
            swallowed.append(e)
        return 0
    monkeypatch.setattr(Scheduler, "idle_in_place", spy)
    monkeypatch.setitem(syscall_64.SYSCALL_ENTRIES, 110, never)
    run = boot(firmware("syscalls"))
    assert entered
    assert b"Kernel panic - not syncing: waiting for an event that can never come" in run.output
    assert swallowed == []


def test_the_guest_clock_stopping_a_task_that_idles_in_place_stops_the_machine(monkeypatch, capsys):
    """`ballast run --timeout`: the stop falls due while the reader idles in place (on its own stack);
    the run ends as a timeout does (status 124, the timeout line), its kernel stacks unwound."""
    from vmm import cli
    stopped_in_place = []
    idle = Scheduler.idle

    def spy(self):
        try:
            idle(self)
        except MachineStopped:
            stopped_in_place.append(greenlet.getcurrent() is not self.scheduler_stack)
            raise
    monkeypatch.setattr(Scheduler, "idle", spy)
    release_stacks = Scheduler.release_stacks
    left = []

    def released(self):
        release_stacks(self)
        left.extend(t.pid for t in self.k.tasks.values() if t.kstack is not None)
    monkeypatch.setattr(Scheduler, "release_stacks", released)
    for timeout in ("0.02", "0.0213", "0.0237", "0.0251", "0.0269"):   # most of the read is waiting
        assert cli.main(["run", "--root", "builtin", "--mem", "64M", "--timeout", timeout, *READER]) == 124
        assert timeout in capsys.readouterr().err
        assert left == []
    assert True in stopped_in_place
