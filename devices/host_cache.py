"""The host's page cache under every VM's disk, modelled on Linux's file LRU.

Pages are keyed by (backing key, page index); the backing key is the image
file's identity, so every VM that opens the same image shares its pages, as on
a real host. The metadata is a few lists indexed by slot, so a cached page is
an int, never a bytes object. A slot's bytes live in an arena of 4 KiB slots
(anonymous mmaps allocated 4 MiB at a time) from the first time they are needed
there: a page written, or a clean page read again. A page loaded is read from
the image straight into the guest's buffers; until it is read again its bytes
are the image's own (the page cache of this machine's kernel holds them, as it
does under QEMU's cache=writeback), so a file read once costs no copy and no
arena memory.

Reclaim follows Linux 2.6.35 for unmapped file pages: a page enters the
inactive list; mark_page_accessed() on an inactive page that is already
referenced moves it to the active list (pgactivate); when reclaim runs and the
active list is larger than the inactive one, shrink_active_list() moves pages
from the active tail to the inactive head (pgdeactivate); pages are evicted
from the inactive tail, a dirty one after being written back.

Each page is charged to the VM that brought it in, like a memory cgroup's
page cache charge.
"""
import mmap
from collections import OrderedDict

import cython_ext

_hostcache = cython_ext.load("hostcache")     # the all-hit read, native unless BALLAST_PURE=1

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
ARENA_CHUNK_SHIFT = 10                    # 1024 slots (4 MiB) per arena mmap
ARENA_CHUNK_PAGES = 1 << ARENA_CHUNK_SHIFT
_CHUNK_MASK = ARENA_CHUNK_PAGES - 1
MAX_IO_PAGES = 256                        # pages per preadv/pwritev (1 MiB), like a large bio
NATIVE_FILL = True                        # False: cold reads through read_into (the differential tests' reference)

_SHARED = "shared"                        # a page several VMs have read (exclusive caching)

# page flags (one byte per slot)
PG_referenced = 0x1
PG_active = 0x2
PG_dirty = 0x4
IN_ARENA = 0x8                            # the arena holds the page's bytes (always on a dirty page)

# per-VM charge: [pages, active pages, dirty pages]
_CHARGE_PAGES, _CHARGE_ACTIVE, _CHARGE_DIRTY = 0, 1, 2


class CacheIO:
    """What one bulk call did, so the caller can charge its cost. (A plain class: a dataclass would
    compile its methods at every start, for a record nothing compares.)"""
    __slots__ = ("hits", "misses", "loaded", "load_runs", "written_back")

    def __init__(self, hits: int = 0, misses: int = 0, loaded: int = 0, load_runs: int = 0, written_back: int = 0):
        self.hits = hits                  # pages found in the cache
        self.misses = misses              # pages not found (each got a slot)
        self.loaded = loaded              # pages read from the backing image (read misses, partial-page writes)
        self.load_runs = load_runs        # reads issued for them (runs of consecutive pages)
        self.written_back = written_back  # dirty pages written back to make room (of any image)

    def __repr__(self) -> str:
        return (f"CacheIO(hits={self.hits}, misses={self.misses}, loaded={self.loaded}, "
                f"load_runs={self.load_runs}, written_back={self.written_back})")


class HostPageCache:
    """A bounded page cache shared by all VMs of a host.

    Register each image once with `register_backing(key, read_pages, write_pages)`:
    read_pages(first_page, buffers) fills consecutive page buffers, write_pages(first_page,
    buffers) writes them (both may be called for any registered image during reclaim).
    An image may also give read_span(first_page, buffer), read_pages into one buffer of
    whole pages (a load whose destination is one stretch takes it), and reread_pages(first_page,
    buffers), the bytes of pages the cache holds clean (no disk read in the model) into buffers
    of whole pages each (read_pages, a page at a time, when not given).
    """

    def __init__(self, capacity_pages: int):
        self._capacity = self._checked_capacity(capacity_pages)
        self._run_limit = min(MAX_IO_PAGES, self._capacity)     # pages per read of the image
        # arena
        self._chunks = []                 # anonymous mmaps of ARENA_CHUNK_PAGES pages
        self._chunk_views = []            # a memoryview of each
        self._small_pages = set()         # chunks that gave memory back: no huge pages for them
        self._free = []                   # slots given back
        self._fresh = 0                   # next slot never used
        self._used = 0                    # slots holding a page (or being filled)
        # per slot
        self._slot_key = []
        self._slot_index = []
        self._slot_owner = []
        self._flags = bytearray()
        # LRU lists: slot -> None, ordered tail (oldest) first
        self._inactive = OrderedDict()
        self._active = OrderedDict()
        # per backing image
        self._files = {}                  # key -> {page index: slot}
        self._dirty = {}                  # key -> set of dirty page indices
        self._backing = {}                # key -> (read_pages, write_pages)
        self._charge = {}                 # vm_id -> [pages, active, dirty]
        # exclusive caching: (key, page index) -> the one VM that read it, or _SHARED
        self.exclusive = False
        self._readers = None
        # counters (Linux vmstat / memcg names where they exist)
        self.hits = 0
        self.misses = 0
        self.disk_reads_pages = 0
        self.disk_writes_pages = 0
        self.evictions = 0
        self.pgactivate = 0
        self.pgdeactivate = 0
        self.nr_dirty = 0
        self.demoted = 0                  # pages dropped by exclusive caching

    @staticmethod
    def _checked_capacity(capacity_pages) -> int:
        capacity_pages = int(capacity_pages)
        if capacity_pages < 1:
            raise ValueError(f"host page cache capacity must be at least 1 page, not {capacity_pages}")
        return capacity_pages

    # --- sizes ---

    @property
    def capacity_pages(self) -> int:
        return self._capacity

    @property
    def nr_pages(self) -> int:
        return len(self._inactive) + len(self._active)

    @property
    def nr_active(self) -> int:
        return len(self._active)

    @property
    def nr_inactive(self) -> int:
        return len(self._inactive)

    def set_capacity(self, capacity_pages: int) -> int:
        """Change the budget; a smaller one evicts down to it. Returns dirty pages written back."""
        capacity_pages = self._checked_capacity(capacity_pages)
        self._capacity = capacity_pages
        self._run_limit = min(MAX_IO_PAGES, capacity_pages)
        io = CacheIO()
        freed = []
        while self._used > capacity_pages:
            freed.append(self._reclaim_one(io))
        self._release_memory(freed)
        return io.written_back

    # --- backing images ---

    def register_backing(self, key, read_pages, write_pages, read_span=None, reread_pages=None) -> None:
        """Say how to load, re-read and write back pages of `key` (the latest registration wins)."""
        if reread_pages is None:
            def reread_pages(first_page, buffers):
                read_pages(first_page, [b[at:at + PAGE_SIZE] for b in buffers for at in range(0, len(b), PAGE_SIZE)])
        self._backing[key] = (read_pages, write_pages, read_span, reread_pages)
        self._files.setdefault(key, {})

    def _reader(self, key):
        try:
            return self._backing[key][0]
        except KeyError:
            raise LookupError(f"no backing image registered for {key!r}") from None

    def _span_reader(self, key):
        """The image's read_span, or None (then read_pages, page by page buffers)."""
        return self._backing[key][2]

    def _rereader(self, key):
        """How to read the bytes of pages the cache holds clean (reread_pages)."""
        try:
            return self._backing[key][3]
        except KeyError:
            raise LookupError(f"no backing image registered for {key!r}") from None

    # --- bulk I/O ---

    def read_into(self, key, offset: int, dest, vm_id) -> CacheIO:
        """Copy bytes [offset, offset+len(dest)) of image `key` into dest, loading what is missing."""
        dest = byte_view(dest)
        io = CacheIO()
        length = len(dest)
        if length == 0:
            return io
        pages = self._files.get(key)
        if pages is None:
            pages = self._files[key] = {}
        end = offset + length
        index, last = offset >> PAGE_SHIFT, (end - 1) >> PAGE_SHIFT
        if not (offset | length) & (PAGE_SIZE - 1) and self._read_hits(key, pages, index, last - index + 1, [dest], io):
            return io
        run_limit = self._run_limit
        run_first = run_n = 0
        views, flags = self._chunk_views, self._flags
        while index <= last:
            slot = pages.get(index)
            if slot is None:
                if run_n == 0:
                    run_first = index
                run_n += 1
                io.misses += 1
                index += 1
                if run_n == run_limit:
                    self._fill_run(key, pages, run_first, run_n, dest, offset, end, vm_id, io)
                    run_n = 0
                continue
            if run_n:
                # loading the run may have evicted this page: look again
                self._fill_run(key, pages, run_first, run_n, dest, offset, end, vm_id, io)
                run_n = 0
                if index not in pages:
                    continue
            io.hits += 1
            if not flags[slot] & IN_ARENA:
                self._materialize(key, pages, index, last)
            page_start = index << PAGE_SHIFT
            lo = offset if offset > page_start else page_start
            hi = end if end < page_start + PAGE_SIZE else page_start + PAGE_SIZE
            base = (slot & _CHUNK_MASK) << PAGE_SHIFT
            dest[lo - offset:hi - offset] = views[slot >> ARENA_CHUNK_SHIFT][base + lo - page_start:base + hi - page_start]
            self._mark_page_accessed(slot)
            index += 1
        if run_n:
            self._fill_run(key, pages, run_first, run_n, dest, offset, end, vm_id, io)
        self.hits += io.hits
        self.misses += io.misses
        return io

    def readv_into(self, key, offset: int, dests, vm_id, length: int = None) -> CacheIO:
        """read_into scattered over several byte views, filled in order (a descriptor chain's buffers);
        `length`, their total, if the caller knows it."""
        if length is None:
            length = 0
            for d in dests:
                length += len(d)
        if length and not (offset | length) & (PAGE_SIZE - 1):
            pages = self._files.get(key)
            if pages is not None:
                count = length >> PAGE_SHIFT
                promote = _hostcache.read_hits(pages, offset >> PAGE_SHIFT, count, self._chunk_views,
                                               ARENA_CHUNK_SHIFT, self._flags, PG_referenced, PG_active, IN_ARENA,
                                               self._rereader(key), self._run_limit, dests)
                if promote is not None:         # all cached: read, accesses noted
                    for slot in promote:
                        self._activate(slot)
                    self.hits += count
                    return CacheIO(count)
        if len(dests) == 1:
            return self.read_into(key, offset, dests[0], vm_id)
        buf = memoryview(bytearray(length))
        io = self.read_into(key, offset, buf, vm_id)
        pos = 0
        for d in dests:
            d[:] = buf[pos:pos + len(d)]
            pos += len(d)
        return io

    def read_runs_into(self, key, offset: int, ram, runs, vm_id, length: int) -> CacheIO:
        """readv_into with the buffers given as runs [(addr, len)] of `ram` (a descriptor chain's
        buffers in guest RAM, `length` bytes in all): an all-hit read copies straight into them."""
        pages = self._files.get(key)
        if pages is not None and offset >> PAGE_SHIFT in pages:      # (with its first page missing, not all cached)
            count = self.read_runs_hit(key, offset, ram, runs, length)
            if count is not None:
                return CacheIO(count)
        ram = byte_view(ram)
        count = length >> PAGE_SHIFT
        if NATIVE_FILL and length and not (offset | length) & (PAGE_SIZE - 1) and self._used + count <= self._capacity:
            # whole pages and room for all of them: read_into's loop, natively, with no eviction to redo
            io = CacheIO()
            _hostcache.read_fill(self, key, self._files.setdefault(key, {}), offset >> PAGE_SHIFT, count, ram,
                                 runs, vm_id, io, self._run_limit, ARENA_CHUNK_SHIFT, PG_referenced, IN_ARENA)
            return io
        return self.readv_into(key, offset, [ram[a:a + n] for a, n in runs], vm_id, length)

    def read_runs_hit(self, key, offset: int, ram, runs, length: int):
        """read_runs_into's common case alone: whole pages, all cached, read and their accesses noted;
        returns the pages read (all hits), or None with nothing done."""
        if length and not (offset | length) & (PAGE_SIZE - 1):
            pages = self._files.get(key)
            if pages is not None:
                count = length >> PAGE_SHIFT
                promote = _hostcache.read_hits(pages, offset >> PAGE_SHIFT, count, self._chunk_views,
                                               ARENA_CHUNK_SHIFT, self._flags, PG_referenced, PG_active, IN_ARENA,
                                               self._backing[key][3], self._run_limit, runs, ram)  # _rereader
                if promote is not None:
                    for slot in promote:
                        self._activate(slot)
                    self.hits += count
                    return count
        return None

    def _read_hits(self, key, pages, first: int, count: int, dests, io) -> bool:
        """The common case of a read: whole pages, all cached; read and promoted.
        False, with nothing done, if a page is missing."""
        promote = _hostcache.read_hits(pages, first, count, self._chunk_views, ARENA_CHUNK_SHIFT, self._flags,
                                       PG_referenced, PG_active, IN_ARENA, self._rereader(key), self._run_limit,
                                       dests)
        if promote is None:
            return False
        for slot in promote:
            self._activate(slot)
        io.hits = count
        self.hits += count
        return True

    def _fill_run(self, key, pages, first, n, dest, offset, end, vm_id, io) -> None:
        """Load n consecutive missing pages with one read straight into dest, and insert them."""
        reader = self._reader(key)
        slots = []
        try:
            for _ in range(n):
                slots.append(self._alloc_slot(io))
            _read_run(reader, self._span_reader(key), first, n, dest, offset, end)
        except BaseException:
            self._free_slots(slots)
            raise
        io.loaded += n
        io.load_runs += 1
        self.disk_reads_pages += n
        for i, slot in enumerate(slots):
            self._install(slot, key, first + i, vm_id, pages)

    def _materialize(self, key, pages, first: int, last: int) -> int:
        """A page read again gets its bytes in the arena, where the next reads find them: the clean cached
        pages from `first` on (up to `last`, stopping at a missing one or one already there), one re-read
        of the image per run."""
        return _hostcache.materialize(self._rereader(key), pages, first, last, self._chunk_views,
                                      ARENA_CHUNK_SHIFT, self._flags, IN_ARENA, self._run_limit)

    def write_from(self, key, offset: int, data, vm_id) -> CacheIO:
        """Copy data into the cached pages of [offset, offset+len(data)) and mark them dirty.

        A page only partly written and not cached is read first (read-modify-write).
        """
        data = byte_view(data)
        io = CacheIO()
        length = len(data)
        if length == 0:
            return io
        pages = self._files.setdefault(key, {})
        end = offset + length
        views = self._chunk_views
        for index in range(offset >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1):
            page_start = index << PAGE_SHIFT
            lo = offset if offset > page_start else page_start
            hi = end if end < page_start + PAGE_SIZE else page_start + PAGE_SIZE
            slot = pages.get(index)
            partial = hi - lo < PAGE_SIZE
            if slot is None:
                io.misses += 1
                slot = self._alloc_slot(io)
                if partial:
                    try:
                        self._reader(key)(index, [self._page(slot)])
                    except BaseException:
                        self._free_slots([slot])
                        raise
                    io.loaded += 1
                    io.load_runs += 1
                    self.disk_reads_pages += 1
                self._install(slot, key, index, vm_id, pages)
            else:
                io.hits += 1
                self._mark_page_accessed(slot)
                if partial and not self._flags[slot] & IN_ARENA:
                    self._materialize(key, pages, index, index)         # the rest of the page, into the arena
            base = (slot & _CHUNK_MASK) << PAGE_SHIFT
            views[slot >> ARENA_CHUNK_SHIFT][base + lo - page_start:base + hi - page_start] = data[lo - offset:hi - offset]
            self._flags[slot] |= IN_ARENA
            self._set_dirty(slot)
        self.hits += io.hits
        self.misses += io.misses
        return io

    # --- writeback and invalidation ---

    def writeback(self, key=None, first_page: int = 0, npages: int | None = None) -> list:
        """Write dirty pages back (all images when key is None; optionally one page range).

        Returns the lengths of the runs written, one write per run of consecutive pages.
        """
        keys = [key] if key is not None else list(self._dirty)
        runs = []
        for k in keys:
            dirty = self._dirty.get(k)
            if not dirty:
                continue
            if npages is None:
                chosen = sorted(i for i in dirty if i >= first_page)
            elif npages < len(dirty):
                chosen = [i for i in range(first_page, first_page + npages) if i in dirty]
            else:
                end = first_page + npages
                chosen = sorted(i for i in dirty if first_page <= i < end)
            start = 0
            for j in range(1, len(chosen) + 1):
                if j == len(chosen) or chosen[j] != chosen[j - 1] + 1 or j - start == MAX_IO_PAGES:
                    self._write_back_run(k, chosen[start:j])
                    runs.append(j - start)
                    start = j
        return runs

    def _write_back_run(self, key, indices) -> None:
        pages = self._files[key]
        slots = [pages[i] for i in indices]
        self._backing[key][1](indices[0], [self._page(slot) for slot in slots])
        self.disk_writes_pages += len(slots)
        for slot in slots:
            self._clear_dirty(slot)

    def drop(self, key, first_page: int = 0, npages: int | None = None) -> int:
        """Forget cached pages of `key` WITHOUT writing them back (discard, write-zeroes, O_DIRECT
        invalidation). Returns how many were dropped."""
        pages = self._files.get(key)
        if not pages:
            return 0
        if npages is None:
            victims = [slot for index, slot in pages.items() if index >= first_page]
        elif npages <= len(pages):
            victims = [pages[i] for i in range(first_page, first_page + npages) if i in pages]
        else:
            end = first_page + npages
            victims = [slot for index, slot in pages.items() if first_page <= index < end]
        for slot in victims:
            self._remove(slot)
        return len(victims)

    # --- exclusive caching (DEMOTE, Wong & Wilkes 2002): keep only what several guests share ---

    def set_exclusive(self, enabled: bool) -> None:
        self.exclusive = bool(enabled)
        self._readers = {} if enabled else None

    def demote(self, key, first_page: int, npages: int, vm_id) -> int:
        """A guest has just read these pages into its own cache: forget the clean ones that no
        other guest ever read (the guest holds them now); keep those several guests read.
        Returns how many were dropped."""
        readers, pages = self._readers, self._files.get(key)
        if readers is None or not pages:
            return 0
        victims = []
        for index in range(first_page, first_page + npages):
            who = readers.get((key, index))
            if who is None:
                readers[(key, index)] = who = vm_id
            elif who != vm_id:
                readers[(key, index)] = who = _SHARED
            slot = pages.get(index)
            if who == vm_id and slot is not None and not self._flags[slot] & PG_dirty:
                victims.append(slot)
        for slot in victims:
            self._remove(slot)
        self._release_memory(victims)
        self.demoted += len(victims)
        return len(victims)

    def shared_pages(self, key) -> set:
        """Pages of `key` that more than one VM has read (exclusive mode only)."""
        return {index for (k, index), who in (self._readers or {}).items() if k == key and who is _SHARED}

    def drop_caches(self) -> int:
        """Drop every clean page, like `echo 1 > /proc/sys/vm/drop_caches`. Returns how many."""
        victims = [slot for slot in list(self._inactive) + list(self._active) if not self._flags[slot] & PG_dirty]
        for slot in victims:
            self._remove(slot)
        self._release_memory(victims)
        return len(victims)

    # --- what the oracle and the tests look at (no LRU side effects) ---

    def pages_of(self, key) -> set:
        return set(self._files.get(key, ()))

    def dirty_pages_of(self, key) -> set:
        return set(self._dirty.get(key, ()))

    def peek(self, key, index: int):
        """The cached bytes of one page, or None."""
        slot = self._files.get(key, {}).get(index)
        if slot is None:
            return None
        if self._flags[slot] & IN_ARENA:
            return bytes(self._page(slot))
        page = bytearray(PAGE_SIZE)
        self._rereader(key)(index, [memoryview(page)])
        return bytes(page)

    def owner_of(self, key, index: int):
        slot = self._files.get(key, {}).get(index)
        return None if slot is None else self._slot_owner[slot]

    def usage_pages(self, vm_id) -> int:
        charge = self._charge.get(vm_id)
        return charge[_CHARGE_PAGES] if charge else 0

    def memcg_stat(self, vm_id) -> dict:
        """A memory cgroup's memory.stat lines for the pages charged to vm_id (bytes)."""
        pages, active, dirty = self._charge.get(vm_id, (0, 0, 0))
        return {"cache": pages * PAGE_SIZE, "active_file": active * PAGE_SIZE,
                "inactive_file": (pages - active) * PAGE_SIZE, "dirty": dirty * PAGE_SIZE}

    def stats(self) -> dict:
        return {
            "capacity_pages": self._capacity, "nr_pages": self.nr_pages, "nr_active": self.nr_active,
            "nr_inactive": self.nr_inactive, "nr_dirty": self.nr_dirty, "hits": self.hits,
            "misses": self.misses, "disk_reads_pages": self.disk_reads_pages,
            "disk_writes_pages": self.disk_writes_pages, "evictions": self.evictions,
            "pgactivate": self.pgactivate, "pgdeactivate": self.pgdeactivate,
        }

    def audit(self) -> None:
        """Check every internal invariant; raises AssertionError naming the first broken one."""
        active, inactive, flags = self._active, self._inactive, self._flags
        assert not (active.keys() & inactive.keys()), "a page is on both LRU lists"
        assert self.nr_pages == self._used, f"{self.nr_pages} pages on the lists, {self._used} slots used"
        assert self._used <= self._capacity, f"{self._used} pages over capacity {self._capacity}"
        assert sum(map(len, self._files.values())) == self._used, "file indexes disagree with the lists"
        charge = {}
        nr_dirty = 0
        for lru, is_active in ((inactive, False), (active, True)):
            for slot in lru:
                key, index = self._slot_key[slot], self._slot_index[slot]
                assert self._files[key].get(index) == slot, f"slot {slot} not indexed as {key!r}:{index}"
                assert bool(flags[slot] & PG_active) == is_active, f"slot {slot} PG_active disagrees with its list"
                dirty = bool(flags[slot] & PG_dirty)
                assert dirty == (index in self._dirty.get(key, ())), f"slot {slot} PG_dirty disagrees with the dirty set"
                assert not dirty or flags[slot] & IN_ARENA, f"dirty slot {slot} has no bytes in the arena"
                c = charge.setdefault(self._slot_owner[slot], [0, 0, 0])
                c[_CHARGE_PAGES] += 1
                c[_CHARGE_ACTIVE] += is_active
                c[_CHARGE_DIRTY] += dirty
                nr_dirty += dirty
        assert nr_dirty == self.nr_dirty == sum(map(len, self._dirty.values())), "nr_dirty is wrong"
        assert {vm: c for vm, c in self._charge.items() if c[_CHARGE_PAGES]} == charge, "per-VM charges are wrong"
        free = set(self._free)
        assert len(free) == len(self._free) and all(self._slot_key[s] is None for s in free), "free list corrupt"
        assert len(free) + self._used == self._fresh, "slots leaked"

    # --- LRU machinery ---

    def _page(self, slot: int) -> memoryview:
        base = (slot & _CHUNK_MASK) << PAGE_SHIFT
        return self._chunk_views[slot >> ARENA_CHUNK_SHIFT][base:base + PAGE_SIZE]

    def _alloc_slot(self, io: CacheIO) -> int:
        while self._used >= self._capacity:
            self._reclaim_one(io)
        self._used += 1
        if self._free:
            return self._free.pop()
        slot = self._fresh
        self._fresh += 1
        if slot >> ARENA_CHUNK_SHIFT == len(self._chunks):
            chunk = mmap.mmap(-1, ARENA_CHUNK_PAGES * PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            if hasattr(mmap, "MADV_HUGEPAGE"):
                chunk.madvise(mmap.MADV_HUGEPAGE)   # filled whole by cold reads: fewer host page faults
            self._chunks.append(chunk)
            self._chunk_views.append(memoryview(chunk))
            self._slot_key.extend([None] * ARENA_CHUNK_PAGES)
            self._slot_index.extend([0] * ARENA_CHUNK_PAGES)
            self._slot_owner.extend([None] * ARENA_CHUNK_PAGES)
            self._flags.extend(bytes(ARENA_CHUNK_PAGES))
        return slot

    def _free_slots(self, slots) -> None:
        """Give back slots that were allocated but never installed."""
        self._used -= len(slots)
        self._free.extend(slots)

    def _install(self, slot, key, index, vm_id, pages) -> None:
        self._slot_key[slot] = key
        self._slot_index[slot] = index
        self._slot_owner[slot] = vm_id
        self._flags[slot] = PG_referenced       # the access that brought it in
        pages[index] = slot
        self._inactive[slot] = None
        charge = self._charge.get(vm_id)
        if charge is None:
            charge = self._charge[vm_id] = [0, 0, 0]
        charge[_CHARGE_PAGES] += 1

    def _remove(self, slot) -> None:
        """Take a page out of the cache (its data is forgotten) and free its slot."""
        f = self._flags[slot]
        key, index = self._slot_key[slot], self._slot_index[slot]
        charge = self._charge[self._slot_owner[slot]]
        if f & PG_active:
            del self._active[slot]
            charge[_CHARGE_ACTIVE] -= 1
        else:
            del self._inactive[slot]
        if f & PG_dirty:
            self._dirty[key].discard(index)
            self.nr_dirty -= 1
            charge[_CHARGE_DIRTY] -= 1
        charge[_CHARGE_PAGES] -= 1
        del self._files[key][index]
        self._flags[slot] = 0
        self._slot_key[slot] = None
        self._slot_owner[slot] = None
        self._used -= 1
        self._free.append(slot)

    def _reclaim_one(self, io: CacheIO) -> int:
        """Evict the page at the inactive tail (writing it back if dirty); returns its freed slot."""
        if len(self._active) > len(self._inactive):
            self._shrink_active_list()
        if not self._inactive:
            raise RuntimeError("host page cache: nothing left to reclaim")
        slot = next(iter(self._inactive))
        if self._flags[slot] & PG_dirty:
            self._write_back_run(self._slot_key[slot], [self._slot_index[slot]])
            io.written_back += 1
        self._remove(slot)
        self.evictions += 1
        return slot

    def _shrink_active_list(self) -> None:
        """Deactivate from the active tail until the lists are balanced (inactive_file_is_low)."""
        active, inactive, flags = self._active, self._inactive, self._flags
        while len(active) > len(inactive):
            slot, _ = active.popitem(last=False)
            inactive[slot] = None               # to the inactive head
            flags[slot] &= ~(PG_active | PG_referenced)
            self._charge[self._slot_owner[slot]][_CHARGE_ACTIVE] -= 1
            self.pgdeactivate += 1

    def _mark_page_accessed(self, slot) -> None:
        f = self._flags[slot]
        if f & PG_active:
            self._flags[slot] = f | PG_referenced
        elif f & PG_referenced:
            self._activate(slot)
        else:
            self._flags[slot] = f | PG_referenced

    def _activate(self, slot) -> None:
        """An inactive page referenced a second time moves to the active list."""
        del self._inactive[slot]
        self._active[slot] = None
        self._flags[slot] = (self._flags[slot] | PG_active) & ~PG_referenced
        self._charge[self._slot_owner[slot]][_CHARGE_ACTIVE] += 1
        self.pgactivate += 1

    def _set_dirty(self, slot) -> None:
        f = self._flags[slot]
        if not f & PG_dirty:
            self._flags[slot] = f | PG_dirty
            key = self._slot_key[slot]
            dirty = self._dirty.get(key)
            if dirty is None:
                dirty = self._dirty[key] = set()
            dirty.add(self._slot_index[slot])
            self.nr_dirty += 1
            self._charge[self._slot_owner[slot]][_CHARGE_DIRTY] += 1

    def _clear_dirty(self, slot) -> None:
        f = self._flags[slot]
        if f & PG_dirty:
            self._flags[slot] = f & ~PG_dirty
            self._dirty[self._slot_key[slot]].discard(self._slot_index[slot])
            self.nr_dirty -= 1
            self._charge[self._slot_owner[slot]][_CHARGE_DIRTY] -= 1

    def _release_memory(self, slots) -> None:
        """Return freed slots' memory to the host kernel (RSS falls; they read as zeros later). A chunk
        that gives memory back asks for no more huge pages, so khugepaged does not fill its holes again."""
        for slot in sorted(slots):
            c = slot >> ARENA_CHUNK_SHIFT
            chunk = self._chunks[c]
            if c not in self._small_pages and hasattr(mmap, "MADV_NOHUGEPAGE"):
                chunk.madvise(mmap.MADV_NOHUGEPAGE)
                self._small_pages.add(c)
            chunk.madvise(mmap.MADV_DONTNEED, (slot & _CHUNK_MASK) << PAGE_SHIFT, PAGE_SIZE)

    def close(self) -> None:
        """Release the arena (cached data is forgotten: write back first if it matters)."""
        for view in self._chunk_views:
            view.release()
        for chunk in self._chunks:
            chunk.close()
        self._chunk_views.clear()
        self._chunks.clear()


def _read_run(read, read_span, first: int, n: int, dest, offset: int, end: int) -> None:
    """read(first, buffers) of pages first..first+n-1 straight into their part of dest, which holds bytes
    [offset, end): views of dest for the whole pages (one view through read_span, when given, if every page
    is whole), a bounce page for an edge page dest holds only part of."""
    start, stop = first << PAGE_SHIFT, (first + n) << PAGE_SHIFT
    if start >= offset and stop <= end and read_span is not None:
        read_span(first, dest[start - offset:stop - offset])
        return
    whole_lo = start if start >= offset else start + PAGE_SIZE
    whole_hi = stop if stop <= end else stop - PAGE_SIZE
    edges = [start] if whole_lo > start else []
    if whole_hi < stop and whole_hi >= whole_lo:
        edges.append(whole_hi)
    bounces = [(memoryview(bytearray(PAGE_SIZE)), page_start) for page_start in edges]
    buffers = [bounce for bounce, page_start in bounces if page_start == start]
    buffers.extend(dest[p - offset:p + PAGE_SIZE - offset] for p in range(whole_lo, whole_hi, PAGE_SIZE))
    buffers.extend(bounce for bounce, page_start in bounces if page_start != start)
    read(first, buffers)
    for bounce, page_start in bounces:
        lo = offset if offset > page_start else page_start
        hi = end if end < page_start + PAGE_SIZE else page_start + PAGE_SIZE
        dest[lo - offset:hi - offset] = bounce[lo - page_start:hi - page_start]


def byte_view(buffer) -> memoryview:
    """A flat unsigned-byte view of any buffer (slices of it copy with memcpy)."""
    view = memoryview(buffer)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")
