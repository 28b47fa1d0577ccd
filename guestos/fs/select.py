"""poll, ppoll, select and pselect6 (fs/select.c): each file says what it is ready for (File.poll);
a call with nothing ready sleeps, in virtual time, until something is or its timeout passes. The
deadline is kept across re-runs (task.restart_block), so a wake-up that finds nothing does not
start the timeout again."""
import struct

from ..kernel.errno import EBADF, EFAULT, EINVAL, SyscallError
from ..kernel.sched import ERESTART_RESTARTBLOCK, ERESTARTNOHAND, WouldBlock
from ..kernel.sys import RLIMIT_NOFILE, task_rlimit
from ..mm.memory import access_ok
from .file import (POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLPRI, POLLRDBAND, POLLRDNORM,
                   POLLWRBAND, POLLWRNORM)

POLLIN_SET = POLLRDNORM | POLLRDBAND | POLLIN | POLLHUP | POLLERR
POLLOUT_SET = POLLWRBAND | POLLWRNORM | POLLOUT | POLLERR
POLLEX_SET = POLLPRI
NSEC_PER_SEC = 10**9
_POLLFD = struct.Struct("<ihh")
_TIMESPEC = struct.Struct("<qq")


def _deadline(k, task, timeout_ns):
    """The absolute virtual time the wait ends (None: never), the same on every re-run."""
    if task.restart_block is not None and task.restart_block[0] == "poll":
        return task.restart_block[1]
    return None if timeout_ns is None else k.hw.clock.now_ns() + timeout_ns


def _wait(k, task, deadline, ready, restart: str) -> None:
    """Nothing ready: sleep until ready() or the deadline; returns once the deadline passed."""
    clock = k.hw.clock
    if deadline is not None and clock.now_ns() >= deadline:
        return
    task.restart_block = ("poll", deadline)
    if deadline is None:
        raise WouldBlock(ready, restart=restart)
    raise WouldBlock(lambda: ready() or clock.now_ns() >= deadline, restart=restart, expires=deadline)


def _file_mask(files, fd: int):
    f = files.fds.get(fd)
    return None if f is None else f.poll(None)


def do_poll(k, task, ufds: int, nfds: int, timeout_ns, restart: str) -> int:
    """do_sys_poll(): nfds above RLIMIT_NOFILE is EINVAL; the array is read whole (EFAULT), each
    revents is what the file has of the events asked plus POLLERR/POLLHUP, POLLNVAL for a closed fd."""
    if nfds > task_rlimit(task, RLIMIT_NOFILE)[0]:
        raise SyscallError(EINVAL)
    raw = k.mm.copy_from_user(task, ufds, nfds * _POLLFD.size) if nfds else b""
    entries = [_POLLFD.unpack_from(raw, i * _POLLFD.size) for i in range(nfds)]
    files = k.fds_of(task)

    def scan():
        out = []
        for fd, events, _ in entries:
            if fd < 0:
                out.append(0)
                continue
            mask = _file_mask(files, fd)
            out.append(POLLNVAL if mask is None else mask & ((events & 0xFFFF) | POLLERR | POLLHUP))
        return out

    revents = scan()
    if not any(revents):
        deadline = _deadline(k, task, timeout_ns)
        _wait(k, task, deadline, lambda: any(scan()), restart)       # returns only at the timeout
    if nfds:
        k.mm.copy_to_user(task, ufds, b"".join(_POLLFD.pack(fd, events, r & 0xFFFF)
                                               for (fd, events, _), r in zip(entries, revents)))
    return sum(1 for r in revents if r)


def sys_poll(k, task, ufds, nfds, timeout_msecs, *_):
    timeout = None if timeout_msecs < 0 else timeout_msecs * 1_000_000
    return do_poll(k, task, ufds, nfds, timeout, ERESTART_RESTARTBLOCK)


def _get_timespec(k, task, tsp):
    """poll_select_set_timeout(): a negative or unnormalised time is EINVAL; NULL waits forever."""
    if not tsp:
        return None
    sec, nsec = _TIMESPEC.unpack(k.mm.copy_from_user(task, tsp, 16))
    if sec < 0 or not 0 <= nsec < NSEC_PER_SEC:
        raise SyscallError(EINVAL)
    return sec * NSEC_PER_SEC + nsec


def _set_sigmask(k, task, sigmask: int, sigsetsize: int) -> None:
    """set_user_sigmask(): the mask for the wait; restored when the call returns (or the handler it
    let in returns)."""
    if not sigmask:
        return
    if sigsetsize != 8:
        raise SyscallError(EINVAL)
    new = int.from_bytes(k.mm.copy_from_user(task, sigmask, 8), "little") & ~((1 << 8) | (1 << 18))
    if task.saved_sigmask is None:
        task.saved_sigmask = task.sigmask
    task.sigmask = new


def _time_left(k, task, deadline) -> int:
    return max(0, deadline - k.hw.clock.now_ns())


def _write_back_timespec(k, task, tsp, deadline) -> None:
    """poll_select_finish(): the time left goes back to the caller's timespec (ppoll, pselect6)."""
    if tsp and deadline is not None:
        left = _time_left(k, task, deadline)
        try:
            k.mm.copy_to_user(task, tsp, _TIMESPEC.pack(left // NSEC_PER_SEC, left % NSEC_PER_SEC))
        except SyscallError:
            pass                                           # Linux ignores a failed write-back here


def sys_ppoll(k, task, ufds, nfds, tsp, sigmask, sigsetsize, *_):
    timeout = _get_timespec(k, task, tsp)
    _set_sigmask(k, task, sigmask, sigsetsize)
    deadline = _deadline(k, task, timeout)
    try:
        ret = do_poll(k, task, ufds, nfds, timeout, ERESTARTNOHAND)
    except WouldBlock as e:
        e.interrupted = lambda: _write_back_timespec(k, task, tsp, deadline)
        raise
    _write_back_timespec(k, task, tsp, deadline)
    return ret


def _fds_bytes(n: int) -> int:
    return (n + 63) // 64 * 8                              # FDS_BYTES: whole longs


def do_select(k, task, n, inp, outp, exp, timeout_ns, restart: str) -> int:
    """core_sys_select(): n is capped at the table's size; each set read whole; a set bit on a closed
    fd is EBADF; the sets come back with only the ready bits."""
    if n < 0:
        raise SyscallError(EINVAL)
    files = k.fds_of(task)
    max_fds = max(64, (max(files.fds, default=0) + 64) // 64 * 64)          # fdt->max_fds
    n = min(n, max_fds)
    size = _fds_bytes(n)
    sets = []
    for ptr in (inp, outp, exp):
        if ptr and size:
            sets.append(int.from_bytes(k.mm.copy_from_user(task, ptr, size), "little") & ((1 << n) - 1))
        else:
            sets.append(0)
    asked = sets[0] | sets[1] | sets[2]
    fds = [fd for fd in range(n) if asked >> fd & 1]
    for fd in fds:
        if fd not in files.fds:
            raise SyscallError(EBADF)

    def scan():
        res = [0, 0, 0]
        for fd in fds:
            mask = _file_mask(files, fd)
            bit = 1 << fd
            if sets[0] & bit and mask & POLLIN_SET:
                res[0] |= bit
            if sets[1] & bit and mask & POLLOUT_SET:
                res[1] |= bit
            if sets[2] & bit and mask & POLLEX_SET:
                res[2] |= bit
        return res

    res = scan()
    if not any(res):
        deadline = _deadline(k, task, timeout_ns)
        _wait(k, task, deadline, lambda: any(scan()), restart)
    for ptr, bits in zip((inp, outp, exp), res):
        if ptr and size:
            k.mm.copy_to_user(task, ptr, bits.to_bytes(size, "little"))
    return sum(bin(bits).count("1") for bits in res)


def sys_select(k, task, n, inp, outp, exp, tvp, *_):
    """select(2) with a timeval; the time left goes back into it (Linux does, unlike POSIX asks)."""
    timeout = None
    if tvp:
        sec, usec = _TIMESPEC.unpack(k.mm.copy_from_user(task, tvp, 16))
        if sec < 0 or usec < 0:
            raise SyscallError(EINVAL)
        timeout = sec * NSEC_PER_SEC + usec * 1000          # poll_select_set_timeout normalises
    deadline = _deadline(k, task, timeout)

    def write_timeval():
        if tvp and deadline is not None:
            left = _time_left(k, task, deadline)
            try:
                k.mm.copy_to_user(task, tvp, _TIMESPEC.pack(left // NSEC_PER_SEC, left % NSEC_PER_SEC // 1000))
            except SyscallError:
                pass
    try:
        ret = do_select(k, task, n, inp, outp, exp, timeout, ERESTARTNOHAND)
    except WouldBlock as e:
        e.interrupted = write_timeval
        raise
    write_timeval()
    return ret


def sys_pselect6(k, task, n, inp, outp, exp, tsp, sig, *_):
    """pselect6: the sixth argument points at {const sigset_t *ss; size_t ss_len}."""
    timeout = _get_timespec(k, task, tsp)
    if sig:
        if not access_ok(sig, 16):
            raise SyscallError(EFAULT)
        ss, ss_len = struct.unpack("<QQ", k.mm.copy_from_user(task, sig, 16))
        _set_sigmask(k, task, ss, ss_len)
    deadline = _deadline(k, task, timeout)
    try:
        ret = do_select(k, task, n, inp, outp, exp, timeout, ERESTARTNOHAND)
    except WouldBlock as e:
        e.interrupted = lambda: _write_back_timespec(k, task, tsp, deadline)
        raise
    _write_back_timespec(k, task, tsp, deadline)
    return ret
