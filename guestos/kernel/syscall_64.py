"""The x86-64 system call table (arch/x86/entry/syscalls/syscall_64.tbl) and the typed entry.

Linux declares every argument with SYSCALL_DEFINEn and converts each register to its C type before the
call runs (__SC_CAST): an `int` or `pid_t` is the low 32 bits sign-extended, an `unsigned int` the low
32 bits, a `umode_t` the low 16, an `off_t`/`loff_t`/`long` the whole register signed, a pointer,
`size_t` or `unsigned long` the whole register unsigned. glibc passes pid_t -1 as edi = 0xffffffff with
anything in the upper half, so wait4(-1, ...) only works typed. The types come from syscall_tbl.SYSCALLS
(generated from Linux); ARG_CONVERSIONS and convert_arg() say what each type becomes, and
syscall_entry(nr) applies them to the six registers at dispatch."""
import functools

from ..arch.prctl import sys_arch_prctl
from ..fs import read_write as rw
from ..mm import sys_mm
from ..fs import eventpoll, fcntl, namei, select
from ..fs import statfs
from . import exec as kexec
from . import exit as kexit
from . import fork, futex, itimer, printk, signal, sys
from .syscall_tbl import SYSCALLS

SYSCALL_NAMES = {nr: name for nr, (name, _args) in SYSCALLS.items()}

# C type (qualifiers and pointers aside) -> (bits kept, signed)
S32, U32, U16, S64, U64 = (32, True), (32, False), (16, False), (64, True), (64, False)
ARG_CONVERSIONS = {
    "int": S32, "pid_t": S32, "clockid_t": S32, "timer_t": S32, "key_serial_t": S32, "key_t": S32,
    "mqd_t": S32, "rwf_t": S32, "__s32": S32,
    "unsigned int": U32, "unsigned": U32, "u32": U32, "__u32": U32, "uid_t": U32, "gid_t": U32,
    "qid_t": U32, "enum landlock_rule_type": U32,
    "umode_t": U16,
    "long": S64, "off_t": S64, "loff_t": S64,
    "unsigned long": U64, "size_t": U64, "u64": U64, "__u64": U64, "aio_context_t": U64,
    "cap_user_header_t": U64, "cap_user_data_t": U64,            # pointer typedefs
}


def arg_conversion(ctype: str) -> tuple:
    """(bits, signed) for a C argument type as SYSCALL_DEFINE spells it; pointers are unsigned 64."""
    if "*" in ctype:
        return U64
    base = " ".join(w for w in ctype.split() if w not in ("const", "volatile"))
    return ARG_CONVERSIONS[base]


def _mask_and_sign(ctype: str) -> tuple:
    """(mask, sign bit) of a C type: its value is ((register & mask) ^ sign) - sign (sign 0: unsigned)."""
    bits, signed = arg_conversion(ctype)
    return (1 << bits) - 1, (1 << (bits - 1)) if signed else 0


def convert_arg(ctype: str, value: int) -> int:
    """The value a handler sees for a register holding `value` (0 <= value < 2**64)."""
    mask, sign = _mask_and_sign(ctype)
    return ((value & mask) ^ sign) - sign


def is_user_pointer(ctype: str) -> bool:
    return "__user" in ctype and "*" in ctype


def _make_entry(handler, args: tuple):
    """handler(k, task, converted a0..a5): what dispatch calls (no tuple built on the way). A closure,
    not generated code: nothing to compile at a call's first use; an argument the call does not declare
    has mask 0 and is passed as 0."""
    (m0, s0), (m1, s1), (m2, s2), (m3, s3), (m4, s4), (m5, s5) = \
        [_mask_and_sign(ctype) for ctype, _name in args] + [(0, 0)] * (6 - len(args))

    def entry(k, task, a0, a1, a2, a3, a4, a5):
        return handler(k, task, ((a0 & m0) ^ s0) - s0, ((a1 & m1) ^ s1) - s1, ((a2 & m2) ^ s2) - s2,
                       ((a3 & m3) ^ s3) - s3, ((a4 & m4) ^ s4) - s4, ((a5 & m5) ^ s5) - s5)
    return entry


def _as_tuple(k, task, *values) -> tuple:
    return values


def _make_converter(args: tuple):
    """(a0..a5) -> the six values as the call's types: the entry's conversions, returned as a tuple."""
    return functools.partial(_make_entry(_as_tuple, args), None, None)


def __getattr__(name: str):
    # SYSCALL_ARGS (the converters alone, for tests and tools) is built on first use: dispatch uses
    # SYSCALL_ENTRIES, and building 362 converters at import costs start-up time
    if name == "SYSCALL_ARGS":
        global SYSCALL_ARGS
        SYSCALL_ARGS = {nr: _make_converter(args) for nr, (_name, args) in SYSCALLS.items()}
        return SYSCALL_ARGS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SYSCALL_TABLE = {
    0: rw.sys_read, 1: rw.sys_write, 2: rw.sys_open, 3: rw.sys_close, 5: rw.sys_fstat, 8: rw.sys_lseek,
    9: sys_mm.sys_mmap, 10: sys_mm.sys_mprotect, 11: sys_mm.sys_munmap, 12: sys_mm.sys_brk,
    13: signal.sys_rt_sigaction, 14: signal.sys_rt_sigprocmask, 15: signal.sys_rt_sigreturn, 16: rw.sys_ioctl, 17: rw.sys_pread64, 18: rw.sys_pwrite64, 19: rw.sys_readv,
    20: rw.sys_writev, 21: rw.sys_access, 22: fcntl.sys_pipe, 32: fcntl.sys_dup, 33: fcntl.sys_dup2,
    56: fork.sys_clone, 57: fork.sys_fork, 58: fork.sys_vfork, 59: kexec.sys_execve, 61: kexit.sys_wait4,
    72: fcntl.sys_fcntl, 76: namei.sys_truncate, 77: namei.sys_ftruncate, 79: namei.sys_getcwd,
    80: namei.sys_chdir, 81: namei.sys_fchdir, 82: namei.sys_rename, 83: namei.sys_mkdir, 84: namei.sys_rmdir,
    87: namei.sys_unlink, 217: namei.sys_getdents64, 221: namei.sys_fadvise64, 258: namei.sys_mkdirat,
    263: namei.sys_unlinkat, 264: namei.sys_renameat, 316: namei.sys_renameat2, 4: rw.sys_stat, 6: rw.sys_lstat, 109: sys.sys_setpgid, 121: sys.sys_getpgid, 292: fcntl.sys_dup3,
    293: fcntl.sys_pipe2, 24: sys.sys_sched_yield, 28: sys_mm.sys_madvise,
    26: sys_mm.sys_msync, 34: signal.sys_pause, 35: sys.sys_nanosleep, 37: signal.sys_alarm, 74: rw.sys_fsync, 75: rw.sys_fsync, 162: rw.sys_sync, 39: sys.sys_getpid, 60: sys.sys_exit, 62: signal.sys_kill, 63: sys.sys_uname,
    89: rw.sys_readlink, 96: sys.sys_gettimeofday, 97: sys.sys_getrlimit, 102: sys.sys_getuid,
    104: sys.sys_getuid, 107: sys.sys_getuid, 108: sys.sys_getuid, 110: sys.sys_getppid,
    131: signal.sys_sigaltstack, 158: sys_arch_prctl, 186: sys.sys_gettid, 200: signal.sys_tkill,
    201: sys.sys_time, 218: sys.sys_set_tid_address, 228: sys.sys_clock_gettime,
    229: sys.sys_clock_getres, 230: sys.sys_clock_nanosleep, 231: kexit.sys_exit_group, 234: signal.sys_tgkill,
    257: rw.sys_openat, 262: rw.sys_newfstatat, 267: rw.sys_readlinkat,
    302: sys.sys_prlimit64, 318: sys.sys_getrandom, 334: sys.sys_rseq,
    # issue 12: what shells and coreutils need
    7: select.sys_poll, 23: select.sys_select, 270: select.sys_pselect6, 271: select.sys_ppoll,
    130: signal.sys_rt_sigsuspend, 127: signal.sys_rt_sigpending, 40: rw.sys_sendfile64, 85: rw.sys_creat, 95: sys.sys_umask,
    90: namei.sys_chmod, 91: namei.sys_fchmod, 268: namei.sys_fchmodat, 92: namei.sys_chown,
    93: namei.sys_fchown, 94: namei.sys_lchown, 260: namei.sys_fchownat, 88: namei.sys_symlink,
    266: namei.sys_symlinkat, 133: namei.sys_mknod, 259: namei.sys_mknodat, 280: namei.sys_utimensat,
    115: sys.sys_getgroups, 103: printk.sys_syslog, 98: sys.sys_getrusage, 111: sys.sys_getpgrp,
    112: sys.sys_setsid, 124: sys.sys_getsid, 204: sys.sys_sched_getaffinity, 157: sys.sys_prctl,
    99: sys.sys_sysinfo, 137: statfs.sys_statfs, 138: statfs.sys_fstatfs,
    # issue 12 (compatibility test): links, access, priorities, groups, times, itimers, waitid
    86: namei.sys_link, 265: namei.sys_linkat, 269: namei.sys_faccessat, 439: namei.sys_faccessat2,
    140: sys.sys_getpriority, 141: sys.sys_setpriority, 116: sys.sys_setgroups, 100: sys.sys_times,
    36: itimer.sys_getitimer, 38: itimer.sys_setitimer, 247: kexit.sys_waitid,
    # issue 12: threads
    435: fork.sys_clone3, 202: futex.sys_futex, 273: futex.sys_set_robust_list, 274: futex.sys_get_robust_list,
    213: eventpoll.sys_epoll_create, 291: eventpoll.sys_epoll_create1, 233: eventpoll.sys_epoll_ctl,
    232: eventpoll.sys_epoll_wait, 281: eventpoll.sys_epoll_pwait, 441: eventpoll.sys_epoll_pwait2,
}

# the typed entry point of each implemented call (do_syscall_64 -> __x64_sys_NAME), made by
# syscall_entry() at the call's first use: a run makes a few dozen calls of the 140, and making every
# entry at import costs ~0.8 ms of start-up
SYSCALL_ENTRIES = {}


def syscall_entry(nr: int):
    """The typed entry of call nr, made and kept in SYSCALL_ENTRIES; None for a call not implemented."""
    entry = SYSCALL_ENTRIES.get(nr)
    if entry is None and nr in SYSCALL_TABLE:
        entry = SYSCALL_ENTRIES[nr] = _make_entry(SYSCALL_TABLE[nr], SYSCALLS[nr][1])
    return entry
