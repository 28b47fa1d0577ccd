"""The buddy allocator (guestos.mm.page_alloc) over a mem_map in an ordinary bytearray."""
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guestos.mm.mm_types import NIL, PG_buddy, PG_reserved, STRUCT_PAGE_SIZE, MemMap
from guestos.mm.page_alloc import (GFP_HIGH, GFP_KERNEL, MAX_ORDER, PageAllocator, PerCpuPages,
                                   min_free_kbytes_default)


def make_allocator(nr_pages: int, start: int = 0, end: int = None, holes=()):
    """A zone over [0, nr_pages) whose free frames are [start, end) minus holes; watermarks 0."""
    end = nr_pages if end is None else end
    raw = memoryview(bytearray(nr_pages * STRUCT_PAGE_SIZE))
    mem_map = MemMap(raw, 0, nr_pages)
    for pfn in range(nr_pages):
        mem_map.set_flags(pfn, 1 << PG_reserved)
    vmstat = {"pgalloc_normal": 0, "pgfree": 0}
    pa = PageAllocator(mem_map, 0, nr_pages, vmstat)
    cuts = sorted({start, end, *[p for h in holes for p in h]})
    for a, b in zip(cuts, cuts[1:]):
        if start <= a < end and not any(hs <= a < he for hs, he in holes):
            pa.free_bootmem_range(a, b)
    pa.zone.watermark = [0, 0, 0]
    return pa


def free_blocks(pa):
    """{(pfn, order)} on the free lists, checking the links and the struct pages on the way."""
    zone, mm = pa.zone, pa.mem_map
    out = set()
    for order in range(MAX_ORDER):
        area = zone.free_area[order]
        pfn, prev, n = area.head, NIL, 0
        while pfn != NIL:
            assert mm.lru_prev(pfn) == prev
            assert mm.test(pfn, PG_buddy) and mm.private(pfn) == order
            assert pfn % (1 << order) == 0, "a free block is not aligned to its order"
            out.add((pfn, order))
            prev, pfn = pfn, mm.lru_next(pfn)
            n += 1
            assert n <= area.nr_free
        assert n == area.nr_free and area.tail == prev
    return out


def check_counters(pa, allocated_pages: int, total: int):
    zone = pa.zone
    by_lists = sum(zone.free_area[o].nr_free << o for o in range(MAX_ORDER))
    assert pa.nr_free_pages == by_lists == total - allocated_pages


def check_partition(pa, allocated, start, end, holes=()):
    """Free blocks and allocated blocks tile the free range exactly, without overlap."""
    owner = bytearray(pa.mem_map.nr_pages)
    for pfn, order in list(free_blocks(pa)) + list(allocated.values()):
        n = 1 << order
        assert start <= pfn and pfn + n <= end
        assert owner[pfn:pfn + n] == bytes(n), f"block {pfn}/{order} overlaps another"
        owner[pfn:pfn + n] = b"\x01" * n
    for pfn in range(start, end):
        in_hole = any(hs <= pfn < he for hs, he in holes)
        assert owner[pfn] == (0 if in_hole else 1), pfn


OPS = st.lists(st.tuples(st.sampled_from(["alloc", "alloc", "free"]), st.integers(0, MAX_ORDER - 1),
                         st.integers(0, 1 << 30)), max_size=80)
LAYOUTS = st.sampled_from([
    (4096, 0, 4096, ()),                       # four max-order blocks
    (3000, 3, 2999, ()),                       # unaligned at both ends
    (2600, 1, 2600, ((700, 777), (1500, 1501))),   # holes, as reserved ranges leave them
])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=LAYOUTS, ops=OPS)
def test_random_alloc_free_keeps_the_invariants(layout, ops):
    nr_pages, start, end, holes = layout
    pa = make_allocator(nr_pages, start, end, holes)
    total = pa.nr_free_pages
    assert total == (end - start) - sum(he - hs for hs, he in holes) == pa.totalram_pages
    initial = free_blocks(pa)
    allocated = {}            # id -> (pfn, order)
    used = 0
    next_id = 0
    for op, order, pick in ops:
        if op == "alloc":
            can = any(pa.zone.free_area[o].nr_free for o in range(order, MAX_ORDER))
            pfn = pa.alloc_pages(GFP_KERNEL, order)
            # with no watermark, an allocation fails exactly when no block is big enough
            assert (pfn != NIL) == can
            if pfn != NIL:
                assert pfn % (1 << order) == 0
                for p in (pfn, pfn + (1 << order) - 1):
                    assert pa.mem_map.refcount(p) == 1 and not pa.mem_map.test(p, PG_buddy)
                allocated[next_id] = (pfn, order)
                next_id += 1
                used += 1 << order
        elif allocated:
            key = sorted(allocated)[pick % len(allocated)]
            pfn, order = allocated.pop(key)
            pa.free_pages(pfn, order)
            used -= 1 << order
        check_counters(pa, used, total)
    check_partition(pa, allocated, start, end, holes)
    assert pa.vmstat["pgalloc_normal"] - pa.vmstat["pgfree"] == used
    for pfn, order in list(allocated.values()):
        pa.free_pages(pfn, order)
    check_counters(pa, 0, total)
    assert free_blocks(pa) == initial, "freeing everything did not coalesce back"


def test_boot_ranges_become_max_order_blocks():
    pa = make_allocator(4096 + 5, 0, 4096 + 5)
    blocks = free_blocks(pa)
    assert {(p, o) for p, o in blocks if o == MAX_ORDER - 1} == {(i << 10, 10) for i in range(4)}
    assert blocks - {(i << 10, 10) for i in range(4)} == {(4096, 2), (4100, 0)}


def test_split_and_merge_of_one_block():
    pa = make_allocator(1024)
    pfns = [pa.alloc_pages(GFP_KERNEL, 0) for _ in range(1024)]
    assert sorted(pfns) == list(range(1024))
    assert pa.alloc_pages(GFP_KERNEL, 0) == NIL
    for pfn in reversed(pfns):
        pa.free_pages(pfn, 0)
    assert free_blocks(pa) == {(0, 10)}


# --- watermarks -----------------------------------------------------------------------

def with_min(pages_min: int, nr_pages: int = 4096):
    pa = make_allocator(nr_pages)
    pa.setup_per_zone_wmarks(pages_min * 4)        # min_free_kbytes
    assert pa.zone.watermark == [pages_min, pages_min + pages_min // 4, pages_min + pages_min // 2]
    return pa


def test_order0_allocation_stops_at_the_min_watermark():
    pa = with_min(100)
    got = 0
    while pa.alloc_pages(GFP_KERNEL, 0) != NIL:
        got += 1
        assert pa.nr_free_pages >= 100
    assert got == 4096 - 100
    assert pa.nr_free_pages == 100
    assert pa.vmstat["allocfail"] == 1
    # free pages exist, but taking one would go below min
    assert any(pa.zone.free_area[o].nr_free for o in range(MAX_ORDER))


def test_gfp_high_may_dip_to_half_the_min():
    pa = with_min(100)
    while pa.alloc_pages(GFP_KERNEL, 0) != NIL:
        pass
    while pa.alloc_pages(GFP_HIGH, 0) != NIL:
        pass
    assert pa.nr_free_pages == 50


def test_high_order_allocation_fails_when_it_would_cross_min():
    pa = with_min(100)
    assert [pa.alloc_pages(GFP_KERNEL, 10) != NIL for _ in range(4)] == [True, True, True, False]
    assert pa.zone.free_area[10].nr_free == 1             # a block was there, the watermark said no
    assert pa.alloc_pages(GFP_KERNEL, 9) != NIL           # 1024 - 512 = 512 >= 100
    assert pa.alloc_pages(GFP_KERNEL, 9) == NIL           # would leave 0


def test_pcp_refill_respects_the_watermark():
    pa = with_min(64, nr_pages=1024)
    pcp = PerCpuPages(pa)
    pfns = []
    while True:
        before = pa.nr_free_pages
        pfn = pcp.alloc()
        if pfn == NIL:
            break
        if pcp.count == PerCpuPages.batch - 1:
            # a refill happened: it was allowed because free pages were above min
            assert before > 64
        pfns.append(pfn)
    assert pcp.count == 0
    # the watermark is checked once per refill (get_page_from_freelist, then rmqueue_bulk),
    # so the last batch may take the zone a little below min, never a whole batch below
    assert 64 - PerCpuPages.batch < pa.nr_free_pages <= 64
    assert len(pfns) == 1024 - pa.nr_free_pages
    assert len(set(pfns)) == len(pfns)
    for pfn in pfns:
        pa.free_pages(pfn, 0)
    assert free_blocks(pa) == {(0, 10)}


def test_pcp_drain_returns_pages_to_the_buddy_lists():
    pa = with_min(1, nr_pages=1024)
    pcp = PerCpuPages(pa)
    pfn = pcp.alloc()
    assert pcp.count == PerCpuPages.batch - 1
    assert pa.nr_free_pages == 1024 - PerCpuPages.batch
    pcp.drain()
    assert pcp.count == 0
    pa.free_pages(pfn, 0)
    assert free_blocks(pa) == {(0, 10)}


@pytest.mark.parametrize("mib, kbytes", [(16, 512), (64, 1024), (256, 2048), (1024, 4096)])
def test_min_free_kbytes_default_matches_linux(mib, kbytes):
    assert min_free_kbytes_default(mib << 10) == kbytes
    assert min_free_kbytes_default(1 << 10) == 128                # clamped below
    assert min_free_kbytes_default(1 << 40) == 65536              # and above
    assert min_free_kbytes_default(mib << 10) == int(math.sqrt((mib << 10) * 16))
