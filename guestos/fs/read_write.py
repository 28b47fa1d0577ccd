"""read, write, readv, writev, lseek, ioctl, close, stat and readlink (fs/read_write.c, fs/stat.c)."""
import struct

from ..kernel.errno import EBADF, EFAULT, EINVAL, ENOENT, ESPIPE, SyscallError
from ..mm.memory import access_ok
from .file import File
from .names import fs_decode, fs_encode
from .proc import proc_readlink

IOV_MAX = 1024
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_SYMLINK_NOFOLLOW = 0x100
AT_STAT_FLAGS = AT_SYMLINK_NOFOLLOW | 0x800 | AT_EMPTY_PATH | 0x6000     # ...AT_NO_AUTOMOUNT, AT_STATX_SYNC_TYPE
O_NOFOLLOW = 0o400000
F_OK, X_OK, W_OK, R_OK = 0, 1, 2, 4
MAX_RW_COUNT = 0x7FFFF000

# struct stat on x86-64 (144 bytes)
_STAT = struct.Struct("<QQQIIIIQqqqqqqqqq24x")


def _iovecs(k, task, iov, iovcnt):
    """import_iovec(): the (base, len) pairs, each range checked as read() checks its buffer."""
    iovcnt &= 0xFFFFFFFF                 # import_iovec(..., unsigned nr_segs, ...)
    if iovcnt > IOV_MAX:
        raise SyscallError(EINVAL)
    if not iovcnt:
        return []
    raw = k.mm.copy_from_user(task, iov, 16 * iovcnt)
    vecs = [struct.unpack_from("<QQ", raw, 16 * i) for i in range(iovcnt)]
    total = 0
    for base, length in vecs:
        if length >= 1 << 63:
            raise SyscallError(EINVAL)
        if not access_ok(base, length):
            raise SyscallError(EFAULT)
        total += length
    if total >= 1 << 63:
        raise SyscallError(EINVAL)
    return vecs


def _verify_area(f, buf: int, count: int, write: bool) -> int:
    """vfs_read()/vfs_write()'s checks in Linux's order: the open mode (EBADF), the whole user range
    (EFAULT), then the count capped at MAX_RW_COUNT."""
    if not getattr(f, "writable" if write else "readable", True):
        raise SyscallError(EBADF)
    if not access_ok(buf, count):
        raise SyscallError(EFAULT)
    return min(count, MAX_RW_COUNT)


def _positioned(f) -> bool:
    """Files with a position (block devices, regular files) pass it to read_user/write_user."""
    cls = f.__class__
    known = _POSITIONED.get(cls)
    if known is None:
        known = _POSITIONED[cls] = cls.read_user is not File.read_user and not cls.stream
    return known


_POSITIONED = {}         # file class -> _positioned(): asked on every read and write


def sys_read(k, task, fd, buf, count, *_):
    f = k.fds_of(task).get(fd)
    n = f.read_user(k, task, buf, _verify_area(f, buf, count, False), f.pos)
    if _positioned(f):
        f.pos += n
    return n


def sys_write(k, task, fd, buf, count, *_):
    f = k.fds_of(task).get(fd)
    n = f.write_user(k, task, buf, _verify_area(f, buf, count, True), f.pos)
    if _positioned(f):
        f.pos += n
    return n


def sys_pread64(k, task, fd, buf, count, pos, *_):
    if pos < 0:
        raise SyscallError(EINVAL)
    f = k.fds_of(task).get(fd)
    if not _positioned(f):
        raise SyscallError(ESPIPE)
    return f.read_user(k, task, buf, _verify_area(f, buf, count, False), pos)


def sys_pwrite64(k, task, fd, buf, count, pos, *_):
    if pos < 0:
        raise SyscallError(EINVAL)
    f = k.fds_of(task).get(fd)
    if not _positioned(f):
        raise SyscallError(ESPIPE)
    return f.write_user(k, task, buf, _verify_area(f, buf, count, True), pos)


def _rw_iovecs(k, task, fd, iov, iovcnt, write: bool) -> int:
    """readv/writev: one buffer after another, stopping at the first short transfer."""
    f = k.fds_of(task).get(fd)
    if not getattr(f, "writable" if write else "readable", True):
        raise SyscallError(EBADF)
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


SEEK_MAX = 4


def sys_lseek(k, task, fd, offset, whence, *_):
    f = k.fds_of(task).get(fd)
    if whence > SEEK_MAX:
        raise SyscallError(EINVAL)
    return f.lseek(offset, whence)


FIGETBSZ, FIONCLEX, FIOCLEX, FIONBIO, FIOASYNC, FIONREAD = 2, 0x5450, 0x5451, 0x5421, 0x5452, 0x541B
O_NONBLOCK, O_ASYNC = 0o4000, 0o20000


def sys_ioctl(k, task, fd, cmd, arg, *_):
    """do_vfs_ioctl(): the commands every file answers, then the file's own."""
    files = k.fds_of(task)
    f = files.get(fd)
    fd &= 0xFFFFFFFF
    if cmd == FIOCLEX:
        files.cloexec.add(fd)
        return 0
    if cmd == FIONCLEX:
        files.cloexec.discard(fd)
        return 0
    if cmd in (FIONBIO, FIOASYNC):
        on = k.mm.get_user(task, arg, "<i")
        bit = O_NONBLOCK if cmd == FIONBIO else O_ASYNC
        f.flags = f.flags | bit if on else f.flags & ~bit
        return 0
    if cmd == FIGETBSZ:
        k.mm.put_user(task, arg, "<i", 4096)           # every file system here has 4 KiB blocks
        return 0
    if cmd == FIONREAD and f.mode & 0o170000 == 0o100000:
        k.mm.put_user(task, arg, "<i", max(0, f.size - f.pos))
        return 0
    if cmd == FIONREAD and f.stream:
        k.mm.put_user(task, arg, "<i", f.size)          # the bytes waiting in the pipe
        return 0
    return f.ioctl(cmd, arg, task)


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


def _getname_maybe_null(k, task, pathname, flags):
    """getname_maybe_null(): with AT_EMPTY_PATH a NULL or empty path is None; otherwise the name, or the
    SyscallError reading it gave (reported only after the flags are checked, as vfs_statx does)."""
    try:
        if flags & AT_EMPTY_PATH:
            if not pathname:
                return None
            name = k.mm.strncpy_from_user(task, pathname)
            return name or None
        return k.mm.getname(task, pathname)
    except SyscallError as e:
        return e


def sys_newfstatat(k, task, dirfd, pathname, statbuf, flags, *_):
    """vfs_fstatat() as Linux 6.x has it (checked natively): an empty path with AT_EMPTY_PATH and a
    descriptor is fstat of it, whatever the other flags; then unknown flags are EINVAL, then the path's
    own error (EFAULT, ENOENT...)."""
    name = _getname_maybe_null(k, task, pathname, flags)
    if name is None and dirfd >= 0:
        return _fill_stat(k, task, k.fds_of(task).get(dirfd), statbuf)
    if flags & ~AT_STAT_FLAGS:
        raise SyscallError(EINVAL)
    if isinstance(name, SyscallError):
        raise name
    if name is None:                                     # the starting directory itself
        if dirfd != AT_FDCWD:
            raise SyscallError(EBADF)
        return _fill_stat(k, task, k.open_path(task.cwd, task=task), statbuf)
    path = name
    f = k.open_path(fs_decode(path), O_NOFOLLOW if flags & AT_SYMLINK_NOFOLLOW else 0, task=task, dirfd=dirfd)
    return _fill_stat(k, task, f, statbuf)


def sys_readlinkat(k, task, dirfd, pathname, buf, bufsiz, *_):
    if bufsiz <= 0:
        raise SyscallError(EINVAL)
    path = fs_decode(k.mm.strncpy_from_user(task, pathname))
    if not path:                                         # LOOKUP_EMPTY: the directory fd itself
        if dirfd != AT_FDCWD:
            k.fds_of(task).get(dirfd)                    # EBADF
        raise SyscallError(ENOENT)                       # (not a symlink opened with O_PATH)
    link = proc_readlink(k, task, path) if path == "/proc" or path.startswith("/proc/") else None
    if link is not None:
        target = fs_encode(link) if isinstance(link, str) else bytes(link)
    else:
        target = k.readlink(path, task, dirfd)          # a symlink on ext2 (EINVAL for anything else)
    target = target[:bufsiz]
    k.mm.copy_to_user(task, buf, target)
    return len(target)


def sys_readlink(k, task, pathname, buf, bufsiz, *_):
    return sys_readlinkat(k, task, AT_FDCWD, pathname, buf, bufsiz)


def sys_open(k, task, pathname, flags, mode, *_):
    return sys_openat(k, task, AT_FDCWD, pathname, flags, mode)


def sys_openat(k, task, dirfd, pathname, flags, mode, *_):
    path = fs_decode(k.mm.getname(task, pathname))
    return k.fds_of(task).install(k.open_path(path, flags, mode, task=task, dirfd=dirfd),
                                  cloexec=bool(flags & 0o2000000))


def sys_access(k, task, pathname, mode, *_):
    if mode & ~(X_OK | W_OK | R_OK):
        raise SyscallError(EINVAL)
    path = fs_decode(k.mm.getname(task, pathname))
    k.open_path(path, 0, task=task)
    return 0


def sys_stat(k, task, pathname, statbuf, *_):
    return sys_newfstatat(k, task, AT_FDCWD, pathname, statbuf, 0)


def sys_lstat(k, task, pathname, statbuf, *_):
    return sys_newfstatat(k, task, AT_FDCWD, pathname, statbuf, 0x100)

