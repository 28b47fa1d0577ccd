"""read, write, readv, writev, lseek, ioctl, close, stat and readlink (fs/read_write.c, fs/stat.c)."""
import struct

from ..kernel.errno import EINVAL, ENOENT, SyscallError

IOV_MAX = 1024
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
MAX_RW_COUNT = 0x7FFFF000

# struct stat on x86-64 (144 bytes)
_STAT = struct.Struct("<QQQIIIIQqqqqqqqqq24x")


def _iovecs(k, task, iov, iovcnt):
    if iovcnt > IOV_MAX:
        raise SyscallError(EINVAL)
    raw = k.mm.copy_from_user(task, iov, 16 * iovcnt)
    return [struct.unpack_from("<QQ", raw, 16 * i) for i in range(iovcnt)]


def sys_read(k, task, fd, buf, count, *_):
    f = k.fds_of(task).get(fd)
    data = f.read(task, min(count, MAX_RW_COUNT))
    if data:
        k.mm.copy_to_user(task, buf, data)
    return len(data)


def sys_write(k, task, fd, buf, count, *_):
    f = k.fds_of(task).get(fd)
    return f.write(task, k.mm.copy_from_user(task, buf, min(count, MAX_RW_COUNT)))


def sys_writev(k, task, fd, iov, iovcnt, *_):
    f = k.fds_of(task).get(fd)
    data = b"".join(k.mm.copy_from_user(task, base, length) for base, length in _iovecs(k, task, iov, iovcnt))
    return f.write(task, data)


def sys_readv(k, task, fd, iov, iovcnt, *_):
    f = k.fds_of(task).get(fd)
    total = 0
    for base, length in _iovecs(k, task, iov, iovcnt):
        data = f.read(task, length)
        k.mm.copy_to_user(task, base, data)
        total += len(data)
        if len(data) < length:
            break
    return total


def sys_lseek(k, task, fd, offset, whence, *_):
    return k.fds_of(task).get(fd).lseek(offset, whence)


def sys_ioctl(k, task, fd, cmd, arg, *_):
    return k.fds_of(task).get(fd).ioctl(cmd, arg)


def sys_close(k, task, fd, *_):
    k.fds_of(task).close(fd)
    return 0


def _fill_stat(k, task, f, statbuf) -> int:
    blocks = (f.size + 511) // 512
    raw = _STAT.pack(1, f.ino, 1, f.mode, 0, 0, 0, f.rdev, f.size, 4096 if f.size else 1024, blocks,
                     0, 0, 0, 0, 0, 0)
    k.mm.copy_to_user(task, statbuf, raw)
    return 0


def sys_fstat(k, task, fd, statbuf, *_):
    return _fill_stat(k, task, k.fds_of(task).get(fd), statbuf)


def sys_newfstatat(k, task, dirfd, pathname, statbuf, flags, *_):
    path = k.mm.strncpy_from_user(task, pathname) if pathname else b""
    if not path:
        if not flags & AT_EMPTY_PATH:
            raise SyscallError(ENOENT)
        return _fill_stat(k, task, k.fds_of(task).get(dirfd), statbuf)
    f = k.open_path(path.decode(errors="replace"))
    return _fill_stat(k, task, f, statbuf)


def sys_readlinkat(k, task, dirfd, pathname, buf, bufsiz, *_):
    path = k.mm.strncpy_from_user(task, pathname).decode(errors="replace")
    if path == "/proc/self/exe":
        target = task.exe_path.encode()
    else:
        raise SyscallError(ENOENT if k.rootfs.lookup(path) is None else EINVAL)
    if bufsiz <= 0:
        raise SyscallError(EINVAL)
    target = target[:bufsiz]
    k.mm.copy_to_user(task, buf, target)
    return len(target)


def sys_readlink(k, task, pathname, buf, bufsiz, *_):
    return sys_readlinkat(k, task, AT_FDCWD, pathname, buf, bufsiz)


def sys_open(k, task, pathname, flags, mode, *_):
    return sys_openat(k, task, AT_FDCWD, pathname, flags, mode)


def sys_openat(k, task, dirfd, pathname, flags, mode, *_):
    path = k.mm.strncpy_from_user(task, pathname).decode(errors="replace")
    return k.fds_of(task).install(k.open_path(path))


def sys_access(k, task, pathname, mode, *_):
    path = k.mm.strncpy_from_user(task, pathname).decode(errors="replace")
    k.open_path(path)
    return 0

