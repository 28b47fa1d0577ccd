"""Open files and the descriptor table (fs/file.c), and the console's file."""
from ..kernel.errno import EBADF, EMFILE, ESPIPE, ENOTTY, SyscallError

S_IFCHR = 0o020000
S_IFREG = 0o100000
NR_OPEN_DEFAULT = 1024


class File:
    """struct file: an open description shared by dup'ed descriptors."""
    mode = S_IFREG | 0o644
    rdev = 0
    size = 0
    ino = 0

    def __init__(self, name: str):
        self.name = name
        self.pos = 0

    def read(self, task, length: int) -> bytes:
        raise SyscallError(EBADF)

    def write(self, task, data: bytes) -> int:
        raise SyscallError(EBADF)

    def lseek(self, offset: int, whence: int) -> int:
        raise SyscallError(ESPIPE)

    def ioctl(self, cmd: int, arg: int, task=None) -> int:
        raise SyscallError(ENOTTY)

    def fsync(self) -> None:
        """Nothing is cached on the way to most files."""

    # user-memory entry points; block devices override them to DMA straight into user pages
    def read_user(self, k, task, buf: int, count: int, pos: int) -> int:
        data = self.read(task, count)
        if data:
            k.mm.copy_to_user(task, buf, data)
        return len(data)

    def write_user(self, k, task, buf: int, count: int, pos: int) -> int:
        return self.write(task, k.mm.copy_from_user(task, buf, count))


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


class FdTable:
    def __init__(self):
        self.fds = {}

    def get(self, fd: int) -> File:
        f = self.fds.get(fd)
        if f is None:
            raise SyscallError(EBADF)
        return f

    def install(self, f: File, lowest: int = 0) -> int:
        fd = lowest
        while fd in self.fds:
            fd += 1
        if fd >= NR_OPEN_DEFAULT:
            raise SyscallError(EMFILE)
        self.fds[fd] = f
        return fd

    def close(self, fd: int) -> None:
        if self.fds.pop(fd, None) is None:
            raise SyscallError(EBADF)
