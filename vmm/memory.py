"""Guest RAM: one anonymous mmap, mapped into Unicorn at guest-physical 0.

Beside it the host keeps one byte per frame saying whether the host backs the
frame (the second stage of translation). Frames the host takes back (a balloon)
are released with MADV_DONTNEED, so the process's real RSS falls.
"""
import ctypes
import mmap

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
_libc = ctypes.CDLL(None, use_errno=True)
_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)     # Linux 5.14; 0 once the kernel refused it


class GuestRAM:
    def __init__(self, size: int):
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"guest RAM size must be a positive multiple of {PAGE_SIZE}")
        self.size = size
        self.nr_frames = size >> PAGE_SHIFT
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._anchor = ctypes.c_char.from_buffer(self._map)
        self.ptr = ctypes.addressof(self._anchor)
        self.view = memoryview(self._map)
        self.backed = bytearray(b"\x01") * self.nr_frames

    def read(self, paddr: int, length: int) -> bytes:
        self._check(paddr, length)
        return bytes(self.view[paddr:paddr + length])

    def write(self, paddr: int, data) -> None:
        self._check(paddr, len(data))
        self.view[paddr:paddr + len(data)] = data

    def _check(self, paddr: int, length: int) -> None:
        if paddr < 0 or length < 0 or paddr + length > self.size:
            raise IndexError(f"guest-physical range {paddr:#x}+{length:#x} outside RAM")

    def discard(self, pfn: int, count: int = 1) -> None:
        """Give frames back to the host: contents are lost, RSS falls."""
        self._check(pfn << PAGE_SHIFT, count << PAGE_SHIFT)
        self._map.madvise(mmap.MADV_DONTNEED, pfn << PAGE_SHIFT, count << PAGE_SHIFT)
        self.backed[pfn:pfn + count] = bytes(count)

    def reback(self, pfn: int, count: int = 1) -> None:
        """The host backs the frames again (they read as zero until written)."""
        self._check(pfn << PAGE_SHIFT, count << PAGE_SHIFT)
        self.backed[pfn:pfn + count] = b"\x01" * count

    def populate(self, runs) -> None:
        """Back the frames of runs [(paddr, length)] before a device writes all of them (DMA of a read):
        one MADV_POPULATE_WRITE per stretch instead of a host page fault per page. Only a hint: the
        contents and what the guest sees do not change."""
        if not _POPULATE_WRITE:
            return
        start = end = -1
        for paddr, length in runs:
            if paddr == end:
                end += length
                continue
            if end > start:
                self._populate(start, end)
            start, end = paddr, paddr + length
        if end > start:
            self._populate(start, end)

    def _populate(self, start: int, end: int) -> None:
        global _POPULATE_WRITE
        lo, hi = start & ~(PAGE_SIZE - 1), (end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if lo < 0 or hi > self.size:
            return
        try:
            self._map.madvise(_POPULATE_WRITE, lo, hi - lo)
        except OSError:                 # an older kernel: touching the pages does it
            _POPULATE_WRITE = 0

    def resident_pages(self) -> int:
        """Frames the host really holds for this guest now (mincore): touched and not given back."""
        vec = (ctypes.c_ubyte * self.nr_frames)()
        if _libc.mincore(ctypes.c_void_p(self.ptr), ctypes.c_size_t(self.size), vec) != 0:
            raise OSError(ctypes.get_errno(), "mincore failed")
        return self.nr_frames - bytes(vec).count(0)       # Linux writes 1 or 0 per page

    def close(self) -> None:
        self.view.release()
        del self._anchor
        self._map.close()


def process_rss_bytes() -> int:
    """Resident set size of this VMM process (what the host really spends)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * mmap.PAGESIZE
