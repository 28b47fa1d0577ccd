"""dup, dup2, dup3, fcntl, pipe, pipe2 (fs/fcntl.c, fs/file.c, fs/pipe.c)."""
import struct

from ..kernel.errno import EBADF, EINVAL, SyscallError
from .file import NR_OPEN_DEFAULT
from .pipe import O_NONBLOCK, Pipe, PipeEnd

O_CLOEXEC = 0o2000000
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_DUPFD_CLOEXEC = 1030
FD_CLOEXEC = 1
SETFL_MASK = O_NONBLOCK | 0o2000 | 0o40000          # O_NONBLOCK, O_APPEND, O_DIRECT


def sys_dup(k, task, fd, *_):
    files = k.fds_of(task)
    return files.install(files.get(fd))


def sys_dup3(k, task, oldfd, newfd, flags, *_):
    if flags & ~O_CLOEXEC or oldfd == newfd:
        raise SyscallError(EINVAL)
    files = k.fds_of(task)
    f = files.get(oldfd)
    if not 0 <= newfd < NR_OPEN_DEFAULT:
        raise SyscallError(EBADF)
    files.install_at(newfd, f, bool(flags & O_CLOEXEC))
    return newfd


def sys_dup2(k, task, oldfd, newfd, *_):
    files = k.fds_of(task)
    files.get(oldfd)
    if oldfd == newfd:
        return newfd
    return sys_dup3(k, task, oldfd, newfd, 0)


def sys_fcntl(k, task, fd, cmd, arg, *_):
    files = k.fds_of(task)
    f = files.get(fd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        lowest = arg & 0xFFFFFFFF                    # do_fcntl(): argi = (int)arg, f_dupfd(unsigned int)
        if lowest >= NR_OPEN_DEFAULT:
            raise SyscallError(EINVAL)
        return files.install(f, lowest, cmd == F_DUPFD_CLOEXEC)
    if cmd == F_GETFD:
        return FD_CLOEXEC if fd in files.cloexec else 0
    if cmd == F_SETFD:
        (files.cloexec.add if arg & FD_CLOEXEC else files.cloexec.discard)(fd)
        return 0
    if cmd == F_GETFL:
        return f.flags
    if cmd == F_SETFL:
        f.flags = (f.flags & ~SETFL_MASK) | (arg & SETFL_MASK)
        return 0
    raise SyscallError(EINVAL)


def sys_pipe2(k, task, fildes, flags, *_):
    if flags & ~(O_CLOEXEC | O_NONBLOCK):
        raise SyscallError(EINVAL)
    files = k.fds_of(task)
    pipe = Pipe()
    ends = PipeEnd(pipe, writer=False), PipeEnd(pipe, writer=True)
    for end in ends:
        end.flags = flags & O_NONBLOCK
    rfd = files.install(ends[0], cloexec=bool(flags & O_CLOEXEC))
    wfd = files.install(ends[1], cloexec=bool(flags & O_CLOEXEC))
    try:
        k.mm.copy_to_user(task, fildes, struct.pack("<ii", rfd, wfd))
    except Exception:
        files.close(rfd)
        files.close(wfd)
        raise
    return 0


def sys_pipe(k, task, fildes, *_):
    return sys_pipe2(k, task, fildes, 0)
