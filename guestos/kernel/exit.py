"""Process exit and wait (kernel/exit.c)."""
import struct

from . import sys as kernel_sys
from .errno import ECHILD, EINVAL, ESRCH, SyscallError
from .sched import TASK_DEAD, TASK_ZOMBIE, WouldBlock

WNOHANG = 1
WUNTRACED = 2
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
        from .signal import send_signal, siginfo
        send_signal(k, task.parent, task.exit_signal, siginfo(task.exit_signal, 1, task.pid))


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
    candidates = [c for c in task.children if _matches(c, pid, group)]
    if not candidates:
        raise SyscallError(ECHILD)
    for child in candidates:
        if child.state == TASK_ZOMBIE:
            # kernel_wait4(): the child is reaped first, the status and rusage copied out after
            # (a bad pointer is EFAULT, and the child is gone all the same, as on Linux)
            child.state = TASK_DEAD
            task.children.remove(child)
            k.tasks.pop(child.pid, None)
            task.cinstructions += child.instructions + child.cinstructions
            task.cstime_ns += child.stime_ns + child.cstime_ns
            task.cmin_flt += child.min_flt + child.cmin_flt
            task.cmaj_flt += child.maj_flt + child.cmaj_flt
            if wstatus:
                k.mm.copy_to_user(task, wstatus, struct.pack("<i", child.exit_code))
            if rusage:                              # the child's and its reaped children's
                k.mm.copy_to_user(task, rusage, kernel_sys.rusage(
                    k, child.instructions + child.cinstructions, child.min_flt + child.cmin_flt,
                    child.maj_flt + child.cmaj_flt, 0, child.stime_ns + child.cstime_ns))
            return child.pid
    if options & WNOHANG:
        return 0
    raise WouldBlock(lambda: any(c.state == TASK_ZOMBIE for c in task.children if _matches(c, pid, group)))


def sys_exit_group(k, task, code, *_):
    do_exit(k, task, code & 0xFF)
    return 0
