"""An strace of the guest: every system call with its task, its arguments decoded as strace(1)
decodes them and its result with the errno name (`strace` on the kernel command line).

The kernel calls trace_syscall() around each call only when tracing is on: Kernel.do_syscall is
swapped for a tracing wrapper at boot, so a run without `strace` pays nothing. Lines follow
strace 6's format: `[pid %5u] ` before every line (we always trace every task, as `strace -f`),
the result aligned at column 40, strings quoted with strace's escapes and cut at 32 bytes
(`-s 32`) with `...`, paths in full, structures for the common calls, pointers in hex.

User memory is read without faulting anything in (the page tables are walked): an argument
that is not mapped prints as its address, as strace prints a pointer it cannot read. Every
argument is read after the call returns, when the call has faulted in what it used, except for
execve and exit, whose memory is gone afterwards."""
import struct

from .errno import ERRNO_NAMES
from .signal import SIGNAL_NAMES
from .syscall_64 import SYSCALL_NAMES, SYSCALL_TABLE, arg_conversion
from .syscall_tbl import SYSCALLS

DEBUGCON_PORT = 0xE9            # a debug console (QEMU's isa-debugcon): where traces go
MAX_STRLEN = 32                 # strace -s 32
PATH_MAX = 4096
RESULT_COLUMN = 40              # strace's acolumn

# --- flag tables (strace's xlat/*.in, values from the uapi headers) ---------------------------
O_ACCMODES = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")
OPEN_FLAGS = ((0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"),
              (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"), (0o10000, "O_DSYNC"), (0o20000, "O_ASYNC"),
              (0o40000, "O_DIRECT"), (0o100000, "O_LARGEFILE"), (0o200000, "O_DIRECTORY"),
              (0o400000, "O_NOFOLLOW"), (0o1000000, "O_NOATIME"), (0o2000000, "O_CLOEXEC"),
              (0o4010000, "O_SYNC"), (0o10000000, "O_PATH"), (0o20200000, "O_TMPFILE"))
PROT_FLAGS = ((1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC"), (0x01000000, "PROT_GROWSDOWN"),
              (0x02000000, "PROT_GROWSUP"))
MAP_TYPES = {1: "MAP_SHARED", 2: "MAP_PRIVATE", 3: "MAP_SHARED_VALIDATE"}
MAP_FLAGS = ((0x10, "MAP_FIXED"), (0x20, "MAP_ANONYMOUS"), (0x40, "MAP_32BIT"), (0x100, "MAP_GROWSDOWN"),
             (0x800, "MAP_DENYWRITE"), (0x1000, "MAP_EXECUTABLE"), (0x2000, "MAP_LOCKED"),
             (0x4000, "MAP_NORESERVE"), (0x8000, "MAP_POPULATE"), (0x10000, "MAP_NONBLOCK"),
             (0x20000, "MAP_STACK"), (0x40000, "MAP_HUGETLB"), (0x80000, "MAP_SYNC"),
             (0x100000, "MAP_FIXED_NOREPLACE"))
AT_FLAGS = ((0x100, "AT_SYMLINK_NOFOLLOW"), (0x200, "AT_REMOVEDIR"), (0x400, "AT_SYMLINK_FOLLOW"),
            (0x800, "AT_NO_AUTOMOUNT"), (0x1000, "AT_EMPTY_PATH"), (0x8000, "AT_RECURSIVE"))
RENAME_FLAGS = ((1, "RENAME_NOREPLACE"), (2, "RENAME_EXCHANGE"), (4, "RENAME_WHITEOUT"))
ACCESS_MODES = ((4, "R_OK"), (2, "W_OK"), (1, "X_OK"))
SA_FLAGS = ((1, "SA_NOCLDSTOP"), (2, "SA_NOCLDWAIT"), (4, "SA_SIGINFO"), (0x04000000, "SA_RESTORER"),
            (0x08000000, "SA_ONSTACK"), (0x10000000, "SA_RESTART"), (0x40000000, "SA_NODEFER"),
            (0x80000000, "SA_RESETHAND"))
CLONE_FLAGS = ((0x100, "CLONE_VM"), (0x200, "CLONE_FS"), (0x400, "CLONE_FILES"), (0x800, "CLONE_SIGHAND"),
               (0x1000, "CLONE_PIDFD"), (0x2000, "CLONE_PTRACE"), (0x4000, "CLONE_VFORK"),
               (0x8000, "CLONE_PARENT"), (0x10000, "CLONE_THREAD"), (0x20000, "CLONE_NEWNS"),
               (0x40000, "CLONE_SYSVSEM"), (0x80000, "CLONE_SETTLS"), (0x100000, "CLONE_PARENT_SETTID"),
               (0x200000, "CLONE_CHILD_CLEARTID"), (0x400000, "CLONE_DETACHED"),
               (0x800000, "CLONE_UNTRACED"), (0x1000000, "CLONE_CHILD_SETTID"))
WAIT_OPTIONS = ((1, "WNOHANG"), (2, "WSTOPPED"), (4, "WEXITED"), (8, "WCONTINUED"), (0x01000000, "WNOWAIT"),
                (0x20000000, "__WNOTHREAD"), (0x40000000, "__WALL"), (0x80000000, "__WCLONE"))
GRND_FLAGS = ((1, "GRND_NONBLOCK"), (2, "GRND_RANDOM"), (4, "GRND_INSECURE"))
CLOCKS = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 2: "CLOCK_PROCESS_CPUTIME_ID", 3: "CLOCK_THREAD_CPUTIME_ID",
          4: "CLOCK_MONOTONIC_RAW", 5: "CLOCK_REALTIME_COARSE", 6: "CLOCK_MONOTONIC_COARSE", 7: "CLOCK_BOOTTIME",
          8: "CLOCK_REALTIME_ALARM", 9: "CLOCK_BOOTTIME_ALARM", 11: "CLOCK_TAI"}
WHENCE = {0: "SEEK_SET", 1: "SEEK_CUR", 2: "SEEK_END", 3: "SEEK_DATA", 4: "SEEK_HOLE"}
SIGPROCMASK_HOW = {0: "SIG_BLOCK", 1: "SIG_UNBLOCK", 2: "SIG_SETMASK"}
ARCH_PRCTL = {0x1001: "ARCH_SET_GS", 0x1002: "ARCH_SET_FS", 0x1003: "ARCH_GET_FS", 0x1004: "ARCH_GET_GS"}
FCNTL_CMDS = {0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL", 5: "F_GETLK", 6: "F_SETLK",
              7: "F_SETLKW", 8: "F_SETOWN", 9: "F_GETOWN", 1030: "F_DUPFD_CLOEXEC", 1031: "F_SETPIPE_SZ",
              1032: "F_GETPIPE_SZ"}
IOCTLS = {0x5401: "TCGETS", 0x5402: "TCSETS", 0x5403: "TCSETSW", 0x5404: "TCSETSF", 0x540B: "TCFLSH",
          0x540E: "TIOCSCTTY", 0x540F: "TIOCGPGRP", 0x5410: "TIOCSPGRP", 0x5413: "TIOCGWINSZ",
          0x5414: "TIOCSWINSZ", 0x541B: "FIONREAD", 0x5421: "FIONBIO", 0x5451: "FIOCLEX", 0x5450: "FIONCLEX",
          0x80081272: "BLKGETSIZE64", 0x1260: "BLKGETSIZE", 0x1268: "BLKSSZGET"}
MADVICE = {0: "MADV_NORMAL", 1: "MADV_RANDOM", 2: "MADV_SEQUENTIAL", 3: "MADV_WILLNEED", 4: "MADV_DONTNEED",
           8: "MADV_FREE", 9: "MADV_REMOVE", 10: "MADV_DONTFORK", 11: "MADV_DOFORK", 12: "MADV_MERGEABLE",
           14: "MADV_HUGEPAGE", 15: "MADV_NOHUGEPAGE"}
FADVICE = {0: "POSIX_FADV_NORMAL", 1: "POSIX_FADV_RANDOM", 2: "POSIX_FADV_SEQUENTIAL", 3: "POSIX_FADV_WILLNEED",
           4: "POSIX_FADV_DONTNEED", 5: "POSIX_FADV_NOREUSE"}
RLIMITS = ("RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
           "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING",
           "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME")
FUTEX_OPS = ("FUTEX_WAIT", "FUTEX_WAKE", "FUTEX_FD", "FUTEX_REQUEUE", "FUTEX_CMP_REQUEUE", "FUTEX_WAKE_OP",
             "FUTEX_LOCK_PI", "FUTEX_UNLOCK_PI", "FUTEX_TRYLOCK_PI", "FUTEX_WAIT_BITSET", "FUTEX_WAKE_BITSET")
S_IFMT_NAMES = {0o140000: "S_IFSOCK", 0o120000: "S_IFLNK", 0o100000: "S_IFREG", 0o060000: "S_IFBLK",
                0o040000: "S_IFDIR", 0o020000: "S_IFCHR", 0o010000: "S_IFIFO"}
AT_FDCWD = -100
RLIM64_INFINITY = (1 << 64) - 1


def flags_text(value: int, table, zero: str = "0") -> str:
    """strace's printflags: the known bits by name, the rest in hex, joined with |."""
    names = []
    for bit, name in table:
        if bit and value & bit == bit:
            names.append(name)
            value &= ~bit
    if value:
        names.append(f"{value:#x}")
    return "|".join(names) if names else zero


def xlat(value: int, table: dict, unknown: str = "/* ??? */") -> str:
    name = table.get(value)
    return name if name is not None else f"{value:#x} {unknown}"


def quote(data: bytes, limit: int = MAX_STRLEN, nul_terminated: bool = False) -> str:
    """string_quote(): C escapes, octal for the rest (three digits when a digit follows)."""
    more = len(data) > limit
    data = data[:limit]
    out = ['"']
    for i, c in enumerate(data):
        if c == 0x22:
            out.append('\\"')
        elif c == 0x5C:
            out.append("\\\\")
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        elif c in b"\t\n\v\f\r":
            out.append({9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r"}[c])
        elif i + 1 < len(data) and 0x30 <= data[i + 1] <= 0x37:
            out.append(f"\\{c:03o}")
        else:
            out.append(f"\\{c:o}")
    out.append('"')
    if more:
        out.append("...")
    return "".join(out)


def s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def s64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def ptr(v: int) -> str:
    return "NULL" if v == 0 else f"{v:#x}"


def mode_text(mode: int) -> str:
    """st_mode: S_IFREG|0644 (and S_ISUID... as octal like strace's)."""
    fmt = S_IFMT_NAMES.get(mode & 0o170000)
    perm = f"{mode & 0o7777:04o}"
    return f"{fmt}|{perm}" if fmt else perm


def sigset_text(mask: int) -> str:
    """[INT CHLD], or ~[...] naming the signals left out when most are in (strace's sprintsigmask)."""
    members = [s for s in range(1, 65) if mask >> (s - 1) & 1]
    if len(members) > 32:
        return "~[" + " ".join(_signame(s, short=True) for s in range(1, 65) if not mask >> (s - 1) & 1) + "]"
    return "[" + " ".join(_signame(s, short=True) for s in members) + "]"


def _signame(sig: int, short: bool = False) -> str:
    name = SIGNAL_NAMES.get(sig)
    if name is None:
        extra = {6: "SIGABRT", 16: "SIGSTKFLT", 20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 24: "SIGXCPU",
                 25: "SIGXFSZ", 26: "SIGVTALRM", 27: "SIGPROF", 29: "SIGIO", 30: "SIGPWR"}
        name = extra.get(sig)
    if name is None:
        if 32 <= sig <= 64:
            name = "SIGRTMIN" if sig == 32 else f"SIGRT_{sig - 32}"
        else:
            return str(sig)
    return name[3:] if short else name


def wait_status_text(status: int) -> str:
    if status == 0xFFFF:
        return "[{WIFCONTINUED(s)}]"
    if status & 0x7F == 0:
        return f"[{{WIFEXITED(s) && WEXITSTATUS(s) == {status >> 8 & 0xFF}}}]"
    if status & 0xFF == 0x7F:
        return f"[{{WIFSTOPPED(s) && WSTOPSIG(s) == {_signame(status >> 8 & 0xFF)}}}]"
    core = " && WCOREDUMP(s)" if status & 0x80 else ""
    return f"[{{WIFSIGNALED(s) && WTERMSIG(s) == {_signame(status & 0x7F)}{core}}}]"


def syscall_name(nr: int):
    """The x86-64 name (SYSCALL_NAMES), else the name of the handler we have; None if neither."""
    name = SYSCALL_NAMES.get(nr)
    if name is None and nr in SYSCALL_TABLE:
        name = SYSCALL_TABLE[nr].__name__.removeprefix("sys_")
    return name


class Call:
    """One traced call: its task, number, raw arguments and what reading its memory needs."""
    __slots__ = ("tracer", "task", "nr", "args", "ret")

    def __init__(self, tracer, task, nr, args):
        self.tracer, self.task, self.nr, self.args, self.ret = tracer, task, nr, args, None

    @property
    def failed(self) -> bool:
        return self.ret is not None and -4095 <= self.ret < 0

    def peek(self, addr: int, length: int) -> bytes:
        return self.tracer.peek(addr, length)

    def string(self, addr: int, limit: int = MAX_STRLEN) -> str:
        """A NUL-terminated string, at most limit characters shown."""
        if addr == 0:
            return "NULL"
        data = self.tracer.peek_string(addr, limit + 1)
        if data is None:
            return ptr(addr)
        return quote(data, limit)

    def path(self, addr: int) -> str:
        return self.string(addr, PATH_MAX)

    def struct(self, addr: int, fmt: str):
        """unpacked fields, or None when the memory is not readable."""
        size = struct.calcsize(fmt)
        data = self.peek(addr, size)
        return struct.unpack(fmt, data) if data is not None and len(data) == size else None


# --- argument printers: (call, value) -> str -------------------------------------------------------

def a_int(c, v):
    return str(s32(v))


def a_long(c, v):
    return str(s64(v))


def a_ulong(c, v):
    return str(v)


def a_hex(c, v):
    return f"{v:#x}" if v else "0"                  # C's %#lx


def a_ptr(c, v):
    return ptr(v)


def a_dirfd(c, v):
    return "AT_FDCWD" if s32(v) == AT_FDCWD else str(s32(v))


def a_path(c, v):
    return c.path(v)


def a_octal(c, v):
    return f"0{v & 0xFFFFFFFF:o}" if v & 0xFFFFFFFF else "000"


def a_open_flags(c, v):
    v &= 0xFFFFFFFF
    acc = O_ACCMODES[v & 3]
    rest = flags_text(v & ~3, OPEN_FLAGS, "")
    return acc + ("|" + rest if rest else "")


def a_fd_flags(c, v):
    """pipe2's and dup3's flags: O_CLOEXEC, O_NONBLOCK..., or 0 (no access mode)."""
    return flags_text(v & 0xFFFFFFFF, OPEN_FLAGS)


def a_prot(c, v):
    return flags_text(v & 0xFFFFFFFF, PROT_FLAGS, "PROT_NONE")


def a_map_flags(c, v):
    v &= 0xFFFFFFFF
    kind = MAP_TYPES.get(v & 0xF, f"{v & 0xF:#x} /* MAP_??? */")
    rest = flags_text(v & ~0xF, MAP_FLAGS, "")
    return kind + ("|" + rest if rest else "")


def a_at_flags(c, v):
    return flags_text(v & 0xFFFFFFFF, AT_FLAGS)


def a_access(c, v):
    return flags_text(v & 0xFFFFFFFF, ACCESS_MODES, "F_OK")


def a_signal(c, v):
    v = s32(v)
    return _signame(v) if 0 < v <= 64 else str(v)


def a_whence(c, v):
    return xlat(v & 0xFFFFFFFF, WHENCE, "/* SEEK_??? */")


def a_clock(c, v):
    return xlat(s32(v), CLOCKS, "/* CLOCK_??? */") if s32(v) >= 0 else str(s32(v))


def a_how(c, v):
    return xlat(v & 0xFFFFFFFF, SIGPROCMASK_HOW, "/* SIG_??? */")


def a_arch_prctl(c, v):
    return xlat(v & 0xFFFFFFFF, ARCH_PRCTL, "/* ARCH_??? */")


def a_ioctl(c, v):
    return xlat(v & 0xFFFFFFFF, IOCTLS, "/* ??? */")


def a_madvice(c, v):
    return xlat(v & 0xFFFFFFFF, MADVICE, "/* MADV_??? */")


def a_fadvice(c, v):
    return xlat(v & 0xFFFFFFFF, FADVICE, "/* POSIX_FADV_??? */")


def a_rlimit(c, v):
    return RLIMITS[v] if v < len(RLIMITS) else f"{v:#x} /* RLIMIT_??? */"


def a_wait_options(c, v):
    return flags_text(v & 0xFFFFFFFF, WAIT_OPTIONS)


def a_grnd(c, v):
    return flags_text(v & 0xFFFFFFFF, GRND_FLAGS)


def a_rename_flags(c, v):
    return flags_text(v & 0xFFFFFFFF, RENAME_FLAGS)


def a_futex_op(c, v):
    op = v & 0xFFFFFFFF
    cmd = op & 0x7F
    name = FUTEX_OPS[cmd] if cmd < len(FUTEX_OPS) else f"{cmd:#x}"
    if op & 128:
        name += "_PRIVATE"
    if op & 256:
        name = "FUTEX_CLOCK_REALTIME|" + name
    return name


def out_after(printer):
    """An output argument: its contents when the call succeeded, else its address."""
    def show(c, v):
        if v == 0:
            return "NULL"
        if c.failed:
            return ptr(v)
        return printer(c, v)
    return show


def _buffer(c, addr, length):
    if addr == 0:
        return "NULL"
    length = max(0, length)
    data = c.peek(addr, min(length, MAX_STRLEN))
    if data is None:
        return ptr(addr)
    return quote(data, MAX_STRLEN) + ("..." if length > MAX_STRLEN and len(data) == MAX_STRLEN else "")


def in_buffer(len_index):
    """write(2)'s buffer: len arguments[len_index] bytes, the first 32 shown."""
    return lambda c, v: _buffer(c, v, s64(c.args[len_index]))


def out_buffer(c, v):
    """read(2)'s buffer: as many bytes as the call returned."""
    return ptr(v) if c.failed else _buffer(c, v, c.ret)


def timespec_text(c, v):
    t = c.struct(v, "<qq")
    return ptr(v) if t is None else f"{{tv_sec={t[0]}, tv_nsec={t[1]}}}"


def timeval_text(c, v):
    t = c.struct(v, "<qq")
    return ptr(v) if t is None else f"{{tv_sec={t[0]}, tv_usec={t[1]}}}"


def a_timespec(c, v):
    return "NULL" if v == 0 else timespec_text(c, v)


def stat_text(c, v):
    """struct stat (x86-64): strace's abbreviated form."""
    st = c.struct(v, "<QQQIIIiQqqq")
    if st is None:
        return ptr(v)
    mode, rdev, size = st[3], st[7], st[8]
    if mode & 0o170000 in (0o020000, 0o060000):
        major, minor = (rdev >> 8) & 0xFFF | (rdev >> 32) & ~0xFFF, rdev & 0xFF | (rdev >> 12) & ~0xFF
        return f"{{st_mode={mode_text(mode)}, st_rdev=makedev({major:#x}, {minor:#x}), ...}}"
    return f"{{st_mode={mode_text(mode)}, st_size={size}, ...}}"


def sigaction_text(c, v):
    sa = c.struct(v, "<QQQQ")          # handler, flags, restorer, mask (the kernel's layout)
    if sa is None:
        return ptr(v)
    handler, flags, restorer, mask = sa
    h = {0: "SIG_DFL", 1: "SIG_IGN"}.get(handler, f"{handler:#x}")
    text = f"{{sa_handler={h}, sa_mask={sigset_text(mask)}, sa_flags={flags_text(flags, SA_FLAGS)}"
    if flags & 0x04000000:
        text += f", sa_restorer={restorer:#x}"
    return text + "}"


def a_sigaction(c, v):
    return "NULL" if v == 0 else sigaction_text(c, v)


def sigset_ptr_text(c, v):
    m = c.struct(v, "<Q")
    return ptr(v) if m is None else sigset_text(m[0])


def a_sigset(c, v):
    return "NULL" if v == 0 else sigset_ptr_text(c, v)


def wstatus_text(c, v):
    s = c.struct(v, "<i")
    return ptr(v) if s is None else wait_status_text(s[0] & 0xFFFF)


def rlimit_text(c, v):
    r = c.struct(v, "<QQ")
    if r is None:
        return ptr(v)

    def one(x):
        if x == RLIM64_INFINITY:
            return "RLIM64_INFINITY"
        return f"{x // 1024}*1024" if x and x % 1024 == 0 else str(x)
    return f"{{rlim_cur={one(r[0])}, rlim_max={one(r[1])}}}"


def a_rlimit_in(c, v):
    return "NULL" if v == 0 else rlimit_text(c, v)


def uname_text(c, v):
    data = c.peek(v, 130)
    if data is None or len(data) < 130:
        return ptr(v)
    sysname, nodename = (data[i * 65:(i + 1) * 65].split(b"\0", 1)[0] for i in range(2))
    return f"{{sysname={quote(sysname, 64)}, nodename={quote(nodename, 64)}, ...}}"


def pipefd_text(c, v):
    p = c.struct(v, "<ii")
    return ptr(v) if p is None else f"[{p[0]}, {p[1]}]"


def iovec_text(c, v, count, total):
    """[{iov_base="...", iov_len=N}, ...]: for writev the data given, for readv the data read."""
    items = []
    left = total
    for i in range(min(count, 1024)):
        iov = c.struct(v + 16 * i, "<QQ")
        if iov is None:
            return ptr(v)
        base, length = iov
        shown = min(length, max(left, 0))
        items.append(f"{{iov_base={_buffer(c, base, shown)}, iov_len={length}}}")
        left -= length
    return "[" + ", ".join(items) + "]"


def a_writev(c, v):
    return iovec_text(c, v, c.args[2] & 0xFFFFFFFF, 1 << 62)


def a_readv(c, v):
    return ptr(v) if c.failed else iovec_text(c, v, c.args[2] & 0xFFFFFFFF, c.ret)


def getdents_text(c, v):
    if c.failed:
        return ptr(v)
    n, off = 0, 0
    data = c.peek(v, c.ret) or b""
    while off + 19 <= len(data):
        reclen = struct.unpack_from("<H", data, off + 16)[0]
        if reclen == 0:
            break
        n += 1
        off += reclen
    return f"{v:#x} /* {n} entries */"


def argv_text(c, v):
    """execve's argv: every string (32 characters each), as strace -v prints fewer than 32 of them."""
    items = []
    for i in range(4096):
        p = c.struct(v + 8 * i, "<Q")
        if p is None:
            return ptr(v)
        if p[0] == 0:
            break
        items.append(c.string(p[0]))
    return "[" + ", ".join(items) + "]"


def envp_text(c, v):
    n = 0
    while n < 4096:
        p = c.struct(v + 8 * n, "<Q")
        if p is None or p[0] == 0:
            break
        n += 1
    return f"{v:#x} /* {n} var{'s' if n != 1 else ''} */"


def a_clone_flags(c, v):
    sig = v & 0xFF
    rest = flags_text(v & ~0xFF, CLONE_FLAGS, "")
    parts = [p for p in (rest, _signame(sig) if sig else "") if p]
    return "|".join(parts) if parts else "0"


def a_fcntl_cmd(c, v):
    return xlat(v & 0xFFFFFFFF, FCNTL_CMDS, "/* F_??? */")


def ret_fcntl(c):
    cmd = c.args[1] & 0xFFFFFFFF
    if cmd == 1:                         # F_GETFD
        return f"{c.ret:#x} (flags FD_CLOEXEC)" if c.ret else "0"
    if cmd == 3:                         # F_GETFL
        return f"{c.ret:#x} (flags {a_open_flags(c, c.ret)})"
    return str(c.ret)


def fcntl_args(c):
    cmd = c.args[1] & 0xFFFFFFFF
    out = [a_int(c, c.args[0]), a_fcntl_cmd(c, cmd)]
    if cmd == 2:
        out.append("FD_CLOEXEC" if c.args[2] & 1 else "0")
    elif cmd == 4:
        out.append(a_open_flags(c, c.args[2]))
    elif cmd in (0, 1030, 8, 1031):
        out.append(a_int(c, c.args[2]))
    elif cmd in (5, 6, 7):
        out.append(ptr(c.args[2]))
    return out


def clone_args(c):
    flags, stack, ptid, ctid, tls = c.args[:5]
    out = [f"child_stack={ptr(stack)}", f"flags={a_clone_flags(c, flags)}"]
    if flags & 0x100000:
        out.append(f"parent_tid={ptr(ptid)}")
    if flags & (0x200000 | 0x1000000):
        out.append(f"child_tidptr={ptr(ctid)}")
    if flags & 0x80000:
        out.append(f"tls={ptr(tls)}")
    return out


FUTEX_OP_NAMES = ("FUTEX_OP_SET", "FUTEX_OP_ADD", "FUTEX_OP_OR", "FUTEX_OP_ANDN", "FUTEX_OP_XOR")
FUTEX_CMP_NAMES = ("FUTEX_OP_CMP_EQ", "FUTEX_OP_CMP_NE", "FUTEX_OP_CMP_LT", "FUTEX_OP_CMP_LE", "FUTEX_OP_CMP_GT",
                   "FUTEX_OP_CMP_GE")


def futex_args(c):
    """strace's futex: the arguments each command uses (timeout, val2, uaddr2, val3)."""
    uaddr, op, val, utime, uaddr2, val3 = c.args
    cmd = op & 0x7F
    out = [ptr(uaddr), a_futex_op(c, op), str(val & 0xFFFFFFFF)]
    val3 &= 0xFFFFFFFF
    bitset = "FUTEX_BITSET_MATCH_ANY" if val3 == 0xFFFFFFFF else f"{val3:#x}"
    if cmd == 0:                                         # WAIT
        out.append(a_timespec(c, utime))
    elif cmd == 9:                                       # WAIT_BITSET
        out += [a_timespec(c, utime), bitset]
    elif cmd == 10:                                      # WAKE_BITSET
        out += [bitset]
    elif cmd in (3, 4):                                  # REQUEUE, CMP_REQUEUE
        out += [str(utime & 0xFFFFFFFF), ptr(uaddr2)] + ([str(val3)] if cmd == 4 else [])
    elif cmd == 5:                                       # WAKE_OP
        fop, fcmp = val3 >> 28 & 7, val3 >> 24 & 15
        op_text = (FUTEX_OP_NAMES[fop & 7] if fop & 7 < 5 else str(fop & 7)) + \
            ("|FUTEX_OP_OPARG_SHIFT" if fop & 8 else "")
        cmp_text = FUTEX_CMP_NAMES[fcmp] if fcmp < 6 else str(fcmp)
        out += [str(utime & 0xFFFFFFFF), ptr(uaddr2),
                f"{op_text}<<28|{val3 >> 12 & 0xFFF:#x}<<12|{cmp_text}<<24|{val3 & 0xFFF:#x}"]
    return out


def clone3_args(c):
    """clone3({flags=..., child_tid=..., parent_tid=..., exit_signal=..., stack=..., stack_size=..., tls=...}, size)."""
    uargs, size = c.args[:2]
    f = c.struct(uargs, "<8Q")
    if f is None:
        return [ptr(uargs), str(size)]
    flags, _pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls = f
    fields = [f"flags={a_clone_flags(c, flags)}"]
    if flags & (0x200000 | 0x1000000):
        fields.append(f"child_tid={ptr(child_tid)}")
    if flags & 0x100000:
        fields.append(f"parent_tid={ptr(parent_tid)}")
    fields += [f"exit_signal={_signame(exit_signal) if exit_signal else 0}", f"stack={ptr(stack)}",
               f"stack_size={stack_size:#x}"]
    if flags & 0x80000:
        fields.append(f"tls={ptr(tls)}")
    return ["{" + ", ".join(fields) + "}", str(size)]


EPOLL_EVENTS = ((0x1, "EPOLLIN"), (0x2, "EPOLLPRI"), (0x4, "EPOLLOUT"), (0x8, "EPOLLERR"), (0x10, "EPOLLHUP"),
                (0x2000, "EPOLLRDHUP"), (1 << 28, "EPOLLEXCLUSIVE"), (1 << 29, "EPOLLWAKEUP"),
                (1 << 30, "EPOLLONESHOT"), (1 << 31, "EPOLLET"))
EPOLL_CTL_OPS = {1: "EPOLL_CTL_ADD", 2: "EPOLL_CTL_DEL", 3: "EPOLL_CTL_MOD"}


def _epoll_event_text(events: int, data: int) -> str:
    return f"{{events={flags_text(events, EPOLL_EVENTS)}, data={{u32={data & 0xFFFFFFFF}, u64={data}}}}}"


def a_epoll_event(c, v):
    e = c.struct(v, "<IQ") if v else None
    return ptr(v) if e is None else _epoll_event_text(*e)


def a_epoll_events_out(c, v):
    if c.failed or not c.ret:
        return ptr(v) if c.failed else "[]"
    raw = c.peek(v, 12 * c.ret)
    if raw is None:
        return ptr(v)
    return "[" + ", ".join(_epoll_event_text(*struct.unpack_from("<IQ", raw, 12 * i)) for i in range(c.ret)) + "]"


def ret_hex(c):
    return f"{c.ret:#x}" if c.ret else "0"


# name -> (argument printers, result printer or None); a callable instead of a tuple prints every argument
DECODERS = {
    "read": ((a_int, out_buffer, a_ulong), None),
    "write": ((a_int, in_buffer(2), a_ulong), None),
    "open": ((a_path, a_open_flags, a_octal), None),
    "close": ((a_int,), None),
    "stat": ((a_path, out_after(stat_text)), None),
    "fstat": ((a_int, out_after(stat_text)), None),
    "lstat": ((a_path, out_after(stat_text)), None),
    "lseek": ((a_int, a_long, a_whence), None),
    "mmap": ((a_ptr, a_ulong, a_prot, a_map_flags, a_int, a_hex), ret_hex),
    "mprotect": ((a_ptr, a_ulong, a_prot), None),
    "munmap": ((a_ptr, a_ulong), None),
    "brk": ((a_ptr,), ret_hex),
    "rt_sigaction": ((a_signal, a_sigaction, out_after(sigaction_text), a_ulong), None),
    "rt_sigprocmask": ((a_how, a_sigset, out_after(sigset_ptr_text), a_ulong), None),
    "ioctl": ((a_int, a_ioctl, a_ptr), None),
    "pread64": ((a_int, out_buffer, a_ulong, a_long), None),
    "pwrite64": ((a_int, in_buffer(2), a_ulong, a_long), None),
    "readv": ((a_int, a_readv, a_int), None),
    "writev": ((a_int, a_writev, a_int), None),
    "access": ((a_path, a_access), None),
    "pipe": ((out_after(pipefd_text),), None),
    "sched_yield": ((), None),
    "madvise": ((a_ptr, a_ulong, a_madvice), None),
    "dup": ((a_int,), None),
    "dup2": ((a_int, a_int), None),
    "nanosleep": ((a_timespec, out_after(timespec_text)), None),
    "getpid": ((), None),
    "clone": (clone_args, None),
    "fork": ((), None),
    "vfork": ((), None),
    "execve": ((a_path, argv_text, envp_text), None),
    "exit": ((a_int,), None),
    "wait4": ((a_int, lambda c, v: ptr(v) if c.failed or c.ret == 0 else wstatus_text(c, v),
               a_wait_options, a_ptr), None),
    "kill": ((a_int, a_signal), None),
    "uname": ((out_after(uname_text),), None),
    "fcntl": (fcntl_args, ret_fcntl),
    "fsync": ((a_int,), None),
    "fdatasync": ((a_int,), None),
    "truncate": ((a_path, a_long), None),
    "ftruncate": ((a_int, a_long), None),
    "getcwd": ((lambda c, v: ptr(v) if c.failed else c.path(v), a_ulong), None),
    "chdir": ((a_path,), None),
    "fchdir": ((a_int,), None),
    "rename": ((a_path, a_path), None),
    "mkdir": ((a_path, a_octal), None),
    "rmdir": ((a_path,), None),
    "unlink": ((a_path,), None),
    "readlink": ((a_path, lambda c, v: ptr(v) if c.failed else _buffer(c, v, c.ret), a_ulong), None),
    "gettimeofday": ((out_after(timeval_text), a_ptr), None),
    "getrlimit": ((a_rlimit, out_after(rlimit_text)), None),
    "getuid": ((), None), "getgid": ((), None), "geteuid": ((), None), "getegid": ((), None),
    "getppid": ((), None), "getpgrp": ((), None), "setsid": ((), None), "gettid": ((), None),
    "setpgid": ((a_int, a_int), None),
    "getpgid": ((a_int,), None),
    "arch_prctl": ((a_arch_prctl, a_hex), None),
    "sync": ((), None),
    "tkill": ((a_int, a_signal), None),
    "time": ((out_after(lambda c, v: str(c.struct(v, "<q")[0]) if c.struct(v, "<q") else ptr(v)),), None),
    "futex": (futex_args, None),
    "clone3": (clone3_args, None),
    "epoll_create1": ((lambda c, v: "EPOLL_CLOEXEC" if v & 0o2000000 else str(v),), None),
    "epoll_ctl": ((a_int, lambda c, v: EPOLL_CTL_OPS.get(v & 0xFFFFFFFF, str(v)), a_int, a_epoll_event), None),
    "epoll_wait": ((a_int, a_epoll_events_out, a_int, a_int), None),
    "epoll_pwait": ((a_int, a_epoll_events_out, a_int, a_int, a_sigset, a_ulong), None),
    "get_robust_list": ((a_int, a_ptr, a_ptr), None),
    "getdents64": ((a_int, getdents_text, a_ulong), None),
    "set_tid_address": ((a_ptr,), None),
    "fadvise64": ((a_int, a_long, a_long, a_fadvice), None),
    "clock_gettime": ((a_clock, out_after(timespec_text)), None),
    "clock_getres": ((a_clock, out_after(timespec_text)), None),
    "clock_nanosleep": ((a_clock, lambda c, v: "TIMER_ABSTIME" if v & 1 else "0", a_timespec,
                         out_after(timespec_text)), None),
    "exit_group": ((a_int,), None),
    "tgkill": ((a_int, a_int, a_signal), None),
    "openat": ((a_dirfd, a_path, a_open_flags, a_octal), None),
    "mkdirat": ((a_dirfd, a_path, a_octal), None),
    "newfstatat": ((a_dirfd, a_path, out_after(stat_text), a_at_flags), None),
    "unlinkat": ((a_dirfd, a_path, a_at_flags), None),
    "renameat": ((a_dirfd, a_path, a_dirfd, a_path), None),
    "renameat2": ((a_dirfd, a_path, a_dirfd, a_path, a_rename_flags), None),
    "readlinkat": ((a_dirfd, a_path, lambda c, v: ptr(v) if c.failed else _buffer(c, v, c.ret), a_ulong), None),
    "set_robust_list": ((a_ptr, a_ulong), None),
    "dup3": ((a_int, a_int, a_fd_flags), None),
    "pipe2": ((out_after(pipefd_text), a_fd_flags), None),
    "prlimit64": ((a_int, a_rlimit, a_rlimit_in, out_after(rlimit_text)), None),
    "getrandom": ((lambda c, v: ptr(v) if c.failed else
                   _hexbuffer(c.peek(v, min(c.ret, MAX_STRLEN)), c.ret), a_ulong, a_grnd), None),
    "rseq": ((a_ptr, a_hex, a_int, a_hex), None),
    "sigaltstack": ((a_ptr, a_ptr), None),
    "msync": ((a_ptr, a_ulong, a_hex), None),
}


PRIO_WHICH = {0: "PRIO_PROCESS", 1: "PRIO_PGRP", 2: "PRIO_USER"}
ITIMERS = {0: "ITIMER_REAL", 1: "ITIMER_VIRTUAL", 2: "ITIMER_PROF"}
IDTYPES = {0: "P_ALL", 1: "P_PID", 2: "P_PGID", 3: "P_PIDFD"}
WAITID_OPTIONS = ((1, "WNOHANG"), (2, "WSTOPPED"), (4, "WEXITED"), (8, "WCONTINUED"), (0x01000000, "WNOWAIT"),
                  (0x20000000, "__WNOTHREAD"), (0x40000000, "__WALL"), (0x80000000, "__WCLONE"))
ACCESSAT_FLAGS = ((0x100, "AT_SYMLINK_NOFOLLOW"), (0x200, "AT_EACCESS"), (0x1000, "AT_EMPTY_PATH"))


def itimerval_text(c, v):
    t = c.struct(v, "<4q")
    if t is None:
        return ptr(v)
    return (f"{{it_interval={{tv_sec={t[0]}, tv_usec={t[1]}}}, "
            f"it_value={{tv_sec={t[2]}, tv_usec={t[3]}}}}}")


def tms_text(c, v):
    t = c.struct(v, "<4q")
    return ptr(v) if t is None else (f"{{tms_utime={t[0]}, tms_stime={t[1]}, tms_cutime={t[2]}, "
                                     f"tms_cstime={t[3]}}}")


def gid_list_text(c, v, count):
    if count <= 0:
        return "[]" if v else "NULL"
    gids = c.struct(v, f"<{min(count, 32)}I")
    return ptr(v) if gids is None else "[" + ", ".join(map(str, gids)) + (", ..." if count > 32 else "") + "]"


def waitid_info_text(c, v):
    info = c.peek(v, 48)
    if info is None or len(info) < 48:
        return ptr(v)
    if struct.unpack_from("<i", info)[0] == 0:
        return "{}"                                     # WNOHANG and nothing to report
    return siginfo_text(info)


PRCTL_OPTIONS = {1: "PR_SET_PDEATHSIG", 2: "PR_GET_PDEATHSIG", 3: "PR_GET_DUMPABLE", 4: "PR_SET_DUMPABLE",
                 15: "PR_SET_NAME", 16: "PR_GET_NAME", 22: "PR_GET_SECCOMP", 36: "PR_SET_CHILD_SUBREAPER",
                 38: "PR_SET_NO_NEW_PRIVS", 39: "PR_GET_NO_NEW_PRIVS"}
FS_MAGICS = {0xEF53: "EXT2_SUPER_MAGIC", 0x9FA0: "PROC_SUPER_MAGIC", 0x858458F6: "RAMFS_MAGIC",
             0x01021994: "TMPFS_MAGIC"}
STATFS_FLAGS = ((1, "ST_RDONLY"), (2, "ST_NOSUID"), (4, "ST_NODEV"), (8, "ST_NOEXEC"), (16, "ST_SYNCHRONOUS"),
                (32, "ST_VALID"), (64, "ST_MANDLOCK"), (1024, "ST_NOATIME"), (2048, "ST_NODIRATIME"),
                (4096, "ST_RELATIME"))


# --- printers from the table: every call strace has no special decoder for is printed by its types ---
FD_NAMES = {"fd", "fildes", "oldfd", "newfd", "out_fd", "in_fd", "epfd", "ufd", "fd_in", "fd_out", "pidfd",
            "mqdes"}
ADDRESS_NAMES = {"start", "addr", "new_addr", "old_addr", "brk", "ptr"}
DIRFD_NAMES = {"dfd", "olddfd", "newdfd", "dirfd", "from_dfd", "to_dfd"}


def printer_for(ctype: str, name: str):
    """The printer of one argument from its C type and name (syscall_tbl.SYSCALLS): descriptors and
    directory descriptors, signals, strings, modes and flags, then signed, unsigned and pointer values."""
    if "*" in ctype:
        if "char" in ctype and "const" in ctype and "*const" not in ctype.replace(" ", ""):
            return a_path                               # a NUL-terminated string the call reads
        return a_ptr
    if name in DIRFD_NAMES:
        return a_dirfd
    if name in FD_NAMES:
        return a_int
    if name == "sig":
        return a_signal
    if name == "mode" or ctype == "umode_t":
        return a_octal
    if name in ("flags", "flag") or name.endswith("_flags"):
        return a_hex
    if name in ADDRESS_NAMES and ctype == "unsigned long":
        return a_ptr                                    # an address passed as a number (mlock, mremap)
    bits, signed = arg_conversion(ctype)
    if signed:
        return a_int if bits == 32 else a_long
    return a_ulong if bits == 64 else (lambda c, v: str(v & 0xFFFFFFFF))


TABLE_PRINTERS = {name: tuple(printer_for(ctype, arg) for ctype, arg in args) for name, args in SYSCALLS.values()}


def prctl_args(c):
    option = c.args[0] & 0xFFFFFFFF
    name = PRCTL_OPTIONS.get(option, f"{option:#x} /* PR_??? */")
    if option == 15:
        return [name, c.string(c.args[1], 16)]
    if option == 16:
        return [name, c.string(c.args[1], 16) if not c.failed else ptr(c.args[1])]
    if option in (3, 22, 39):
        return [name]
    return [name] + [f"{a:#x}" if a else "0" for a in c.args[1:5]]


def statfs_text(c, v):
    st = c.struct(v, "<qqQQQQQiiqqq")
    if st is None:
        return ptr(v)
    magic = FS_MAGICS.get(st[0], f"{st[0]:#x}")
    return (f"{{f_type={magic}, f_bsize={st[1]}, f_blocks={st[2]}, f_bfree={st[3]}, f_bavail={st[4]}, "
            f"f_files={st[5]}, f_ffree={st[6]}, f_fsid={{val=[{st[7]}, {st[8]}]}}, f_namelen={st[9]}, "
            f"f_frsize={st[10]}, f_flags={flags_text(st[11], STATFS_FLAGS)}}}")


def sysinfo_text(c, v):
    si = c.struct(v, "<q3Q6QH6x2QI")
    if si is None:
        return ptr(v)
    return (f"{{uptime={si[0]}, loads=[{si[1]}, {si[2]}, {si[3]}], totalram={si[4]}, freeram={si[5]}, "
            f"sharedram={si[6]}, bufferram={si[7]}, totalswap={si[8]}, freeswap={si[9]}, procs={si[10]}, "
            f"totalhigh={si[11]}, freehigh={si[12]}, mem_unit={si[13]}}}")


def offset_ptr_text(c, v):
    """sendfile's in/out offset: [N]."""
    if v == 0:
        return "NULL"
    o = c.struct(v, "<q")
    return ptr(v) if o is None else f"[{o[0]}]"


def ret_octal(c):
    return a_octal(c, c.ret)


def rt_sigreturn_args(c):
    """{mask=[...]}: the mask the frame restores (uc_sigmask, read before the frame is gone)."""
    uc = c.tracer.k.hw.cpu.reg("rsp")
    mask = c.struct(uc + 8 + 8 + 24 + 256, "<Q")
    return [f"{{mask={sigset_text(mask[0])}}}" if mask else ptr(uc)]


DECODERS.update({
    "rt_sigreturn": (rt_sigreturn_args, None),
    "sendfile": ((a_int, a_int, offset_ptr_text, a_ulong), None),
    "prctl": (prctl_args, None),
    "statfs": ((a_path, out_after(statfs_text)), None),
    "fstatfs": ((a_int, out_after(statfs_text)), None),
    "sysinfo": ((out_after(sysinfo_text),), None),
    "umask": ((a_octal,), ret_octal),
    "chmod": ((a_path, a_octal), None),
    "fchmod": ((a_int, a_octal), None),
    "fchmodat": ((a_dirfd, a_path, a_octal), None),
    "chown": ((a_path, a_int, a_int), None),
    "lchown": ((a_path, a_int, a_int), None),
    "fchown": ((a_int, a_int, a_int), None),
    "symlink": ((a_path, a_path), None),
    "symlinkat": ((a_path, a_dirfd, a_path), None),
    "link": ((a_path, a_path), None),
    "linkat": ((a_dirfd, a_path, a_dirfd, a_path, a_at_flags), None),
    "mknod": ((a_path, lambda c, v: mode_text(v & 0xFFFFFFFF), a_hex), None),
    "mknodat": ((a_dirfd, a_path, lambda c, v: mode_text(v & 0xFFFFFFFF), a_hex), None),
    "utimensat": ((a_dirfd, a_path, a_ptr, a_at_flags), None),
    "setsid": ((), None), "getpgrp": ((), None),
    "rt_sigsuspend": ((a_sigset, a_ulong), None),
    "rt_sigpending": ((out_after(sigset_ptr_text), a_ulong), None),
    "getrusage": ((lambda c, v: {0: "RUSAGE_SELF", 0xFFFFFFFF: "RUSAGE_CHILDREN", 1: "RUSAGE_THREAD"}.get(
        v & 0xFFFFFFFF, str(s32(v))), a_ptr), None),
    "alarm": ((a_ulong,), None),
    "pause": ((), None),
    "setuid": ((a_int,), None), "setgid": ((a_int,), None),
    "sched_getaffinity": ((a_int, a_ulong, a_ptr), None),
    "chroot": ((a_path,), None),
    "sync_file_range": ((a_int, a_long, a_long, a_hex), None),
    "getpriority": ((lambda c, v: xlat(s32(v), PRIO_WHICH, "/* PRIO_??? */"), a_int), None),
    "setpriority": ((lambda c, v: xlat(s32(v), PRIO_WHICH, "/* PRIO_??? */"), a_int, a_int), None),
    "getgroups": ((a_int, lambda c, v: ptr(v) if c.failed or not s32(c.args[0]) else
                   gid_list_text(c, v, c.ret)), None),
    "setgroups": ((a_int, lambda c, v: gid_list_text(c, v, s32(c.args[0]))), None),
    "times": ((out_after(tms_text),), None),
    "getitimer": ((lambda c, v: xlat(s32(v), ITIMERS, "/* ITIMER_??? */"), out_after(itimerval_text)), None),
    "setitimer": ((lambda c, v: xlat(s32(v), ITIMERS, "/* ITIMER_??? */"),
                   lambda c, v: "NULL" if v == 0 else itimerval_text(c, v), out_after(itimerval_text)), None),
    "waitid": ((lambda c, v: xlat(s32(v), IDTYPES, "/* P_??? */"), a_int, out_after(waitid_info_text),
                lambda c, v: flags_text(v & 0xFFFFFFFF, WAITID_OPTIONS), a_ptr), None),
    "faccessat": ((a_dirfd, a_path, a_access), None),
    "faccessat2": ((a_dirfd, a_path, a_access, lambda c, v: flags_text(v & 0xFFFFFFFF, ACCESSAT_FLAGS)), None),
})


def _hexbuffer(data, length):
    """getrandom's buffer: strace prints random bytes as \\x escapes."""
    if data is None:
        return "NULL"
    return '"' + "".join(f"\\x{b:02x}" for b in data) + '"' + ("..." if length > MAX_STRLEN else "")


# open's mode and O_CREAT: strace prints the mode only when the call uses it
def _drop_unused_mode(name, c, printed):
    flags_index = {"open": 1, "openat": 2}.get(name)
    if flags_index is not None and not c.args[flags_index] & (0o100 | 0o20000000):
        return printed[:-1]
    return printed


SI_CODES = {0: "SI_USER", 0x80: "SI_KERNEL", -1: "SI_QUEUE", -2: "SI_TIMER", -3: "SI_MESGQ", -4: "SI_ASYNCIO",
            -6: "SI_TKILL"}
FAULT_CODES = {4: {1: "ILL_ILLOPC", 2: "ILL_ILLOPN", 3: "ILL_ILLADR", 4: "ILL_ILLTRP", 5: "ILL_PRVOPC",
                   6: "ILL_PRVREG", 7: "ILL_COPROC", 8: "ILL_BADSTK"},
               8: {1: "FPE_INTDIV", 2: "FPE_INTOVF", 3: "FPE_FLTDIV", 4: "FPE_FLTOVF", 5: "FPE_FLTUND",
                   6: "FPE_FLTRES", 7: "FPE_FLTINV", 8: "FPE_FLTSUB"},
               11: {1: "SEGV_MAPERR", 2: "SEGV_ACCERR", 3: "SEGV_BNDERR", 4: "SEGV_PKUERR"},
               7: {1: "BUS_ADRALN", 2: "BUS_ADRERR", 3: "BUS_OBJERR"},
               5: {1: "TRAP_BRKPT", 2: "TRAP_TRACE"}}
CLD_CODES = {1: "CLD_EXITED", 2: "CLD_KILLED", 3: "CLD_DUMPED", 4: "CLD_TRAPPED", 5: "CLD_STOPPED",
             6: "CLD_CONTINUED"}


def siginfo_text(info: bytes) -> str:
    """printsiginfo(): the fields strace shows for the signal and its si_code."""
    sig, _, code = struct.unpack_from("<iii", info)
    head = f"si_signo={_signame(sig)}"
    if code <= 0 or code == 0x80:
        pid, uid = struct.unpack_from("<ii", info, 16)
        name = SI_CODES.get(code, str(code))
        if code == 0x80:
            return f"{{{head}, si_code={name}}}"
        return f"{{{head}, si_code={name}, si_pid={pid}, si_uid={uid}}}"
    if sig == 17:
        pid, uid, status = struct.unpack_from("<iii", info, 16)
        utime, stime = struct.unpack_from("<qq", info, 32)
        return (f"{{{head}, si_code={CLD_CODES.get(code, code)}, si_pid={pid}, si_uid={uid}, "
                f"si_status={_signame(status) if code != 1 else status}, si_utime={utime}, si_stime={stime}}}")
    names = FAULT_CODES.get(sig)
    if names is not None:
        addr = struct.unpack_from("<Q", info, 16)[0]
        return f"{{{head}, si_code={names.get(code, code)}, si_addr={ptr(addr)}}}"
    return f"{{{head}, si_code={code}}}"


class Strace:
    """The tracer: formats each call and hands the line to write()."""

    def __init__(self, kernel, write):
        self.k = kernel
        self.write = write
        self.in_call = None

    # reading user memory without faulting it in
    def peek(self, addr: int, length: int):
        if length <= 0:
            return b""
        out = bytearray()
        cpu = self.k.hw.cpu
        ram = self.k.hw.ram
        while length > 0:
            n = min(length, 4096 - (addr & 0xFFF))
            if addr >= 1 << 47:
                break
            segs = cpu.user_segments(addr, n, False)
            if not segs:
                break
            for paddr, seglen in segs:
                out += ram[paddr:paddr + seglen]
            addr += n
            length -= n
        return bytes(out) if out else None

    def peek_string(self, addr: int, limit: int):
        out = bytearray()
        while len(out) < limit:
            n = min(limit - len(out), 4096 - (addr & 0xFFF))
            chunk = self.peek(addr, n)
            if chunk is None:
                return bytes(out) if out else None
            nul = chunk.find(0)
            if nul >= 0:
                return bytes(out + chunk[:nul])
            out += chunk
            addr += n
        return bytes(out)

    def prefix(self, task) -> str:
        return f"[pid {task.pid:5d}] "

    def format_args(self, call) -> str:
        """The decoded arguments; raw hex if a decoder trips over what the guest passed (a trace
        must never stop the machine)."""
        try:
            return self._format_args(call)
        except Exception:                                   # noqa: BLE001 (any guest input)
            return ", ".join(f"{a:#x}" for a in call.args)

    def _format_args(self, call) -> str:
        name = syscall_name(call.nr)
        spec = DECODERS.get(name)
        if spec is None:
            printers = TABLE_PRINTERS.get(name)
            if printers is None:                        # not an x86-64 call at all: raw registers
                return ", ".join(f"{a:#x}" for a in call.args)
            return ", ".join(p(call, call.args[i]) for i, p in enumerate(printers))
        printers, _ = spec
        if callable(printers):
            return ", ".join(printers(call))
        printed = [p(call, call.args[i]) for i, p in enumerate(printers)]
        return ", ".join(_drop_unused_mode(name, call, printed))

    def format_result(self, call) -> str:
        ret = call.ret
        if -4095 <= ret < 0:
            name, message = ERRNO_NAMES.get(-ret, (None, None))
            if name is None:
                return f"-1 errno {-ret} (Unknown error {-ret})"
            return f"-1 {name} ({message})"
        spec = DECODERS.get(syscall_name(call.nr))
        if spec is not None and spec[1] is not None:
            try:
                return spec[1](call)
            except Exception:                               # noqa: BLE001
                pass
        return str(ret)

    def line(self, call, args_text: str, result: str) -> str:
        name = syscall_name(call.nr) or f"syscall_{call.nr:#x}"
        head = f"{self.prefix(call.task)}{name}({args_text})"
        return head + (" " * (RESULT_COLUMN - len(head)) if len(head) < RESULT_COLUMN else " ") + "= " + result + "\n"

    def trace_syscall(self, task, nr, args, do_call) -> None:
        """Run do_call() (the call itself) and write its line. A call that sleeps and will be run
        again writes nothing now: its line comes when it completes."""
        call = Call(self, task, nr, tuple(args))
        name = syscall_name(nr)
        early = self.format_args(call) if name in ("execve", "exit", "exit_group", "rt_sigreturn") else None
        self.in_call = task
        try:
            done, ret = do_call()
        finally:
            self.in_call = None
        if not done:
            return
        if ret is None:                               # the task is gone: exit, or killed in the call
            self.write(self.line(call, early if early is not None else self.format_args(call), "?"))
            self.exited(task, task.exit_code)
            return
        call.ret = s64(ret)
        self.write(self.line(call, early if early is not None else self.format_args(call),
                             self.format_result(call)))

    def signal(self, task, sig: int, info: bytes) -> None:
        """--- SIGNAME {siginfo} ---: a signal delivered to a handler."""
        try:
            text = siginfo_text(info)
        except Exception:                                   # noqa: BLE001
            text = "{...}"
        self.write(f"{self.prefix(task)}--- {_signame(sig)} {text} ---\n")

    def exited(self, task, status: int) -> None:
        """+++ exited with N +++ or +++ killed by SIG +++, after the task's last line."""
        if task is self.in_call:
            return                                    # trace_syscall writes it after the call's line
        if status & 0x7F == 0:
            self.write(f"{self.prefix(task)}+++ exited with {status >> 8 & 0xFF} +++\n")
        else:
            core = " (core dumped)" if status & 0x80 else ""
            self.write(f"{self.prefix(task)}+++ killed by {_signame(status & 0x7F)}{core} +++\n")


def strace_start(k) -> None:
    """`strace` on the command line: trace every system call to the debug console (port 0xe9, which
    reads back 0xe9 when present, as QEMU's isa-debugcon), else to the console. The kernel's system
    call entry is replaced by a tracing one for this kernel only: untraced kernels keep the plain one."""
    hw = k.hw
    if hw.port_in(DEBUGCON_PORT) == DEBUGCON_PORT:
        def write(line):
            hw.port_out_string(DEBUGCON_PORT, line.encode())
    else:
        def write(line):
            k.console.write(line.encode())
    tracer = k.strace = Strace(k, write)
    plain = k.do_syscall

    def do_syscall_traced(task) -> None:
        nr, *args = hw.cpu.syscall_args()

        def call():
            k.syscall_blocked = False
            plain(task)
            if k.syscall_blocked:                   # it sleeps and will run again: no line yet
                return False, None
            return True, None if task.exited else hw.cpu.reg("rax")
        tracer.trace_syscall(task, nr, args, call)

    k.do_syscall = do_syscall_traced
