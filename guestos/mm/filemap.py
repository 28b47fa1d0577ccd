"""The page cache (mm/filemap.c, mm/readahead.c, mm/page-writeback.c).

Every cached file page is a frame of guest RAM indexed by (address_space, page
index), with its struct page saying whose it is and at which index, so the
kernel always knows mapped from unmapped file pages. A file system supplies the
address_space operations: where a page lives on the disk (for reading), and
where it must go (for writing, allocating blocks)."""
from functools import reduce
from itertools import filterfalse
from operator import or_

from ..kernel.errno import EFBIG, EIO, ENOMEM, SyscallError
from .lru import LRU_INACTIVE_FILE
from .mm_types import (NIL, PG_active, PG_dirty, PG_locked, PG_lru, PG_mappedtodisk, PG_referenced, PG_reclaim,
                       PG_unevictable, PG_uptodate, PG_writeback)

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PG_readahead = PG_reclaim              # as Linux: the same bit, the meaning depends on the page's state
VM_MAX_READAHEAD_KB = 128              # read_ahead_kb default
MAX_LFS_FILESIZE = 1 << 40
ZERO_PAGE = bytes(PAGE_SIZE)
READ_BATCHES = True                    # False: _read_pages page by page (the differential tests' reference)
READ_BATCH_FLAGS = (1 << PG_locked) | (1 << PG_uptodate) | (1 << PG_mappedtodisk)   # a page under read


class _ReadaheadShort(Exception):
    """Memory ran out part way through a read: what was added is read, the rest is left out."""


class PageCacheRace(Exception):
    """add_to_page_cache()'s -EEXIST: another task put a page at that index first."""


class FileRaState:
    """struct file_ra_state: the readahead window of one open file (read() and mmap faults share it, as
    they share Linux's file->f_ra)."""
    __slots__ = ("start", "size", "async_size", "prev_pos", "ra_pages", "mmap_miss", "fmode_random")

    def __init__(self, ra_pages: int = VM_MAX_READAHEAD_KB // 4):
        self.start = self.size = self.async_size = 0
        self.prev_pos = -1
        self.ra_pages = ra_pages
        self.mmap_miss = 0
        self.fmode_random = False      # the file's FMODE_RANDOM (fadvise POSIX_FADV_RANDOM)


MMAP_LOTSAMISS = 100                   # filemap_fault() stops reading around after this many more misses than hits
VM_SEQ_READ = 0x00008000               # madvise(MADV_SEQUENTIAL) on a VMA
VM_RAND_READ = 0x00010000              # madvise(MADV_RANDOM)


def _roundup_pow_of_two(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def get_init_ra_size(size: int, max_pages: int) -> int:
    """The first window: the request rounded up to a power of two, x4 when small, x2 when medium."""
    newsize = _roundup_pow_of_two(size)
    if newsize <= max_pages // 32:
        newsize *= 4
    elif newsize <= max_pages // 4:
        newsize *= 2
    else:
        newsize = max_pages
    return newsize


def get_next_ra_size(ra: FileRaState, max_pages: int) -> int:
    cur = ra.size
    newsize = cur * 4 if cur < max_pages // 16 else cur * 2
    return min(newsize, max_pages)


class AddressSpace:
    """struct address_space: one file's (or one block device's) cached pages."""

    def __init__(self, k, mapping_id: int, a_ops, blk):
        self.k = k
        self.mapping_id = mapping_id     # page->mapping of its pages (even: a file, not anon)
        self.a_ops = a_ops
        self.blk = blk                   # the block device under it
        self.pages = {}                  # page index -> pfn: the radix tree
        self.dirty = set()               # indices with PG_dirty (the radix tree's dirty tag)
        self.dirtied_when = None         # virtual ns when it first became dirty (inode->dirtied_when)
        self.writeback = self.writepages  # how the flusher cleans it (the buffer cache overrides)
        self.unevictable_metadata = False  # the buffer cache: its blocks are in use by the fs
        k.address_spaces[mapping_id] = self

    @property
    def nrpages(self) -> int:
        return len(self.pages)

    def find_get_page(self, index: int):
        return self.pages.get(index)

    def find_get_page_unlocked(self, index: int):
        """find_get_page() and wait_on_page_locked(): a page another task is reading in is waited
        for (its read may fail and take it out of the cache, so look again)."""
        pfn = self.pages.get(index)
        if pfn is not None and self.k.mem_map.test(pfn, PG_locked):
            k = self.k
            while pfn is not None and k.mem_map.test(pfn, PG_locked):
                k.wait_event(lambda: self.pages.get(index) != pfn or not k.mem_map.test(pfn, PG_locked))
                pfn = self.pages.get(index)
        return pfn

    # --- adding and removing pages ---
    def add_to_page_cache(self, index: int) -> int:
        k = self.k
        pfn = k.pcp.alloc()
        if pfn == NIL:
            raise SyscallError(ENOMEM)
        if index in self.pages:             # added by another task while this one slept in reclaim
            k.page_alloc.free_pages(pfn)
            raise PageCacheRace(index)
        k.mem_map.set_flags(pfn, 0)
        k.mem_map.set_mapping(pfn, self.mapping_id, index)
        k.mem_map.set_disk_sector(pfn, None)
        self.pages[index] = pfn
        k.vmstat["nr_file_pages"] += 1
        k.lru.lru_cache_add(pfn)                 # inactive file list
        k.charge(k.costs.pagecache_insert_ns)
        if k.tracepoints is not None:
            k.tracepoints.emit("mm_filemap_add_to_page_cache", pfn=pfn, mapping=self.mapping_id, index=index)
        return pfn

    def remove_from_page_cache(self, index: int) -> None:
        k = self.k
        pfn = self.pages[index]
        if k.mem_map.test(pfn, PG_writeback):           # truncate waits for a write in flight
            k.wait_event(lambda: not k.mem_map.test(pfn, PG_writeback))
            if self.pages.get(index) != pfn:
                return                                  # reclaim freed it meanwhile
        del self.pages[index]
        if k.tracepoints is not None:
            k.tracepoints.emit("mm_filemap_delete_from_page_cache", pfn=pfn, mapping=self.mapping_id, index=index)
        if k.mem_map.test(pfn, PG_dirty):
            self.dirty.discard(index)
            k.vmstat["nr_dirty"] -= 1
        k.mem_map.set_mapping(pfn, 0, 0)
        k.mem_map.set_disk_sector(pfn, None)
        k.vmstat["nr_file_pages"] -= 1
        k.page_alloc.put_page(pfn)

    # --- reading ---
    def read_pages(self, indices) -> None:
        """Bring these (missing) pages in with as few requests as the disk layout allows."""
        k = self.k
        runs = []                         # [disk offset, [(paddr, len)], next disk offset]
        locked = []
        isize = self.a_ops.i_size()
        try:
            self._read_pages(indices, runs, locked, isize)
        except _ReadaheadShort:
            pass                          # memory ran out: read what is in (__do_page_cache_readahead)
        finally:
            if locked:
                k.mem_map.clear_many(locked, PG_locked)

    def _read_pages(self, indices, runs, locked, isize) -> None:
        try:
            self._add_pages(indices, runs, locked, isize)
        except SyscallError as e:
            if e.errno != ENOMEM or not locked:
                raise
            self._submit_reads(indices, runs)
            raise _ReadaheadShort() from None
        self._submit_reads(indices, runs)

    def _add_pages(self, indices, runs, locked, isize) -> None:
        k = self.k
        pages = self.pages
        map_cached = getattr(self.a_ops, "map_pages_cached", None) if READ_BATCHES else None
        page_blocks = getattr(self.a_ops, "page_blocks_cached", None) if READ_BATCHES else None
        at, nr = 0, len(indices)
        while at < nr:
            index = indices[at]
            if index in pages or index << PAGE_SHIFT >= isize:
                at += 1
                continue
            # A batch: the consecutive pages that the per-cpu list can hold, none cached yet, mapped
            # without I/O. No other code runs while a batch goes in (no allocator refill, no sleep), so
            # it leaves everything as page by page would; anything else goes page by page.
            room = k.pcp.count
            if map_cached is not None and room == 0:
                # the list is empty: refill it now, as this page's alloc() would (and fail as it would)
                if not k.pcp.rmqueue_bulk():
                    raise SyscallError(ENOMEM)
                room = k.pcp.count
            if map_cached is not None and room > 0:
                end = min(nr, at + room)
                run = indices[at:end]
                if not (run == list(range(index, index + end - at)) and indices[end - 1] << PAGE_SHIFT < isize
                        and pages.keys().isdisjoint(run)):
                    end = at + 1            # not the usual run of consecutive missing pages: look one by one
                    while end < nr and end - at < room and indices[end] == index + end - at and \
                            indices[end] not in pages and indices[end] << PAGE_SHIFT < isize:
                        end += 1
                blocks = page_blocks(self, index, end - at) if page_blocks is not None else None
                if blocks:
                    self._add_read_blocks(index, blocks, runs, locked)
                    at += len(blocks)
                    continue
                extents = map_cached(self, index, end - at) if blocks is None else None
                if extents:
                    self._add_read_batch(index, extents, runs, locked)
                    at += len(extents)
                    continue
            at += 1
            try:
                pfn = self.add_to_page_cache(index)
            except PageCacheRace:
                continue                           # -EEXIST: another task reads it in
            k.mem_map.set(pfn, PG_locked)          # under read: reclaim leaves it alone
            locked.append(pfn)
            base = pfn << PAGE_SHIFT
            pos = 0
            extents = self.a_ops.map_page(self, index)
            k.mem_map.set_disk_sector(pfn, _first_sector(extents))
            for disk_offset, length in extents:
                if disk_offset is None:
                    k.ram[base + pos:base + pos + length] = ZERO_PAGE[:length]
                elif runs and runs[-1][2] == disk_offset:
                    runs[-1][1].append((base + pos, length))
                    runs[-1][2] += length
                else:
                    runs.append([disk_offset, [(base + pos, length)], disk_offset + length])
                pos += length
            k.mem_map.set(pfn, PG_uptodate)
            k.mem_map.set(pfn, PG_mappedtodisk)

    def _submit_reads(self, indices, runs) -> None:
        k = self.k
        if runs:
            nbytes = sum(run[2] - run[0] for run in runs)
            k.vmstat["pgpgin"] += nbytes >> 10
            if self.blk.transfer_runs(False, [(off, segs) for off, segs, _ in runs]) != 0:
                for index in indices:
                    if index in self.pages and index not in self.dirty:
                        self.remove_from_page_cache(index)
                raise SyscallError(EIO)

    def _add_read_batch(self, first: int, extents: list, runs: list, locked: list) -> None:
        """Pages first, first+1, ... (one per extents list) as the loop of _read_pages adds them: allocated,
        in the page cache on the inactive list, locked, up to date, their blocks appended to runs."""
        k = self.k
        n = len(extents)
        pfns = k.pcp.take(n)
        pages, ram = self.pages, k.ram
        sectors = []
        index = first
        for pfn, page_extents in zip(pfns, extents):
            pages[index] = pfn
            index += 1
            base = pfn << PAGE_SHIFT
            sector = None
            for disk_offset, length in page_extents:
                if disk_offset is None:
                    ram[base:base + length] = ZERO_PAGE[:length]
                else:
                    if sector is None:
                        sector = disk_offset >> 9
                    if runs and runs[-1][2] == disk_offset:
                        runs[-1][1].append((base, length))
                        runs[-1][2] += length
                    else:
                        runs.append([disk_offset, [(base, length)], disk_offset + length])
                base += length
            sectors.append(sector)
        self._insert_read_batch(first, pfns, sectors, locked)

    def _add_read_blocks(self, first: int, blocks: list, runs: list, locked: list) -> None:
        """_add_read_batch when each page is one block (blocks[j], 0 for a hole), natively."""
        k = self.k
        n = len(blocks)
        pfns = k.pcp.take(n)
        sectors = k.pagecache.add_read_batch(k.ram, self.pages, first, pfns, blocks, runs)
        self._insert_read_batch(first, pfns, sectors, locked)

    def _insert_read_batch(self, first: int, pfns, sectors, locked: list) -> None:
        """The batch's struct pages written (locked, on the inactive file list) and counted."""
        k, n = self.k, len(pfns)
        k.vmstat["pgalloc_normal"] += n
        k.vmstat["nr_file_pages"] += n
        k.charge(n * k.costs.pagecache_insert_ns)
        k.lru.core.add_page_cache_batch(pfns, self.mapping_id, list(range(first, first + n)), sectors,
                                        READ_BATCH_FLAGS)
        locked.extend(pfns)
        if k.tracepoints is not None:
            for index, pfn in enumerate(pfns, first):
                k.tracepoints.emit("mm_filemap_add_to_page_cache", pfn=pfn, mapping=self.mapping_id, index=index)

    # --- readahead (mm/readahead.c) ---
    def max_sane_readahead(self, nr: int) -> int:
        """No window larger than half of the inactive file pages and free memory."""
        k = self.k
        return min(nr, (k.lru.nr[LRU_INACTIVE_FILE] + k.page_alloc.nr_free_pages) // 2)

    def do_page_cache_readahead(self, offset: int, nr_to_read: int, lookahead_size: int) -> int:
        """__do_page_cache_readahead(): read the missing pages of [offset, offset + nr_to_read) (not past
        the end of the file) and mark PG_readahead the one at nr_to_read - lookahead_size when this read
        brings it in; returns how many pages were read."""
        isize = self.a_ops.i_size()
        if isize == 0:
            return 0
        end_index = (isize - 1) >> PAGE_SHIFT
        pages = self.pages
        mark = offset + nr_to_read - lookahead_size if lookahead_size else -1
        indices = list(filterfalse(pages.__contains__, range(offset, min(offset + nr_to_read, end_index + 1))))
        if indices:
            self.read_pages(indices)
            pfn = pages.get(mark)
            if pfn is not None and mark in indices:
                self.k.mem_map.set(pfn, PG_readahead)
        return len(indices)

    def ra_submit(self, ra: FileRaState, offset: int = None, req_size: int = 0, pattern: str = "") -> int:
        """Read the window ra describes; the page async_size before its end gets the mark."""
        k = self.k
        if k.tracepoints is not None:
            k.tracepoints.emit("mm_filemap_readahead", mapping=self.mapping_id, offset=ra.start if offset is None
                               else offset, req_size=req_size, start=ra.start, size=ra.size,
                               async_size=ra.async_size, pattern=pattern)
        return self.do_page_cache_readahead(ra.start, ra.size, ra.async_size)

    def count_history_pages(self, offset: int, max_pages: int) -> int:
        """How many pages right before offset are cached (radix_tree_prev_hole), at most max_pages."""
        index, pages = offset - 1, self.pages
        for _ in range(max_pages):
            if index not in pages:
                break
            index -= 1
            if index < 0:
                break
        return offset - 1 - index

    def try_context_readahead(self, ra: FileRaState, offset: int, req_size: int, max_pages: int) -> bool:
        """A miss right after cached pages looks like a stream whose state was lost: size the window by
        that history (doubled when it reaches back to the start of the file)."""
        size = self.count_history_pages(offset, max_pages)
        if not size:
            return False                 # no history: it may be a random read
        if size >= offset:
            size *= 2
        ra.start = offset
        ra.size = get_init_ra_size(size + req_size, max_pages)
        ra.async_size = ra.size
        return True

    def ondemand_readahead(self, ra: FileRaState, hit_readahead_marker: bool, offset: int, req_size: int) -> int:
        """2.6.35's ondemand_readahead(): grow the window of a sequential stream; a standalone small
        random read reads only what was asked and leaves the state alone."""
        max_pages = self.max_sane_readahead(ra.ra_pages)
        if offset == 0:
            pattern = "initial"
        elif offset == ra.start + ra.size - ra.async_size or offset == ra.start + ra.size:
            # the expected callback offset: assume sequential access, ramp up and push the window forward
            ra.start += ra.size
            ra.size = get_next_ra_size(ra, max_pages)
            ra.async_size = ra.size
            pattern = "subsequent"
        elif hit_readahead_marker:
            # a marked page without valid state (interleaved streams): its window is what follows it
            start, pages = offset + 1, self.pages
            for _ in range(max_pages):
                if start not in pages:
                    break
                start += 1
            if start - offset > max_pages:
                return 0
            ra.start = start
            ra.size = start - offset + req_size
            ra.size = get_next_ra_size(ra, max_pages)
            ra.async_size = ra.size
            pattern = "marker"
        elif req_size > max_pages:
            pattern = "initial"          # oversize read
        elif 0 <= offset - (ra.prev_pos >> PAGE_SHIFT) <= 1:
            pattern = "initial"          # a sequential cache miss
        elif self.try_context_readahead(ra, offset, req_size, max_pages):
            pattern = "context"
        else:
            k = self.k
            if k.tracepoints is not None:
                k.tracepoints.emit("mm_filemap_readahead", mapping=self.mapping_id, offset=offset,
                                   req_size=req_size, start=offset, size=req_size, async_size=0, pattern="random")
            return self.do_page_cache_readahead(offset, req_size, 0)
        if pattern == "initial":
            ra.start = offset
            ra.size = get_init_ra_size(req_size, max_pages)
            ra.async_size = ra.size - req_size if ra.size > req_size else ra.size
        # a window that would hit its own mark at once: merge the next window into it now
        if offset == ra.start and ra.size == ra.async_size:
            ra.async_size = get_next_ra_size(ra, max_pages)
            ra.size += ra.async_size
        return self.ra_submit(ra, offset, req_size, pattern)

    def page_cache_sync_readahead(self, ra: FileRaState, index: int, req_size: int) -> None:
        """A miss: readahead decides what to read besides the page (nothing with ra_pages 0)."""
        if not ra.ra_pages:
            return
        if ra.fmode_random:
            self.force_page_cache_readahead(index, req_size)      # be dumb: what was asked, no state
            return
        self.ondemand_readahead(ra, False, index, req_size)

    def force_page_cache_readahead(self, offset: int, nr_to_read: int) -> int:
        """Read [offset, offset + nr_to_read) in 2 MiB chunks, no window, no mark (fadvise WILLNEED, a file
        advised random)."""
        nr_to_read = self.max_sane_readahead(nr_to_read)
        done = 0
        while nr_to_read:
            chunk = min(nr_to_read, (2 << 20) >> PAGE_SHIFT)
            done += self.do_page_cache_readahead(offset, chunk, 0)
            offset += chunk
            nr_to_read -= chunk
        return done

    def page_cache_async_readahead(self, ra: FileRaState, pfn: int, index: int, req_size: int) -> None:
        """The reader reached the PG_readahead page: start the next window now."""
        if not ra.ra_pages:
            return
        mem_map = self.k.mem_map
        if mem_map.test(pfn, PG_writeback):
            return                       # the bit is PG_reclaim on a page under writeback
        mem_map.clear(pfn, PG_readahead)
        self.ondemand_readahead(ra, True, index, req_size)

    def get_page(self, index: int, ra: FileRaState = None, req_size: int = 1) -> int:
        """do_generic_file_read()'s find_page: the page at index, read (with readahead) if it is not
        cached; a marked page starts the next window."""
        pfn = self.find_get_page_unlocked(index)
        if pfn is None:
            if ra is not None:
                self.page_cache_sync_readahead(ra, index, req_size)
                pfn = self.pages.get(index)
            if pfn is None:
                pfn = self.page_cache_read(index)
        if ra is not None and self.k.mem_map.test(pfn, PG_readahead):
            self.page_cache_async_readahead(ra, pfn, index, req_size)
            pfn = self.relookup(index)
        return pfn

    def relookup(self, index: int) -> int:
        """The page at index after something that may have slept (reclaim may have taken it then:
        Linux holds a reference across it); read again if it is gone."""
        pfn = self.find_get_page_unlocked(index)
        return pfn if pfn is not None else self.page_cache_read(index)

    def page_cache_read(self, index: int) -> int:
        """no_cached_page: read the one page readahead did not bring in (EIO when it cannot be read)."""
        self.read_pages([index])
        pfn = self.pages.get(index)
        if pfn is None:
            raise SyscallError(EIO)
        return pfn

    def filemap_fault(self, ra: FileRaState, vm_flags: int, index: int):
        """filemap_fault(): the page for a fault at index (None past the end of the file), and whether it
        was a major fault. A miss reads around the fault, ra_pages centred on it, unless the VMA is
        advised random, or sequential (then read()'s readahead), or mmap misses far outnumber hits."""
        if index << PAGE_SHIFT >= self.a_ops.i_size():
            return None, False
        k = self.k
        pfn = self.find_get_page_unlocked(index)
        major = pfn is None
        if not major:
            # do_async_mmap_readahead()
            if not vm_flags & VM_RAND_READ:
                if ra.mmap_miss > 0:
                    ra.mmap_miss -= 1
                if k.mem_map.test(pfn, PG_readahead):
                    self.page_cache_async_readahead(ra, pfn, index, ra.ra_pages)
                    pfn = self.relookup(index)
        else:
            # do_sync_mmap_readahead()
            if vm_flags & VM_RAND_READ:
                pass
            elif vm_flags & VM_SEQ_READ or index - 1 == ra.prev_pos >> PAGE_SHIFT:
                self.page_cache_sync_readahead(ra, index, ra.ra_pages)
            else:
                ra.mmap_miss += 1
                ra_pages = self.max_sane_readahead(ra.ra_pages)
                if ra.mmap_miss <= MMAP_LOTSAMISS and ra_pages:
                    ra.start = max(0, index - ra_pages // 2)
                    ra.size = ra_pages
                    ra.async_size = 0
                    self.ra_submit(ra, index, 1, "mmap-around")
            pfn = self.pages.get(index)
            if pfn is None:
                pfn = self.page_cache_read(index)
        ra.prev_pos = index << PAGE_SHIFT
        return pfn, major

    # --- writing ---
    def grab_page_for_write(self, index: int, offset: int, length: int) -> int:
        """write_begin(): the page to copy into; read first when the write covers it partly."""
        pfn = self.find_get_page_unlocked(index)
        if pfn is not None:
            return pfn
        isize = self.a_ops.i_size()
        partial = offset or length < PAGE_SIZE
        if partial and index << PAGE_SHIFT < isize:
            self.read_pages([index])
            return self.find_get_page_unlocked(index)
        try:
            pfn = self.add_to_page_cache(index)
        except PageCacheRace:
            return self.grab_page_for_write(index, offset, length)
        self.k.ram[pfn << PAGE_SHIFT:(pfn + 1) << PAGE_SHIFT] = ZERO_PAGE
        self.k.mem_map.set(pfn, PG_uptodate)
        return pfn

    def set_page_dirty(self, index: int) -> None:
        pfn = self.pages[index]
        mem_map = self.k.mem_map
        if not mem_map.test(pfn, PG_dirty):
            mem_map.set(pfn, PG_dirty)
            self.dirty.add(index)
            self.k.vmstat["nr_dirty"] += 1
            self.k.mark_mapping_dirty(self)

    def writepage(self, index: int, end_io) -> None:
        """->writepage() for reclaim's pageout(): write one page whose dirty bit was cleared for I/O.
        On a disk that completes later the page is under PG_writeback until end_io(k, pfn) runs at the
        completion; else it is written before this returns (cython_ext/pageout.py's writepage)."""
        if self.k.mem_map.native_pageout.writepage(self, index, end_io) != 0:
            raise SyscallError(EIO)

    def writepages(self, indices=None) -> int:
        """write_cache_pages(): write dirty pages back (all, or those given); returns pages written."""
        todo = sorted(self.dirty if indices is None else self.dirty & set(indices))
        if not todo:
            return 0
        k = self.k
        runs = []
        for index in todo:
            pfn = self.pages[index]
            base = pfn << PAGE_SHIFT
            pos = 0
            extents = self.a_ops.map_page_for_write(self, index)
            k.mem_map.set_disk_sector(pfn, _first_sector(extents))
            for disk_offset, length in extents:
                if disk_offset is not None:
                    if runs and runs[-1][2] == disk_offset:
                        runs[-1][1].append((base + pos, length))
                        runs[-1][2] += length
                    else:
                        runs.append([disk_offset, [(base + pos, length)], disk_offset + length])
                pos += length
        # clear_page_dirty_for_io() before the write: a task writing to a page while it is in flight
        # (others run while this one waits) dirties it again
        for index in todo:
            k.mem_map.clear(self.pages[index], PG_dirty)
            self.dirty.discard(index)
        k.vmstat["nr_dirty"] -= len(todo)
        if not self.dirty:
            k.dirty_mappings.pop(self, None)
            self.dirtied_when = None
        status = self.blk.transfer_runs(True, [(off, segs) for off, segs, _ in runs]) if runs else 0
        if status != 0:
            for index in todo:
                if index in self.pages:
                    self.set_page_dirty(index)       # the data is still only here
            raise SyscallError(EIO)
        for index in todo:
            pfn = self.pages.get(index)
            if pfn is not None:
                k.mem_map.set(pfn, PG_mappedtodisk)
        k.vmstat["pgpgout"] += sum(run[2] - run[0] for run in runs) >> 10
        return len(todo)

    # --- dropping ---
    def invalidate_mapping_pages(self, start: int = 0, end: int = None) -> int:
        """Drop clean, unmapped pages in [start, end] (fadvise DONTNEED, drop_caches)."""
        dropped = 0
        mem_map = self.k.mem_map
        for index in sorted(self.pages):
            if index < start or (end is not None and index > end):
                continue
            pfn = self.pages[index]
            if mem_map.flags(pfn) & ((1 << PG_dirty) | (1 << PG_writeback)) or mem_map.mapcount(pfn):
                continue
            self.remove_from_page_cache(index)
            dropped += 1
        return dropped

    def truncate_inode_pages(self, new_size: int) -> None:
        """Drop every page past new_size and zero the tail of the page it ends in."""
        first_gone = (new_size + PAGE_SIZE - 1) >> PAGE_SHIFT
        for index in sorted(i for i in self.pages if i >= first_gone):
            self.remove_from_page_cache(index)
        if new_size & (PAGE_SIZE - 1):
            pfn = self.pages.get(new_size >> PAGE_SHIFT)
            if pfn is not None:
                lo = (pfn << PAGE_SHIFT) + (new_size & (PAGE_SIZE - 1))
                self.k.ram[lo:(pfn + 1) << PAGE_SHIFT] = ZERO_PAGE[:PAGE_SIZE - (new_size & (PAGE_SIZE - 1))]


def _first_sector(extents):
    """Where a page lives on the disk (its first block), for whoever asks which block a page holds."""
    for disk_offset, _ in extents:
        if disk_offset is not None:
            return disk_offset >> 9
    return None


def mark_page_accessed(k, pfn: int) -> None:
    """inactive,unreferenced -> inactive,referenced -> active (mm/swap.c; the hot path's LruCore does it)."""
    if k.lru.core.mark_page_accessed(pfn):
        k.vmstat["pgactivate"] += 1


def must_hold(flags: list, readahead_bit: int) -> bool:
    """Is there a miss (-1) or a readahead mark among the flags? any(f < 0 or f & readahead_bit for f in
    flags), without a Python loop (once per read())."""
    return bool(flags) and (min(flags) < 0 or reduce(or_, flags) & readahead_bit != 0)


def generic_file_read(k, task, mapping: AddressSpace, ra: FileRaState, buf: int, count: int, pos: int) -> int:
    """do_generic_file_read(): copy from the page cache to the user, reading ahead as it goes."""
    isize = mapping.a_ops.i_size()
    if pos >= isize or count <= 0:
        return 0
    count = min(count, isize - pos)
    dst = k.mm.user_runs(task, buf, count, True, partial=True)        # fault the buffer in first
    count = sum([n for _, n in dst])                                  # short up to a hole in it
    index, last = pos >> PAGE_SHIFT, (pos + count - 1) >> PAGE_SHIFT
    mem_map = k.mem_map
    core = k.lru.core
    held = []
    cached = k.usercopy.lookup_pages(mapping.pages, index, last)      # find_get_pages()
    flags = core.flags_of(cached)
    # a readahead mark, or a page another task is still reading in (get_page waits for it)
    readahead_bit = (1 << PG_readahead) | (1 << PG_locked)
    settled = (1 << PG_active) | (1 << PG_referenced)              # mark_page_accessed: nothing to do
    # Pages found cached need no reference while they are copied: nothing allocates (and so
    # nothing reclaims) between here and the copy. A miss or a readahead mark reads, and
    # reading may reclaim or sleep: then every page is held until copied.
    hold = must_hold(flags, readahead_bit)
    nr = last - index + 1
    at = 0
    try:
        while True:
            # the pages found cached and unmarked, natively, up to the next miss or readahead mark
            at, activated = core.read_pages_accessed(cached, flags, at, hold, readahead_bit, held)
            if activated:
                k.vmstat["pgactivate"] += activated
            if at == nr:
                break
            pfn = cached[at] = mapping.get_page(index + at, ra, nr - at)
            if mem_map.flags(pfn) & settled != settled:
                mark_page_accessed(k, pfn)
            if hold:
                mem_map.set_refcount(pfn, mem_map.refcount(pfn) + 1)  # held until copied (get_page)
                held.append(pfn)
            at += 1
            if at < nr:     # the read may have slept or reclaimed: the rest is looked up again
                rest = k.usercopy.lookup_pages(mapping.pages, index + at, last)
                cached[at:] = rest
                flags[at:] = core.flags_of(rest)
        offset = pos & (PAGE_SIZE - 1)
        if nr == 1:
            src = [((cached[0] << PAGE_SHIFT) + offset, count)]
        else:
            src = [(pfn << PAGE_SHIFT, PAGE_SIZE) for pfn in cached]
            src[0] = ((cached[0] << PAGE_SHIFT) + offset, PAGE_SIZE - offset)
            src[-1] = (cached[-1] << PAGE_SHIFT, count - (PAGE_SIZE - offset) - PAGE_SIZE * (nr - 2))
        copied = k.usercopy.copy_runs(k.ram, src, dst)
    finally:
        if held:
            for pfn in core.put_pages(held):        # the last reference: free it (put_page)
                k.page_alloc.free_pages(pfn, 0)
    k.charge(k.costs.copy_ns_per_kib * copied // 1024 + nr * k.costs.pagecache_lookup_ns)   # find_get_page each
    ra.prev_pos = pos + copied - 1
    return copied


def generic_perform_write(k, task, mapping: AddressSpace, buf: int, count: int, pos: int, data=None) -> int:
    """generic_perform_write(): page by page into the page cache, each page left dirty. The bytes
    come from the user buffer, or from the kernel (`data`: sendfile)."""
    if pos + count > MAX_LFS_FILESIZE:
        raise SyscallError(EFBIG)
    if data is None:
        src = k.mm.user_runs(task, buf, count, False, partial=True)
        count = sum(n for _, n in src)                                # short up to a hole in it
    dst, held = [], []
    done = 0
    mem_map = k.mem_map
    try:
        while done < count:
            offset = (pos + done) & (PAGE_SIZE - 1)
            n = min(PAGE_SIZE - offset, count - done)
            index = (pos + done) >> PAGE_SHIFT
            pfn = mapping.grab_page_for_write(index, offset, n)
            k.charge(k.costs.pagecache_lookup_ns)
            mem_map.set_refcount(pfn, mem_map.refcount(pfn) + 1)  # held until written into
            held.append(pfn)
            dst.append(((pfn << PAGE_SHIFT) + offset, n))
            mapping.set_page_dirty(index)
            mark_page_accessed(k, pfn)
            done += n
        if data is None:
            written = k.usercopy.copy_runs(k.ram, src, dst)
        else:
            written = 0
            for paddr, n in dst:
                k.ram[paddr:paddr + n] = data[written:written + n]
                written += n
    finally:
        for pfn in held:
            k.page_alloc.put_page(pfn)
    k.charge(k.costs.copy_ns_per_kib * written // 1024)
    if pos + written > mapping.a_ops.i_size():
        mapping.a_ops.set_i_size(pos + written)
    k.balance_dirty_pages(mapping)
    return written
