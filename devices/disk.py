"""A raw disk image on the host, and what its I/O costs in virtual time.

`DiskImage` is the host file behind a virtio-blk disk: opened once, read and
written with pread/pwrite, made durable with fsync. `DiskProfile` and
`HostCosts` turn an I/O into virtual nanoseconds; nothing here reads a clock.
"""
import ctypes
import errno
import os
import stat
from typing import NamedTuple

SECTOR_SIZE = 512
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
IOV_MAX = 1024                 # Linux's limit on buffers per preadv/pwritev
_ZERO_CHUNK = 1 << 20          # zeros written per pwrite when holes cannot be punched

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


def _load_fallocate():
    try:
        fallocate = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fallocate.restype = ctypes.c_int
    return fallocate


_fallocate = _load_fallocate()


class DiskImage:
    """A raw image file (or block device), opened once; every VM using it shares this object.

    `key` is the file's identity (st_dev, st_ino): the host page cache keys pages by it.
    Reads past the end of the file but inside `size` return zeros (a file truncated
    behind our back reads like a sparse one).
    """

    def __init__(self, path, read_only: bool = False):
        self.path = os.fspath(path)
        self.read_only = bool(read_only)
        self.fd = self._open(self.path, self.read_only)
        st = os.fstat(self.fd)
        self.key = (st.st_dev, st.st_ino)
        self.size = os.lseek(self.fd, 0, os.SEEK_END)
        if self.size == 0:
            self.close()
            raise ValueError(f"disk image {self.path!r} is empty")
        if self.size % SECTOR_SIZE:
            size = self.size
            self.close()
            raise ValueError(f"disk image {self.path!r} is {size} bytes, not a multiple of {SECTOR_SIZE}")
        self.reads = self.writes = self.fsyncs = 0
        self.bytes_read = self.bytes_written = 0
        self._can_punch = _fallocate is not None

    @staticmethod
    def _open(path: str, read_only: bool) -> int:
        # stat first: opening a FIFO would block, opening a directory read-only succeeds
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "disk image not found", path) from None
        except PermissionError:
            raise PermissionError(errno.EACCES, "disk image not accessible (permission denied)", path) from None
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "disk image is a directory, not a file", path)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise ValueError(f"disk image {path!r} is neither a regular file nor a block device")
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
        try:
            return os.open(path, flags)
        except PermissionError:
            hint = "not readable" if read_only else "not writable (open it read-only?)"
            raise PermissionError(errno.EACCES, f"disk image {hint}", path) from None

    def reopen_read_write(self) -> None:
        """Make a read-only image writable in place (a second VM wants to write it)."""
        if not self.read_only:
            return
        fd = self._open(self.path, read_only=False)
        os.close(self.fd)
        self.fd = fd
        self.read_only = False

    # --- reads ---

    def pread(self, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        self.pread_into(offset, memoryview(buf))
        return bytes(buf)

    def pread_into(self, offset: int, dest) -> None:
        """Fill dest (a writable buffer) from offset; zeros past the end of the file."""
        dest = memoryview(dest).cast("B")
        self._check(offset, len(dest))
        self._preadv(offset, [dest])

    def read_pages(self, first_page: int, buffers) -> None:
        """Fill page-sized buffers from consecutive pages (the host page cache's loader)."""
        self._preadv(first_page << PAGE_SHIFT, buffers)

    def read_span(self, first_page: int, buffer) -> None:
        """read_pages into one buffer of whole pages (one iovec)."""
        self._preadv(first_page << PAGE_SHIFT, [buffer])

    def _preadv(self, offset: int, buffers) -> None:
        if len(buffers) == 1:                # the common case: one read of all of it
            want = len(buffers[0])
            if os.preadv(self.fd, buffers, offset) == want:
                self.reads += 1
                self.bytes_read += want
                return                       # (short: the loop below reads it again)
        for start in range(0, len(buffers), IOV_MAX):
            batch = buffers[start:start + IOV_MAX]
            want = sum(map(len, batch))
            done = 0
            while done < want:
                n = os.preadv(self.fd, _skip(batch, done), offset + done)
                if n == 0:          # end of file: the rest reads as zeros
                    for b in _skip(batch, done):
                        b[:] = bytes(len(b))
                    break
                done += n
            self.reads += 1
            self.bytes_read += done
            offset += want

    # --- writes ---

    def pwrite(self, offset: int, data) -> None:
        data = memoryview(data).cast("B")
        self._check_writable()
        self._check(offset, len(data))
        self._pwritev(offset, [data])

    def write_pages(self, first_page: int, buffers) -> None:
        """Write page-sized buffers to consecutive pages; the last page may be cut at `size`."""
        self._check_writable()
        offset = first_page << PAGE_SHIFT
        room = self.size - offset
        clipped = []
        for b in buffers:
            if room <= 0:
                break
            clipped.append(b[:room] if len(b) > room else b)
            room -= len(b)
        self._pwritev(offset, clipped)

    def _pwritev(self, offset: int, buffers) -> None:
        for start in range(0, len(buffers), IOV_MAX):
            batch = buffers[start:start + IOV_MAX]
            want = sum(len(b) for b in batch)
            done = 0
            while done < want:
                done += os.pwritev(self.fd, _skip(batch, done), offset + done)
            self.writes += 1
            self.bytes_written += done
            offset += want

    def zero_range(self, offset: int, length: int) -> None:
        """Make [offset, offset+length) read as zeros: punch a hole, or write zeros if we cannot."""
        self._check_writable()
        self._check(offset, length)
        if length == 0:
            return
        if self._can_punch:
            if _fallocate(self.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
                self.writes += 1
                return
            # EOPNOTSUPP on this file system (or a block device): remember and write zeros
            self._can_punch = False
        zeros = memoryview(bytes(min(length, _ZERO_CHUNK)))
        end = offset + length
        while offset < end:
            n = min(end - offset, len(zeros))
            self._pwritev(offset, [zeros[:n]])
            offset += n

    def fsync(self) -> None:
        if self.read_only:
            return              # nothing of ours can be dirty
        os.fsync(self.fd)
        self.fsyncs += 1

    # --- housekeeping ---

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"range {offset:#x}+{length:#x} outside disk image {self.path!r} of {self.size} bytes")

    def _check_writable(self) -> None:
        if self.read_only:
            raise OSError(errno.EROFS, "disk image is read-only", self.path)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        mode = "ro" if self.read_only else "rw"
        return f"DiskImage({self.path!r}, {self.size} bytes, {mode})"


def _skip(buffers, nbytes: int):
    """The buffers with the first nbytes consumed (after a short read or write)."""
    if nbytes == 0:
        return buffers
    out = []
    for b in buffers:
        if nbytes >= len(b):
            nbytes -= len(b)
            continue
        out.append(b[nbytes:] if nbytes else b)
        nbytes = 0
    return out


# --- costs (virtual nanoseconds) ---

class SnapshotDiskImage(DiskImage):
    """QEMU's -snapshot: the base image is only read; writes land in a private in-memory
    overlay of 4 KiB pages and vanish when the VM is gone."""

    _next_id = 0

    def __init__(self, path):
        super().__init__(path, read_only=True)
        SnapshotDiskImage._next_id += 1
        self.key = ("snapshot", SnapshotDiskImage._next_id, self.key)   # never shared with the base
        self.read_only = False
        self.overlay = {}                                                  # page index -> bytearray

    def reopen_read_write(self) -> None:
        pass

    def _overlay_page(self, index: int) -> bytearray:
        page = self.overlay.get(index)
        if page is None:
            page = bytearray(PAGE_SIZE)
            DiskImage._preadv(self, index << PAGE_SHIFT, [memoryview(page)[:max(0, min(PAGE_SIZE, self.size - (index << PAGE_SHIFT)))]])
            self.overlay[index] = page
        return page

    def _preadv(self, offset: int, buffers) -> None:
        DiskImage._preadv(self, offset, buffers)
        if not self.overlay:
            return
        for b in buffers:
            b = memoryview(b).cast("B")
            pos = 0
            while pos < len(b):
                index, within = divmod(offset + pos, PAGE_SIZE)
                n = min(len(b) - pos, PAGE_SIZE - within)
                page = self.overlay.get(index)
                if page is not None:
                    b[pos:pos + n] = page[within:within + n]
                pos += n
            offset += len(b)

    def _pwritev(self, offset: int, buffers) -> None:
        for b in buffers:
            b = memoryview(b).cast("B")
            pos = 0
            while pos < len(b):
                index, within = divmod(offset + pos, PAGE_SIZE)
                n = min(len(b) - pos, PAGE_SIZE - within)
                self._overlay_page(index)[within:within + n] = b[pos:pos + n]
                pos += n
            self.writes += 1
            self.bytes_written += len(b)
            offset += len(b)

    def zero_range(self, offset: int, length: int) -> None:
        self._check(offset, length)
        zeros = bytes(min(length, _ZERO_CHUNK))
        end = offset + length
        while offset < end:
            n = min(end - offset, len(zeros))
            self._pwritev(offset, [memoryview(zeros)[:n]])
            offset += n

    def fsync(self) -> None:
        self.fsyncs += 1                    # durable for the VM's lifetime, by design


class DiskProfile(NamedTuple):
    """What a physical disk under the host charges per request. Defaults are a datacenter NVMe SSD.

    A request costs its latency, plus `seek_ns` when it does not continue the previous request
    (a head movement on a hard disk; zero for flash), plus its length at the transfer rate.
    Rates are decimal MB/s, as disk makers quote them.
    """
    name: str = "nvme"
    read_latency_ns: int = 80_000       # a 4 KiB random read at queue depth 1
    write_latency_ns: int = 20_000      # a write lands in the drive's (power-safe) write cache
    seek_ns: int = 0                    # extra for a non-sequential request
    read_mb_s: int = 3_000
    write_mb_s: int = 2_000
    flush_ns: int = 100_000             # FLUSH CACHE: choice (power-loss-protected cache drains fast)

    def read_cost_ns(self, length: int, sequential: bool = False) -> int:
        if length <= 0:
            return 0
        return self.read_latency_ns + (0 if sequential else self.seek_ns) + length * 1000 // self.read_mb_s

    def write_cost_ns(self, length: int, sequential: bool = False) -> int:
        if length <= 0:
            return 0
        return self.write_latency_ns + (0 if sequential else self.seek_ns) + length * 1000 // self.write_mb_s

    def flush_cost_ns(self) -> int:
        return self.flush_ns

    @classmethod
    def named(cls, name: str) -> "DiskProfile":
        try:
            return PROFILES[name]
        except KeyError:
            raise ValueError(f"unknown disk profile {name!r} (known: {', '.join(PROFILES)})") from None


PROFILES = {
    # 7200 rpm disk: ~8 ms average seek plus half a rotation on a random request, ~150 MB/s
    # sequential; a flush waits for the platter (choice: 10 ms).
    "hdd": DiskProfile(name="hdd", read_latency_ns=50_000, write_latency_ns=50_000, seek_ns=8_000_000,
                       read_mb_s=150, write_mb_s=150, flush_ns=10_000_000),
    # SATA SSD: ~100 us reads, writes absorbed by its DRAM cache (choice: 50 us), ~500 MB/s;
    # no power-loss protection, so a flush is slow (choice: 1 ms).
    "ssd": DiskProfile(name="ssd", read_latency_ns=100_000, write_latency_ns=50_000, seek_ns=0,
                       read_mb_s=500, write_mb_s=450, flush_ns=1_000_000),
    # NVMe SSD: ~80 us reads, ~20 us writes, ~3 GB/s (the defaults above).
    "nvme": DiskProfile(),
}


class HostCosts(NamedTuple):
    """Work the host's CPU does for the disk (copies and metadata), in virtual nanoseconds.

    250 ns per 4 KiB copy matches the guest's copy_ns_per_kib (60) in vmm/clock.py.
    """
    host_cache_hit_ns_per_page: int = 250     # copy a cached page into guest RAM
    host_cache_fill_ns_per_page: int = 250    # copy guest data into a cached page
    punch_hole_ns: int = 5_000                # fallocate(PUNCH_HOLE) on the image: metadata only
