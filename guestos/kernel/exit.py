"""Process exit and wait (kernel/exit.c)."""
import struct

from . import sys as kernel_sys
from .errno import ECHILD, EINVAL, ESRCH, SyscallError
from .sched import TASK_DEAD, TASK_STOPPED, TASK_ZOMBIE, WouldBlock

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
    if task.exited:
        return
    task.exit_code = code if signaled else (code & 0xFF) << 8
    if task is k.scheduler.current:
        k.lru_add_drain()
    # CLONE_CHILD_CLEARTID: tell a waiter in the shared address space that we are gone
    if task.clear_child_tid and task.mm is not None and task.mm.users > 1:
        try:
            k.write_task_memory(task, task.clear_child_tid, bytes(4))
        except Exception:
            pass
    if task.restart_block is not None and task.restart_block[0] == "fifo":
        task.restart_block[1].release()      # killed in a FIFO open: the end it held goes
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
    init = k.init_task
    for child in task.children:
        child.parent = init
        child.exit_signal = 17               # reparent_leader(): "we don't want people slaying init"
        if init is not None and init is not task:
            init.children.append(child)
    task.children = []
    task.state = TASK_ZOMBIE
    if task.parent is None:                  # init: nobody reaps it; the machine stops
        return
    if not task.parent.exited and task.exit_signal:   # do_notify_parent(): SIGCHLD unless clone said otherwise
        from .signal import send_signal, sigchld_info
        send_signal(k, task.parent, task.exit_signal,
                    sigchld_info(k, task, *exit_cld_code(task.exit_code), signo=task.exit_signal))


def exit_cld_code(status: int) -> tuple:
    """(si_code, si_status) of a wait status: CLD_EXITED and the code, or CLD_KILLED/CLD_DUMPED and
    the signal."""
    if status & 0x7F == 0:
        return CLD_EXITED, status >> 8 & 0xFF
    return (CLD_DUMPED if status & 0x80 else CLD_KILLED), status & 0x7F


def _matches(child, pid: int, pgid: int) -> bool:
    """-1 any child, 0 one in the caller's process group, below -1 one in group -pid, else that pid."""
    if pid == -1:
        return True
    if pid <= 0:
        return child.pgid == (pgid if pid == 0 else -pid)
    return child.pid == pid


INT_MIN = -(1 << 31)


def wait_ready(child, options: int):
    """wait_consider_task(): what a wait with these options may report about the child now: "exit"
    (a zombie), "stop" (stopped, not yet reported), "cont" (continued, not yet reported), or None."""
    if child.state == TASK_ZOMBIE:
        return "exit" if options & WEXITED else None
    if child.state == TASK_STOPPED and not child.stop_reported and options & WSTOPPED:
        return "stop"
    if child.continued and options & WCONTINUED:
        return "cont"
    return None


def do_wait(task, match, options: int):
    """The first child that `match`es with something to report: (child, what), or (None, None) under
    WNOHANG; ECHILD when no child matches; else the caller sleeps until one has news."""
    candidates = [c for c in task.children if match(c)]
    if not candidates:
        raise SyscallError(ECHILD)
    for child in candidates:
        what = wait_ready(child, options)
        if what is not None:
            return child, what
    if options & WNOHANG:
        return None, None
    raise WouldBlock(lambda: any(wait_ready(c, options) for c in task.children if match(c)))


def release_task(k, task, child) -> None:
    """Reap a zombie: its times and faults join the parent's children's totals."""
    child.state = TASK_DEAD
    task.children.remove(child)
    k.tasks.pop(child.pid, None)
    task.cinstructions += child.instructions + child.cinstructions
    task.cmin_flt += child.min_flt + child.cmin_flt
    task.cmaj_flt += child.maj_flt + child.cmaj_flt


def child_rusage(k, child) -> bytes:
    """the child's and its reaped children's"""
    return kernel_sys.rusage(k, child.instructions + child.cinstructions, child.min_flt + child.cmin_flt,
                             child.maj_flt + child.cmaj_flt, 0)


def sys_wait4(k, task, pid, wstatus, options, rusage, *_):
    if options & 0xFFFFFFFF & ~(WNOHANG | WUNTRACED | WCONTINUED | __WALL | __WCLONE | __WNOTHREAD):
        raise SyscallError(EINVAL)
    if pid == INT_MIN:
        raise SyscallError(ESRCH)                   # -INT_MIN is not a process group
    group = task.pgid
    child, what = do_wait(task, lambda c: _matches(c, pid, group), options | WEXITED)
    if child is None:
        return 0
    if what == "exit":
        # kernel_wait4(): the child is reaped first, the status and rusage copied out after
        # (a bad pointer is EFAULT, and the child is gone all the same, as on Linux)
        status = child.exit_code
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
        code, status = exit_cld_code(child.exit_code)
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
    do_exit(k, task, code & 0xFF)
    return 0
