"""Signals with their default actions (kernel/signal.c)."""
from .errno import EINVAL, ESRCH, SyscallError

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


def send_signal(k, task, sig: int) -> None:
    """Deliver with the default action. Handlers are recorded by rt_sigaction but
    not yet invoked: a program that catches a fatal signal still dies of it."""
    if not 1 <= sig <= _NSIG:
        raise SyscallError(EINVAL)
    handler = task.sigactions.get(sig, (SIG_DFL,))[0]
    if sig in SIG_KERNEL_IGNORE or (handler == SIG_IGN and sig not in (9, 19)):
        return
    k.do_exit(task, sig | (0x80 if sig in SIG_KERNEL_COREDUMP else 0), signaled=True)


def sys_rt_sigaction(k, task, sig, act, oact, sigsetsize, *_):
    if not 1 <= sig <= _NSIG or sig in (9, 19) and act:
        raise SyscallError(EINVAL)
    if sigsetsize != 8:
        raise SyscallError(EINVAL)
    old = task.sigactions.get(sig, (SIG_DFL, 0, 0, 0))
    if act:
        raw = k.mm.copy_from_user(task, act, 32)
        task.sigactions[sig] = tuple(int.from_bytes(raw[i:i + 8], "little") for i in range(0, 32, 8))
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


def sys_sigaltstack(k, task, ss, old_ss, *_):
    if old_ss:
        k.mm.copy_to_user(task, old_ss, (0).to_bytes(8, "little") + (2).to_bytes(4, "little")
                          + bytes(4) + (0).to_bytes(8, "little"))       # SS_DISABLE
    return 0


def sys_kill(k, task, pid, sig, *_):
    target = k.find_task(pid if pid > 0 else task.pid)
    if target is None:
        raise SyscallError(ESRCH)
    if sig:
        send_signal(k, target, sig)
    return 0


def sys_tgkill(k, task, tgid, tid, sig, *_):
    return sys_kill(k, task, tid, sig)


def sys_tkill(k, task, tid, sig, *_):
    return sys_kill(k, task, tid, sig)
