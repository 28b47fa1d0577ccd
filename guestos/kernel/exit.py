"""Process exit and wait (kernel/exit.c)."""
import struct

from . import futex
from . import sys as kernel_sys
from .errno import ECHILD, EINVAL, ESRCH, SyscallError
from .sched import EXITED_STATES, TASK_DEAD, TASK_ZOMBIE, WouldBlock

WNOHANG = 1
WUNTRACED = WSTOPPED = 2
WEXITED = 4
WCONTINUED = 8
WNOWAIT = 0x01000000
P_ALL, P_PID, P_PGID = 0, 1, 2
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 5, 6
SIGINFO_FIELDS = 28                     # the part of siginfo waitid writes: up to si_status
__WALL = 0x40000000
__WCLONE = 0x80000000
__WNOTHREAD = 0x20000000


def do_exit(k, task, code: int, signaled: bool = False) -> None:
    """One thread ends (exit(2), or each thread of a dying group). The process ends with its last
    thread: then the parent hears of it (SIGCHLD) and wait4 can reap the group leader."""
    if task.exited:
        return
    exit_with_status(k, task, code if signaled else (code & 0xFF) << 8)


def do_group_exit(k, task, code: int, signaled: bool = False) -> None:
    """exit_group(2) and fatal signals: every thread of the process ends with the same status
    (SIGNAL_GROUP_EXIT; zap_other_threads)."""
    sig = task.signal
    if sig.group_exit:
        status = sig.group_exit_code
    else:
        status = code if signaled else (code & 0xFF) << 8
        sig.group_exit, sig.group_exit_code = True, status
        for thread in list(sig.threads):
            if thread is not task and not thread.exited:
                exit_with_status(k, thread, status)
    if not task.exited:
        exit_with_status(k, task, status)


def group_exit_status(task) -> int:
    """What wait4 reports for a process: the group exit's status, or its last thread's."""
    sig = task.group_leader.signal
    return sig.group_exit_code if sig.group_exit or not sig.live else task.group_leader.exit_code


def exit_with_status(k, task, status: int) -> None:
    if task.in_kernel_sleep or task.exiting:
        # asleep inside the kernel: it dies when it comes back out (sched.run_slice); or its exit is
        # under way already (PF_EXITING: the exit itself may sleep, and the task or a killer come again)
        return
    task.exiting = True
    task.exit_code = status
    if task is k.scheduler.current:
        k.lru_add_drain()
    # robust futexes it held, then CLONE_CHILD_CLEARTID: wake pthread_join
    futex.mm_release(k, task)
    if task.restart_block is not None and task.restart_block[0] == "fifo":
        task.restart_block[1].release()      # killed in a FIFO open: the end it held goes
    if task.restart_block is not None and task.restart_block[0] == "futex":
        futex.futex_hash(k).unqueue(task.restart_block[1])
    files = task.files
    if files is not None:
        files.users -= 1
        if files.users == 0:
            files.close_all()
        task.files = None
    if task.mm is not None:
        k.mmput(task.mm)
        task.mm = None
    task.vfork_parent = None                 # mm_release(): a vfork parent may run again
    sig = task.signal
    sig.live -= 1
    group_dead = sig.live == 0
    if group_dead and not sig.group_exit:
        sig.group_exit_code = status         # the last thread's code is the process's (Linux 6.x, checked natively)
    # forget_original_parent(): children go to a live thread of the process, else to init
    reaper = next((t for t in sig.threads if not t.exited and t is not task), None) or k.init_task
    for child in task.children:
        child.parent = reaper
        if reaper is k.init_task:
            child.exit_signal = 17           # reparent_leader(): "we don't want people slaying init"
        if reaper is not None and reaper is not task:
            reaper.children.append(child)
    task.children = []
    leader = task.group_leader
    if task is leader:
        task.state = TASK_ZOMBIE             # waited for once the whole group is gone
    else:
        task.state = TASK_DEAD               # a thread reaps itself (release_task)
        sig.threads.remove(task)
        k.tasks.pop(task.pid, None)
        leader.instructions += task.instructions      # the process's CPU time stays with it
        sched = k.scheduler
        sched.account(leader if sched.running is task else None)     # the rest of this exit: the leader's
        leader.stime_ns += task.stime_ns
        task.stime_ns = 0
        leader.min_flt += task.min_flt
        leader.maj_flt += task.maj_flt
    if not group_dead or leader.parent is None:       # init: nobody reaps it; the machine stops
        return
    parent = leader.parent
    if parent.exited:                        # a parent process whose leader is gone: one of its threads
        parent = next((t for t in parent.signal.threads if not t.exited), parent)
    if not parent.exited and leader.exit_signal > 0:  # do_notify_parent(): SIGCHLD unless clone said otherwise
        from .signal import send_signal, sigchld_info
        send_signal(k, parent, leader.exit_signal,
                    sigchld_info(k, leader, *exit_cld_code(group_exit_status(leader)), signo=leader.exit_signal),
                    group=True)


def exit_cld_code(status: int) -> tuple:
    """(si_code, si_status) of a wait status: CLD_EXITED and the code, or CLD_KILLED/CLD_DUMPED and
    the signal."""
    if status & 0x7F == 0:
        return CLD_EXITED, status >> 8 & 0xFF
    return (CLD_DUMPED if status & 0x80 else CLD_KILLED), status & 0x7F


def reapable(child) -> bool:
    """A zombie leader whose threads are all gone (delay_group_leader())."""
    return child.state == TASK_ZOMBIE and child.signal.live == 0


def _matches(child, pid: int, pgid: int) -> bool:
    """-1 any child, 0 one in the caller's process group, below -1 one in group -pid, else that pid."""
    if pid == -1:
        return True
    if pid <= 0:
        return child.pgid == (pgid if pid == 0 else -pid)
    return child.pid == pid


INT_MIN = -(1 << 31)


def wait_ready(child, options: int):
    """wait_consider_task(): what a wait with these options may report about the child (a process,
    by its leader) now: "exit" (a zombie whose threads are gone), "stop" (a group stop not yet
    reported), "cont" (continued, not yet reported), or None."""
    if child.state == TASK_ZOMBIE:
        return "exit" if options & WEXITED and reapable(child) else None
    if child.signal.group_stopped and not child.stop_reported and options & WSTOPPED:
        return "stop"
    if child.continued and options & WCONTINUED:
        return "cont"
    return None


def do_wait(task, match, options: int):
    """The first child that `match`es with something to report: (child, what), or (None, None) under
    WNOHANG; ECHILD when no child matches; else the caller sleeps until one has news. Any thread
    waits for the children of every thread of its process, unless __WNOTHREAD; the children are
    looked up again on each wake-up (a thread's exit moves its children)."""
    def children():
        waiters = [task] if options & __WNOTHREAD else [t for t in task.signal.threads if not t.exited]
        return [c for t in waiters for c in t.children if match(c)]
    candidates = children()
    if not candidates:
        raise SyscallError(ECHILD)
    for child in candidates:
        what = wait_ready(child, options)
        if what is not None:
            return child, what
    if options & WNOHANG:
        return None, None

    own = options & __WNOTHREAD
    threads = (task,) if own else task.signal.threads      # the process's list itself: later threads join it

    def news() -> bool:
        """any(wait_ready(c, options) for c in children()), without the lists: the scheduler asks it
        at every pass while the caller sleeps."""
        for t in threads:
            if own or t.state not in EXITED_STATES:        # not t.exited, without a property call
                for c in t.children:
                    if wait_ready(c, options) and match(c):        # the cheaper test first
                        return True
        return False
    raise WouldBlock(news)


def release_task(k, task, child) -> None:
    """Reap a zombie: its times and faults join the parent's children's totals."""
    child.state = TASK_DEAD
    child.parent.children.remove(child)
    k.tasks.pop(child.pid, None)
    task.cinstructions += child.instructions + child.cinstructions
    task.cstime_ns += child.stime_ns + child.cstime_ns
    task.cmin_flt += child.min_flt + child.cmin_flt
    task.cmaj_flt += child.maj_flt + child.cmaj_flt


def child_rusage(k, child) -> bytes:
    """the child's and its reaped children's"""
    return kernel_sys.rusage(k, child.instructions + child.cinstructions, child.min_flt + child.cmin_flt,
                             child.maj_flt + child.cmaj_flt, 0, child.stime_ns + child.cstime_ns)


def sys_wait4(k, task, pid, wstatus, options, rusage, *_):
    if options & 0xFFFFFFFF & ~(WNOHANG | WUNTRACED | WCONTINUED | __WALL | __WCLONE | __WNOTHREAD):
        raise SyscallError(EINVAL)
    if pid == INT_MIN:
        raise SyscallError(ESRCH)                   # -INT_MIN is not a process group
    group = task.pgid
    # any thread may wait for the children of any thread of its process, unless __WNOTHREAD
    child, what = do_wait(task, lambda c: _matches(c, pid, group), options | WEXITED)
    if child is None:
        return 0
    if what == "exit":
        # kernel_wait4(): the child is reaped first, the status and rusage copied out after
        # (a bad pointer is EFAULT, and the child is gone all the same, as on Linux)
        status = group_exit_status(child)
        release_task(k, task, child)
    elif what == "stop":
        status = child.stop_signal << 8 | 0x7F
        child.stop_reported = True
    else:
        status = 0xFFFF                             # WIFCONTINUED
        child.continued = False
    if wstatus:
        k.mm.copy_to_user(task, wstatus, struct.pack("<i", status))
    if rusage:
        k.mm.copy_to_user(task, rusage, child_rusage(k, child))
    return child.pid


def sys_waitid(k, task, which, upid, infop, options, ru, *_):
    """waitid(2): kernel_waitid(), then the siginfo written whatever it returned (all zero when no
    child was reported: WNOHANG, or an error), so a bad infop turns any error into EFAULT, as in Linux."""
    err, info, usage = 0, None, None
    try:
        _child, _what, info, usage = kernel_waitid(k, task, which, upid, options)
    except SyscallError as e:
        err = e.errno
    if ru and usage is not None:
        k.mm.copy_to_user(task, ru, usage)
    if infop:                                       # si_signo, si_errno, si_code; si_pid, si_uid, si_status
        info = info or bytes(SIGINFO_FIELDS)
        k.mm.copy_to_user(task, infop, info[:12])
        k.mm.copy_to_user(task, infop + 16, info[16:])
    if err:
        raise SyscallError(err)
    return 0


def kernel_waitid(k, task, which, upid, options):
    """P_ALL, P_PID or P_PGID (0: the caller's group); at least one of WEXITED, WSTOPPED, WCONTINUED;
    WNOWAIT leaves the child as it was. Returns (child, what, siginfo fields, rusage) or Nones."""
    if options & ~(WNOHANG | WNOWAIT | WEXITED | WSTOPPED | WCONTINUED | __WALL | __WCLONE | __WNOTHREAD):
        raise SyscallError(EINVAL)
    if not options & (WEXITED | WSTOPPED | WCONTINUED):
        raise SyscallError(EINVAL)
    if which == P_ALL:
        match = _any
    elif which == P_PID:
        if upid <= 0:
            raise SyscallError(EINVAL)
        match = lambda c: c.pid == upid                  # noqa: E731
    elif which == P_PGID:
        if upid < 0:
            raise SyscallError(EINVAL)
        group = upid or task.pgid
        match = lambda c: c.pgid == group                # noqa: E731
    else:
        raise SyscallError(EINVAL)
    child, what = do_wait(task, match, options)
    if child is None:
        return None, None, None, None
    from .signal import sigchld_info
    if what == "exit":
        code, status = exit_cld_code(group_exit_status(child))
    elif what == "stop":
        code, status = CLD_STOPPED, child.stop_signal
    else:
        code, status = CLD_CONTINUED, 18
    info = sigchld_info(k, child, code, status)[:SIGINFO_FIELDS]
    usage = child_rusage(k, child)
    if not options & WNOWAIT:
        if what == "exit":
            release_task(k, task, child)
        elif what == "stop":
            child.stop_reported = True
        else:
            child.continued = False
    return child, what, info, usage


def _any(child) -> bool:
    return True


def sys_exit_group(k, task, code, *_):
    k.do_group_exit(task, code & 0xFF)
    return 0
