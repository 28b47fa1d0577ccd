"""/dev/vdX: block devices opened as files (fs/block_dev.c).

Until the page cache arrives, block-device files move data directly between
the disk and the caller's pages (as O_DIRECT does): sector-aligned transfers
DMA straight into user memory, unaligned ones go through a bounce buffer."""
from ..kernel.errno import EINVAL, EIO, ENOSPC, EPERM, EROFS, SyscallError
from ..drivers.virtio_blk import SECTOR_SIZE, VIRTIO_BLK_S_OK
from .file import File

S_IFBLK = 0o060000
VIRTBLK_MAJOR = 253
BLKGETSIZE64 = 0x80081272
BLKSSZGET = 0x1268
BLKFLSBUF = 0x1261
PAGE = 4096


class BlockDeviceFile(File):
    def __init__(self, k, blk, index: int, writable: bool):
        super().__init__("/dev/" + blk.name)
        self.k, self.blk = k, blk
        self.mode = S_IFBLK | 0o660
        self.rdev = (VIRTBLK_MAJOR << 8) | (index * 16)
        self.size = blk.size_bytes
        self.writable = writable

    # --- data ---
    def read_user(self, k, task, buf: int, count: int, pos: int) -> int:
        left = self.size - pos
        if count > left:
            count = left
        if count < 0:
            count = 0
        if count:
            self._rw_user(task, False, buf, count, pos)
        return count

    def write_user(self, k, task, buf: int, count: int, pos: int) -> int:
        if not self.writable:
            raise SyscallError(EPERM)
        if self.blk.read_only:
            raise SyscallError(EROFS)
        if pos >= self.size and count:
            raise SyscallError(ENOSPC)
        count = min(count, self.size - pos)
        if count:
            self._rw_user(task, True, buf, count, pos)
        return count

    def _rw_user(self, task, write: bool, buf: int, count: int, pos: int) -> None:
        if pos % SECTOR_SIZE == 0 and count % SECTOR_SIZE == 0:
            segments = self.k.mm.user_runs(task, buf, count, not write)      # get_user_pages()
            status = self.blk.transfer(write, pos, segments)
        else:
            status = self._bounce(task, write, buf, count, pos)
        if status != VIRTIO_BLK_S_OK:
            raise SyscallError(EIO)

    def _bounce(self, task, write: bool, buf: int, count: int, pos: int) -> int:
        """Read the covering sectors into kernel pages; for a write, patch and write them back."""
        start = pos - pos % SECTOR_SIZE
        end = -(-(pos + count) // SECTOR_SIZE) * SECTOR_SIZE
        npages = -(-(end - start) // PAGE)
        pages = [self.k.page_alloc.alloc_pages() for _ in range(npages)]
        try:
            if any(p == 0xFFFFFFFF for p in pages):
                raise SyscallError(EIO)
            segs, left = [], end - start
            for p in pages:
                segs.append((p << 12, min(PAGE, left)))
                left -= PAGE
            status = self.blk.transfer(False, start, segs)
            if status != VIRTIO_BLK_S_OK:
                return status
            ram = self.k.ram
            bounce = b"".join(bytes(ram[p << 12:(p << 12) + n]) for p, (_, n) in zip(pages, segs))
            lo = pos - start
            if not write:
                self.k.mm.copy_to_user(task, buf, bounce[lo:lo + count])
                return VIRTIO_BLK_S_OK
            patched = bounce[:lo] + self.k.mm.copy_from_user(task, buf, count) + bounce[lo + count:]
            for i, p in enumerate(pages):
                chunk = patched[i * PAGE:(i + 1) * PAGE]
                ram[p << 12:(p << 12) + len(chunk)] = chunk
            return self.blk.transfer(True, start, segs)
        finally:
            for p in pages:
                if p != 0xFFFFFFFF:
                    self.k.page_alloc.free_pages(p)

    # --- the rest of the file interface ---
    def lseek(self, offset: int, whence: int) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}.get(whence)
        if base is None or base + offset < 0:
            raise SyscallError(EINVAL)
        self.pos = base + offset
        return self.pos

    def fsync(self) -> None:
        if self.blk.flush() != VIRTIO_BLK_S_OK:
            raise SyscallError(EIO)

    def ioctl(self, cmd: int, arg: int, task=None) -> int:
        if cmd == BLKGETSIZE64:
            self.k.mm.copy_to_user(task, arg, self.size.to_bytes(8, "little"))
            return 0
        if cmd == BLKSSZGET:
            self.k.mm.copy_to_user(task, arg, SECTOR_SIZE.to_bytes(4, "little"))
            return 0
        if cmd == BLKFLSBUF:
            return 0
        return super().ioctl(cmd, arg)
