"""Kernel work costs time (guestos/kernel/costs.py) and is charged to whoever does it; kswapd, the
balloon's thread and the flusher are kernel threads that share the vCPU with user tasks in virtual
time; direct reclaim retries with falling priority before the OOM killer runs."""
import math
import re
from pathlib import Path

import pytest

from guestos.kernel import tracepoint
from guestos.kernel.cmdline import ParamError, check_cmdline
from guestos.kernel.costs import CostModel
from guestos.mm import page_alloc as page_alloc_mod, vmscan
from guestos.mm.mm_types import MemMap, PG_reserved, STRUCT_PAGE_SIZE
from guestos.mm.page_alloc import GFP_KERNEL, GFP_NORETRY, NIL, PageAllocator
from vmm import oracle
from vmm.machine import Machine, MachineConfig
from vmm.rootfs import builtin_root
from vmm.session import GuestSession

MiB = 1 << 20
MUST_TELL_HOST = 1
DOCS = Path(__file__).resolve().parents[1] / "docs" / "cost-model.md"

SYSCALL_LOOP = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    char buf[512];
    FILE *f = fopen("/proc/self/stat", "r");
    fgets(buf, sizeof buf, f);
    fclose(f);
    puts(buf);
    f = fopen("/proc/stat", "r");
    fgets(buf, sizeof buf, f);
    fclose(f);
    puts(buf);
    return 0;
}
"""


@pytest.fixture(scope="module")
def root():
    return builtin_root()


def guest(root, cmdline="", mem=64, features=MUST_TELL_HOST):
    return GuestSession(MachineConfig(mem=mem * MiB, cmdline=cmdline, balloon_features=features), root=root).start()


def record_switches(kernel):
    """[(pid, kthread, virtual ns, retired instructions)] at every switch_to from now on."""
    sched, clock = kernel.scheduler, kernel.hw.clock
    log = []
    switch_to = sched.switch_to

    def logged(task):
        log.append((task.pid, task.kthread, clock.now_ns(), clock.instructions))
        switch_to(task)
    sched.switch_to = logged
    return log


def user_ran_within(log, start_ns, end_ns) -> bool:
    """A user task got the CPU between start and end and retired instructions there."""
    for (pid, kthread, at, icount), (_, _, _, next_icount) in zip(log, log[1:]):
        if start_ns <= at < end_ns and not kthread and pid > 0 and next_icount > icount:
            return True
    return False


# --- kswapd is a thread --------------------------------------------------------------------------

def test_a_user_task_keeps_running_while_kswapd_reclaims_beside_it(root):
    """Streaming a file through a small guest wakes kswapd at the low watermark; with a short
    quantum its balance_pgdat spans several slices, and the reader runs in between."""
    with guest(root, "sched_quantum=20000") as s:
        k = s.machine.kernel
        events = []
        tracepoint.enable(k).subscribe(events.append)
        log = record_switches(k)
        assert s.run(["/bin/seqread", "/data/stream.bin"]).exit_code == 0
    kswapd = k.kswapd_task.pid
    wakes = [e for e in events if e["name"] == "mm_vmscan_kswapd_wake"]
    sleeps = [e for e in events if e["name"] == "mm_vmscan_kswapd_sleep"]
    assert wakes and sleeps and all(e["pid"] == kswapd and e["comm"] == "kswapd0" for e in wakes + sleeps)
    assert any(e["name"] == "mm_vmscan_wakeup_kswapd" for e in events)
    assert k.vmstat["pgsteal_kswapd"] > 0
    episodes = list(zip(wakes, sleeps))
    beside = [w for w, z in episodes if user_ran_within(log, w["ts"], z["ts"])]
    assert beside, "the reader never ran while kswapd was awake"
    assert any(pid == kswapd for pid, *_ in log)        # kswapd had the CPU in its own slices


# --- the balloon's thread ------------------------------------------------------------------------

@pytest.mark.parametrize("pages", [1000, 768])
def test_inflation_takes_one_work_item_per_batch_and_user_tasks_run_between(root, pages):
    """ceil(N / 256) work items; with a quantum (100 us) shorter than a batch (each page costs
    balloon_inflate_ns) the spinning task runs between every two of them (a kernel thread that
    still has time left in its slice would go on to the next item, as a kworker does)."""
    with guest(root, "sched_quantum=200000", mem=128) as s:
        k = s.machine.kernel
        driver = k.balloon
        events = []
        tracepoint.enable(k).subscribe(events.append)
        log = record_switches(k)
        s.spawn(["/bin/compute", "200000000"])
        s.advance(0.01)
        before = driver.counters["work_items"]
        s.set_balloon_mib(pages * 4096 / MiB)
        assert s.wait_balloon(10)
        items = driver.counters["work_items"] - before
    fills = [e for e in events if e["name"] == "virtio_balloon_fill"]
    assert items == math.ceil(pages / 256) == len(fills)
    assert sum(e["nr_pages"] for e in fills) == pages
    assert all(e["comm"] == "vballoon" and e["pid"] == driver.thread.pid for e in fills)
    for a, b in zip(fills, fills[1:]):
        assert user_ran_within(log, a["ts"], b["ts"]), "a batch followed another with no user task between"


def test_deflation_is_batched_too(root):
    with guest(root, mem=128) as s:
        k = s.machine.kernel
        events = []
        tracepoint.enable(k).subscribe(events.append)
        s.set_balloon_mib(4)
        assert s.wait_balloon(10)
        before = k.balloon.counters["work_items"]
        s.set_balloon_mib(0)
        assert s.wait_balloon(10)
        items = k.balloon.counters["work_items"] - before
    leaks = [e for e in events if e["name"] == "virtio_balloon_leak"]
    assert [e["nr_pages"] for e in leaks] == [256, 256, 256, 256]
    assert items == 4


def test_the_flusher_thread_writes_back_expired_dirty_pages(compile_c):
    """Dirty pages older than dirty_expire_centisecs are written by flush-254:0 at the writeback
    timer, on its own time, not the writer's."""
    exe = compile_c((Path(__file__).resolve().parent / "programs" / "writefile.c").read_text(), "writefile",
                    flags=("-static", "-O1"))
    with guest(builtin_root({"writefile": exe.read_bytes()})) as s:
        k = s.machine.kernel
        flusher = k.flusher
        assert flusher.comm == "flush-254:0" and flusher.kthread
        assert s.run(["/bin/writefile", "/dirty.txt", "x" * 10000]).exit_code == 0
        assert k.vmstat["nr_dirty"] > 0
        before = flusher.stime_ns
        # past dirty_expire_centisecs (30 s) twice: writing the file back dirties the file system's
        # metadata (its buffer cache) again, which expires 30 s later
        s.advance(70)
        k.scheduler.account()
        assert k.vmstat["nr_dirty"] == 0
        assert flusher.stime_ns > before               # the flusher did the work, on its own time


# --- direct reclaim ------------------------------------------------------------------------------

def _tiny_allocator(npages=512):
    ram = memoryview(bytearray(npages * STRUCT_PAGE_SIZE))
    mem_map = MemMap(ram, 0, npages)
    for pfn in range(npages):
        mem_map.set_flags(pfn, 1 << PG_reserved)
    vmstat = {"pgalloc_normal": 0, "pgfree": 0}
    pa = PageAllocator(mem_map, 0, npages, vmstat)
    pa.free_bootmem_range(0, npages)
    pa.setup_per_zone_wmarks(256)                     # min 64, low 80, high 96 pages
    return pa


def test_direct_reclaim_retries_while_it_makes_progress_and_only_then_ooms():
    """__alloc_pages_slowpath: a pass that frees one page each time is retried until the zone is
    above min; a pass that frees nothing ends it (then the OOM notifiers, then the killer)."""
    pa = _tiny_allocator()
    held = []
    while pa.zone.nr_free_pages > pa.zone.watermark[0] - 5:      # 5 pages below min
        held.append(pa.zone.rmqueue(0))
    calls, notified = [], []

    def reclaim(nr, gfp, order):                     # a reclaim that frees one page per pass
        if not held:
            calls.append(0)
            return 0
        pa.zone.free_pages(held.pop(), 0)
        calls.append(1)
        return 1
    pa.reclaim = reclaim
    pa.oom_notify = lambda: notified.append(1) or 0
    assert pa.alloc_pages(GFP_KERNEL) != NIL
    assert len(calls) >= 6 and all(calls)            # it kept trying while each pass made progress
    assert not notified
    # nothing left to reclaim: one pass without progress, then the OOM notifiers, then failure
    held.clear()
    while pa.zone.nr_free_pages > pa.zone.watermark[0] - 1:
        pa.zone.rmqueue(0)
    calls.clear()
    assert pa.alloc_pages(GFP_KERNEL) == NIL
    assert calls == [0] and notified == [1]
    # __GFP_NORETRY (the balloon's): one pass, no OOM notifiers, no killer
    calls.clear()
    notified.clear()
    assert pa.alloc_pages(GFP_NORETRY) == NIL
    assert calls == [0] and not notified


def test_direct_reclaim_priority_falls_when_a_pass_frees_too_little(root, monkeypatch):
    """After a stream fills the page cache, memhog (no swap) fills the guest with anonymous memory:
    only page cache can go. The allocating task's reclaim passes free it with falling priority, and
    the OOM kill comes only after a pass that went down to priority 0 freed nothing."""
    passes = []                                       # (kswapd?, priority, reclaimed so far)
    shrink_zone_batches = vmscan.shrink_zone_batches

    def logged(k, sc):
        yield from shrink_zone_batches(k, sc)
        passes.append((sc.current_is_kswapd, sc.priority, sc.nr_reclaimed))
    monkeypatch.setattr(vmscan, "shrink_zone_batches", logged)
    results = []
    with guest(root, mem=48) as s:
        k = s.machine.kernel
        reclaim = k.page_alloc.reclaim

        def direct(nr, gfp=0, order=0):
            start = len(passes)
            freed = reclaim(nr, gfp, order)
            results.append((passes[start:], freed))
            return freed
        k.page_alloc.reclaim = direct
        assert s.run(["/bin/seqread", "/data/stream.bin"]).exit_code == 0
        # kswapd, which now runs beside memhog (and in direct reclaim's naps), stays asleep: every page
        # memhog gets, it reclaims itself
        k.page_alloc.wake_kswapd = lambda *args, **kwargs: None
        r = s.run(["/bin/memhog", "64M", "1"])
        assert r.signaled or r.exit_code != 0                     # it was OOM-killed
        assert k.vmstat["oom_kill"] >= 1
    # passes that freed pages, but fewer than asked at DEF_PRIORITY, went on at lower priorities
    results = [([p for p in ps if not p[0]], freed) for ps, freed in results]     # the direct passes
    fell = [ps for ps, freed in results if freed and min(p for _, p, _ in ps) < vmscan.DEF_PRIORITY]
    assert fell
    last_pass, freed = results[-1]
    assert freed == 0                                             # the last pass freed nothing ...
    assert [p for _, p, _ in last_pass] == list(range(vmscan.DEF_PRIORITY, -1, -1))   # ... from 12 to 0


# --- accounting -----------------------------------------------------------------------------------

def test_user_and_system_time_add_up_to_the_virtual_clock(root):
    with guest(root) as s:
        assert s.run(["/bin/seqread", "/data/stream.bin"]).exit_code == 0
        cpu = oracle.cpu_times(s.machine)
        now = s.virtual_ns()
    assert cpu["user_ns"] + cpu["system_ns"] + cpu["idle_ns"] == now
    assert cpu["system_ns"] > 0 and cpu["user_ns"] > 0 and cpu["idle_ns"] > 0
    tasks = cpu["tasks"]
    # every task's system time (and its reaped children's) adds up to the CPU's
    assert sum(t["stime_ns"] + t["cstime_ns"] for t in tasks) == cpu["system_ns"]
    assert abs(sum(t["utime_ns"] + t["cutime_ns"] for t in tasks) - cpu["user_ns"]) <= len(tasks)
    names = {t["comm"] for t in tasks}
    assert {"swapper", "kswapd0", "vballoon", "flush-254:0"} <= names
    assert next(t for t in tasks if t["comm"] == "kswapd0")["kthread"]


def test_proc_shows_system_time_and_kernel_threads(compile_c):
    """/proc/self/stat's stime (field 15) holds the system calls' cost; /proc/stat's cpu line adds
    up; ps shows the kernel threads by their names in brackets."""
    exe = compile_c(SYSCALL_LOOP, "sysloop", flags=("-static", "-O1"))
    n = 200_000
    m = Machine(MachineConfig(mem=64 * MiB))
    m.load(exe.read_bytes(), "/bin/sysloop", [str(n)])
    assert m.boot() == 0
    lines = [line for line in m.console_output.decode().splitlines() if line]
    fields = lines[0].rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])                 # fields 14 and 15
    assert stime >= n * CostModel().syscall_ns // 10_000_000       # USER_HZ ticks of 10 ms
    cpu = [int(x) for x in lines[1].split()[1:]]
    user, system, idle = cpu[0], cpu[2], cpu[3]
    assert system >= stime and user >= utime
    assert abs((user + system + idle) - m.clock.now_ns() // 10_000_000) <= 3
    m.close()


TIMES_AFTER_SYSCALLS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/times.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    struct tms t;
    times(&t);
    char buf[512];
    FILE *f = fopen("/proc/self/stat", "r");
    fgets(buf, sizeof buf, f);
    printf("%ld %ld\n%s", (long)t.tms_utime, (long)t.tms_stime, buf);
    return 0;
}
"""


def test_times_reports_the_system_time_proc_shows(compile_c):
    """times() splits user and system time as /proc/self/stat does (read just after it)."""
    exe = compile_c(TIMES_AFTER_SYSCALLS, "timesloop", flags=("-static", "-O1"))
    n = 200_000
    m = Machine(MachineConfig(mem=64 * MiB))
    m.load(exe.read_bytes(), "/bin/timesloop", [str(n)])
    assert m.boot() == 0
    lines = m.console_output.decode().splitlines()
    m.close()
    tms_utime, tms_stime = map(int, lines[0].split())
    fields = lines[1].rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    assert tms_stime >= n * CostModel().syscall_ns // 10_000_000 > 0
    assert 0 <= stime - tms_stime <= 1 and 0 <= utime - tms_utime <= 1


def test_proc_lists_the_kernel_threads(root):
    """/proc has a directory per kernel thread, with its name, PF_KTHREAD and an empty command line
    (which ps shows as [kswapd0])."""
    with guest(root) as s:
        k = s.machine.kernel
        pids = {t.comm: t.pid for t in k.scheduler.kthreads}
        listing = _proc_read(k, "/proc")
        stat = _proc_read(k, f"/proc/{pids['kswapd0']}/stat").decode()
        cmdline = _proc_read(k, f"/proc/{pids['vballoon']}/cmdline")
    assert set(pids) == {"kswapd0", "vballoon", "flush-254:0"}
    assert all(str(pid) in listing for pid in pids.values())
    assert stat.startswith(f"{pids['kswapd0']} (kswapd0) ")
    assert int(stat.rsplit(")", 1)[1].split()[6]) & 0x00200000       # PF_KTHREAD in flags
    assert cmdline == b""


def _proc_read(k, path):
    from guestos.fs.proc import open_proc
    f = open_proc(k, k.init_task, path)
    if hasattr(f, "entries"):
        return repr(f.entries if not callable(f.entries) else f.entries())
    return bytes(f.data)


# --- the cost table -------------------------------------------------------------------------------

def run_syscalls(compile_c, n, cmdline=""):
    exe = compile_c(SYSCALL_LOOP, "sysloop", flags=("-static", "-O1"))
    m = Machine(MachineConfig(mem=64 * MiB, cmdline=cmdline))
    m.load(exe.read_bytes(), "/bin/sysloop", [str(n)])
    count = [0]
    import guestos.kernel.main as kmain
    do_syscall = kmain.Kernel.do_syscall

    def counted(self, task):
        count[0] += 1
        return do_syscall(self, task)
    kmain.Kernel.do_syscall = counted
    try:
        assert m.boot() == 0
    finally:
        kmain.Kernel.do_syscall = do_syscall
    now = m.clock.now_ns()
    m.close()
    return now, count[0]


def test_changing_a_cost_changes_virtual_time_by_the_expected_amount(compile_c):
    base, calls = run_syscalls(compile_c, 1000)
    dearer, calls2 = run_syscalls(compile_c, 1000, "cost.syscall_ns=1270")
    assert calls == calls2 >= 1000
    assert dearer - base == calls * (1270 - CostModel().syscall_ns)


def test_a_reclaim_cost_is_charged_per_page_scanned(root):
    """Doubling reclaim_scan_ns adds (about) one scan cost per page scanned and refilled."""
    runs = []
    for extra in (0, 10_000):
        cmd = f"cost.reclaim_scan_ns={CostModel().reclaim_scan_ns + extra}"
        with guest(root, cmd) as s:
            t0 = s.virtual_ns()
            vm0 = s.vmstat()
            assert s.run(["/bin/seqread", "/data/stream.bin"]).exit_code == 0
            vm = s.vmstat()
            scanned = sum(vm[c] - vm0[c] for c in ("pgscan_kswapd", "pgscan_direct", "pgrefill"))
            busy = oracle.cpu_times(s.machine)["system_ns"]
            runs.append((s.virtual_ns() - t0, scanned, busy))
    (_, scanned0, sys0), (_, scanned1, sys1) = runs
    assert scanned0 > 1000
    # system time grows by the extra cost of each page scanned (the scan counts themselves may
    # differ a little: reclaim now interleaves differently with the reader)
    assert sys1 - sys0 == pytest.approx(scanned1 * 10_000, rel=0.1)


def test_cost_names_are_checked_on_the_command_line_and_documented():
    check_cmdline("cost.syscall_ns=500 cost.reclaim_free_ns=0", 64 * MiB)
    with pytest.raises(ParamError, match="cost.bogus_ns=1: unknown option"):
        check_cmdline("cost.bogus_ns=1", 64 * MiB)
    with pytest.raises(ParamError, match="cost.syscall_ns=x"):
        check_cmdline("cost.syscall_ns=x", 64 * MiB)
    with pytest.raises(ParamError, match="unknown option"):
        check_cmdline("cost.cpi=2", 64 * MiB)                    # the machine's, not the kernel's
    doc = DOCS.read_text()
    for name, source in CostModel.sources().items():
        assert f"`{name}`" in doc, f"{name} is not in docs/cost-model.md"
        assert source


def test_run_takes_cost_options_and_refuses_bad_ones(tmp_path):
    import json
    import subprocess
    import sys
    hello = Path(__file__).resolve().parents[1] / "firmware" / "bin" / "hello"
    times = []
    for extra in ([], ["--cost", "syscall_ns=10270"]):
        out = tmp_path / "m.json"
        r = subprocess.run([sys.executable, "-m", "vmm.cli", "run", *extra, "--json", str(out), str(hello)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        times.append(json.loads(out.read_text())["virtual_ns"])
    assert (times[1] - times[0]) % 10_000 == 0 and times[1] > times[0]
    r = subprocess.run([sys.executable, "-m", "vmm.cli", "run", "--cost", "bogus=1", str(hello)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.startswith("ballast: --cost bogus=1: unknown cost")
    assert "Traceback" not in r.stderr
