"""Reclaim's write of a dirty page-cache page: pageout() (mm/vmscan.c) and the address space's
->writepage(). guestos/mm/vmscan.py (pageout, handle_write_error) and guestos/mm/filemap.py
(AddressSpace.writepage) are their readable Linux-named fronts.

One source in Cython's pure-Python mode (BALLAST_PURE=1 runs it as Python). Compiled, a dirty page
goes from "dirty" to "under writeback, its request submitted" without a Python frame of its own; the
file system's block map (a_ops.map_page_for_write) and the disk's submission are the kernel's.

Both are methods of a Pageout over one mem_map (MemMap.native_pageout). Neither raises for the disk's
status: writepage() returns it (0 when the write went out or was queued), pageout() returns
WRITE_ERROR for a failed synchronous write; an error raised by the block map or the disk passes
through, and the front handles both (handle_write_error)."""
import cython

PG_dirty = cython.declare(cython.int, 4)
PG_writeback = cython.declare(cython.int, 13)
PG_mappedtodisk = cython.declare(cython.int, 16)
PG_reclaim = cython.declare(cython.int, 17)
# struct page words (guestos/mm/mm_types.py): q[(pfn << 3) + Q_*]
Q_FLAGS = cython.declare(cython.int, 0)
Q_INDEX = cython.declare(cython.int, 4)
Q_DISK_SECTOR = cython.declare(cython.int, 6)
PAGE_SHIFT = cython.declare(cython.int, 12)
# pageout()'s results (mm/vmscan.c), and a write that failed at once (the front keeps the page dirty)
PAGE_KEEP = cython.declare(cython.int, 0)
PAGE_ACTIVATE = cython.declare(cython.int, 1)
PAGE_SUCCESS = cython.declare(cython.int, 2)
PAGE_CLEAN = cython.declare(cython.int, 3)
WRITE_ERROR = cython.declare(cython.int, -1)
EIO = cython.declare(cython.int, 5)


def constants() -> dict:
    """The layout this module was written against."""
    return dict(PG_dirty=PG_dirty, PG_writeback=PG_writeback, PG_mappedtodisk=PG_mappedtodisk,
                PG_reclaim=PG_reclaim, OFF_FLAGS=Q_FLAGS * 8, OFF_INDEX=Q_INDEX * 8,
                OFF_DISK_SECTOR=Q_DISK_SECTOR * 8, PAGE_KEEP=PAGE_KEEP, PAGE_ACTIVATE=PAGE_ACTIVATE,
                PAGE_SUCCESS=PAGE_SUCCESS, PAGE_CLEAN=PAGE_CLEAN)


@cython.cclass
class WriteDone:
    """The completion of one page's asynchronous write (end_io of the request): a failed write leaves
    the page dirty again while it is still the cache's page; then end_io(k, pfn) (end_page_writeback)."""
    mapping: object
    index: object
    pfn: object
    end_io: object

    def __init__(self, mapping, index, pfn, end_io):
        self.mapping = mapping
        self.index = index
        self.pfn = pfn
        self.end_io = end_io

    def __call__(self, status: cython.int) -> None:
        if status != 0 and self.mapping.pages.get(self.index) == self.pfn:
            self.mapping.set_page_dirty(self.index)       # the write failed: the data is still only here
        self.end_io(self.mapping.k, self.pfn)


@cython.final
@cython.cclass
class Pageout:
    """pageout() and ->writepage() over one mem_map: its struct pages as 64-bit words (q), held here so
    that the compiled code reads and writes page->flags without going through Python's memoryview."""
    q: cython.ulonglong[::1]

    def __init__(self, q):
        self.q = q

    @cython.ccall
    def writepage(self, mapping, index, end_io) -> cython.int:
        """->writepage() for reclaim's pageout(): write one page whose dirty bit was cleared for I/O. On
        a disk that completes later the page is under PG_writeback until end_io(k, pfn) runs at the
        completion; else it is written before this returns. Returns the synchronous write's status
        (0: ok)."""
        return self.write(mapping.k.vmstat, mapping, index, end_io)

    @cython.cfunc
    def write(self, vmstat: dict, mapping, index, end_io) -> cython.int:
        """writepage() with the kernel's vmstat at hand."""
        q: cython.ulonglong[::1] = self.q
        pfn: cython.Py_ssize_t = mapping.pages[index]
        paddr: cython.Py_ssize_t = pfn << PAGE_SHIFT
        runs = []                                   # [(disk offset, [(paddr, len)])], contiguous on disk
        segs = None                                 # the last run's segments,
        run_end = -1                                # and where it ends on disk
        pos: cython.Py_ssize_t = 0
        nbytes: cython.Py_ssize_t = 0
        sector = 0                                  # struct page's disk_sector: 1 + the first, 0 for none
        for disk_offset, length in mapping.a_ops.map_page_for_write(mapping, index):
            if disk_offset is not None:
                if not sector:
                    sector = (disk_offset >> 9) + 1
                if segs is not None and run_end == disk_offset:
                    segs.append((paddr + pos, length))
                else:
                    segs = [(paddr + pos, length)]
                    runs.append((disk_offset, segs))
                run_end = disk_offset + length
                nbytes += length
            pos += length
        q[(pfn << 3) + Q_DISK_SECTOR] = sector
        vmstat["pgpgout"] += nbytes >> 10
        blk = mapping.blk
        submit = getattr(blk, "transfer_runs_async", None)
        if not runs or submit is None:
            q[pfn << 3] |= 1 << PG_mappedtodisk
            if runs and blk.transfer_runs(True, runs) != 0:
                return EIO
            return 0
        q[pfn << 3] |= (1 << PG_mappedtodisk) | (1 << PG_writeback)
        vmstat["nr_writeback"] += 1
        done: WriteDone = WriteDone.__new__(WriteDone)      # WriteDone(mapping, index, pfn, end_io), without
        done.mapping = mapping                              # a Python call of __init__
        done.index = index
        done.pfn = pfn
        done.end_io = end_io
        submit(True, runs, done)
        return 0

    def pageout(self, k, mapping, pfn: cython.Py_ssize_t, end_io) -> cython.int:
        """pageout(): clear the dirty bit for I/O, set PG_reclaim and start writing the page (writepage).
        The write is asynchronous when the disk can complete it later (the page stays under PG_writeback
        until end_io, end_page_writeback); a synchronous one leaves the page clean at once. PAGE_SUCCESS,
        or WRITE_ERROR when the synchronous write failed (the caller's handle_write_error)."""
        q: cython.ulonglong[::1] = self.q
        base: cython.Py_ssize_t = pfn << 3
        index = q[base + Q_INDEX]
        q[base] = q[base] & ~(cython.cast(cython.ulonglong, 1) << PG_dirty) | (1 << PG_reclaim)
        # (clear_page_dirty_for_io(), SetPageReclaim)
        dirty = mapping.dirty
        dirty.discard(index)
        vmstat: dict = k.vmstat
        vmstat["nr_dirty"] -= 1
        if not dirty:
            k.dirty_mappings.pop(mapping, None)
            mapping.dirtied_when = None
        if k.tracepoints is not None:
            k.tracepoints.emit("mm_vmscan_writepage", pfn=pfn, reclaim_flags="RECLAIM_WB_FILE|RECLAIM_WB_ASYNC")
        vmstat["nr_vmscan_write"] += 1
        if self.write(vmstat, mapping, index, end_io):
            return WRITE_ERROR
        if not (q[base] >> PG_writeback) & 1:
            q[base] &= ~(cython.cast(cython.ulonglong, 1) << PG_reclaim)      # a synchronous write
        return PAGE_SUCCESS
