"""Small system calls: identity, limits, randomness, time, futex, rseq, exit (kernel/sys.c and friends)."""
import struct

from ..mm.memory import access_ok
from ..sha256 import sha256
from .errno import EACCES, EBUSY, EFAULT, EINVAL, ENAMETOOLONG, EOPNOTSUPP, EPERM, ESRCH, SyscallError
from .sched import ERESTART_RESTARTBLOCK, WouldBlock

UTS_SYSNAME = b"Linux"
UTS_NODENAME = b"ballast"
UTS_RELEASE = b"6.1.0-ballast"       # new enough for today's libcs; the mm is modelled on 2.6.35
UTS_VERSION = b"#1 SMP"
UTS_MACHINE = b"x86_64"

RLIM_INFINITY = 0xFFFFFFFFFFFFFFFF
RLIMITS = {3: (8 << 20, RLIM_INFINITY),       # RLIMIT_STACK
           7: (1024, 4096),                   # RLIMIT_NOFILE
           4: (0, RLIM_INFINITY),             # RLIMIT_CORE (INIT_RLIMITS): no core dumps by default
           }
RLIM_NLIMITS = 16
RLIMIT_NOFILE = 7
NR_OPEN = 1 << 20                             # fs.nr_open
REALTIME_EPOCH_NS = 1276473600 * 10**9        # 2010-06-14, the week of the LKML thread
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME = 4, 5, 6, 7

GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4
GRND_FLAGS = GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE
MAX_RW_COUNT = 0x7FFFF000
KTIME_MAX = (1 << 63) - 1
RSEQ_SIG_LEN = 32                      # ORIG_RSEQ_SIZE
RSEQ_FLAG_UNREGISTER = 1


def sys_uname(k, task, buf, *_):
    fields = (UTS_SYSNAME, UTS_NODENAME, UTS_RELEASE, UTS_VERSION, UTS_MACHINE, b"(none)")
    k.mm.copy_to_user(task, buf, b"".join(f.ljust(65, b"\0") for f in fields))
    return 0


def sys_getpid(k, task, *_):
    return task.tgid                          # the process: its thread group


def sys_gettid(k, task, *_):
    return task.pid


def sys_getppid(k, task, *_):
    parent = task.group_leader.parent         # a thread's parent is its process's
    return parent.tgid if parent is not None else 0


def sys_getuid(k, task, *_):
    return 0


def task_rlimit(task, resource: int) -> tuple:
    """(soft, hard) of a task: its own once set, inherited at fork, else the boot defaults."""
    return task.rlimits.get(resource) or RLIMITS.get(resource, (RLIM_INFINITY, RLIM_INFINITY))


def sys_prlimit64(k, task, pid, resource, new_rlim, old_rlim, *_):
    """Linux's order: the new limit read (EFAULT), the process found (ESRCH), the resource and the
    limit checked (EINVAL, EPERM), then the old limit written back."""
    new = struct.unpack("<QQ", k.mm.copy_from_user(task, new_rlim, 16)) if new_rlim else None
    target = task if pid == 0 else k.find_task(pid)
    if target is None:
        raise SyscallError(ESRCH)
    if resource >= RLIM_NLIMITS:
        raise SyscallError(EINVAL)
    old = task_rlimit(target, resource)
    if new is not None:
        soft, hard = new
        if soft > hard:
            raise SyscallError(EINVAL)
        if resource == RLIMIT_NOFILE and hard > NR_OPEN:
            raise SyscallError(EPERM)
        target.rlimits = {**target.rlimits, resource: (soft, hard)}
    if old_rlim:
        k.mm.copy_to_user(task, old_rlim, struct.pack("<QQ", *old))
    return 0


def sys_getrlimit(k, task, resource, rlim, *_):
    if resource >= RLIM_NLIMITS:
        raise SyscallError(EINVAL)
    k.mm.copy_to_user(task, rlim, struct.pack("<QQ", *task_rlimit(task, resource)))
    return 0


def sys_getrandom(k, task, buf, count, flags, *_):
    """Deterministic: a hash stream seeded at boot, so runs repeat exactly. Like Linux it returns
    what it could copy before a fault (EFAULT when nothing)."""
    if flags & ~GRND_FLAGS or flags & GRND_INSECURE and flags & GRND_RANDOM:
        raise SyscallError(EINVAL)
    count = min(count, MAX_RW_COUNT, 1 << 20)
    if not access_ok(buf, count):
        raise SyscallError(EFAULT)
    out = bytearray()
    while len(out) < count:
        k.random_counter += 1
        out += sha256(k.boot_seed + k.random_counter.to_bytes(8, "little")).digest()
    return k.mm.copy_to_user_partial(task, buf, bytes(out[:count]))


def _clock_ns(k, task, clock_id: int) -> int:
    now = k.hw.clock.now_ns()
    if clock_id in (CLOCK_REALTIME, CLOCK_REALTIME_COARSE):
        return REALTIME_EPOCH_NS + now
    if clock_id in (CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME):
        return now
    if clock_id in (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID):
        return now
    raise SyscallError(EINVAL)


def sys_clock_gettime(k, task, clock_id, tp, *_):
    ns = _clock_ns(k, task, clock_id)
    k.mm.copy_to_user(task, tp, struct.pack("<qq", ns // 10**9, ns % 10**9))
    return 0


def sys_clock_getres(k, task, clock_id, res, *_):
    _clock_ns(k, task, clock_id)
    if res:
        k.mm.copy_to_user(task, res, struct.pack("<qq", 0, 1))
    return 0


def sys_gettimeofday(k, task, tv, tz, *_):
    ns = _clock_ns(k, task, CLOCK_REALTIME)
    if tv:
        k.mm.copy_to_user(task, tv, struct.pack("<qq", ns // 10**9, ns % 10**9 // 1000))
    if tz:
        k.mm.copy_to_user(task, tz, struct.pack("<ii", 0, 0))     # sys_tz: UTC, no DST
    return 0


def sys_time(k, task, tloc, *_):
    sec = _clock_ns(k, task, CLOCK_REALTIME) // 10**9
    if tloc:
        k.mm.copy_to_user(task, tloc, struct.pack("<q", sec))
    return sec


def sys_nanosleep(k, task, req, rem, *_):
    sec, nsec = struct.unpack("<qq", k.mm.copy_from_user(task, req, 16))
    if sec < 0 or not 0 <= nsec < 10**9:
        raise SyscallError(EINVAL)
    return hrtimer_nanosleep(k, task, k.hw.clock.now_ns() + min(sec * 10**9 + nsec, KTIME_MAX), rem)


def hrtimer_nanosleep(k, task, expires: int, rmtp: int):
    """do_nanosleep(): the task sleeps until the virtual clock reads `expires` (ns) while others run;
    an idle machine jumps there. A handler's signal ends it with EINTR and the time left in rmtp;
    a signal without one lets it go on to the same deadline (the restart block)."""
    clock = k.hw.clock
    if task.restart_block is not None and task.restart_block[0] == "nanosleep":
        expires = task.restart_block[1]            # woken early, run again: the first deadline holds
    if clock.now_ns() >= expires:
        return 0
    task.restart_block = ("nanosleep", expires)

    def time_left():
        if rmtp:
            left = max(0, expires - clock.now_ns())
            k.mm.copy_to_user(task, rmtp, struct.pack("<qq", left // 10**9, left % 10**9))

    raise WouldBlock(lambda: clock.now_ns() >= expires, restart=ERESTART_RESTARTBLOCK, expires=expires,
                     interrupted=time_left)


TIMER_ABSTIME = 1
CLOCK_TAI = 11
NANOSLEEP_CLOCKS = (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_PROCESS_CPUTIME_ID, CLOCK_TAI)
NO_NSLEEP_CLOCKS = (CLOCK_THREAD_CPUTIME_ID, CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE)
ALARM_CLOCKS = (8, 9)                  # CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM: no RTC wakeups here


def sys_clock_nanosleep(k, task, clock_id, flags, req, rem, *_):
    """Linux's order (checked natively): an unknown clock is EINVAL and a clock that cannot sleep
    EOPNOTSUPP before the request is read; a bad request EFAULT, then EINVAL. TIMER_ABSTIME sleeps
    until the clock reads the requested time."""
    if clock_id in NO_NSLEEP_CLOCKS:
        raise SyscallError(EOPNOTSUPP)
    if clock_id >= 0 and clock_id not in NANOSLEEP_CLOCKS + ALARM_CLOCKS:
        raise SyscallError(EINVAL)
    sec, nsec = struct.unpack("<qq", k.mm.copy_from_user(task, req, 16))
    if sec < 0 or not 0 <= nsec < 10**9:
        raise SyscallError(EINVAL)
    if clock_id < 0:
        raise SyscallError(EINVAL)     # another process's CPU clock: not one we can sleep on
    if clock_id in ALARM_CLOCKS:
        raise SyscallError(EOPNOTSUPP)
    wait = sec * 10**9 + nsec
    if flags & TIMER_ABSTIME:
        wait -= _clock_ns(k, task, clock_id if clock_id != CLOCK_TAI else CLOCK_REALTIME)
        rem = 0                              # an absolute sleep has no time left to report
    return hrtimer_nanosleep(k, task, k.hw.clock.now_ns() + min(max(wait, 0), KTIME_MAX), rem)


def sys_sched_yield(k, task, *_):
    k.scheduler.need_resched = True           # to the back of the run queue after this call
    return 0


def sys_set_tid_address(k, task, tidptr, *_):
    task.clear_child_tid = tidptr
    return task.pid


def sys_rseq(k, task, rseq, rseq_len, flags, sig, *_):
    """Register the rseq area and publish cpu 0; a single vCPU never migrates. kernel/rseq.c's checks."""
    registered = (task.rseq, getattr(task, "rseq_len", 0), getattr(task, "rseq_sig", 0))
    if flags & RSEQ_FLAG_UNREGISTER:
        if flags & ~RSEQ_FLAG_UNREGISTER or registered[:2] != (rseq, rseq_len) or not task.rseq:
            raise SyscallError(EINVAL)
        if registered[2] != sig:
            raise SyscallError(EPERM)
        task.rseq = 0
        return 0
    if flags:
        raise SyscallError(EINVAL)
    if task.rseq:
        if registered[:2] != (rseq, rseq_len):
            raise SyscallError(EINVAL)
        raise SyscallError(EPERM if registered[2] != sig else EBUSY)
    if rseq_len < RSEQ_SIG_LEN or rseq_len == RSEQ_SIG_LEN and rseq & 31 or \
            rseq_len != RSEQ_SIG_LEN and (rseq & 31 or rseq_len < RSEQ_SIG_LEN):
        raise SyscallError(EINVAL)
    if not access_ok(rseq, rseq_len):
        raise SyscallError(EFAULT)
    k.mm.copy_to_user(task, rseq, struct.pack("<II", 0, 0))   # cpu_id_start, cpu_id
    task.rseq, task.rseq_len, task.rseq_sig = rseq, rseq_len, sig
    return 0


def sys_exit(k, task, code, *_):
    k.do_exit(task, code & 0xFF)
    return 0


def sys_getpgid(k, task, pid, *_):
    target = task if pid == 0 else k.find_task(pid)
    if target is None or target.exited:
        raise SyscallError(ESRCH)
    return target.pgid


def sys_getpgrp(k, task, *_):
    return task.pgid


def sys_getsid(k, task, pid, *_):
    target = task if pid == 0 else k.find_task(pid)
    if target is None or target.exited:
        raise SyscallError(ESRCH)
    return target.sid


def sys_setpgid(k, task, pid, pgid, *_):
    """The caller or a child of it joins (or starts) a process group of its session; Linux's checks in
    its order: a child that exec'd is EACCES, a session leader or a group in another session EPERM."""
    pid = pid or task.pid
    pgid = pgid or pid
    if pgid < 0:
        raise SyscallError(EINVAL)
    target = k.find_task(pid)                       # (a zombie child is still found)
    if target is None:
        raise SyscallError(ESRCH)
    if target.parent is task:
        if target.sid != task.sid:
            raise SyscallError(EPERM)
        if target.did_exec:
            raise SyscallError(EACCES)
    elif target is not task:
        raise SyscallError(ESRCH)
    if target.sid == target.pid:
        raise SyscallError(EPERM)                   # a session leader stays in its group
    if pgid != pid and not any(t.pgid == pgid and t.sid == task.sid for t in k.tasks.values()):
        raise SyscallError(EPERM)                   # no such group in the caller's session
    target.pgid = pgid
    return 0


def sys_setsid(k, task, *_):
    """A new session and group led by the caller; EPERM if a group already has its pid as id."""
    if any(t.pgid == task.pid for t in k.tasks.values()):
        raise SyscallError(EPERM)
    task.sid = task.pgid = task.pid
    return task.pid


def sys_umask(k, task, mask, *_):
    old, task.umask = task.umask, mask & 0o777
    return old


def sys_getgroups(k, task, gidsetsize, grouplist, *_):
    """The supplementary groups (none for init: init_groups), or their number when gidsetsize is 0."""
    if gidsetsize < 0:
        raise SyscallError(EINVAL)
    if gidsetsize == 0:
        return len(task.groups)
    if gidsetsize < len(task.groups):
        raise SyscallError(EINVAL)
    if task.groups:
        k.mm.copy_to_user(task, grouplist, struct.pack(f"<{len(task.groups)}I", *task.groups))
    return len(task.groups)


NGROUPS_MAX = 65536


def sys_setgroups(k, task, gidsetsize, grouplist, *_):
    """We run as root (CAP_SETGID): the list is taken as given, sorted as groups_sort() keeps it."""
    if not 0 <= gidsetsize <= NGROUPS_MAX:
        raise SyscallError(EINVAL)
    raw = k.mm.copy_from_user(task, grouplist, 4 * gidsetsize) if gidsetsize else b""
    task.groups = tuple(sorted(struct.unpack(f"<{gidsetsize}I", raw)))
    return 0


PRIO_PROCESS, PRIO_PGRP, PRIO_USER = 0, 1, 2
MIN_NICE, MAX_NICE = -20, 19


def _prio_targets(k, task, which: int, who: int) -> list:
    """The live tasks `which`/`who` names (who 0: the caller, its group, its user); EINVAL for an
    unknown `which`. We are one user, uid 0."""
    if which == PRIO_PROCESS:
        target = task if who == 0 else k.find_task(who)
        return [target] if target is not None and not target.exited else []
    if which == PRIO_PGRP:
        group = task.pgid if who == 0 else who
        return [t for t in k.tasks.values() if t.pgid == group and not t.exited]
    if which == PRIO_USER:
        return [t for t in k.tasks.values() if not t.exited] if who == 0 else []
    raise SyscallError(EINVAL)


def sys_getpriority(k, task, which, who, *_):
    """The highest priority (lowest nice) among the targets, as 20 - nice so that it is never
    negative (the libc turns it back into a nice value); ESRCH when there is none."""
    targets = _prio_targets(k, task, which, who)
    if not targets:
        raise SyscallError(ESRCH)
    return 20 - min(t.nice for t in targets)


def sys_setpriority(k, task, which, who, niceval, *_):
    """The nice value, clamped to -20..19, for every target (root may also lower it). The scheduler
    gives each task a time slice by its load weight (sched.py)."""
    targets = _prio_targets(k, task, which, who)
    if not targets:
        raise SyscallError(ESRCH)
    niceval = min(max(niceval, MIN_NICE), MAX_NICE)
    for t in targets:
        t.nice = niceval
    return 0


USER_HZ = 100
INITIAL_JIFFIES = (1 << 32) - 300 * USER_HZ     # (unsigned int)(-300 * HZ): jiffies wrap 5 minutes after boot


def clock_t(ns: int) -> int:
    return ns // (10**9 // USER_HZ)


def sys_times(k, task, tbuf, *_):
    """struct tms in clock ticks: user time from retired instructions, system time from the kernel costs
    charged, summed over the process's threads as Linux's thread_group_cputime; and the ticks since an
    arbitrary point: jiffies, which start 5 minutes before wrapping."""
    if tbuf:
        utime, stime = thread_group_cputime(k, task)
        k.mm.copy_to_user(task, tbuf, struct.pack(
            "<4q", clock_t(utime), clock_t(stime),
            clock_t(task_cputime_ns(k, task.cinstructions)), clock_t(task.cstime_ns)))
    return INITIAL_JIFFIES + clock_t(k.hw.clock.now_ns())


RUSAGE_SELF, RUSAGE_CHILDREN, RUSAGE_THREAD = 0, -1, 1


def task_cputime_ns(k, instructions: int) -> int:
    """User time: retired instructions at the cost model's CPI and clock (as /proc's)."""
    return int(instructions * k.costs.cpi / k.costs.cpu_ghz)


def thread_group_cputime(k, task) -> tuple[int, int]:
    """thread_group_cputime(): (user, system) ns of every thread of the process, the leader holding
    those of threads gone. The caller's system time is charged up to now first."""
    k.scheduler.account()
    threads = task.signal.threads
    return (task_cputime_ns(k, sum(t.instructions for t in threads)), sum(t.stime_ns for t in threads))


def rusage(k, instructions: int, min_flt: int, maj_flt: int, maxrss_kb: int, stime_ns: int = 0) -> bytes:
    """struct rusage: user time (retired instructions), system time (charged kernel costs), the faults."""
    us = task_cputime_ns(k, instructions) // 1000
    sus = stime_ns // 1000
    return struct.pack("<4q14q", us // 10**6, us % 10**6, sus // 10**6, sus % 10**6, maxrss_kb, 0, 0, 0, min_flt,
                       maj_flt, 0, 0, 0, 0, 0, 0, 0, 0)


def task_rusage(k, task, who: int) -> bytes:
    maxrss = (task.mm.rss_anon + task.mm.rss_file) * 4 if task.mm is not None else 0
    k.scheduler.account()                       # the caller's system time up to now
    if who == RUSAGE_CHILDREN:
        return rusage(k, task.cinstructions, task.cmin_flt, task.cmaj_flt, 0, task.cstime_ns)
    # RUSAGE_SELF: every thread of the process (the leader keeps the counts of threads gone)
    threads = [task] if who == RUSAGE_THREAD else task.signal.threads
    return rusage(k, sum(t.instructions for t in threads), sum(t.min_flt for t in threads),
                  sum(t.maj_flt for t in threads), maxrss, sum(t.stime_ns for t in threads))


def sys_getrusage(k, task, who, ru, *_):
    if who not in (RUSAGE_SELF, RUSAGE_CHILDREN, RUSAGE_THREAD):
        raise SyscallError(EINVAL)
    k.mm.copy_to_user(task, ru, task_rusage(k, task, who))
    return 0


NR_CPUS = 1                                  # one vCPU


def sys_sched_getaffinity(k, task, pid, length, user_mask_ptr, *_):
    """CPU 0 only; the size copied (a whole number of longs) is what the call returns."""
    if length * 8 < NR_CPUS or length & 7:
        raise SyscallError(EINVAL)
    if pid and (k.find_task(pid) is None or k.find_task(pid).exited):
        raise SyscallError(ESRCH)
    size = min(length, 8)
    k.mm.copy_to_user(task, user_mask_ptr, (1).to_bytes(size, "little"))
    return size


PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 2, 3, 4
PR_GET_KEEPCAPS, PR_SET_KEEPCAPS, PR_SET_NAME, PR_GET_NAME = 7, 8, 15, 16
PR_GET_SECCOMP, PR_CAPBSET_READ, PR_GET_TIMERSLACK, PR_SET_TIMERSLACK = 21, 23, 30, 29
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 36, 37, 38, 39
TASK_COMM_LEN = 16
CAP_LAST_CAP = 40
DEFAULT_TIMER_SLACK_NS = 50_000


def sys_prctl(k, task, option, arg2, arg3, arg4, arg5, *_):
    """The common options (kernel/sys.c); others are EINVAL, as for a kernel without them."""
    option &= 0xFFFFFFFF
    if option == PR_SET_NAME:
        try:
            name = k.mm.strncpy_from_user(task, arg2, TASK_COMM_LEN)
        except SyscallError as e:
            if e.errno != ENAMETOOLONG:
                raise
            name = k.mm.copy_from_user(task, arg2, TASK_COMM_LEN - 1)      # longer names are cut
        task.comm = name[:TASK_COMM_LEN - 1].decode("utf-8", "surrogateescape")
        return 0
    if option == PR_GET_NAME:
        k.mm.copy_to_user(task, arg2, task.comm.encode("utf-8", "surrogateescape")[:15].ljust(TASK_COMM_LEN, b"\0"))
        return 0
    if option == PR_SET_PDEATHSIG:
        if not 0 <= arg2 <= 64:
            raise SyscallError(EINVAL)
        task.pdeath_signal = arg2
        return 0
    if option == PR_GET_PDEATHSIG:
        k.mm.put_user(task, arg2, "<i", getattr(task, "pdeath_signal", 0))
        return 0
    if option == PR_GET_DUMPABLE:
        return getattr(task, "dumpable", 1)
    if option == PR_SET_DUMPABLE:
        if arg2 not in (0, 1):
            raise SyscallError(EINVAL)
        task.dumpable = arg2
        return 0
    if option == PR_GET_KEEPCAPS:
        return 0
    if option == PR_SET_KEEPCAPS:
        if arg2 not in (0, 1):
            raise SyscallError(EINVAL)
        return 0
    if option == PR_GET_SECCOMP:
        return 0
    if option == PR_CAPBSET_READ:
        if arg2 > CAP_LAST_CAP:
            raise SyscallError(EINVAL)
        return 1
    if option == PR_GET_TIMERSLACK:
        return DEFAULT_TIMER_SLACK_NS
    if option == PR_SET_TIMERSLACK:
        return 0
    if option == PR_SET_CHILD_SUBREAPER:
        task.child_subreaper = bool(arg2)
        return 0
    if option == PR_GET_CHILD_SUBREAPER:
        k.mm.put_user(task, arg2, "<i", int(getattr(task, "child_subreaper", False)))
        return 0
    if option == PR_SET_NO_NEW_PRIVS:
        if arg2 != 1 or arg3 or arg4 or arg5:
            raise SyscallError(EINVAL)
        task.no_new_privs = True
        return 0
    if option == PR_GET_NO_NEW_PRIVS:
        if arg2 or arg3 or arg4 or arg5:
            raise SyscallError(EINVAL)
        return int(getattr(task, "no_new_privs", False))
    raise SyscallError(EINVAL)

def sys_sysinfo(k, task, info, *_):
    """struct sysinfo (kernel/sys.c do_sysinfo), in bytes (mem_unit 1). The load averages are 0:
    nothing computes them (no tick)."""
    from ..fs.proc import meminfo
    m = meminfo(k)
    uptime = (k.hw.clock.now_ns() + 10**9 - 1) // 10**9          # Linux rounds up (get_monotonic_boottime)
    procs = sum(1 for t in k.tasks.values() if not t.exited)
    raw = struct.pack("<q3Q6QH6x2QI", uptime, 0, 0, 0, m["MemTotal"] << 10, m["MemFree"] << 10,
                      0, m["Buffers"] << 10, m["SwapTotal"] << 10, m["SwapFree"] << 10, procs, 0, 0, 1)
    k.mm.copy_to_user(task, info, raw.ljust(112, b"\0"))
    return 0
