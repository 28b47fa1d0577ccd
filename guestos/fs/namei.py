"""Name-space system calls on the root file system (fs/namei.c, fs/open.c, fs/readdir.c)."""
import struct

from ..kernel.errno import (EBADF, EBUSY, EEXIST, EINVAL, EISDIR, ENOENT, ENOSYS, ENOTDIR, EPERM, ERANGE, EROFS, ESPIPE,
                            SyscallError)
from .ext2_layout import S_IFDIR
from .names import fs_decode, fs_encode

AT_FDCWD = -100
AT_REMOVEDIR = 0x200
POSIX_FADV_WILLNEED, POSIX_FADV_DONTNEED = 3, 4


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
    vfs.call(vfs.fs.mkdir, parent, name, mode & 0o7777)
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
    if victim is not None and vfs.fs.iget(victim).links_count <= 1:
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
