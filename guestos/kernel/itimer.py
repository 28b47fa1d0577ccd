"""Interval timers (kernel/itimer.c): ITIMER_REAL counts virtual time and sends SIGALRM (alarm(2) is
the same timer in whole seconds); ITIMER_VIRTUAL counts the process's user time and ITIMER_PROF its user
and system time, over all its threads (the timers are the process's, kept on the group leader), and send
SIGVTALRM and SIGPROF, checked as each time slice ends (Linux checks them at each tick)."""
import struct

from .errno import EINVAL, SyscallError

ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF = 0, 1, 2
SIGALRM, SIGVTALRM, SIGPROF = 14, 26, 27
SI_KERNEL = 0x80
NSEC_PER_USEC, USEC_PER_SEC = 1000, 10**6


def _cputime_ns(k, task, which: int) -> int:
    """What the timer counts: the process's user time (VIRTUAL) or user + system time (PROF)."""
    from .sys import thread_group_cputime
    utime, stime = thread_group_cputime(k, task)
    return utime if which == ITIMER_VIRTUAL else utime + stime


def _timeval(ns: int) -> tuple:
    return divmod(ns // NSEC_PER_USEC, USEC_PER_SEC)


def _arm_real(k, task, value_ns: int, interval_ns: int) -> None:
    """Start ITIMER_REAL: `value_ns` from now, then every `interval_ns` (0: once)."""
    now = k.hw.clock.now_ns()
    task.alarm_expires_ns = now + value_ns if value_ns else 0
    task.it_real_incr_ns = interval_ns if value_ns else 0
    if not value_ns:
        return
    expires = task.alarm_expires_ns

    def it_real_fn():
        if task.exited or task.alarm_expires_ns != expires:
            return                                     # cancelled or re-armed since
        from .signal import send_signal, siginfo
        if task.it_real_incr_ns:
            _arm_real(k, task, task.it_real_incr_ns, task.it_real_incr_ns)
        else:
            task.alarm_expires_ns = 0
        send_signal(k, task, SIGALRM, siginfo(SIGALRM, SI_KERNEL), group=True)
    k.timers.add_timer(value_ns, it_real_fn)


def get_itimer(k, task, which: int) -> tuple:
    """(value, interval) in ns as getitimer reports them."""
    if which == ITIMER_REAL:
        if not task.alarm_expires_ns:
            return 0, task.it_real_incr_ns
        left = task.alarm_expires_ns - k.hw.clock.now_ns()
        return (left if left > 0 else NSEC_PER_USEC), task.it_real_incr_ns      # an expired one shows 1 us
    expires, interval = task.it_virt if which == ITIMER_VIRTUAL else task.it_prof
    if not expires:
        return 0, interval
    left = expires - _cputime_ns(k, task, which)
    return (left if left > 0 else NSEC_PER_USEC), interval


def do_setitimer(k, task, which: int, value_ns: int, interval_ns: int) -> tuple:
    """Set a timer; returns the old (value, interval)."""
    old = get_itimer(k, task, which)
    if which == ITIMER_REAL:
        _arm_real(k, task, value_ns, interval_ns)
    else:
        timer = (_cputime_ns(k, task, which) + value_ns, interval_ns) if value_ns else (0, 0)
        if which == ITIMER_VIRTUAL:
            task.it_virt = timer
        else:
            task.it_prof = timer
    return old


def _read_itimerval(k, task, ptr: int) -> tuple:
    """The new value: copied (EFAULT), then checked (EINVAL: a negative second or a usec out of range)."""
    interval_s, interval_us, value_s, value_us = struct.unpack("<4q", k.mm.copy_from_user(task, ptr, 32))
    for sec, usec in ((interval_s, interval_us), (value_s, value_us)):
        if sec < 0 or not 0 <= usec < USEC_PER_SEC:
            raise SyscallError(EINVAL)
    return value_s * 10**9 + value_us * NSEC_PER_USEC, interval_s * 10**9 + interval_us * NSEC_PER_USEC


def _itimerval(value_ns: int, interval_ns: int) -> bytes:
    # a value under a microsecond still shows as one: the timer has not fired (as Linux rounds up)
    if 0 < value_ns < NSEC_PER_USEC:
        value_ns = NSEC_PER_USEC
    return struct.pack("<4q", *_timeval(interval_ns), *_timeval(value_ns))


def sys_getitimer(k, task, which, value, *_):
    task = task.group_leader                           # the timers are the process's (signal_struct)
    if which not in (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF):
        raise SyscallError(EINVAL)
    k.mm.copy_to_user(task, value, _itimerval(*get_itimer(k, task, which)))
    return 0


def sys_setitimer(k, task, which, value, ovalue, *_):
    """A NULL new value disarms the timer (as Linux has done since 2.6.26, with a warning)."""
    leader = task.group_leader                         # the timers are the process's (signal_struct)
    new = _read_itimerval(k, task, value) if value else (0, 0)        # EFAULT first, then EINVAL
    if which not in (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF):
        raise SyscallError(EINVAL)
    old = do_setitimer(k, leader, which, *new)
    if ovalue:
        k.mm.copy_to_user(task, ovalue, _itimerval(*old))
    return 0


def alarm_setitimer(k, task, seconds: int) -> int:
    """alarm(2): ITIMER_REAL for whole seconds, once; returns the seconds left on the old one, rounded
    as Linux rounds them (up from half a second, and a running timer never shows 0)."""
    old_value, _ = do_setitimer(k, task.group_leader, ITIMER_REAL, seconds * 10**9, 0)
    left_s, left_rem = divmod(old_value, 10**9)
    if left_rem and (left_s == 0 and left_rem >= 1000 or left_rem >= 500_000_000):
        left_s += 1
    return left_s


def itimer_tick(k, task) -> None:
    """After a time slice of any of the process's threads: ITIMER_VIRTUAL and ITIMER_PROF that expired
    send their signal to the process and re-arm."""
    from .signal import send_signal, siginfo
    leader = task.group_leader
    for which, attr, sig in ((ITIMER_VIRTUAL, "it_virt", SIGVTALRM), (ITIMER_PROF, "it_prof", SIGPROF)):
        expires, interval = getattr(leader, attr)
        if not expires:
            continue
        now = _cputime_ns(k, leader, which)
        if now >= expires:
            setattr(leader, attr, (now + interval, interval) if interval else (0, 0))
            if not task.exited:
                send_signal(k, task, sig, siginfo(sig, SI_KERNEL), group=True)
