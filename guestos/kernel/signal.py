"""Signals (kernel/signal.c, arch/x86/kernel/signal.c): default actions, and handlers run on a
signal frame that rt_sigreturn unwinds."""
import struct

from .errno import EFAULT, EINTR, EINVAL, ENOMEM, EPERM, ESRCH, SyscallError
from .sched import ERESTARTNOHAND, ERESTARTNOINTR, ERESTARTSYS, SYSCALL_INSN_LEN, WouldBlock

SIGNALS = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6, "SIGBUS": 7,
           "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12, "SIGPIPE": 13,
           "SIGALRM": 14, "SIGTERM": 15, "SIGCHLD": 17, "SIGCONT": 18, "SIGSTOP": 19, "SIGURG": 23,
           "SIGWINCH": 28, "SIGSYS": 31}
SIGNAL_NAMES = {v: k for k, v in SIGNALS.items()}
_NSIG = 64
SIG_DFL, SIG_IGN = 0, 1
# default action: ignore
SIG_KERNEL_IGNORE = {SIGNALS["SIGCHLD"], SIGNALS["SIGURG"], SIGNALS["SIGWINCH"], SIGNALS["SIGCONT"]}
SIG_KERNEL_COREDUMP = {SIGNALS[n] for n in ("SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
                                            "SIGSEGV", "SIGSYS")}


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
    """__send_signal(): a blocked signal waits in a pending set (whatever its action: the action may
    change before it is unblocked), an ignored one is dropped, one for a handler is queued (waking
    the task if it sleeps), and a fatal default action kills the whole process now. group: sent to
    the process (kill, SIGCHLD): it waits in the shared set for any thread that does not block it;
    otherwise to this thread only (tgkill, faults)."""
    if not 1 <= sig <= _NSIG:
        raise SyscallError(EINVAL)
    if group:
        # complete_signal(): the thread to take it, the one named first if it does not block it
        wanting = task if not _blocks(task, sig) else \
            next((t for t in task.signal.threads if not t.exited and not _blocks(t, sig)), None)
    else:
        wanting = None if _blocks(task, sig) else task
    if wanting is not None and sig_ignored(task, sig):
        return
    handler = task.sigactions.get(sig, (SIG_DFL,))[0]
    if wanting is None or handler not in (SIG_DFL, SIG_IGN) and sig not in (9, 19):
        pending = task.signal.shared_pending if group else task.pending
        pending.setdefault(sig, info or siginfo(sig, SI_USER, k.scheduler.current.tgid
                                                if k.scheduler.current else 0))
        return
    k.do_exit(wanting, sig | (0x80 if sig in SIG_KERNEL_COREDUMP else 0), signaled=True)


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
        if handler == SIG_DFL:
            k.do_exit(task, sig | (0x80 if sig in SIG_KERNEL_COREDUMP else 0), signaled=True)
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
        k.do_exit(task, 11 | 0x80, signaled=True)      # nowhere to return to: SIGSEGV
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
        k.do_exit(task, 11 | 0x80, signaled=True)      # a stack that cannot take the frame
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
    """SIGALRM after `seconds` of virtual time (kernel/time/itimer.c: alarm_setitimer); returns
    the seconds left on the previous alarm, rounded as Linux rounds them."""
    seconds &= 0xFFFFFFFF
    now = k.hw.clock.now_ns()
    left_ns = max(task.alarm_expires_ns - now, 0) if task.alarm_expires_ns else 0
    left_s, left_rem = divmod(left_ns, 10**9)
    if left_rem and (left_s == 0 and left_rem >= 1000 or left_rem >= 500_000_000):
        left_s += 1
    task.alarm_expires_ns = now + seconds * 10**9 if seconds else 0
    if seconds:
        expires = task.alarm_expires_ns

        def it_real_fn():
            if not task.exited and task.alarm_expires_ns == expires:
                task.alarm_expires_ns = 0
                send_signal(k, task, SIGNALS["SIGALRM"], siginfo(SIGNALS["SIGALRM"], 0x80),   # SI_KERNEL
                            group=True)
        k.timers.add_timer(seconds * 10**9, it_real_fn)
    return left_s
