"""The native cold read path changes nothing but speed.

- cython_ext.pagecache (ext2's bmap_cached walk, the batch's end, a batch's insertion), the new struct-page
  loops of cython_ext.reclaim and hostcache.read_fill: compiled == uncompiled (the same pure-Python-mode
  source) on random inputs and == the Python they replaced, and read_fill == the Python read_into path.
- Booted guests: with every native batch (readahead batches, the host cache fill, generic_file_read's loop,
  the device taking a missed IN from its peek) against the Python path they replaced (page by page
  _read_pages, read_into, the former generic_file_read kept below, every request through pop and _submit), on several workloads: the same console output, virtual time, vmstat, meminfo, balloon and
  request counters, host cache counters and every struct page. And the same compiled and uncompiled."""
import hashlib
import json
import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cython_ext
from devices import host_cache as host_cache_mod
from devices import virtio_blk as virtio_blk_dev
from devices.host_cache import PAGE_SIZE, HostPageCache
from guestos.mm import filemap
from guestos.mm.filemap import PAGE_SHIFT, PG_readahead, mark_page_accessed
from guestos.mm.mm_types import PG_active, PG_referenced as PAGE_REFERENCED

pagecache_c = cython_ext.load("pagecache", pure=False)
pagecache_py = cython_ext.load("pagecache", pure=True)
reclaim_c = cython_ext.load("reclaim", pure=False)
reclaim_py = cython_ext.load("reclaim", pure=True)
hostcache_c = cython_ext.load("hostcache", pure=False)
hostcache_py = cython_ext.load("hostcache", pure=True)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_compiled_modules_are_native():
    for module in (pagecache_c, reclaim_c, hostcache_c):
        assert module.__file__.endswith(".so")
    for module in (pagecache_py, reclaim_py, hostcache_py):
        assert module.__file__.endswith(".py")


# --- cython_ext.pagecache ---------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None, database=None)
@given(blocks=st.lists(st.one_of(st.just(0), st.integers(0, 200)), max_size=40),
       zones=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 20)), max_size=5),
       first_data=st.integers(0, 3), nr_blocks=st.integers(100, 220))
def test_valid_blocks_compiled_equals_pure_equals_the_check(blocks, zones, first_data, nr_blocks):
    starts, ends = [], []
    for start, n in sorted(zones):
        if not starts or start >= ends[-1]:
            starts.append(start)
            ends.append(start + n)
    expected = len(blocks)
    for j, b in enumerate(blocks):          # ext2_data_block_valid() on each, as bmap does
        if b and (not first_data <= b < nr_blocks or any(s <= b < e for s, e in zip(starts, ends))):
            expected = j
            break
    for module in (pagecache_c, pagecache_py):
        assert module.valid_blocks(list(blocks), first_data, nr_blocks, starts, ends) == expected


@settings(max_examples=200, deadline=None, database=None)
@given(blocks=st.lists(st.one_of(st.just(0), st.integers(1, 50)), min_size=1, max_size=12),
       prior=st.one_of(st.none(), st.integers(1, 50)), seed=st.integers(0, 1000))
def test_add_read_batch_compiled_equals_pure_equals_page_by_page(blocks, prior, seed):
    """The runs, pages, sectors and zeroed holes as AddressSpace._add_read_batch builds them page by page."""
    rng = random.Random(seed)
    pfns = rng.sample(range(16), len(blocks))
    results = []
    for module in (pagecache_c, pagecache_py, None):
        ram = bytearray(b"\xee" * (16 * PAGE_SIZE))
        pages = {}
        runs = [] if prior is None else [[prior * PAGE_SIZE, [(0, PAGE_SIZE)], (prior + 1) * PAGE_SIZE]]
        if module is not None:
            sectors = module.add_read_batch(memoryview(ram), pages, 100, list(pfns), list(blocks), runs)
        else:                               # the Python loop of _add_read_batch, one 4 KiB extent a page
            sectors = []
            for j, (pfn, block) in enumerate(zip(pfns, blocks)):
                pages[100 + j] = pfn
                base = pfn << PAGE_SHIFT
                if not block:
                    ram[base:base + PAGE_SIZE] = bytes(PAGE_SIZE)
                    sectors.append(None)
                    continue
                offset = block * PAGE_SIZE
                sectors.append(offset >> 9)
                if runs and runs[-1][2] == offset:
                    runs[-1][1].append((base, PAGE_SIZE))
                    runs[-1][2] += PAGE_SIZE
                else:
                    runs.append([offset, [(base, PAGE_SIZE)], offset + PAGE_SIZE])
        results.append((sectors, pages, runs, bytes(ram)))
    assert results[0] == results[1] == results[2]


def test_add_read_batch_refuses_frames_outside_ram():
    for module in (pagecache_c, pagecache_py):
        with pytest.raises(IndexError):
            module.add_read_batch(memoryview(bytearray(2 * PAGE_SIZE)), {}, 0, [2], [7], [])


def reference_bmap_cached(i_block, lblk, n, apb, first_data, nr_blocks, zones, block_size, cached):
    """ext2's bmap_cached() block by block (the walk as Ext2Fs.bmap_cached did it in Python): the longest
    prefix whose indirect blocks are all cached and whose blocks all pass ext2_data_block_valid()."""
    def valid(b):
        return first_data <= b < nr_blocks and not any(s <= b < e for s, e in zones)
    out = []
    while len(out) < n:
        rest = lblk
        if rest < 12:
            path = [rest]
        elif (rest := rest - 12) < apb:
            path = [12, rest]
        elif (rest := rest - apb) < apb * apb:
            path = [13, rest // apb, rest % apb]
        elif (rest := rest - apb * apb) < apb ** 3:
            path = [14, rest // (apb * apb), (rest // apb) % apb, rest % apb]
        else:
            break
        blk = i_block[path[0]]
        for level in range(1, len(path)):
            if not blk:
                break
            if not valid(blk) or cached.get(blk) is None:
                return out
            blk = int.from_bytes(cached[blk][path[level] * 4:path[level] * 4 + 4], "little")
        else:
            if blk and not valid(blk):
                return out
        out.append(blk if len(path) == 1 or blk else 0)
        lblk += 1
    return out


@settings(max_examples=300, deadline=None, database=None)
@given(seed=st.integers(0, 100_000), lblk=st.integers(0, 12 + 4 + 16 + 64 + 3), n=st.integers(0, 40),
       zones=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 4)), max_size=3),
       uncached=st.floats(0, 0.3), first_data=st.integers(0, 2))
def test_bmap_cached_compiled_equals_pure_equals_block_by_block(seed, lblk, n, zones, uncached, first_data):
    """The walk ext2's bmap_cached hands to cython_ext.pagecache, on tiny blocks (4 entries each, so the
    double and triple indirect levels are reached), with holes, bad blocks, metadata zones and indirect
    blocks missing from the buffer cache."""
    rng = random.Random(seed)
    # 4 entries a block reach the double and triple indirect levels; a page a block lets any one of them be
    # missing from the buffer cache (the device's page cache holds whole pages)
    apb, block_size, nr_blocks = 4, 4096, 64

    def block():
        r = rng.random()
        return 0 if r < 0.1 else (rng.randrange(nr_blocks, nr_blocks + 5) if r < 0.13 else rng.randrange(1, nr_blocks))
    i_block = [block() for _ in range(15)]
    cached = {b: None if rng.random() < uncached else bytes(bytearray(
              b"".join(block().to_bytes(4, "little") for _ in range(apb)))) for b in range(nr_blocks + 5)}
    starts, ends = [], []
    for start, length in sorted(zones):
        if not starts or start > ends[-1]:
            starts.append(start)
            ends.append(start + length)
    ram = bytearray((nr_blocks + 5) * block_size)
    bdev_pages = {}                         # the device's page cache: block b in frame nr_blocks + 4 - b
    for b, data in cached.items():
        if data is not None:
            pfn = nr_blocks + 4 - b
            bdev_pages[b] = pfn
            ram[pfn * block_size:pfn * block_size + len(data)] = data
    expected = reference_bmap_cached(i_block, lblk, n, apb, first_data, nr_blocks, list(zip(starts, ends)),
                                     block_size, cached)
    for module in (pagecache_c, pagecache_py):
        got = module.bmap_cached(list(i_block), lblk, n, apb, first_data, nr_blocks, starts, ends, block_size,
                                 bdev_pages, memoryview(ram), len(ram))
        assert got == expected


@pytest.mark.parametrize("module", ["compiled", "pure"])
def test_cached_block_at_finds_blocks_in_the_device_page_cache(module):
    """Where bread() would find a block without I/O: inside its page's frame, or -1 when the page is not
    cached or the block is not all inside the device."""
    at = (pagecache_c if module == "compiled" else pagecache_py).cached_block_at
    pages = {0: 7, 2: 3}                     # page index -> frame
    assert at(pages, 0, 1024, 4 * 4096) == 7 * 4096
    assert at(pages, 3, 1024, 4 * 4096) == 7 * 4096 + 3 * 1024      # the last 1 KiB block of page 0
    assert at(pages, 9, 1024, 4 * 4096) == 3 * 4096 + 1024          # page 2, second block
    assert at(pages, 4, 1024, 4 * 4096) == -1                       # page 1 is not cached
    assert at(pages, 2, 4096, 3 * 4096) == 3 * 4096
    assert at(pages, 2, 4096, 3 * 4096 - 1) == -1                   # the block runs past the device's end
    assert at(pages, -1, 1024, 4 * 4096) == -1


@settings(max_examples=300, deadline=None, database=None)
@given(start=st.integers(0, 10), steps=st.lists(st.sampled_from([1, 1, 1, 1, 2, 0]), max_size=19),
       at=st.integers(0, 19), limit=st.integers(0, 25), cached=st.sets(st.integers(0, 30), max_size=8),
       isize_pages=st.integers(0, 32))
def test_missing_run_end_compiled_equals_pure_equals_the_loop(start, steps, at, limit, cached, isize_pages):
    indices = [start]
    for step in steps:                  # mostly page after page, as readahead asks
        indices.append(indices[-1] + step)
    at = min(at, len(indices) - 1)
    limit = max(at + 1, min(limit, len(indices)))
    pages = {i: 1000 + i for i in cached}
    isize = isize_pages * PAGE_SIZE
    end = at + 1                        # the loop _read_pages had
    while end < limit and indices[end] == indices[at] + end - at and indices[end] not in pages \
            and indices[end] << PAGE_SHIFT < isize:
        end += 1
    for module in (pagecache_c, pagecache_py):
        assert module.missing_run_end(list(indices), at, limit, pages, isize) == end
        assert module.missing_run_end(range(indices[0], indices[0] + len(indices)), at, limit, pages, isize) == \
            module.missing_run_end(list(range(indices[0], indices[0] + len(indices))), at, limit, pages, isize)


@settings(max_examples=100, deadline=None, database=None)
@given(seed=st.integers(0, 10_000), blocks=st.lists(st.one_of(st.just(0), st.integers(1, 50)), min_size=1,
                                                    max_size=12))
def test_insert_read_blocks_compiled_equals_pure_equals_its_parts(seed, blocks):
    """One call for a readahead batch: add_read_batch, then the struct pages and the inactive list
    (LruCore.add_page_cache_batch), then the frames locked; the same as those steps one after another."""
    flags = (1 << 0) | (1 << 3)
    states = []
    for module, parts in ((pagecache_c, False), (pagecache_py, False), (pagecache_c, True)):
        raw, q, i, core, lists = _mem_map(reclaim_c, seed)
        pfns = random.Random(seed).sample(range(NPAGES), len(blocks))
        ram = bytearray(b"\xee" * (NPAGES * PAGE_SIZE))
        pages, runs, locked = {}, [], [7]
        if parts:
            sectors = module.add_read_batch(memoryview(ram), pages, 40, list(pfns), list(blocks), runs)
            core.add_page_cache_batch(list(pfns), 6, list(range(40, 40 + len(pfns))), sectors, flags)
            locked.extend(pfns)
        else:
            module.insert_read_blocks(core, memoryview(ram), pages, 40, list(pfns), list(blocks), runs, 6, flags,
                                      locked)
        states.append((bytes(raw), [list(a) for a in lists], hashlib.sha256(ram).hexdigest(), pages, runs, locked))
    assert states[0] == states[1] == states[2]


# --- cython_ext.reclaim: the struct page loops ---------------------------------------------------------------

NPAGES = 64


def _mem_map(module, seed):
    from array import array
    raw = bytearray(random.Random(seed).randbytes(NPAGES * 64))
    view = memoryview(raw)
    q, i, u = view.cast("Q"), view.cast("i"), view.cast("I")
    NIL = 0xFFFFFFFF
    head, tail, nr = array("q", [NIL] * 5), array("q", [NIL] * 5), array("q", [0] * 5)
    for pfn in range(NPAGES):              # nothing linked yet: flags without PG_lru, links empty
        q[pfn << 3] &= ((1 << 24) - 1) & ~(1 << 5)       # page flags (PG_* < 24), not on a list
        u[(pfn << 4) + 10] = u[(pfn << 4) + 11] = NIL
        i[(pfn << 4) + 2] = abs(i[(pfn << 4) + 2]) % 3 + 1
    core = module.LruCore(q, i, u, head, tail, nr, array("q", bytes(8 * 32)))
    return raw, q, i, core, (head, tail, nr)


@settings(max_examples=150, deadline=None, database=None)
@given(seed=st.integers(0, 10_000), ops=st.lists(st.tuples(st.sampled_from(
    ["reset", "set_flags", "clear", "mark", "read", "put", "add_batch"]), st.integers(0, 10_000)), max_size=12))
def test_struct_page_loops_compiled_equals_pure(seed, ops):
    states = []
    for module in (reclaim_c, reclaim_py):
        raw, q, i, core, lists = _mem_map(module, seed)
        added = set()
        log = []
        for op, arg in ops:
            rng = random.Random(arg)
            pfns = rng.sample(range(NPAGES), rng.randint(0, 6))
            if op == "reset":
                module.reset_struct_pages(q, i, pfns, arg % 2)
            elif op == "set_flags":
                module.set_page_flags(q, pfns, arg * 0x9E3779B1 & ((1 << 40) - 1) & ~(1 << 5))
            elif op == "clear":
                module.clear_page_flag(q, pfns, arg % 24)
            elif op == "mark":
                log.append([core.mark_page_accessed(p) for p in pfns])
            elif op == "read":
                flags = [-1 if rng.random() < 0.2 else q[p << 3] for p in pfns]
                held = []
                log.append((core.read_pages_accessed(pfns, flags, 0, bool(arg % 2), 1 << PG_readahead, held), held))
            elif op == "put":
                log.append(core.put_pages(pfns))
            else:
                fresh = [p for p in pfns if p not in added]
                added.update(fresh)
                core.add_page_cache_batch(fresh, 2 * arg, list(range(arg, arg + len(fresh))),
                                          [None if rng.random() < 0.3 else rng.randrange(1 << 20) for _ in fresh],
                                          (1 << 0) | (1 << 3))
        states.append((bytes(raw), [list(a) for a in lists], log))
    assert states[0] == states[1]


def test_mark_page_accessed_is_linux_s():
    """inactive,unreferenced -> inactive,referenced -> active (one pgactivate), via the kernel's front."""
    _, q, _, core, _ = _mem_map(reclaim_c, 1)
    core.add_page_cache_batch([5], 2, [0], [None], 0)
    vmstat = {"pgactivate": 0}
    k = type("K", (), {"lru": type("L", (), {"core": core})(), "vmstat": vmstat})()
    mark_page_accessed(k, 5)
    assert q[5 << 3] & (1 << PAGE_REFERENCED) and not q[5 << 3] & (1 << PG_active)
    mark_page_accessed(k, 5)
    assert q[5 << 3] & (1 << PG_active) and not q[5 << 3] & (1 << PAGE_REFERENCED) and vmstat["pgactivate"] == 1


# --- cython_ext.hostcache.read_fill -----------------------------------------------------------------------

class Image:
    def __init__(self, npages):
        self.data = bytearray(random.Random(npages).randbytes(npages * PAGE_SIZE))
        self.loads = []
        self.rereads = []

    def read_pages(self, first, buffers):
        self.loads.append((first, len(buffers)))
        for i, b in enumerate(buffers):
            b[:] = self.data[(first + i) * PAGE_SIZE:(first + i + 1) * PAGE_SIZE]

    def read_span(self, first, buffer):
        """read_pages into one buffer of whole pages (the same load, logged the same)."""
        n = len(buffer) // PAGE_SIZE
        self.loads.append((first, n))
        buffer[:] = self.data[first * PAGE_SIZE:(first + n) * PAGE_SIZE]

    def reread_pages(self, first, buffers):
        """The bytes of pages the cache holds clean (no load), into buffers of whole pages."""
        start = first * PAGE_SIZE
        for b in buffers:
            b[:] = self.data[start:start + len(b)]
            start += len(b)
        self.rereads.append((first, start // PAGE_SIZE - first))

    def write_pages(self, first, buffers):
        pass


def cache_state(cache):
    return (list(cache._inactive), list(cache._active), bytes(cache._flags[:cache._fresh]), cache.pgactivate,
            cache.evictions, cache.hits, cache.misses, cache.disk_reads_pages, cache._used, cache._fresh,
            list(cache._free), {vm: list(c) for vm, c in cache._charge.items()},
            {k: dict(v) for k, v in cache._files.items()})


@settings(max_examples=80, deadline=None, database=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["read", "read", "read", "drop"]), st.integers(0, 40),
                                st.integers(1, 12), st.integers(1, 3), st.integers(1, 4)), max_size=25),
       capacity=st.integers(8, 60))
def test_read_fill_compiled_equals_pure_equals_read_into(steps, capacity):
    """Cold and mixed reads of whole pages into RAM runs: the native fill (compiled and uncompiled) against
    the Python read_into path, with misses, hits, freed slots reused and chunks crossed: the same bytes in
    RAM, loads from the image, LRU lists, flags, counters, slots and charges after every step."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _read_fill_steps(steps, capacity, monkeypatch)


def _read_fill_steps(steps, capacity, monkeypatch):
    chunk_shift = 3                     # 8 slots per arena chunk: fills cross chunks
    monkeypatch.setattr(host_cache_mod, "ARENA_CHUNK_SHIFT", chunk_shift)
    monkeypatch.setattr(host_cache_mod, "ARENA_CHUNK_PAGES", 1 << chunk_shift)
    monkeypatch.setattr(host_cache_mod, "_CHUNK_MASK", (1 << chunk_shift) - 1)
    image = Image(60)
    sides = []
    for module, native in ((hostcache_c, True), (hostcache_py, True), (hostcache_c, False)):
        cache = HostPageCache(capacity)
        cache.register_backing("img", image.read_pages, image.write_pages)
        sides.append((module, native, cache, Image(60)))
    try:
        for op, first, n, vm, parts in steps:
            first = min(first, 60 - n)
            results = []
            for module, native, cache, img in sides:
                cache._backing["img"] = (img.read_pages, img.write_pages, img.read_span if native else None,
                                         img.reread_pages)
                monkeypatch.setattr(host_cache_mod, "_hostcache", module)
                monkeypatch.setattr(host_cache_mod, "NATIVE_FILL", native)
                if op == "drop":
                    results.append(cache.drop("img", first, n))
                    continue
                length = n * PAGE_SIZE
                cuts = sorted({(length * k // parts) & ~511 for k in range(1, parts)})
                bounds = [0] + cuts + [length]
                runs = [(0x80000 - (i + 1) * 0xd000 + 512, y - x) for i, (x, y) in enumerate(zip(bounds, bounds[1:]))]
                ram = bytearray(0x80000)
                io = cache.read_runs_into("img", first * PAGE_SIZE, memoryview(ram), runs, vm, length)
                assert b"".join(ram[a:a + m] for a, m in runs) == image.data[first * PAGE_SIZE:(first + n) * PAGE_SIZE]
                results.append((bytes(ram), (io.hits, io.misses, io.loaded, io.load_runs, io.written_back)))
                cache.audit()
            assert results[0] == results[1] == results[2]
            states = [cache_state(cache) for _, _, cache, _ in sides]
            assert states[0] == states[1] == states[2]
            assert sides[0][3].loads == sides[1][3].loads == sides[2][3].loads
            assert sides[0][3].rereads == sides[1][3].rereads == sides[2][3].rereads
    finally:
        for _, _, cache, _ in sides:
            cache.close()


def test_the_host_cache_fills_natively(monkeypatch):
    """The mechanism is there: a cold read of whole pages with room goes through read_fill."""
    calls = []
    real = host_cache_mod._hostcache

    class Spy:
        def __getattr__(self, name):
            return getattr(real, name)

        def read_fill(self, *args):
            calls.append(args[3:5])
            return real.read_fill(*args)

    monkeypatch.setattr(host_cache_mod, "_hostcache", Spy())
    image = Image(16)
    cache = HostPageCache(64)
    cache.register_backing("img", image.read_pages, image.write_pages)
    ram = bytearray(16 * PAGE_SIZE)
    io = cache.read_runs_into("img", 0, memoryview(ram), [(0, 8 * PAGE_SIZE)], 1, 8 * PAGE_SIZE)
    cache.close()
    assert calls == [(0, 8)] and (io.misses, io.loaded, io.load_runs) == (8, 8, 1)
    assert bytes(ram[:8 * PAGE_SIZE]) == bytes(image.data[:8 * PAGE_SIZE])


def test_a_fill_into_one_stretch_of_ram_is_one_read_into_it():
    """A load goes straight into guest RAM: one buffer through the image's read_span when the pages'
    destination is one stretch, a buffer per page through read_pages when it is scattered (or without a
    read_span), a bounce page for a page split between two buffers; the same bytes every way, and the arena
    never written."""
    for with_span in (True, False):
        image = Image(16)
        calls = []
        span = (lambda first, buffer: (calls.append(("span", first, len(buffer))), image.read_span(first, buffer))) \
            if with_span else None
        pages = lambda first, buffers: (calls.append(("pages", first, [len(b) for b in buffers])),
                                        image.read_pages(first, buffers))
        cache = HostPageCache(64)
        cache.register_backing("img", pages, image.write_pages, span)
        ram = bytearray(16 * PAGE_SIZE)
        cache.read_runs_into("img", 0, memoryview(ram), [(0, 8 * PAGE_SIZE)], 1, 8 * PAGE_SIZE)
        cache.drop("img", 2, 3)
        runs = [(10 * PAGE_SIZE, PAGE_SIZE + 512), (8 * PAGE_SIZE, 2 * PAGE_SIZE - 512)]    # page 3 split
        cache.read_runs_into("img", 2 * PAGE_SIZE, memoryview(ram), runs, 1, 3 * PAGE_SIZE)
        assert not any(b"".join(bytes(v) for v in cache._chunk_views))
        cache.close()
        first = ("span", 0, 8 * PAGE_SIZE) if with_span else ("pages", 0, [PAGE_SIZE] * 8)
        assert calls == [first, ("pages", 2, [PAGE_SIZE] * 3)]
        assert bytes(ram[:8 * PAGE_SIZE]) == bytes(image.data[:8 * PAGE_SIZE])
        got = bytes(ram[10 * PAGE_SIZE:11 * PAGE_SIZE + 512] + ram[8 * PAGE_SIZE:10 * PAGE_SIZE - 512])
        assert got == bytes(image.data[2 * PAGE_SIZE:5 * PAGE_SIZE])


# --- booted guests ----------------------------------------------------------------------------------------

def python_generic_file_read(k, task, mapping, ra, buf, count, pos):
    """do_generic_file_read() as it was in Python before LruCore took its loop (the reference)."""
    isize = mapping.a_ops.i_size()
    if pos >= isize or count <= 0:
        return 0
    count = min(count, isize - pos)
    index, last = pos >> PAGE_SHIFT, (pos + count - 1) >> PAGE_SHIFT
    mem_map = k.mem_map
    src, held = [], []
    done = 0
    dst = k.mm.user_runs(task, buf, count, True)
    cached = k.usercopy.lookup_pages(mapping.pages, index, last)
    flags = [mem_map.flags(pfn) if pfn is not None else -1 for pfn in cached]
    readahead_bit = 1 << PG_readahead
    settled = (1 << PG_active) | (1 << PAGE_REFERENCED)
    hold = any(f < 0 or f & readahead_bit for f in flags)
    first = index
    while index <= last:
        pfn, f = cached[index - first], flags[index - first]
        if f < 0 or f & readahead_bit:
            pfn = mapping.get_page(index, ra, last - index + 1)
            f = mem_map.flags(pfn)
        if f & settled != settled:
            flags_now = mem_map.flags(pfn)
            if not flags_now & ((1 << PG_active) | (1 << 21)) and flags_now & (1 << PAGE_REFERENCED) \
                    and flags_now & (1 << 5):
                k.lru.activate_page(pfn)
                mem_map.clear(pfn, PAGE_REFERENCED)
            elif not flags_now & (1 << PAGE_REFERENCED):
                mem_map.set(pfn, PAGE_REFERENCED)
        if hold:
            mem_map.set_refcount(pfn, mem_map.refcount(pfn) + 1)
            held.append(pfn)
        offset = (pos + done) & (PAGE_SIZE - 1)
        n = min(PAGE_SIZE - offset, count - done)
        src.append(((pfn << PAGE_SHIFT) + offset, n))
        done += n
        index += 1
    try:
        copied = k.usercopy.copy_runs(k.ram, src, dst)
    finally:
        for pfn in held:
            k.page_alloc.put_page(pfn)
    k.charge(k.costs.copy_ns_per_kib * copied // 1024 + (last - first + 1) * k.costs.pagecache_lookup_ns)
    ra.prev_pos = pos + copied - 1
    return copied


WORKLOADS = {
    # the balloon CI test itself: a cold 64 MiB read in 64 KiB calls, then a shrink
    "ci": ("512M", [["/bin/vdread", "/data/stream.bin"]], 384),
    # reclaim during readahead: 64 MiB through a 96 MiB guest, then a checksummed read of another file
    "squeezed": ("96M", [["/bin/vdread", "/data/stream.bin"], ["/bin/seqread", "/data/mapped.bin"]], 64),
    # small random reads (single pages, no window), a mapped file, 1 MiB reads, then a tight balloon
    "mixed": ("64M", [["/bin/randread", "/data/random.bin", "2000"], ["/bin/mmapread", "/data/mapped.bin"],
                      ["/bin/vdread", "/data/mapped.bin", "1048576"]], 40),
}


def guest_metrics(name: str) -> dict:
    """Everything a run leaves that a user or the oracle can see, and every struct page."""
    from vmm import scenario
    mem, programs, target = WORKLOADS[name]
    vm = scenario.boot(scenario.MachineSpec.from_options(mem=mem, root="builtin"))
    try:
        out = []
        for argv in programs:
            r = vm.run(argv, 600)
            out.append((r.status, r.output.split("time:")[0]))
        vm.set_guest_mib(target)
        reached = vm.wait_balloon(60)
        m = vm.machine
        blk = m.disks[0][2]
        k = m.kernel
        return dict(out=out, reached=reached, ns=vm.virtual_ns(), vmstat=vm.vmstat(), meminfo=vm.meminfo(),
                    requests=dict(blk.counters.requests), bytes_read=blk.counters.bytes_read,
                    completed=blk.counters.completed, balloon=vm.balloon.actual_pages, host=m.host.cache.stats(),
                    mem_map=hashlib.sha256(k.mem_map.raw).hexdigest(),
                    ram=hashlib.sha256(m.ram.view).hexdigest())
    finally:
        vm.close()


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_native_batches_equal_the_python_path(name, monkeypatch):
    import guestos.fs.vfs as vfs
    taken = {"fill": 0, "blocks": 0}
    module = host_cache_mod._hostcache
    real_batches = pagecache_c.read_block_batches      # the kernel's cython_ext.pagecache (compiled)

    class HostcacheSpy:
        def __getattr__(self, attr):
            return getattr(module, attr)

        def read_fill(self, *args):
            taken["fill"] += 1
            return module.read_fill(*args)

    def read_block_batches(*args):
        locked = args[10]
        before = len(locked)
        at = real_batches(*args)
        taken["blocks"] += len(locked) - before            # pages it inserted
        return at

    with monkeypatch.context() as m:
        m.setattr(host_cache_mod, "_hostcache", HostcacheSpy())
        m.setattr(pagecache_c, "read_block_batches", read_block_batches)
        native = guest_metrics(name)
    assert taken["fill"] > 0 and taken["blocks"] > 0          # the native batches were used
    with monkeypatch.context() as m:                           # the cold read as it was
        m.setattr(virtio_blk_dev.VirtioBlk, "_fast_in_args", lambda self, q, mem: None)   # pop and _submit
        m.setattr(filemap, "READ_BATCHES", False)
        m.setattr(host_cache_mod, "NATIVE_FILL", False)
        m.setattr(vfs, "generic_file_read", python_generic_file_read)
        python = guest_metrics(name)
    assert native["out"][0][0] == 0 and native["reached"]
    assert native == python


def test_compiled_equals_uncompiled_in_a_guest():
    """The 'mixed' workload with every cython_ext module as Python (BALLAST_PURE=1, in a child process)."""
    code = ("import json, sys; sys.path.insert(0, 'tests'); from test_cold_read_differential import guest_metrics; "
            "print(json.dumps(guest_metrics('mixed'), sort_keys=True))")
    env = dict(os.environ, BALLAST_PURE="1")
    child = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=900)
    assert child.returncode == 0, child.stderr[-2000:]
    assert json.loads(child.stdout.splitlines()[-1]) == json.loads(json.dumps(guest_metrics("mixed"), sort_keys=True))


def test_instructions_counted_as_capstone_s_binding_counts_them():
    """A page fault mid-block takes back the unretired instructions: counted through libcapstone directly,
    the same as the binding's disasm_lite, on code of every shape (cut anywhere, invalid bytes)."""
    import capstone
    from vmm import cpu
    assert (cpu.CS_ARCH_X86, cpu.CS_MODE_64) == (capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    count = cpu._instruction_counter()
    binding = cpu._disassemblers()[0]
    rng = random.Random(13)
    data = open(os.path.join(REPO, "firmware", "bin", "hello"), "rb").read()
    for _ in range(2000):
        off, n = rng.randrange(len(data) - 64), rng.randrange(0, 60)
        code, address = data[off:off + n], 0x401000 + off
        assert count(code, address) == sum(1 for _ in binding.disasm_lite(code, address))


def test_populating_guest_ram_changes_no_byte():
    """GuestRAM.populate (before a device writes an IN's buffers) backs the frames and leaves every byte as
    it was: written pages keep their data, untouched ones read as zeros."""
    from vmm.memory import GuestRAM
    ram = GuestRAM(64 * PAGE_SIZE)
    try:
        ram.write(3 * PAGE_SIZE + 100, b"kept")
        resident = ram.resident_pages()                  # (reading untouched frames would map them)
        ram.populate([(2 * PAGE_SIZE, PAGE_SIZE), (3 * PAGE_SIZE, 2 * PAGE_SIZE), (40 * PAGE_SIZE, 3 * PAGE_SIZE)])
        assert ram.resident_pages() == resident + 5       # frames 2, 4, 40-42 are backed now (3 was already)
        expected = bytearray(64 * PAGE_SIZE)
        expected[3 * PAGE_SIZE + 100:3 * PAGE_SIZE + 104] = b"kept"
        assert bytes(ram.view) == expected
    finally:
        ram.close()


@settings(max_examples=300, deadline=None, database=None)
@given(flags=st.lists(st.one_of(st.just(-1), st.integers(0, (1 << 24) - 1),
                                st.integers(0, 255).map(lambda f: f | 1 << PG_readahead)), max_size=20))
def test_must_hold_is_any_miss_or_readahead_mark(flags):
    """generic_file_read's test for holding its pages, without a Python loop, says what the loop said."""
    readahead_bit = 1 << PG_readahead
    assert filemap.must_hold(flags, readahead_bit) == any(f < 0 or f & readahead_bit for f in flags)
