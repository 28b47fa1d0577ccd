"""Process exit and wait (kernel/exit.c)."""
import struct

from . import futex
from . import sys as kernel_sys
from .errno import ECHILD, EINVAL, ESRCH, SyscallError
from .sched import TASK_DEAD, TASK_ZOMBIE, WouldBlock

WNOHANG = 1
WUNTRACED = 2
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
        leader.min_flt += task.min_flt
        leader.maj_flt += task.maj_flt
    if not group_dead or leader.parent is None:       # init: nobody reaps it; the machine stops
        return
    parent = leader.parent
    if parent.exited:                        # a parent process whose leader is gone: one of its threads
        parent = next((t for t in parent.signal.threads if not t.exited), parent)
    if not parent.exited and leader.exit_signal > 0:  # do_notify_parent(): SIGCHLD unless clone said otherwise
        from .signal import send_signal, siginfo
        send_signal(k, parent, leader.exit_signal, siginfo(leader.exit_signal, 1, leader.pid), group=True)


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


def sys_wait4(k, task, pid, wstatus, options, rusage, *_):
    if options & 0xFFFFFFFF & ~(WNOHANG | WUNTRACED | __WALL | __WCLONE | 8 | __WNOTHREAD):
        raise SyscallError(EINVAL)
    if pid == INT_MIN:
        raise SyscallError(ESRCH)                   # -INT_MIN is not a process group
    group = task.pgid
    # any thread may wait for the children of any thread of its process, unless __WNOTHREAD
    def children():
        waiters = [task] if options & __WNOTHREAD else [t for t in task.signal.threads if not t.exited]
        return [c for t in waiters for c in t.children if _matches(c, pid, group)]
    candidates = children()
    if not candidates:
        raise SyscallError(ECHILD)
    for child in candidates:
        if reapable(child):
            # kernel_wait4(): the child is reaped first, the status and rusage copied out after
            # (a bad pointer is EFAULT, and the child is gone all the same, as on Linux)
            child.state = TASK_DEAD
            child.parent.children.remove(child)
            k.tasks.pop(child.pid, None)
            task.cinstructions += child.instructions + child.cinstructions
            task.cmin_flt += child.min_flt + child.cmin_flt
            task.cmaj_flt += child.maj_flt + child.cmaj_flt
            if wstatus:
                k.mm.copy_to_user(task, wstatus, struct.pack("<i", group_exit_status(child)))
            if rusage:                              # the child's and its reaped children's
                k.mm.copy_to_user(task, rusage, kernel_sys.rusage(
                    k, child.instructions + child.cinstructions, child.min_flt + child.cmin_flt,
                    child.maj_flt + child.cmaj_flt, 0))
            return child.pid
    if options & WNOHANG:
        return 0
    raise WouldBlock(lambda: any(reapable(c) for c in children()))


def sys_exit_group(k, task, code, *_):
    k.do_group_exit(task, code & 0xFF)
    return 0
