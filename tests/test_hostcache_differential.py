"""cython_ext.hostcache: the native all-hit read equals its uncompiled source, and the host cache's read
through it leaves the same bytes, flags and LRU order as one page at a time through _mark_page_accessed."""
from hypothesis import given, settings
from hypothesis import strategies as st

import cython_ext
from devices.host_cache import ARENA_CHUNK_SHIFT, IN_ARENA, PAGE_SIZE, PG_active, PG_referenced, HostPageCache

compiled = cython_ext.load("hostcache", pure=False)
pure = cython_ext.load("hostcache", pure=True)

CHUNK_SHIFT = 2                      # 4 slots per chunk: runs cross chunks often
NSLOTS = 16
RUN_LIMIT = 3                        # re-read runs are cut often


class Rereads:
    """An image's reread_pages: page i holds bytes (i * 5 + 11) & 0xFF; logs each call (first, npages)."""

    def __init__(self):
        self.calls = []

    @staticmethod
    def page(index):
        return bytes([(index * 5 + 11) & 0xFF]) * PAGE_SIZE

    def __call__(self, first, buffers):
        self.calls.append((first, len(buffers)))
        for i, b in enumerate(buffers):
            assert len(b) == PAGE_SIZE
            b[:] = self.page(first + i)


def test_the_compiled_module_is_native():
    assert compiled.__file__.endswith(".so") and pure.__file__.endswith(".py")


@settings(max_examples=300, deadline=None, database=None)
@given(pages=st.dictionaries(st.integers(0, 20), st.integers(0, NSLOTS - 1), max_size=20),
       flags=st.lists(st.integers(0, 15), min_size=NSLOTS, max_size=NSLOTS),
       first=st.integers(0, 20), count=st.integers(0, 6),
       pieces=st.lists(st.integers(0, 3 * PAGE_SIZE), max_size=8))
def test_read_hits_compiled_equals_pure(pages, flags, first, count, pieces):
    """Destinations of any sizes (empty ones, pages straddling two of them, too little room); pages with
    their bytes in the arena and clean ones re-read from the image, mixed."""
    arena = bytes((i * 7 + 3) & 0xFF for i in range(NSLOTS * PAGE_SIZE))
    results = []
    for module in (compiled, pure):
        chunks = [memoryview(bytearray(arena[c * 4 * PAGE_SIZE:(c + 1) * 4 * PAGE_SIZE])) for c in range(NSLOTS // 4)]
        f = bytearray(flags)
        dests = [bytearray(b"\xee" * n) for n in pieces]
        reread = Rereads()
        try:
            promote = module.read_hits(dict(pages), first, count, chunks, CHUNK_SHIFT, f, PG_referenced, PG_active,
                                       IN_ARENA, reread, RUN_LIMIT, [memoryview(d) for d in dests])
            results.append(("ok", promote, bytes(f), b"".join(dests), reread.calls))
        except ValueError as err:
            results.append(("error", str(err), bytes(f), b"".join(dests), reread.calls))
    assert results[0] == results[1]
    kind, promote, f, out, calls = results[0]
    if kind == "ok" and promote is not None:
        for i in range(count):
            slot = pages[first + i]
            want = arena[slot * PAGE_SIZE:(slot + 1) * PAGE_SIZE] if flags[slot] & IN_ARENA else \
                Rereads.page(first + i)
            assert out[i * PAGE_SIZE:(i + 1) * PAGE_SIZE] == want
        clean = [first + i for i in range(count) if not flags[pages[first + i]] & IN_ARENA]
        assert sum(n for _, n in calls) == len(clean) and all(n <= RUN_LIMIT for _, n in calls)
    else:
        assert out == b"\xee" * sum(pieces) and not calls          # nothing read


class Image:
    def __init__(self, npages):
        self.data = bytearray(bytes((i * 13 + 1) & 0xFF for i in range(npages * PAGE_SIZE)))

    def read_pages(self, first, buffers):
        for i, b in enumerate(buffers):
            b[:] = self.data[(first + i) * PAGE_SIZE:(first + i + 1) * PAGE_SIZE]

    def write_pages(self, first, buffers):
        for i, b in enumerate(buffers):
            self.data[(first + i) * PAGE_SIZE:(first + i + 1) * PAGE_SIZE] = b


class ReferenceCache(HostPageCache):
    """The all-hit read as it was in Python before cython_ext.hostcache: copy, then mark, page by page."""

    def read_into(self, key, offset, dest, vm_id):
        pages = self._files.get(key, {})
        dest = memoryview(dest)
        first, n = offset // PAGE_SIZE, len(dest) // PAGE_SIZE
        slots = [pages.get(i) for i in range(first, first + n)]
        if offset % PAGE_SIZE or len(dest) % PAGE_SIZE or not n or None in slots:
            return super().read_into(key, offset, dest, vm_id)
        views = self._chunk_views
        for i, slot in enumerate(slots):
            page = dest[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]
            if self._flags[slot] & IN_ARENA:
                base = (slot & ((1 << ARENA_CHUNK_SHIFT) - 1)) * PAGE_SIZE
                page[:] = views[slot >> ARENA_CHUNK_SHIFT][base:base + PAGE_SIZE]
            else:
                self._rereader(key)(first + i, [page])
            self._mark_page_accessed(slot)
        self.hits += n


def lru_state(cache):
    return (list(cache._inactive), list(cache._active), bytes(cache._flags[:cache._fresh]), cache.pgactivate,
            cache.pgdeactivate, cache.evictions, cache.hits, cache.misses,
            {vm: list(c) for vm, c in cache._charge.items()})


@settings(max_examples=60, deadline=None, database=None)
@given(reads=st.lists(st.tuples(st.integers(0, 30), st.integers(1, 8), st.integers(1, 3), st.integers(1, 4)),
                      max_size=25),
       capacity=st.integers(8, 40))
def test_cache_reads_match_the_python_reference(reads, capacity):
    """Reads through the native all-hit path against the former Python one: same data, same LRU lists,
    flags, counters and per-VM charges after every read (misses and evictions included), whether the
    destination is one buffer or scattered over several."""
    image = Image(40)
    fast, slow = HostPageCache(capacity), ReferenceCache(capacity)
    for cache in (fast, slow):
        cache.register_backing("img", image.read_pages, image.write_pages)
    try:
        for first, n, vm, parts in reads:
            a, b = bytearray(n * PAGE_SIZE), bytearray(n * PAGE_SIZE)
            if parts == 1:
                fast.read_into("img", first * PAGE_SIZE, a, vm)
            else:                       # scattered: cut at uneven, sector-sized points
                view, cuts = memoryview(a), sorted({(len(a) * k // parts) & ~511 for k in range(1, parts)})
                bounds = [0] + cuts + [len(a)]
                fast.readv_into("img", first * PAGE_SIZE, [view[x:y] for x, y in zip(bounds, bounds[1:])], vm)
            slow.read_into("img", first * PAGE_SIZE, b, vm)
            assert a == b == image.data[first * PAGE_SIZE:(first + n) * PAGE_SIZE]
            assert lru_state(fast) == lru_state(slow)
            fast.audit()
    finally:
        fast.close()
        slow.close()


@settings(max_examples=200, deadline=None, database=None)
@given(pages=st.dictionaries(st.integers(0, 20), st.integers(0, NSLOTS - 1), max_size=20),
       flags=st.lists(st.integers(0, 15), min_size=NSLOTS, max_size=NSLOTS),
       first=st.integers(0, 20), count=st.integers(0, 6),
       runs=st.lists(st.tuples(st.integers(-8, 9 * PAGE_SIZE), st.integers(0, 3 * PAGE_SIZE)), max_size=8))
def test_read_hits_into_ram_runs_compiled_equals_pure(pages, flags, first, count, runs):
    """Destinations given as runs of one RAM buffer (any sizes, some outside it)."""
    arena = bytes((i * 7 + 3) & 0xFF for i in range(NSLOTS * PAGE_SIZE))
    results = []
    for module in (compiled, pure):
        chunks = [memoryview(bytearray(arena[c * 4 * PAGE_SIZE:(c + 1) * 4 * PAGE_SIZE])) for c in range(NSLOTS // 4)]
        f = bytearray(flags)
        ram = bytearray(b"\xee" * (10 * PAGE_SIZE))
        reread = Rereads()
        try:
            promote = module.read_hits(dict(pages), first, count, chunks, CHUNK_SHIFT, f, PG_referenced, PG_active,
                                       IN_ARENA, reread, RUN_LIMIT, list(runs), memoryview(ram))
            results.append(("ok", promote, bytes(f), bytes(ram), reread.calls))
        except ValueError as err:
            results.append(("error", str(err), bytes(f), bytes(ram), reread.calls))
    assert results[0] == results[1]
    kind, promote, f, ram, calls = results[0]
    spans = sorted((a, a + n) for a, n in runs if n)
    overlap = any(b > c for (_, b), (c, _) in zip(spans, spans[1:]))
    if kind == "ok" and promote is not None and not overlap:
        got = b"".join(ram[a:a + n] for a, n in runs)[:count * PAGE_SIZE]
        for i in range(count):
            slot = pages[first + i]
            want = arena[slot * PAGE_SIZE:(slot + 1) * PAGE_SIZE] if flags[slot] & IN_ARENA else \
                Rereads.page(first + i)
            assert got[i * PAGE_SIZE:(i + 1) * PAGE_SIZE] == want


@settings(max_examples=60, deadline=None, database=None)
@given(reads=st.lists(st.tuples(st.integers(0, 30), st.integers(1, 8), st.integers(1, 3), st.integers(1, 4)),
                      max_size=20),
       capacity=st.integers(8, 40))
def test_runs_reads_match_view_reads(reads, capacity):
    """read_runs_into (runs of a RAM buffer) against readv_into (one view per run): same bytes, same LRU."""
    image = Image(40)
    by_runs, by_views = HostPageCache(capacity), HostPageCache(capacity)
    for cache in (by_runs, by_views):
        cache.register_backing("img", image.read_pages, image.write_pages)
    try:
        for first, n, vm, parts in reads:
            length = n * PAGE_SIZE
            cuts = sorted({(length * k // parts) & ~511 for k in range(1, parts)})
            bounds = [0] + cuts + [length]
            # scattered over RAM out of order, a gap between runs
            runs = [(0x40000 - (i + 1) * 0x9000 + 512, y - x) for i, (x, y) in enumerate(zip(bounds, bounds[1:]))]
            ram_a, ram_b = bytearray(0x40000), bytearray(0x40000)
            by_runs.read_runs_into("img", first * PAGE_SIZE, memoryview(ram_a), runs, vm, length)
            view_b = memoryview(ram_b)
            by_views.readv_into("img", first * PAGE_SIZE, [view_b[a:a + m] for a, m in runs], vm)
            assert ram_a == ram_b
            assert b"".join(ram_a[a:a + m] for a, m in runs) == image.data[first * PAGE_SIZE:first * PAGE_SIZE + length]
            assert lru_state(by_runs) == lru_state(by_views)
    finally:
        by_runs.close()
        by_views.close()
