"""Free page reporting and hinting as Linux does them (mm/page_reporting.c, mm/page_alloc.c,
drivers/virtio/virtio_balloon.c): a reported block that leaves its free list stops being
reported, reported blocks go back at the tail, only frees that end in a pageblock-order block
ask for a report, hinted blocks come back to reclaim through a shrinker, and the balloon's
minor-faults statistic is pgfault. Each allocator test runs compiled and uncompiled."""
import pytest

from guestos.mm.mm_types import PG_buddy, PG_reported, PG_reserved, STRUCT_PAGE_SIZE, MemMap
from guestos.mm.page_alloc import PageAllocator
from vmm.machine import MachineConfig
from vmm.rootfs import root_image
from vmm.session import GuestSession

PAGEBLOCK_ORDER = 9
MUST_TELL_HOST, STATS_VQ, FREE_PAGE_HINT = 1 << 0, 1 << 1, 1 << 3
MiB = 1 << 20


def allocator(pure: bool, nr_pages: int = 4096):
    """A zone of nr_pages free frames with reporting at pageblock order; counts report requests."""
    mem_map = MemMap(memoryview(bytearray(nr_pages * STRUCT_PAGE_SIZE)), 0, nr_pages, pure=pure)
    for pfn in range(nr_pages):
        mem_map.set_flags(pfn, 1 << PG_reserved)
    pa = PageAllocator(mem_map, 0, nr_pages, {"pgalloc_normal": 0, "pgfree": 0})
    pa.free_bootmem_range(0, nr_pages)
    pa.zone.watermark = [0, 0, 0]
    pa.zone.core.reporting_order = PAGEBLOCK_ORDER
    pa.report_requests = 0

    def notify():
        pa.report_requests += 1
    pa.report_hook = notify
    return pa


def report(pa, pfn: int, order: int) -> None:
    """What page_reporting_process does to one block: isolate it, (tell the host), put it back."""
    pa.zone.isolate_free_block(pfn, order)
    pa.zone.putback_isolated_block(pfn, order)
    if pa.mem_map.test(pfn, PG_buddy) and pa.mem_map.private(pfn) == order:
        pa.mem_map.set(pfn, PG_reported)


@pytest.fixture(params=[False, True], ids=["compiled", "pure"])
def pure(request):
    return request.param


def test_a_reported_block_that_merges_is_no_longer_reported(pure):
    pa = allocator(pure)
    first = pa.alloc_pages(order=PAGEBLOCK_ORDER)
    second = pa.alloc_pages(order=PAGEBLOCK_ORDER)
    assert second == first ^ (1 << PAGEBLOCK_ORDER)          # buddies
    pa.free_pages(first, PAGEBLOCK_ORDER)
    report(pa, first, PAGEBLOCK_ORDER)
    assert pa.mem_map.test(first, PG_reported)
    pa.free_pages(second, PAGEBLOCK_ORDER)                   # merges: a bigger block, half unreported
    merged = min(first, second)
    assert pa.mem_map.test(merged, PG_buddy) and pa.mem_map.private(merged) == PAGEBLOCK_ORDER + 1
    assert not pa.mem_map.test(merged, PG_reported)


def test_an_allocated_reported_block_is_no_longer_reported(pure):
    pa = allocator(pure)
    pfn = pa.alloc_pages(order=PAGEBLOCK_ORDER)
    pa.alloc_pages(order=PAGEBLOCK_ORDER)                    # keep its buddy busy: no merge
    pa.free_pages(pfn, PAGEBLOCK_ORDER)
    report(pa, pfn, PAGEBLOCK_ORDER)
    assert pa.alloc_pages(order=PAGEBLOCK_ORDER) == pfn
    assert not pa.mem_map.test(pfn, PG_reported)


def test_reported_blocks_go_back_at_the_tail(pure):
    pa = allocator(pure)
    blocks = [pa.alloc_pages(order=PAGEBLOCK_ORDER) for _ in range(8)]
    for pfn in blocks[::2]:                                  # every other one: no merging
        pa.free_pages(pfn, PAGEBLOCK_ORDER)
    area = pa.zone.free_area[PAGEBLOCK_ORDER]
    reported = area.head
    report(pa, reported, PAGEBLOCK_ORDER)
    assert area.tail == reported and area.head != reported
    # the allocator takes unreported blocks first (the head), the reported one last
    assert pa.alloc_pages(order=PAGEBLOCK_ORDER) != reported


def test_only_frees_that_end_in_a_pageblock_order_block_ask_for_a_report(pure):
    pa = allocator(pure)
    block = pa.alloc_pages(order=PAGEBLOCK_ORDER)
    pa.alloc_pages(order=PAGEBLOCK_ORDER)                    # its buddy stays allocated
    pages = [block + i for i in range(1 << PAGEBLOCK_ORDER)]
    for pfn in pages[1:]:                                    # split it into single pages
        pa.mem_map.set_refcount(pfn, 1)
    before = pa.report_requests
    pa.free_pages(pages[0], 0)
    assert pa.report_requests == before                      # an order-0 block, no report
    for pfn in pages[1:-1]:
        pa.free_pages(pfn, 0)
    assert pa.report_requests == before                      # still short of a pageblock
    pa.free_pages(pages[-1], 0)                              # the last page: a whole pageblock
    assert pa.report_requests == before + 1


def test_putting_a_reported_block_back_asks_for_no_new_report(pure):
    pa = allocator(pure)
    pfn = pa.alloc_pages(order=PAGEBLOCK_ORDER)
    pa.alloc_pages(order=PAGEBLOCK_ORDER)
    pa.free_pages(pfn, PAGEBLOCK_ORDER)
    before = pa.report_requests
    report(pa, pfn, PAGEBLOCK_ORDER)
    assert pa.report_requests == before


@pytest.fixture(scope="module")
def root():
    return root_image("builtin")


def test_reclaim_takes_hinted_blocks_back_through_the_shrinker(root):
    """A hinting round the host never ends holds most of the guest; a program that needs the
    memory gets it from reclaim's shrink_slab(), as Linux's balloon shrinker gives it."""
    config = MachineConfig(mem=128 * MiB, balloon_features=MUST_TELL_HOST | FREE_PAGE_HINT)
    with GuestSession(config, root=root).start() as s:
        driver = s.machine.kernel.balloon
        s.balloon.start_hinting()
        s.advance(0.01)
        held = len(driver.hinted)
        assert held * 4 >= 64                                # MiB held for the host
        assert s.run(["/bin/memhog", "80M"]).exit_code == 0
        vmstat = s.vmstat()
        assert vmstat["slabs_scanned"] > 0
        assert len(driver.hinted) < held
        assert vmstat["oom_kill"] == 0


def test_the_minor_faults_statistic_is_pgfault(root):
    config = MachineConfig(mem=128 * MiB, balloon_features=MUST_TELL_HOST | STATS_VQ)
    with GuestSession(config, root=root).start() as s:
        s.run(["/bin/memhog", "16M"])
        s.run(["/bin/mmapread", "/data/mapped.bin"])           # page-cache misses in faults: major
        stats, vmstat = s.balloon_stats(), s.vmstat()
        assert vmstat["pgmajfault"] > 0                      # else the two formulas agree
        assert stats["minor-faults"] == vmstat["pgfault"]
        assert stats["major-faults"] == vmstat["pgmajfault"]
