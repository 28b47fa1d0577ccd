"""Small system calls: identity, limits, randomness, time, futex, rseq, exit (kernel/sys.c and friends)."""
import hashlib
import struct

from .errno import EAGAIN, EINVAL, ENOSYS, SyscallError

UTS_SYSNAME = b"Linux"
UTS_NODENAME = b"ballast"
UTS_RELEASE = b"6.1.0-ballast"       # new enough for today's libcs; the mm is modelled on 2.6.35
UTS_VERSION = b"#1 SMP"
UTS_MACHINE = b"x86_64"

RLIM_INFINITY = 0xFFFFFFFFFFFFFFFF
RLIMITS = {3: (8 << 20, RLIM_INFINITY),       # RLIMIT_STACK
           7: (1024, 4096),                   # RLIMIT_NOFILE
           }
REALTIME_EPOCH_NS = 1276473600 * 10**9        # 2010-06-14, the week of the LKML thread
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME = 4, 5, 6, 7

FUTEX_WAIT, FUTEX_WAKE = 0, 1
RSEQ_SIG_LEN = 32


def sys_uname(k, task, buf, *_):
    fields = (UTS_SYSNAME, UTS_NODENAME, UTS_RELEASE, UTS_VERSION, UTS_MACHINE, b"(none)")
    k.mm.copy_to_user(task, buf, b"".join(f.ljust(65, b"\0") for f in fields))
    return 0


def sys_getpid(k, task, *_):
    return task.pid


def sys_getppid(k, task, *_):
    return task.parent.pid if task.parent is not None else 0


def sys_getuid(k, task, *_):
    return 0


def sys_prlimit64(k, task, pid, resource, new_rlim, old_rlim, *_):
    if resource < 0 or resource >= 16:
        raise SyscallError(EINVAL)
    cur = RLIMITS.get(resource, (RLIM_INFINITY, RLIM_INFINITY))
    if old_rlim:
        k.mm.copy_to_user(task, old_rlim, struct.pack("<QQ", *cur))
    if new_rlim:
        soft, hard = struct.unpack("<QQ", k.mm.copy_from_user(task, new_rlim, 16))
        if soft > hard:
            raise SyscallError(EINVAL)
        RLIMITS[resource] = (soft, hard)
    return 0


def sys_getrlimit(k, task, resource, rlim, *_):
    return sys_prlimit64(k, task, 0, resource, 0, rlim)


def sys_getrandom(k, task, buf, count, flags, *_):
    """Deterministic: a hash stream seeded at boot, so runs repeat exactly."""
    count = min(count, 1 << 20)
    out = bytearray()
    while len(out) < count:
        k.random_counter += 1
        out += hashlib.sha256(k.boot_seed + k.random_counter.to_bytes(8, "little")).digest()
    k.mm.copy_to_user(task, buf, bytes(out[:count]))
    return count


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
    k.charge(sec * 10**9 + nsec)      # an idle machine jumps ahead in virtual time
    return 0


def sys_clock_nanosleep(k, task, clock_id, flags, req, rem, *_):
    return sys_nanosleep(k, task, req, rem)


def sys_sched_yield(k, task, *_):
    return 0


def sys_set_tid_address(k, task, tidptr, *_):
    task.clear_child_tid = tidptr
    return task.pid


def sys_set_robust_list(k, task, head, length, *_):
    if length != 24:
        raise SyscallError(EINVAL)
    task.robust_list = head
    return 0


def sys_rseq(k, task, rseq, rseq_len, flags, sig, *_):
    """Register the rseq area and publish cpu 0; a single vCPU never migrates."""
    if flags & 1:                                 # RSEQ_FLAG_UNREGISTER
        task.rseq = 0
        return 0
    if rseq_len < RSEQ_SIG_LEN or rseq & 31:
        raise SyscallError(EINVAL)
    k.mm.copy_to_user(task, rseq, struct.pack("<II", 0, 0))   # cpu_id_start, cpu_id
    task.rseq = rseq
    return 0


def sys_futex(k, task, uaddr, op, val, *_):
    cmd = op & 0x7F
    if cmd == FUTEX_WAKE:
        return 0                                  # no other thread waits
    if cmd == FUTEX_WAIT:
        current = struct.unpack("<I", k.mm.copy_from_user(task, uaddr, 4))[0]
        if current != val & 0xFFFFFFFF:
            raise SyscallError(EAGAIN)
        raise SyscallError(EAGAIN)                # nothing could ever wake it
    raise SyscallError(ENOSYS)


def sys_exit(k, task, code, *_):
    k.do_exit(task, code & 0xFF)
    return 0


def sys_getpgid(k, task, pid, *_):
    return pid or task.pid


def sys_setpgid(k, task, pid, pgid, *_):
    return 0



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
