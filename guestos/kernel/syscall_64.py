"""The x86-64 system call table (arch/x86/entry/syscalls/syscall_64.tbl)."""
from ..arch.prctl import sys_arch_prctl
from ..fs import read_write as rw
from ..mm import sys_mm
from ..fs import fcntl, namei
from ..fs import statfs
from . import exec as kexec
from . import exit as kexit
from . import fork, signal, sys

SYSCALL_NAMES = {
    0: "read", 1: "write", 2: "open", 3: "close", 4: "stat", 5: "fstat", 6: "lstat", 8: "lseek",
    9: "mmap", 10: "mprotect", 11: "munmap", 12: "brk", 13: "rt_sigaction", 14: "rt_sigprocmask", 15: "rt_sigreturn",
    16: "ioctl", 17: "pread64", 18: "pwrite64", 19: "readv", 20: "writev", 21: "access", 24: "sched_yield", 28: "madvise",
    26: "msync", 34: "pause", 35: "nanosleep", 37: "alarm", 74: "fsync", 75: "fdatasync", 162: "sync", 39: "getpid", 60: "exit", 62: "kill", 63: "uname", 89: "readlink",
    96: "gettimeofday", 97: "getrlimit", 102: "getuid", 104: "getgid", 107: "geteuid", 108: "getegid",
    110: "getppid", 131: "sigaltstack", 158: "arch_prctl", 186: "gettid", 200: "tkill", 201: "time",
    202: "futex", 218: "set_tid_address", 228: "clock_gettime", 229: "clock_getres",
    230: "clock_nanosleep", 231: "exit_group", 234: "tgkill", 257: "openat", 262: "newfstatat",
    267: "readlinkat", 273: "set_robust_list", 302: "prlimit64", 318: "getrandom", 334: "rseq",
}

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
    131: signal.sys_sigaltstack, 158: sys_arch_prctl, 186: sys.sys_getpid, 200: signal.sys_tkill,
    201: sys.sys_time, 202: sys.sys_futex, 218: sys.sys_set_tid_address, 228: sys.sys_clock_gettime,
    229: sys.sys_clock_getres, 230: sys.sys_clock_nanosleep, 231: kexit.sys_exit_group, 234: signal.sys_tgkill,
    257: rw.sys_openat, 262: rw.sys_newfstatat, 267: rw.sys_readlinkat, 273: sys.sys_set_robust_list,
    302: sys.sys_prlimit64, 318: sys.sys_getrandom, 334: sys.sys_rseq,
    99: sys.sys_sysinfo, 137: statfs.sys_statfs, 138: statfs.sys_fstatfs,
}
