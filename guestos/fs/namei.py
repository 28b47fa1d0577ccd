"""Name-space system calls on the root file system (fs/namei.c, fs/open.c, fs/readdir.c)."""
import struct

from ..kernel.errno import (EACCES, EBADF, EBUSY, EEXIST, EINVAL, EISDIR, ENOENT, ENOSYS, ENOTDIR, EPERM, ERANGE, EROFS, ESPIPE,
                            SyscallError)
from ..mm.filemap import FileRaState
from .ext2_layout import S_IFDIR
from .names import fs_decode, fs_encode

AT_FDCWD = -100
AT_REMOVEDIR = 0x200
POSIX_FADV_NORMAL, POSIX_FADV_RANDOM, POSIX_FADV_SEQUENTIAL, POSIX_FADV_WILLNEED, POSIX_FADV_DONTNEED = 0, 1, 2, 3, 4


def _vfs(k):
    if k.vfs is None:
        raise SyscallError(EROFS)            # the initramfs root is read-only here
    return k.vfs


def _path(k, task, ptr, in_proc: int = EPERM) -> str:
    """The path argument of a call that changes the name space (its bytes kept: fs/names.py); in_proc:
    its errno for an existing /proc entry (None: a call that does not change anything)."""
    path = fs_decode(k.mm.getname(task, ptr))
    if in_proc is not None:
        _not_in_proc(k, task, path, in_proc)
    return path


def _not_in_proc(k, task, path: str, exists: int) -> None:
    """procfs takes no mkdir, unlink, rename or truncate: `exists` for what is there, ENOENT
    otherwise (the ext2 directory under /proc is never reached)."""
    full = _normalize(path if path.startswith("/") else task.cwd.rstrip("/") + "/" + path)
    if full == "/proc" or full.startswith("/proc/"):
        try:
            k.open_path(full, 0o400000, task=task)          # O_NOFOLLOW: the entry itself
        except SyscallError:
            raise SyscallError(ENOENT) from None
        raise SyscallError(exists)


def sys_mkdirat(k, task, dirfd, pathname, mode, *_):
    vfs = _vfs(k)
    parent, name = vfs.parent_and_name(_path(k, task, pathname, in_proc=EEXIST), k.base_ino(task, dirfd))
    vfs.call(vfs.fs.mkdir, parent, name, mode & 0o1777 & ~task.umask)
    return 0


def sys_mkdir(k, task, pathname, mode, *_):
    return sys_mkdirat(k, task, AT_FDCWD, pathname, mode)


def sys_unlinkat(k, task, dirfd, pathname, flags, *_):
    vfs = _vfs(k)
    path = _path(k, task, pathname)
    base = k.base_ino(task, dirfd)
    if not path.strip("/"):
        raise SyscallError(EBUSY if flags & AT_REMOVEDIR else EISDIR)     # the root itself
    if flags & AT_REMOVEDIR:
        parent, name = vfs.parent_and_name(path, base)
        vfs.call(vfs.fs.rmdir, parent, name)
    else:
        vfs.unlink(path, base)
    return 0


def sys_unlink(k, task, pathname, *_):
    return sys_unlinkat(k, task, AT_FDCWD, pathname, 0)


def sys_rmdir(k, task, pathname, *_):
    return sys_unlinkat(k, task, AT_FDCWD, pathname, AT_REMOVEDIR)


def sys_renameat2(k, task, olddirfd, oldpath, newdirfd, newpath, flags, *_):
    if flags:
        raise SyscallError(EINVAL)
    vfs = _vfs(k)
    old_parent, old_name = vfs.parent_and_name(_path(k, task, oldpath), k.base_ino(task, olddirfd))
    new_parent, new_name = vfs.parent_and_name(_path(k, task, newpath), k.base_ino(task, newdirfd))
    victim = vfs.call(vfs.fs.lookup, new_parent, new_name)
    if victim is not None and vfs.fs.iget(victim).links_count <= 1 and not vfs.fs.iget(victim).i_count:
        vfs.drop_pages(victim)
    vfs.call(vfs.fs.rename, old_parent, old_name, new_parent, new_name)
    return 0


def sys_renameat(k, task, olddirfd, oldpath, newdirfd, newpath, *_):
    return sys_renameat2(k, task, olddirfd, oldpath, newdirfd, newpath, 0)


def sys_rename(k, task, oldpath, newpath, *_):
    return sys_renameat2(k, task, AT_FDCWD, oldpath, AT_FDCWD, newpath, 0)


def sys_getdents64(k, task, fd, dirp, count, *_):
    f = k.fds_of(task).get(fd)
    getdents = getattr(f, "getdents64", None)
    if getdents is None:
        raise SyscallError(ENOTDIR)
    return getdents(k, task, dirp, count)


def sys_chdir(k, task, pathname, *_):
    path = _path(k, task, pathname, in_proc=None)
    full = _normalize(path if path.startswith("/") else task.cwd.rstrip("/") + "/" + path)
    if full == "/proc" or full.startswith("/proc/"):           # procfs is not on ext2
        if not getattr(k.open_path(full, 0, task=task), "is_dir", False):
            raise SyscallError(ENOTDIR)
        task.cwd = full
        return 0
    vfs = _vfs(k)
    ino = vfs.resolve(path, task.cwd_ino)
    if not vfs.fs.iget(ino).is_dir:
        raise SyscallError(ENOTDIR)
    task.cwd_ino = ino
    task.cwd = _normalize(path if path.startswith("/") else task.cwd.rstrip("/") + "/" + path)
    return 0


def sys_fchdir(k, task, fd, *_):
    f = k.fds_of(task).get(fd)
    inode = getattr(f, "inode", None)
    if inode is None or not getattr(inode, "is_dir", False):
        raise SyscallError(ENOTDIR)
    task.cwd_ino = inode.ino
    task.cwd = _normalize(f.name if f.name.startswith("/") else task.cwd.rstrip("/") + "/" + f.name)
    return 0


def _normalize(path: str) -> str:
    parts = []
    for p in path.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts:
                parts.pop()
        else:
            parts.append(p)
    return "/" + "/".join(parts)


def sys_getcwd(k, task, buf, size, *_):
    raw = fs_encode(task.cwd) + b"\0"
    if size < len(raw):
        raise SyscallError(ERANGE)
    k.mm.copy_to_user(task, buf, raw)
    return len(raw)


def sys_ftruncate(k, task, fd, length, *_):
    if length >= 1 << 63:                      # an unsigned long taken as loff_t: negative
        raise SyscallError(EINVAL)
    f = k.fds_of(task).get(fd)
    if not hasattr(f, "vfs") or not f.inode.is_reg or not f.writable:      # a regular file open for writing
        raise SyscallError(EINVAL)
    f.vfs.truncate(f.inode, length)
    return 0


def sys_truncate(k, task, pathname, length, *_):
    vfs = _vfs(k)
    if length < 0:
        raise SyscallError(EINVAL)
    inode = vfs.fs.iget(vfs.resolve(_path(k, task, pathname), task.cwd_ino))
    if inode.mode & S_IFDIR == S_IFDIR:
        raise SyscallError(EINVAL)
    vfs.truncate(inode, length)
    return 0


def sys_fadvise64(k, task, fd, offset, length, advice, *_):
    """generic_fadvise(): a pipe is ESPIPE; a negative length or unknown advice EINVAL; a file without
    a page cache of ours (a device, the console) accepts any valid advice and does nothing."""
    f = k.fds_of(task).get(fd)
    if f.stream:
        raise SyscallError(ESPIPE)
    if length < 0 or not 0 <= advice <= 5:
        raise SyscallError(EINVAL)
    inode = getattr(f, "inode", None)
    if inode is None or not hasattr(f, "vfs"):
        return 0
    mapping = f.vfs.mapping_of(inode)
    ra = getattr(f, "ra", None)
    if ra is not None and advice in (POSIX_FADV_NORMAL, POSIX_FADV_RANDOM, POSIX_FADV_SEQUENTIAL):
        # the file's readahead: FMODE_RANDOM reads only what is asked; SEQUENTIAL doubles the window
        ra.fmode_random = advice == POSIX_FADV_RANDOM
        if advice != POSIX_FADV_RANDOM:
            ra.ra_pages = FileRaState().ra_pages * (2 if advice == POSIX_FADV_SEQUENTIAL else 1)
    first = offset >> 12
    last = None if length == 0 else (offset + length - 1) >> 12
    if advice == POSIX_FADV_DONTNEED:
        mapping.writepages([i for i in mapping.dirty if i >= first and (last is None or i <= last)])
        mapping.invalidate_mapping_pages(first, last)
    elif advice == POSIX_FADV_WILLNEED:
        end = (inode.size - 1) >> 12 if last is None else min(last, (inode.size - 1) >> 12)
        mapping.read_pages(range(first, end + 1))
    return 0


__all__ = ["struct"]


# --- attributes, links and nodes (fs/open.c, fs/namei.c, fs/utimes.c) ---
AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH = 0x100, 0x1000
S_IFMT, S_IFREG, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK = 0o170000, 0o100000, 0o020000, 0o060000, 0o010000, 0o140000
S_ISUID, S_ISGID, S_IXGRP = 0o4000, 0o2000, 0o010
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


def _lookup(k, task, dirfd, pathname, follow: bool = True):
    """user_path_at(): the ext2 inode a path names (from dirfd), following a last symlink or not."""
    vfs = _vfs(k)
    path = _path(k, task, pathname)
    return vfs.fs.iget(vfs.resolve(path, k.base_ino(task, dirfd), follow))


def _fd_inode(k, task, fd):
    """The ext2 inode behind a descriptor, or None for a file without one (a pipe, the console)."""
    f = k.fds_of(task).get(fd)
    inode = getattr(f, "stat_inode", None) or getattr(f, "inode", None)
    return f, inode if hasattr(inode, "links_count") else None


def _setattr(k, inode, **attrs) -> None:
    vfs = _vfs(k)
    vfs.call(lambda: vfs.fs.setattr(inode, **attrs))


def chmod_common(k, inode, mode: int) -> None:
    _setattr(k, inode, mode=mode & 0o7777)


def sys_fchmodat(k, task, dirfd, pathname, mode, *_):
    chmod_common(k, _lookup(k, task, dirfd, pathname), mode)
    return 0


def sys_chmod(k, task, pathname, mode, *_):
    return sys_fchmodat(k, task, AT_FDCWD, pathname, mode)


def sys_fchmod(k, task, fd, mode, *_):
    f, inode = _fd_inode(k, task, fd)
    if inode is not None:
        chmod_common(k, inode, mode)
    else:                                          # a pipe's or device's own inode (pipefs, devtmpfs)
        f.mode = (f.mode & S_IFMT) | (mode & 0o7777)
    return 0


def chown_common(k, inode, user: int, group: int) -> None:
    """chown_common(): -1 keeps an id; a non-directory loses set-user-ID, and set-group-ID when it is
    group-executable (ATTR_KILL_SUID, ATTR_KILL_SGID)."""
    attrs = {}
    if user != 0xFFFFFFFF:
        attrs["uid"] = user
    if group != 0xFFFFFFFF:
        attrs["gid"] = group
    if not inode.is_dir:
        mode = inode.mode & 0o7777 & ~S_ISUID
        if inode.mode & (S_ISGID | S_IXGRP) == S_ISGID | S_IXGRP:
            mode &= ~S_ISGID
        if mode != inode.mode & 0o7777:
            attrs["mode"] = mode
    _setattr(k, inode, **attrs)


def sys_fchownat(k, task, dirfd, pathname, user, group, flags, *_):
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(EINVAL)
    if flags & AT_EMPTY_PATH and not k.mm.strncpy_from_user(task, pathname):
        return sys_fchown(k, task, dirfd, user, group)
    chown_common(k, _lookup(k, task, dirfd, pathname, follow=not flags & AT_SYMLINK_NOFOLLOW), user, group)
    return 0


def sys_chown(k, task, pathname, user, group, *_):
    return sys_fchownat(k, task, AT_FDCWD, pathname, user, group, 0)


def sys_lchown(k, task, pathname, user, group, *_):
    return sys_fchownat(k, task, AT_FDCWD, pathname, user, group, AT_SYMLINK_NOFOLLOW)


def sys_fchown(k, task, fd, user, group, *_):
    _f, inode = _fd_inode(k, task, fd)
    if inode is not None:
        chown_common(k, inode, user, group)
    return 0


def sys_symlinkat(k, task, oldname, newdirfd, newname, *_):
    target = k.mm.getname(task, oldname)
    vfs = _vfs(k)
    parent, name = vfs.parent_and_name(_path(k, task, newname), k.base_ino(task, newdirfd))
    vfs.call(vfs.fs.symlink, parent, name, target)
    return 0


def sys_symlink(k, task, oldname, newname, *_):
    return sys_symlinkat(k, task, oldname, AT_FDCWD, newname)


def new_decode_dev(dev: int) -> tuple:
    """The 32-bit dev_t of mknod(2): (major, minor)."""
    return (dev & 0xFFF00) >> 8, (dev & 0xFF) | ((dev >> 12) & 0xFFF00)


def sys_mknodat(k, task, dirfd, pathname, mode, dev, *_):
    """may_mknod() first (a directory EPERM, an unknown type EINVAL), then the umask; a device's
    number as ext2 stores it (old or new encoding)."""
    kind = mode & S_IFMT
    if kind == 0o040000:
        raise SyscallError(EPERM)
    if kind not in (0, S_IFREG, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK):
        raise SyscallError(EINVAL)
    vfs = _vfs(k)
    parent, name = vfs.parent_and_name(_path(k, task, pathname), k.base_ino(task, dirfd))
    major, minor = new_decode_dev(dev)
    rdev = ((major & 0xFFF) << 8) | (minor & 0xFF) | ((minor & 0xFFF00) << 12)    # makedev(), as glibc
    vfs.call(vfs.fs.mknod, parent, name, (kind or S_IFREG) | (mode & 0o7777 & ~task.umask), rdev)
    return 0


def sys_mknod(k, task, pathname, mode, dev, *_):
    return sys_mknodat(k, task, AT_FDCWD, pathname, mode, dev)


def _utime(k, sec: int, nsec: int, now: int):
    if nsec == UTIME_OMIT:
        return None
    return now if nsec == UTIME_NOW else sec


def sys_utimensat(k, task, dirfd, pathname, utimes, flags, *_):
    """utimensat(2) in Linux's order: the times read (EFAULT), both UTIME_OMIT does nothing at all,
    then flags and nanoseconds (EINVAL); a NULL path with a descriptor is futimens. ext2 keeps seconds."""
    times = None
    if utimes:
        times = struct.unpack("<qqqq", k.mm.copy_from_user(task, utimes, 32))
        if times[1] == UTIME_OMIT and times[3] == UTIME_OMIT:
            return 0
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(EINVAL)
    if times is not None:
        for nsec in (times[1], times[3]):
            if nsec not in (UTIME_NOW, UTIME_OMIT) and not 0 <= nsec < 10**9:
                raise SyscallError(EINVAL)
    if not pathname and dirfd != AT_FDCWD:
        if flags & AT_SYMLINK_NOFOLLOW:
            raise SyscallError(EINVAL)
        _f, inode = _fd_inode(k, task, dirfd)
        if inode is None:
            return 0
    else:
        inode = _lookup(k, task, dirfd, pathname, follow=not flags & AT_SYMLINK_NOFOLLOW)
    now = _vfs(k).fs.now()
    if times is None:
        _setattr(k, inode, atime=now, mtime=now)
    else:
        _setattr(k, inode, atime=_utime(k, times[0], times[1], now), mtime=_utime(k, times[2], times[3], now))
    return 0



AT_SYMLINK_FOLLOW, AT_EMPTY_PATH = 0x400, 0x1000


def sys_linkat(k, task, olddirfd, oldname, newdirfd, newname, flags, *_):
    """do_linkat(): a new name for an existing non-directory; the old name's last symlink is
    followed only with AT_SYMLINK_FOLLOW (linkat) or always (link)."""
    if flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        raise SyscallError(EINVAL)
    vfs = _vfs(k)
    old = _path(k, task, oldname, in_proc=None)
    if not old:
        raise SyscallError(ENOENT)
    ino = vfs.resolve(old, k.base_ino(task, olddirfd), follow=bool(flags & AT_SYMLINK_FOLLOW))
    parent, name = vfs.parent_and_name(_path(k, task, newname), k.base_ino(task, newdirfd))
    vfs.call(vfs.fs.link, ino, parent, name)
    return 0


def sys_link(k, task, oldname, newname, *_):
    return sys_linkat(k, task, AT_FDCWD, oldname, AT_FDCWD, newname, 0)


AT_EACCESS, AT_SYMLINK_NOFOLLOW = 0x200, 0x100


def sys_faccessat2(k, task, dirfd, filename, mode, flags, *_):
    """do_faccessat(): the name must exist (we run as root: every permission is granted, as for
    root on Linux, except X_OK on a file no one may execute)."""
    if mode & ~7:
        raise SyscallError(EINVAL)
    if flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(EINVAL)
    path = fs_decode(k.mm.getname(task, filename))
    if flags & AT_SYMLINK_NOFOLLOW and k.vfs is not None and not _normalize(
            path if path.startswith("/") else task.cwd.rstrip("/") + "/" + path).startswith("/proc"):
        file_mode = k.vfs.fs.iget(k.vfs.resolve(path, k.base_ino(task, dirfd), follow=False)).mode
    else:
        file_mode = k.open_path(path, 0, task=task, dirfd=dirfd).mode
    if mode & 1 and not file_mode & 0o040000 and not file_mode & 0o111:
        raise SyscallError(EACCES)
    return 0


def sys_faccessat(k, task, dirfd, filename, mode, *_):
    return sys_faccessat2(k, task, dirfd, filename, mode, 0)
