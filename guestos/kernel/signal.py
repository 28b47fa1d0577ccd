"""Signals (kernel/signal.c, arch/x86/kernel/signal.c): default actions, and handlers run on a
signal frame that rt_sigreturn unwinds."""
import struct

from .errno import EFAULT, EINTR, EINVAL, ENOMEM, EPERM, ESRCH, SyscallError
from .sched import (ERESTARTNOHAND, ERESTARTNOINTR, ERESTARTSYS, SYSCALL_INSN_LEN, TASK_RUNNING, TASK_STOPPED,
                    WouldBlock)

SIGNALS = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6, "SIGBUS": 7,
           "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12, "SIGPIPE": 13,
           "SIGALRM": 14, "SIGTERM": 15, "SIGCHLD": 17, "SIGCONT": 18, "SIGSTOP": 19, "SIGURG": 23,
           "SIGWINCH": 28, "SIGSYS": 31, "SIGSTKFLT": 16, "SIGTSTP": 20, "SIGTTIN": 21, "SIGTTOU": 22,
           "SIGXCPU": 24, "SIGXFSZ": 25, "SIGVTALRM": 26, "SIGPROF": 27, "SIGIO": 29, "SIGPWR": 30}
SIGNAL_NAMES = {v: k for k, v in SIGNALS.items()}
_NSIG = 64
SIG_DFL, SIG_IGN = 0, 1
# default action: ignore
SIG_KERNEL_IGNORE = {SIGNALS["SIGCHLD"], SIGNALS["SIGURG"], SIGNALS["SIGWINCH"], SIGNALS["SIGCONT"]}
SIG_KERNEL_COREDUMP = {SIGNALS[n] for n in ("SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
                                            "SIGSEGV", "SIGSYS", "SIGXCPU", "SIGXFSZ")}
# default action: stop the process (job control); SIGCONT continues it
SIG_KERNEL_STOP = {SIGNALS[n] for n in ("SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU")}
SIGCHLD, SIGCONT, SIGSTOP = 17, 18, 19
SA_NOCLDSTOP = 1
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 5, 6
RLIMIT_CORE = 4


def core_dumped(task, sig: int) -> int:
    """The WCOREDUMP bit (0x80) of a death by `sig`: only for a core-dumping signal and a non-zero
    RLIMIT_CORE (Linux's default soft limit is 0: no core, no bit). No core file is written here."""
    if sig not in SIG_KERNEL_COREDUMP:
        return 0
    from .sys import task_rlimit
    return 0x80 if task_rlimit(task, RLIMIT_CORE)[0] else 0


def signal_name(sig: int) -> str:
    return SIGNAL_NAMES.get(sig, f"signal {sig}")


SA_SIGINFO = 0x4
SA_RESTART = 0x10000000
SA_RESTORER = 0x04000000
SA_NODEFER = 0x40000000
SA_RESETHAND = 0x80000000
SI_USER, SI_TKILL = 0, -6

# the frame (struct rt_sigframe): return address, ucontext, siginfo
UC_SIZE = 8 + 8 + 24 + 256 + 8          # uc_flags, uc_link, uc_stack, uc_mcontext, uc_sigmask
SIGINFO_SIZE = 128
FRAME_SIZE = 8 + UC_SIZE + SIGINFO_SIZE
SIGCONTEXT_REGS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx", "rdx",
                   "rax", "rcx", "rsp", "rip", "eflags")


def has_handler(task, sig: int) -> bool:
    handler = task.sigactions.get(sig, (SIG_DFL,))[0]
    return handler not in (SIG_DFL, SIG_IGN) and not task.sigmask >> (sig - 1) & 1


def siginfo(sig: int, code: int, pid: int = 0, addr: int = None) -> bytes:
    info = struct.pack("<iii4x", sig, 0, code)
    info += struct.pack("<Q", addr) if addr is not None else struct.pack("<ii", pid, 0)
    return info.ljust(SIGINFO_SIZE, b"\0")


def sig_ignored(task, sig: int) -> bool:
    handler = task.sigactions.get(sig, (SIG_DFL,))[0]
    return sig not in (9, 19) and (handler == SIG_IGN or handler == SIG_DFL and sig in SIG_KERNEL_IGNORE)


def _blocks(task, sig: int) -> bool:
    return bool(task.sigmask >> (sig - 1) & 1) and sig not in (9, 19)


def send_signal(k, task, sig: int, info: bytes = None, group: bool = False) -> None:
    """__send_signal(): an ignored signal is dropped; any other waits in a pending set (a blocked one
    whatever its action: the action may change before it is unblocked) and wakes the task if it
    sleeps: a handler runs, a stop stops, a fatal default action kills the process when the task next
    returns to user mode (so its parent hears of it after the sender went on, as on Linux); a stopped
    process takes it after SIGCONT. SIGKILL kills the whole process now. group: sent to the process
    (kill, SIGCHLD): it waits in the shared set for any thread that does not block it; otherwise to
    this thread only (tgkill, faults)."""
    if not 1 <= sig <= _NSIG:
        raise SyscallError(EINVAL)
    prepare_signal(k, task, sig)
    if group:
        # complete_signal(): the thread to take it, the one named first if it does not block it
        wanting = task if not _blocks(task, sig) else \
            next((t for t in task.signal.threads if not t.exited and not _blocks(t, sig)), None)
    else:
        wanting = None if _blocks(task, sig) else task
    if wanting is not None and sig_ignored(task, sig):
        return
    if sig != 9:
        pending = task.signal.shared_pending if group else task.pending
        pending.setdefault(sig, info or siginfo(sig, SI_USER, k.scheduler.current.tgid
                                                if k.scheduler.current else 0))
        return
    k.do_exit(wanting, sig, signaled=True)


def prepare_signal(k, task, sig: int) -> None:
    """For the whole process: a stop signal discards a pending SIGCONT; SIGCONT discards pending stops
    and continues stopped threads whatever its action, even if blocked or ignored."""
    threads = [t for t in task.signal.threads if not t.exited]
    if sig in SIG_KERNEL_STOP:
        for t in threads:
            t.pending.pop(SIGCONT, None)
        task.signal.shared_pending.pop(SIGCONT, None)
    elif sig == SIGCONT:
        for t in threads:
            for stop in SIG_KERNEL_STOP:
                t.pending.pop(stop, None)
        for stop in SIG_KERNEL_STOP:
            task.signal.shared_pending.pop(stop, None)
        stopped = [t for t in threads if t.state == TASK_STOPPED]
        for t in stopped:
            t.state = TASK_RUNNING
            k.scheduler.runqueue.append(t)
        if task.signal.group_stopped:
            task.signal.group_stopped = False
            leader = task.group_leader
            leader.stop_reported, leader.continued = True, True      # the stop can no longer be waited for
            do_notify_parent_cldstop(k, leader, CLD_CONTINUED, SIGCONT)


def do_signal_stop(k, task, sig: int) -> None:
    """Group stop: the thread stops (off every queue) until SIGCONT or SIGKILL, its runnable fellow
    threads with it, sleeping ones as they wake (a SIGSTOP queued to each); the parent hears once."""
    task.state = TASK_STOPPED
    for t in task.signal.threads:
        if t is task or t.exited:
            continue
        if t.state == TASK_RUNNING:
            t.state = TASK_STOPPED
        elif t.state != TASK_STOPPED:
            t.pending.setdefault(SIGSTOP, siginfo(SIGSTOP, SI_USER, 0))
    if task.signal.group_stopped:
        return
    task.signal.group_stopped = True
    leader = task.group_leader
    leader.stop_signal = sig
    leader.stop_reported, leader.continued = False, False
    do_notify_parent_cldstop(k, leader, CLD_STOPPED, sig)


def sigchld_info(k, child, code: int, status: int, signo: int = SIGCHLD) -> bytes:
    """The SIGCHLD siginfo (and waitid's): si_pid, si_uid, si_status, si_utime and si_stime in ticks."""
    from .sys import task_cputime_ns
    utime = task_cputime_ns(k, child.instructions) // 10**7                 # USER_HZ 100
    return struct.pack("<iii4xiIiiqq", signo, 0, code, child.tgid, 0, status, 0, utime, 0).ljust(
        SIGINFO_SIZE, b"\0")


def do_notify_parent_cldstop(k, leader, why: int, sig: int) -> None:
    """SIGCHLD with CLD_STOPPED or CLD_CONTINUED, unless the parent ignores SIGCHLD or asked
    SA_NOCLDSTOP; a parent asleep in wait sees the new state anyway."""
    parent = leader.parent
    if parent is None or parent.exited:
        return
    handler, flags = parent.sigactions.get(SIGCHLD, (SIG_DFL, 0, 0, 0))[:2]
    if handler != SIG_IGN and not flags & SA_NOCLDSTOP:
        send_signal(k, parent, SIGCHLD, sigchld_info(k, leader, why, sig), group=True)


def is_current_pgrp_orphaned(k, task) -> bool:
    """will_become_orphaned_pgrp(): no member has a parent outside the group but in the same
    session (init as a parent does not count). An orphaned group ignores SIGTSTP, SIGTTIN, SIGTTOU."""
    for p in k.tasks.values():
        if p.pgid != task.pgid or p.exited or p.parent is None or p.parent is k.init_task:
            continue
        if p.parent.pgid != task.pgid and p.parent.sid == task.sid:
            return False
    return True


def send_sig(k, task, sig: int) -> None:
    """send_sig(sig, current, 0): a signal the kernel sends (SIGPIPE), from SI_USER with pid 0."""
    send_signal(k, task, sig, siginfo(sig, SI_USER, 0))


def dequeue_signal(task):
    """The lowest unblocked signal of the thread's own set, else of its process's: (sig, siginfo)."""
    for pending in (task.pending, task.signal.shared_pending):
        for sig in sorted(pending):
            if not task.sigmask >> (sig - 1) & 1:
                return sig, pending.pop(sig)
    return None, None


def do_signal(k, task) -> None:
    """On the way back to user mode (get_signal): the lowest pending, unblocked signal is dropped if
    ignored, kills if its default action does, or runs its handler; a sleeping call it interrupted
    returns EINTR or runs again (handle_signal_restart)."""
    while True:
        sig, info = dequeue_signal(task)
        if sig is None:
            return
        handler, flags, restorer, mask = task.sigactions.get(sig, (SIG_DFL, 0, 0, 0))
        if sig_ignored(task, sig):
            continue
        if handler == SIG_DFL and sig in SIG_KERNEL_STOP:
            if sig != SIGSTOP and is_current_pgrp_orphaned(k, task):
                continue
            do_signal_stop(k, task, sig)
            return
        if handler == SIG_DFL:
            k.do_exit(task, sig | core_dumped(task, sig), signaled=True)
            return
        handle_signal_restart(k, task, flags)
        if k.strace is not None:
            k.strace.signal(task, sig, info)
        setup_rt_frame(k, task, sig, info, handler, flags, restorer, mask)
        return


def handle_signal_restart(k, task, sa_flags: int) -> None:
    """arch/x86 handle_signal(): a call asleep when the signal came returns EINTR to the handler, or,
    for ERESTARTSYS under SA_RESTART (and ERESTARTNOINTR), stays rewound to run again after it."""
    rule = task.restart
    if rule is None:
        return
    task.restart = None
    task.woken_by_signal = False
    hook, task.interrupted, task.restart_block = task.interrupted, None, None
    ret = -EINTR
    if hook is not None:
        try:
            hook()                  # nanosleep: the time left to rmtp; a FIFO open: its end let go
        except SyscallError as e:
            ret = -e.errno
    if rule == ERESTARTNOINTR or rule == ERESTARTSYS and sa_flags & SA_RESTART:
        return                      # runs again, from the start, after the handler
    cpu = k.hw.cpu
    cpu.set_reg("rip", cpu.reg("rip") + SYSCALL_INSN_LEN)
    cpu.set_reg("rax", ret)


def setup_rt_frame(k, task, sig: int, info: bytes, handler: int, flags: int, restorer: int, mask: int) -> None:
    cpu = k.hw.cpu
    regs = cpu.regs()
    if not flags & SA_RESTORER:
        k.do_exit(task, 11 | core_dumped(task, 11), signaled=True)      # nowhere to return to: SIGSEGV
        return
    # get_sigframe(): below the red zone, or at the top of the alternate stack (SA_ONSTACK)
    sp = regs["rsp"] - 128
    uc_stack = stack_t(task, regs["rsp"])
    if flags & SA_ONSTACK and sas_ss_flags(task, sp) == 0:
        sp = task.sas_ss_sp + task.sas_ss_size
        if task.sas_ss_flags & SS_AUTODISARM:
            task.sas_ss_sp = task.sas_ss_size = 0
    frame = ((sp - FRAME_SIZE) & ~15) - 8                   # rsp+8 aligned at entry, as after a call
    uc = frame + 8
    mcontext = struct.pack("<18Q", *(regs[name] for name in SIGCONTEXT_REGS)) + struct.pack("<4H", 0x33, 0, 0, 0x2B)
    old_mask = task.sigmask if task.saved_sigmask is None else task.saved_sigmask   # sigsuspend's, restored on return
    mcontext += struct.pack("<4Q", task.error_code, task.trap_nr, old_mask, task.cr2) + bytes(8 + 64)
    ucontext = struct.pack("<QQ", 0, 0) + uc_stack + mcontext + struct.pack("<Q", old_mask)
    try:
        k.mm.copy_to_user(task, frame, struct.pack("<Q", restorer) + ucontext + info)
    except Exception:
        k.do_exit(task, 11 | core_dumped(task, 11), signaled=True)      # a stack that cannot take the frame
        return
    task.sigframes.append((uc, cpu.save_context()))     # x87/SSE state stays with the kernel
    task.saved_sigmask = None                           # the frame has it; sigreturn restores it
    if not flags & SA_NODEFER:
        mask |= 1 << (sig - 1)
    task.sigmask |= mask & ~((1 << 8) | (1 << 18))
    if flags & SA_RESETHAND:
        task.sigactions[sig] = (SIG_DFL, 0, 0, 0)
    # the handler starts without single-stepping, direction or resume flags (X86_EFLAGS_TF|DF|RF)
    cpu.set_regs({"rip": handler, "rsp": frame, "rdi": sig, "rsi": uc + UC_SIZE, "rdx": uc, "rax": 0,
                  "eflags": regs["eflags"] & ~0x10500})


def sys_rt_sigreturn(k, task, *_):
    """Unwind the frame the handler returns through: registers and mask as it left them."""
    cpu = k.hw.cpu
    uc = cpu.reg("rsp")
    try:
        raw = k.mm.copy_from_user(task, uc, UC_SIZE)
    except SyscallError:
        raw = None
    while task.sigframes and task.sigframes[-1][0] != uc:
        task.sigframes.pop()                            # frames abandoned by a longjmp
    if raw is None or not task.sigframes:
        k.force_sig(task, SIGNALS["SIGSEGV"])           # signal_fault(): no frame to return through
        return 0
    mcontext = raw[40:40 + 256]
    values = struct.unpack_from("<18Q", mcontext, 0)
    _, context = task.sigframes.pop()
    cpu.restore_context(context)
    regs = dict(zip(SIGCONTEXT_REGS, values))
    regs["eflags"] = (regs["eflags"] & 0xDD5) | 0x202
    cpu.set_regs(regs)
    task.sigmask = struct.unpack_from("<Q", raw, UC_SIZE - 8)[0] & ~((1 << 8) | (1 << 18))
    return regs["rax"]


def sys_rt_sigaction(k, task, sig, act, oact, sigsetsize, *_):
    if not 1 <= sig <= _NSIG or sig in (9, 19) and act:
        raise SyscallError(EINVAL)
    if sigsetsize != 8:
        raise SyscallError(EINVAL)
    old = task.sigactions.get(sig, (SIG_DFL, 0, 0, 0))
    if act:
        raw = k.mm.copy_from_user(task, act, 32)
        task.sigactions[sig] = tuple(int.from_bytes(raw[i:i + 8], "little") for i in range(0, 32, 8))
        if sig_ignored(task, sig):             # do_sigaction(): "POSIX 3.3.1.3": a pending one is discarded
            task.signal.shared_pending.pop(sig, None)
            for thread in task.signal.threads:
                thread.pending.pop(sig, None)
    if oact:
        k.mm.copy_to_user(task, oact, b"".join(v.to_bytes(8, "little") for v in old))
    return 0


def sys_rt_sigprocmask(k, task, how, nset, oset, sigsetsize, *_):
    if sigsetsize != 8:
        raise SyscallError(EINVAL)
    old = task.sigmask
    if nset:
        new = int.from_bytes(k.mm.copy_from_user(task, nset, 8), "little")
        if how == 0:
            task.sigmask |= new
        elif how == 1:
            task.sigmask &= ~new
        elif how == 2:
            task.sigmask = new
        else:
            raise SyscallError(EINVAL)
        task.sigmask &= ~((1 << 8) | (1 << 18))     # SIGKILL and SIGSTOP cannot be blocked
    if oset:
        k.mm.copy_to_user(task, oset, old.to_bytes(8, "little"))
    return 0


SS_ONSTACK, SS_DISABLE, SS_AUTODISARM = 1, 2, 1 << 31
MINSIGSTKSZ = 2048
SA_ONSTACK = 0x08000000


def on_sig_stack(task, sp: int) -> bool:
    return sp > task.sas_ss_sp and sp - task.sas_ss_sp <= task.sas_ss_size


def sas_ss_flags(task, sp: int) -> int:
    if not task.sas_ss_size:
        return SS_DISABLE
    return SS_ONSTACK if on_sig_stack(task, sp) else 0


def stack_t(task, sp: int) -> bytes:
    """struct stack_t { void *ss_sp; int ss_flags; size_t ss_size; } as the task has it."""
    return struct.pack("<Qi4xQ", task.sas_ss_sp, sas_ss_flags(task, sp) | task.sas_ss_flags, task.sas_ss_size)


def sys_sigaltstack(k, task, ss, old_ss, *_):
    """do_sigaltstack() (kernel/signal.c)."""
    sp = k.hw.cpu.reg("rsp")
    old = stack_t(task, sp)
    if ss:
        ss_sp, ss_flags, ss_size = struct.unpack("<Qi4xQ", k.mm.copy_from_user(task, ss, 24))
        if on_sig_stack(task, sp):
            raise SyscallError(EPERM)
        mode = ss_flags & ~SS_AUTODISARM & 0xFFFFFFFF
        if mode not in (SS_DISABLE, SS_ONSTACK, 0):
            raise SyscallError(EINVAL)
        if (ss_sp, ss_size, ss_flags & 0xFFFFFFFF) == (task.sas_ss_sp, task.sas_ss_size, task.sas_ss_flags):
            pass                                            # nothing changes: no more checks (as Linux)
        elif mode == SS_DISABLE:
            ss_sp = ss_size = 0
        elif ss_size < MINSIGSTKSZ:
            raise SyscallError(ENOMEM)
        task.sas_ss_sp, task.sas_ss_size = ss_sp, ss_size
        task.sas_ss_flags = ss_flags & SS_AUTODISARM & 0xFFFFFFFF
    if old_ss:
        k.mm.copy_to_user(task, old_ss, old)
    return 0


def sys_kill(k, task, pid, sig, *_, code: int = SI_USER):
    """kill_something_info(): pid > 0 one process (any of its thread ids names it), 0 the caller's
    group, -1 every process but init and the caller's, below -1 the group -pid; ESRCH when nobody
    matches. Each process gets one signal, in its shared pending set."""
    if not 0 <= sig <= _NSIG:
        raise SyscallError(EINVAL)
    if pid > 0:
        target = k.find_task(pid)
        targets = [target.group_leader] if target is not None else []
    elif pid == -1:
        targets = [t for t in k.tasks.values() if t.tgid > 1 and t.tgid != task.tgid and t is t.group_leader]
    else:
        group = task.pgid if pid == 0 else -pid
        targets = [t for t in k.tasks.values() if t.pgid == group and t.pid != 0 and t is t.group_leader]
    if not targets:
        raise SyscallError(ESRCH)                     # (a zombie still counts, as on Linux)
    for target in targets:
        if sig and target.signal.live:
            alive = target if not target.exited else next(t for t in target.signal.threads if not t.exited)
            send_signal(k, alive, sig, siginfo(sig, code, task.tgid), group=True)
    return 0


def do_tkill(k, task, tgid: int, tid: int, sig: int):
    """tgkill/tkill: one thread (tgid > 0: only if it belongs to that process)."""
    if not 0 <= sig <= _NSIG:
        raise SyscallError(EINVAL)
    target = k.find_task(tid)
    if target is None or tgid > 0 and target.tgid != tgid:
        raise SyscallError(ESRCH)
    if sig and not target.exited:               # (a zombie leader whose threads live takes it, unseen)
        send_signal(k, target, sig, siginfo(sig, SI_TKILL, task.tgid))
    return 0


def sys_tgkill(k, task, tgid, tid, sig, *_):
    if tgid <= 0 or tid <= 0:
        raise SyscallError(EINVAL)
    return do_tkill(k, task, tgid, tid, sig)


def sys_tkill(k, task, tid, sig, *_):
    if tid <= 0:
        raise SyscallError(EINVAL)
    return do_tkill(k, task, 0, tid, sig)


def sys_rt_sigsuspend(k, task, unewset, sigsetsize, *_):
    """Wait for a signal with `unewset` as the mask; the handler runs, then the call returns EINTR and
    the old mask comes back (set_restore_sigmask). Woken for a signal that turned out ignored, it
    sleeps again, its old mask still saved."""
    if sigsetsize != 8:
        raise SyscallError(EINVAL)
    new = int.from_bytes(k.mm.copy_from_user(task, unewset, 8), "little") & ~((1 << 8) | (1 << 18))
    if task.saved_sigmask is None:
        task.saved_sigmask = task.sigmask
    task.sigmask = new
    raise WouldBlock(_never, restart=ERESTARTNOHAND)


def _never() -> bool:
    return False


def sys_rt_sigpending(k, task, uset, sigsetsize, *_):
    """The signals waiting because they are blocked."""
    if sigsetsize > 8:
        raise SyscallError(EINVAL)
    waiting = sum(1 << (sig - 1) for sig in {**task.pending, **task.signal.shared_pending}) & task.sigmask
    k.mm.copy_to_user(task, uset, waiting.to_bytes(8, "little")[:sigsetsize])
    return 0
from .sched import signal_pending  # noqa: E402  (one rule: own and shared pending sets)


def sys_pause(k, task, *_):
    """Sleep until a signal is delivered: a handler ran (EINTR), or the signal killed us."""
    if signal_pending(task):
        raise SyscallError(EINTR)
    from .sched import WouldBlock
    raise WouldBlock(lambda: signal_pending(task))


def sys_alarm(k, task, seconds, *_):
    """SIGALRM after `seconds` of virtual time: ITIMER_REAL (itimer.py)."""
    from .itimer import alarm_setitimer
    return alarm_setitimer(k, task, seconds & 0xFFFFFFFF)
