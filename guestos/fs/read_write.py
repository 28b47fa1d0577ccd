"""read, write, readv, writev, lseek, ioctl, close, stat and readlink (fs/read_write.c, fs/stat.c)."""
import struct

from ..kernel.errno import EINVAL, ENOENT, ESPIPE, SyscallError
from .file import File
from .proc import proc_readlink

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


def _positioned(f) -> bool:
    """Files with a position (block devices, regular files) pass it to read_user/write_user."""
    cls = f.__class__
    known = _POSITIONED.get(cls)
    if known is None:
        known = _POSITIONED[cls] = hasattr(f, "read_user") and cls.read_user is not File.read_user
    return known


_POSITIONED = {}         # file class -> _positioned(): asked on every read and write


def sys_read(k, task, fd, buf, count, *_):
    f = k.fds_of(task).get(fd)
    n = f.read_user(k, task, buf, min(count, MAX_RW_COUNT), f.pos)
    if _positioned(f):
        f.pos += n
    return n


def sys_write(k, task, fd, buf, count, *_):
    f = k.fds_of(task).get(fd)
    n = f.write_user(k, task, buf, min(count, MAX_RW_COUNT), f.pos)
    if _positioned(f):
        f.pos += n
    return n


def sys_pread64(k, task, fd, buf, count, pos, *_):
    f = k.fds_of(task).get(fd)
    if pos < 0 or pos >= 1 << 63:
        raise SyscallError(EINVAL)
    if not _positioned(f):
        raise SyscallError(ESPIPE)
    return f.read_user(k, task, buf, min(count, MAX_RW_COUNT), pos)


def sys_pwrite64(k, task, fd, buf, count, pos, *_):
    f = k.fds_of(task).get(fd)
    if pos < 0 or pos >= 1 << 63:
        raise SyscallError(EINVAL)
    if not _positioned(f):
        raise SyscallError(ESPIPE)
    return f.write_user(k, task, buf, min(count, MAX_RW_COUNT), pos)


def _rw_iovecs(k, task, fd, iov, iovcnt, write: bool) -> int:
    """readv/writev: one buffer after another, stopping at the first short transfer."""
    f = k.fds_of(task).get(fd)
    move = f.write_user if write else f.read_user
    total = 0
    for base, length in _iovecs(k, task, iov, iovcnt):
        if length:
            n = move(k, task, base, length, f.pos)
            if _positioned(f):
                f.pos += n
            total += n
            if n < length:
                break
    return total


def sys_writev(k, task, fd, iov, iovcnt, *_):
    return _rw_iovecs(k, task, fd, iov, iovcnt, True)


def sys_readv(k, task, fd, iov, iovcnt, *_):
    return _rw_iovecs(k, task, fd, iov, iovcnt, False)


def sys_fsync(k, task, fd, *_):
    k.fds_of(task).get(fd).fsync()
    return 0


def sys_sync(k, task, *_):
    k.sync_all()
    return 0


def sys_lseek(k, task, fd, offset, whence, *_):
    return k.fds_of(task).get(fd).lseek(offset, whence)


def sys_ioctl(k, task, fd, cmd, arg, *_):
    return k.fds_of(task).get(fd).ioctl(cmd, arg, task)


def sys_close(k, task, fd, *_):
    k.fds_of(task).close(fd)
    return 0


def _fill_stat(k, task, f, statbuf) -> int:
    inode = getattr(f, "inode", None)
    if inode is not None and hasattr(inode, "links_count"):         # an ext2 file
        raw = _STAT.pack(0x800 + 1, inode.ino, inode.links_count, inode.mode, inode.uid, inode.gid, 0, 0,
                         inode.size, 4096, inode.blocks, inode.atime, 0, inode.mtime, 0, inode.ctime, 0)
    else:
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
    f = k.open_path(path.decode(errors="replace"), 0o400000 if flags & 0x100 else 0, task=task, dirfd=dirfd)
    return _fill_stat(k, task, f, statbuf)


def sys_readlinkat(k, task, dirfd, pathname, buf, bufsiz, *_):
    path = k.mm.strncpy_from_user(task, pathname).decode(errors="replace")
    link = proc_readlink(k, task, path) if path == "/proc" or path.startswith("/proc/") else None
    if link is not None:
        target = link.encode("utf-8", "surrogateescape")
    else:
        target = k.readlink(path, task, dirfd)
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
    return k.fds_of(task).install(k.open_path(path, flags, mode, task=task, dirfd=dirfd),
                                  cloexec=bool(flags & 0o2000000))


def sys_access(k, task, pathname, mode, *_):
    path = k.mm.strncpy_from_user(task, pathname).decode(errors="replace")
    k.open_path(path, 0, task=task)
    return 0


def sys_stat(k, task, pathname, statbuf, *_):
    return sys_newfstatat(k, task, AT_FDCWD, pathname, statbuf, 0)


def sys_lstat(k, task, pathname, statbuf, *_):
    return sys_newfstatat(k, task, AT_FDCWD, pathname, statbuf, 0x100)

