"""The host page cache: LRU lists, dirty writeback, sharing and charging, against simple models."""
import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from devices.host_cache import PAGE_SIZE, HostPageCache


class MemoryImage:
    """A backing image held in a bytearray, counting the I/O the cache does on it."""

    def __init__(self, npages: int, seed: int = 0):
        self.data = bytearray((seed + i * 7 + i // 251) % 256 for i in range(npages * PAGE_SIZE))
        self.reads = []          # (first_page, npages) per call: loads from the disk
        self.rereads = []        # the same for bytes of pages the cache holds clean
        self.writes = []
        self.fail_reads = False

    def read_pages(self, first, buffers):
        if self.fail_reads:
            raise OSError(5, "injected read error")
        self.reads.append((first, len(buffers)))
        for i, b in enumerate(buffers):
            start = (first + i) * PAGE_SIZE
            b[:] = self.data[start:start + PAGE_SIZE]

    def reread_pages(self, first, buffers):
        self.rereads.append((first, len(buffers)))
        for i, b in enumerate(buffers):
            start = (first + i) * PAGE_SIZE
            b[:] = self.data[start:start + PAGE_SIZE]

    def write_pages(self, first, buffers):
        self.writes.append((first, len(buffers)))
        for i, b in enumerate(buffers):
            start = (first + i) * PAGE_SIZE
            self.data[start:start + PAGE_SIZE] = b

    def page(self, index):
        return bytes(self.data[index * PAGE_SIZE:(index + 1) * PAGE_SIZE])


def make_cache(capacity, *images):
    cache = HostPageCache(capacity)
    for key, image in images:
        cache.register_backing(key, image.read_pages, image.write_pages, reread_pages=image.reread_pages)
    return cache


def read(cache, key, offset, length, vm=1):
    buf = bytearray(length)
    io = cache.read_into(key, offset, buf, vm)
    return bytes(buf), io


def check_lists(cache):
    cache.audit()
    assert cache.nr_active + cache.nr_inactive == cache.nr_pages <= cache.capacity_pages


def test_a_miss_enters_inactive_and_a_second_access_activates():
    image = MemoryImage(8)
    cache = make_cache(8, ("img", image))
    data, io = read(cache, "img", 0, PAGE_SIZE)
    assert data == image.page(0)
    assert (io.hits, io.misses, io.loaded) == (0, 1, 1)
    assert (cache.nr_inactive, cache.nr_active, cache.pgactivate) == (1, 0, 0)
    data, io = read(cache, "img", 0, PAGE_SIZE)
    assert data == image.page(0) and (io.hits, io.misses) == (1, 0)
    assert (cache.nr_inactive, cache.nr_active, cache.pgactivate) == (0, 1, 1)
    assert (cache.hits, cache.misses, cache.disk_reads_pages) == (1, 1, 1)
    check_lists(cache)


def test_consecutive_misses_load_with_one_read():
    image = MemoryImage(32)
    cache = make_cache(32, ("img", image))
    read(cache, "img", 4 * PAGE_SIZE, PAGE_SIZE)             # page 4 cached
    data, io = read(cache, "img", 0, 16 * PAGE_SIZE)
    assert data == bytes(image.data[:16 * PAGE_SIZE])
    assert image.reads == [(4, 1), (0, 4), (5, 11)]
    assert image.rereads == [(4, 1)]                            # the hit: its bytes are the image's
    assert (io.hits, io.misses, io.loaded, io.load_runs) == (1, 15, 15, 2)


def arena_bytes(cache) -> bytes:
    return b"".join(bytes(view) for view in cache._chunk_views)


def test_a_clean_page_keeps_no_copy_in_the_arena():
    """The image's page cache holds a clean page's bytes: reads go straight from the image to the
    destination, one re-read per run of hits, and the arena stays untouched (no host memory spent twice)."""
    image = MemoryImage(16)
    cache = make_cache(16, ("img", image))
    read(cache, "img", 0, 8 * PAGE_SIZE)
    assert arena_bytes(cache).count(0) == len(arena_bytes(cache))
    data, io = read(cache, "img", 2 * PAGE_SIZE, 4 * PAGE_SIZE)
    assert data == bytes(image.data[2 * PAGE_SIZE:6 * PAGE_SIZE]) and (io.hits, io.loaded) == (4, 0)
    assert image.reads == [(0, 8)] and image.rereads == [(2, 4)]
    assert arena_bytes(cache).count(0) == len(arena_bytes(cache))


def test_a_dirty_page_is_read_from_the_arena_and_a_partial_write_rereads_a_clean_one():
    image = MemoryImage(8)
    cache = make_cache(8, ("img", image))
    read(cache, "img", 0, 4 * PAGE_SIZE)                         # pages 0-3 cached clean
    io = cache.write_from("img", PAGE_SIZE + 100, b"w" * 10, 1)  # a hit: the page's bytes come first
    assert (io.hits, io.misses, io.loaded) == (1, 0, 0) and image.rereads == [(1, 1)]
    image.rereads.clear()
    data, io = read(cache, "img", 0, 4 * PAGE_SIZE)
    want = bytearray(image.data[:4 * PAGE_SIZE])
    want[PAGE_SIZE + 100:PAGE_SIZE + 110] = b"w" * 10
    assert data == want and image.page(1) != want[PAGE_SIZE:2 * PAGE_SIZE]   # not written back yet
    assert image.rereads == [(0, 1), (2, 2)]                     # page 1 from the arena, between the runs
    cache.writeback()
    image.rereads.clear()
    assert read(cache, "img", 0, 4 * PAGE_SIZE)[0] == want and image.rereads == [(0, 1), (2, 2)]
    check_lists(cache)


def test_unaligned_byte_ranges_copy_exactly():
    image = MemoryImage(4)
    cache = make_cache(4, ("img", image))
    data, _ = read(cache, "img", 100, 3 * PAGE_SIZE)
    assert data == bytes(image.data[100:100 + 3 * PAGE_SIZE])
    data, _ = read(cache, "img", PAGE_SIZE - 1, 2)
    assert data == bytes(image.data[PAGE_SIZE - 1:PAGE_SIZE + 1])


def test_eviction_takes_the_inactive_tail():
    image = MemoryImage(8)
    cache = make_cache(4, ("img", image))
    for i in range(4):
        read(cache, "img", i * PAGE_SIZE, PAGE_SIZE)
    read(cache, "img", 0, PAGE_SIZE)                         # page 0 activated
    read(cache, "img", 4 * PAGE_SIZE, PAGE_SIZE)
    assert cache.pages_of("img") == {0, 2, 3, 4}             # page 1 was the oldest inactive page
    assert cache.evictions == 1 and cache.pgdeactivate == 0
    check_lists(cache)


def test_reclaim_deactivates_from_the_active_tail_when_active_outgrows_inactive():
    image = MemoryImage(8)
    cache = make_cache(4, ("img", image))
    for _ in range(2):
        for i in range(4):
            read(cache, "img", i * PAGE_SIZE, PAGE_SIZE)
    assert (cache.nr_active, cache.nr_inactive) == (4, 0)
    read(cache, "img", 4 * PAGE_SIZE, PAGE_SIZE)
    # 4 active, 0 inactive: pages 0 and 1 (oldest active) go to the inactive list, 0 is evicted
    assert cache.pgdeactivate == 2
    assert cache.pages_of("img") == {1, 2, 3, 4}
    assert (cache.nr_active, cache.nr_inactive) == (2, 2)
    # a deactivated page lost PG_referenced: one access marks it, the next activates it
    read(cache, "img", PAGE_SIZE, PAGE_SIZE)
    assert cache.pgactivate == 4
    read(cache, "img", PAGE_SIZE, PAGE_SIZE)
    assert cache.pgactivate == 5
    check_lists(cache)


def test_a_dirty_page_is_written_back_before_eviction():
    image = MemoryImage(8)
    cache = make_cache(2, ("img", image))
    cache.write_from("img", 0, b"D" * PAGE_SIZE, 1)
    assert cache.nr_dirty == 1 and cache.dirty_pages_of("img") == {0}
    assert image.page(0) != b"D" * PAGE_SIZE
    read(cache, "img", PAGE_SIZE, PAGE_SIZE)
    _, io = read(cache, "img", 2 * PAGE_SIZE, PAGE_SIZE)
    assert io.written_back == 1 and image.writes == [(0, 1)]
    assert image.page(0) == b"D" * PAGE_SIZE
    assert (cache.nr_dirty, cache.disk_writes_pages, cache.evictions) == (0, 1, 1)
    check_lists(cache)


def test_a_partial_page_write_reads_the_page_first_and_a_full_one_does_not():
    image = MemoryImage(4)
    cache = make_cache(4, ("img", image))
    old = image.page(1)
    io = cache.write_from("img", PAGE_SIZE + 512, b"x" * 512, 1)
    assert (io.misses, io.loaded) == (1, 1)
    assert cache.peek("img", 1) == old[:512] + b"x" * 512 + old[1024:]
    io = cache.write_from("img", 2 * PAGE_SIZE, b"y" * PAGE_SIZE, 1)
    assert (io.misses, io.loaded) == (1, 0) and image.reads == [(1, 1)]
    assert cache.peek("img", 2) == b"y" * PAGE_SIZE


def test_writeback_writes_runs_of_consecutive_dirty_pages():
    image = MemoryImage(16)
    cache = make_cache(16, ("img", image))
    for i in (0, 1, 2, 5, 9):
        cache.write_from("img", i * PAGE_SIZE, bytes([i]) * PAGE_SIZE, 1)
    assert cache.writeback("img", 4, 2) == [1]                  # only page 5
    assert cache.dirty_pages_of("img") == {0, 1, 2, 9}
    assert cache.writeback("img") == [3, 1]
    assert image.writes == [(5, 1), (0, 3), (9, 1)]
    assert cache.nr_dirty == 0 and cache.writeback() == []
    for i in (0, 1, 2, 5, 9):
        assert image.page(i) == bytes([i]) * PAGE_SIZE
    check_lists(cache)


def test_writeback_of_all_images():
    a, b = MemoryImage(4), MemoryImage(4, seed=3)
    cache = make_cache(8, ("a", a), ("b", b))
    cache.write_from("a", 0, b"A" * 512, 1)
    cache.write_from("b", PAGE_SIZE, b"B" * 512, 2)
    assert sorted(cache.writeback()) == [1, 1]
    assert a.data[:512] == b"A" * 512 and b.data[PAGE_SIZE:PAGE_SIZE + 512] == b"B" * 512


def test_drop_forgets_pages_without_writing_them_back():
    image = MemoryImage(8)
    cache = make_cache(8, ("img", image))
    cache.write_from("img", 0, b"z" * 3 * PAGE_SIZE, 1)
    assert cache.drop("img", 1, 5) == 2
    assert cache.pages_of("img") == {0} and cache.nr_dirty == 1
    assert image.writes == []
    assert cache.drop("img") == 1 and cache.nr_pages == 0
    check_lists(cache)


def test_drop_caches_keeps_dirty_pages():
    image = MemoryImage(8)
    cache = make_cache(8, ("img", image))
    read(cache, "img", 0, 4 * PAGE_SIZE)
    cache.write_from("img", 5 * PAGE_SIZE, b"d" * 10, 1)
    assert cache.drop_caches() == 4
    assert cache.pages_of("img") == {5}
    check_lists(cache)


def test_pages_are_shared_between_vms_and_charged_to_the_first():
    image = MemoryImage(8)
    cache = make_cache(8, ("img", image))
    read(cache, "img", 0, 4 * PAGE_SIZE, vm=1)
    data, io = read(cache, "img", 0, 4 * PAGE_SIZE, vm=2)
    assert data == bytes(image.data[:4 * PAGE_SIZE])
    assert (io.hits, io.misses) == (4, 0)
    assert cache.usage_pages(1) == 4 and cache.usage_pages(2) == 0
    assert cache.owner_of("img", 3) == 1
    cache.write_from("img", 6 * PAGE_SIZE, b"w", 2)
    assert cache.usage_pages(2) == 1
    assert cache.memcg_stat(1) == {"cache": 4 * PAGE_SIZE, "active_file": 4 * PAGE_SIZE,
                                   "inactive_file": 0, "dirty": 0}
    assert cache.memcg_stat(2) == {"cache": PAGE_SIZE, "active_file": 0,
                                   "inactive_file": PAGE_SIZE, "dirty": PAGE_SIZE}
    check_lists(cache)


def test_same_page_index_of_different_images_are_different_pages():
    a, b = MemoryImage(2, seed=1), MemoryImage(2, seed=2)
    cache = make_cache(4, ("a", a), ("b", b))
    assert read(cache, "a", 0, PAGE_SIZE)[0] == a.page(0)
    assert read(cache, "b", 0, PAGE_SIZE)[0] == b.page(0)
    assert cache.pages_of("a") == cache.pages_of("b") == {0} and cache.nr_pages == 2


def test_set_capacity_evicts_down_and_writes_back_dirty_pages():
    image = MemoryImage(16)
    cache = make_cache(16, ("img", image))
    cache.write_from("img", 0, b"q" * 8 * PAGE_SIZE, 1)
    read(cache, "img", 8 * PAGE_SIZE, 8 * PAGE_SIZE)
    assert cache.set_capacity(4) == 8                    # the 8 dirty pages were the oldest
    assert cache.nr_pages == 4 and cache.capacity_pages == 4
    assert bytes(image.data[:8 * PAGE_SIZE]) == b"q" * 8 * PAGE_SIZE
    check_lists(cache)
    cache.set_capacity(32)
    data, _ = read(cache, "img", 0, 16 * PAGE_SIZE)       # freed slots are reused correctly
    assert data == bytes(image.data)
    check_lists(cache)


@pytest.mark.parametrize("bad", [0, -1])
def test_capacity_must_be_at_least_one_page(bad):
    with pytest.raises(ValueError, match="at least 1 page"):
        HostPageCache(bad)
    with pytest.raises(ValueError):
        HostPageCache(4).set_capacity(bad)


def test_a_request_larger_than_the_cache_still_reads_right():
    image = MemoryImage(12)
    cache = make_cache(3, ("img", image))
    cache.write_from("img", 5 * PAGE_SIZE + 10, b"!" * 20, 1)
    data, io = read(cache, "img", 0, 12 * PAGE_SIZE)
    want = bytearray(image.data)
    want[5 * PAGE_SIZE + 10:5 * PAGE_SIZE + 30] = b"!" * 20
    assert data == bytes(want)
    assert cache.nr_pages == 3
    check_lists(cache)


def test_a_failed_load_leaves_the_cache_consistent():
    image = MemoryImage(8)
    cache = make_cache(4, ("img", image))
    read(cache, "img", 0, 2 * PAGE_SIZE)
    image.fail_reads = True
    with pytest.raises(OSError):
        read(cache, "img", 4 * PAGE_SIZE, 2 * PAGE_SIZE)
    with pytest.raises(OSError):
        cache.write_from("img", 6 * PAGE_SIZE, b"p", 1)
    check_lists(cache)
    assert cache.pages_of("img") == {0, 1}
    image.fail_reads = False
    assert read(cache, "img", 4 * PAGE_SIZE, 2 * PAGE_SIZE)[0] == bytes(image.data[4 * PAGE_SIZE:6 * PAGE_SIZE])
    check_lists(cache)


def test_an_unregistered_image_is_a_clear_error():
    cache = HostPageCache(4)
    with pytest.raises(LookupError, match="no backing image"):
        read(cache, "nowhere", 0, 512)


# --- property tests: arbitrary operation sequences against a dict model ---

NPAGES = 12
KEYS = ("a", "b")
offsets = st.integers(0, NPAGES * PAGE_SIZE - 1)


class CacheModel(RuleBasedStateMachine):
    """The model is each image's true content; image + cache must always show exactly that."""

    @initialize(capacity=st.integers(1, 10))
    def setup(self, capacity):
        self.images = {k: MemoryImage(NPAGES, seed=i * 11) for i, k in enumerate(KEYS)}
        self.cache = make_cache(capacity, *self.images.items())
        self.model = {k: bytearray(img.data) for k, img in self.images.items()}

    @rule(key=st.sampled_from(KEYS), offset=offsets, length=st.integers(1, 4 * PAGE_SIZE), vm=st.integers(1, 3))
    def read(self, key, offset, length, vm):
        length = min(length, NPAGES * PAGE_SIZE - offset)
        data, io = read(self.cache, key, offset, length, vm)
        assert data == bytes(self.model[key][offset:offset + length])
        assert io.hits + io.misses == (offset + length - 1) // PAGE_SIZE - offset // PAGE_SIZE + 1

    @rule(key=st.sampled_from(KEYS), offset=offsets, length=st.integers(1, 3 * PAGE_SIZE),
          fill=st.integers(0, 255), vm=st.integers(1, 3))
    def write(self, key, offset, length, fill, vm):
        length = min(length, NPAGES * PAGE_SIZE - offset)
        data = bytes([fill]) * length
        self.cache.write_from(key, offset, data, vm)
        self.model[key][offset:offset + length] = data
        first, last = offset // PAGE_SIZE, (offset + length - 1) // PAGE_SIZE
        # (a small cache may already have evicted, and written back, the first pages)
        assert set(range(first, last + 1)) & self.cache.pages_of(key) <= self.cache.dirty_pages_of(key)

    @rule(key=st.sampled_from((None,) + KEYS), first=st.integers(0, NPAGES - 1), n=st.none() | st.integers(1, NPAGES))
    def writeback(self, key, first, n):
        runs = self.cache.writeback(key, first, n)
        assert all(1 <= r for r in runs)
        for k in KEYS if key is None else (key,):
            end = NPAGES if n is None else first + n
            assert not any(first <= i < end for i in self.cache.dirty_pages_of(k))

    @rule(key=st.sampled_from(KEYS), first=st.integers(0, NPAGES - 1), n=st.integers(1, NPAGES))
    def discard(self, key, first, n):
        # what the block backend does for a discard: zero the image, drop the cached pages
        n = min(n, NPAGES - first)
        span = slice(first * PAGE_SIZE, (first + n) * PAGE_SIZE)
        self.images[key].data[span] = bytes(n * PAGE_SIZE)
        self.model[key][span] = bytes(n * PAGE_SIZE)
        self.cache.drop(key, first, n)
        assert not self.cache.pages_of(key) & set(range(first, first + n))

    @rule(capacity=st.integers(1, 10))
    def set_capacity(self, capacity):
        self.cache.set_capacity(capacity)
        assert self.cache.nr_pages <= capacity

    @precondition(lambda self: hasattr(self, "cache"))
    @rule()
    def drop_caches(self):
        self.cache.drop_caches()
        assert self.cache.nr_pages == self.cache.nr_dirty

    @invariant()
    def lists_and_counters_agree(self):
        cache = self.cache
        check_lists(cache)
        assert sum(len(cache.pages_of(k)) for k in KEYS) == cache.nr_pages
        assert sum(len(cache.dirty_pages_of(k)) for k in KEYS) == cache.nr_dirty
        assert sum(cache.usage_pages(vm) for vm in (1, 2, 3)) == cache.nr_pages
        for k in KEYS:
            assert cache.dirty_pages_of(k) <= cache.pages_of(k)

    @invariant()
    def no_data_is_ever_lost(self):
        for k in KEYS:
            for index in range(NPAGES):
                cached = self.cache.peek(k, index)
                seen = cached if cached is not None else self.images[k].page(index)
                want = bytes(self.model[k][index * PAGE_SIZE:(index + 1) * PAGE_SIZE])
                assert seen == want, f"{k} page {index} differs"
            # a clean cached page matches the image
            for index in self.cache.pages_of(k) - self.cache.dirty_pages_of(k):
                assert self.cache.peek(k, index) == self.images[k].page(index)

    def teardown(self):
        if hasattr(self, "cache"):
            self.cache.writeback()
            for k in KEYS:
                assert self.images[k].data == self.model[k]
            self.cache.close()


CacheModel.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])
TestCacheModel = CacheModel.TestCase
