"""Linux errno values (include/uapi/asm-generic/errno-base.h, errno.h)."""
EPERM, ENOENT, ESRCH, EINTR, EIO, ENXIO, E2BIG, ENOEXEC, EBADF, ECHILD, EAGAIN, ENOMEM, EACCES, EFAULT = \
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14
EBUSY, EEXIST, EXDEV, ENODEV, ENOTDIR, EISDIR, EINVAL, ENFILE, EMFILE, ENOTTY = 16, 17, 18, 19, 20, 21, 22, 23, 24, 25
EFBIG, ENOSPC, ESPIPE, EROFS, EMLINK, EPIPE, ERANGE = 27, 28, 29, 30, 31, 32, 34
ENAMETOOLONG, ENOSYS, ENOTEMPTY, ELOOP = 36, 38, 39, 40
EOPNOTSUPP = 95
ETIMEDOUT = 110
EOVERFLOW = 75


class SyscallError(Exception):
    """Raised inside a system call to return -errno."""

    def __init__(self, errno: int):
        super().__init__(errno)
        self.errno = errno
