"""statfs(2) and fstatfs(2) (fs/statfs.c): ext2's counts for the root, procfs's for /proc."""
import struct

from ..kernel.errno import ENOSYS, SyscallError
from .names import fs_decode

# struct statfs (x86-64): f_type, f_bsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree, f_fsid[2],
# f_namelen, f_frsize, f_flags, f_spare[4]
STATFS = struct.Struct("<qqQQQQQiiqqq32x")
PROC_SUPER_MAGIC = 0x9FA0
RAMFS_MAGIC = 0x858458F6
ST_VALID, ST_RELATIME = 0x20, 0x1000
ST_RDONLY = 0x1


def _statfs_of(k, path: str) -> bytes:
    if path == "/proc" or path.startswith("/proc/"):
        return STATFS.pack(PROC_SUPER_MAGIC, 4096, 0, 0, 0, 0, 0, 0, 0, 255, 4096, ST_VALID | ST_RELATIME)
    if k.vfs is None:
        return STATFS.pack(RAMFS_MAGIC, 4096, 0, 0, 0, 0, 0, 0, 0, 255, 4096, ST_VALID)
    fs = k.vfs.fs
    st = k.vfs.call(fs.statfs) if hasattr(k.vfs, "call") else fs.statfs()
    flags = ST_VALID | ST_RELATIME | (ST_RDONLY if getattr(fs, "read_only", False) else 0)
    return STATFS.pack(st.f_type, st.f_bsize, st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree,
                       0, 0, st.f_namelen, st.f_bsize, flags)


def sys_statfs(k, task, pathname, buf, *_):
    path = fs_decode(k.mm.getname(task, pathname))
    if not path.startswith("/"):
        path = task.cwd.rstrip("/") + "/" + path
    k.open_path(path, 0, task=task)             # ENOENT and friends, as the lookup gives them
    k.mm.copy_to_user(task, buf, _statfs_of(k, path))
    return 0


def sys_fstatfs(k, task, fd, buf, *_):
    f = k.fds_of(task).get(fd)
    if f is None:
        raise SyscallError(ENOSYS)
    k.mm.copy_to_user(task, buf, _statfs_of(k, f.name if f.name.startswith("/") else "/"))
    return 0
