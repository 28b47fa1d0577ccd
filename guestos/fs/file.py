"""Open files and the descriptor table (fs/file.c), and the console's file."""
from ..kernel.errno import EBADF, EINVAL, EMFILE, ENXIO, ESPIPE, ENOTTY, SyscallError

S_IFCHR = 0o020000
S_IFREG = 0o100000
NR_OPEN_DEFAULT = 1024


class File:
    """struct file: an open description shared by dup'ed descriptors."""
    mode = S_IFREG | 0o644
    rdev = 0
    size = 0
    ino = 0
    stream = False             # FMODE_STREAM: no position (pipes), pread/pwrite give ESPIPE

    def __init__(self, name: str):
        self.name = name
        self.pos = 0
        self.refs = 0              # descriptors (in any task) that refer to it
        self.flags = 0             # O_* status flags (fcntl F_GETFL/F_SETFL)

    def release(self) -> None:
        """The last descriptor went away."""

    def read(self, task, length: int) -> bytes:
        raise SyscallError(EBADF)

    def write(self, task, data: bytes) -> int:
        raise SyscallError(EBADF)

    def lseek(self, offset: int, whence: int) -> int:
        raise SyscallError(ESPIPE)

    def ioctl(self, cmd: int, arg: int, task=None) -> int:
        raise SyscallError(ENOTTY)

    def fsync(self) -> None:
        """vfs_fsync_range(): a file without an fsync operation (a tty, a pipe, /dev/null)."""
        raise SyscallError(EINVAL)

    # user-memory entry points; block devices override them to DMA straight into user pages
    def read_user(self, k, task, buf: int, count: int, pos: int) -> int:
        data = self.read(task, count)
        if data:
            k.mm.copy_to_user(task, buf, data)
        return len(data)

    def write_user(self, k, task, buf: int, count: int, pos: int) -> int:
        return self.write(task, k.mm.copy_from_user(task, buf, count))


SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE = 0, 1, 2, 3, 4
MAX_LFS_FILESIZE = (1 << 63) - 1


def generic_file_llseek_size(pos: int, offset: int, whence: int, eof: int, maxsize: int = MAX_LFS_FILESIZE) -> int:
    """The new position for lseek (fs/read_write.c): a file without holes has data up to eof and one
    hole from there; a position below 0 or past maxsize is EINVAL."""
    if whence == SEEK_END:
        offset += eof
    elif whence == SEEK_CUR:
        offset += pos
    elif whence in (SEEK_DATA, SEEK_HOLE):
        if offset < 0 or offset >= eof:
            raise SyscallError(ENXIO)
        if whence == SEEK_HOLE:
            offset = eof
    elif whence != SEEK_SET:
        raise SyscallError(EINVAL)
    if offset < 0 or offset > maxsize:
        raise SyscallError(EINVAL)
    return offset


class ConsoleFile(File):
    """/dev/console on ttyS0: writes reach the UART, reads see end of input."""
    mode = S_IFCHR | 0o620
    rdev = (4 << 8) | 64          # ttyS0: major 4, minor 64

    def __init__(self, console):
        super().__init__("/dev/console")
        self.console = console

    def read(self, task, length: int) -> bytes:
        return b""

    def write(self, task, data: bytes) -> int:
        return self.console.write(data)


class TtyFile(File):
    """/dev/ttyS1: raw reads that sleep until the UART has received something."""
    mode = S_IFCHR | 0o620

    def __init__(self, port, name: str, minor: int):
        super().__init__(name)
        self.port = port
        self.rdev = (4 << 8) | minor

    def read(self, task, length: int) -> bytes:
        from ..kernel.sched import WouldBlock
        if not self.port.rx_buf:
            raise WouldBlock(lambda: bool(self.port.rx_buf))
        return self.port.read(length)

    def write(self, task, data: bytes) -> int:
        return self.port.write(data)


class FdTable:
    def __init__(self):
        self.fds = {}
        self.cloexec = set()
        self.users = 1             # tasks sharing the table (CLONE_FILES)

    def get(self, fd: int) -> File:
        f = self.fds.get(fd & 0xFFFFFFFF)                # fdget(unsigned int fd)
        if f is None:
            raise SyscallError(EBADF)
        return f

    def install(self, f: File, lowest: int = 0, cloexec: bool = False) -> int:
        fd = lowest
        while fd in self.fds:
            fd += 1
        if fd >= NR_OPEN_DEFAULT:
            raise SyscallError(EMFILE)
        self.install_at(fd, f, cloexec)
        return fd

    def install_at(self, fd: int, f: File, cloexec: bool = False) -> None:
        if fd in self.fds:
            self.close(fd)
        f.refs += 1
        self.fds[fd] = f
        if cloexec:
            self.cloexec.add(fd)

    def close(self, fd: int) -> None:
        f = self.fds.pop(fd, None)
        if f is None:
            raise SyscallError(EBADF)
        self.cloexec.discard(fd)
        f.refs -= 1
        if f.refs == 0:
            f.release()

    def copy(self) -> "FdTable":
        """dup_fd() at fork: the same open files, one more reference each."""
        new = FdTable()
        for fd, f in self.fds.items():
            new.install_at(fd, f, fd in self.cloexec)
        return new

    def close_on_exec(self) -> None:
        for fd in sorted(self.cloexec):
            self.close(fd)

    def close_all(self) -> None:
        for fd in sorted(self.fds):
            self.close(fd)
