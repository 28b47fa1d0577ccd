"""The buddy page allocator with watermarks (mm/page_alloc.c).

Free blocks are linked through their struct pages in guest RAM (lru_next /
lru_prev by pfn), one list per order, exactly where Linux keeps them. Order-0
pages for user memory go through a per-cpu list (pcp) refilled in batches.
"""
import math
from array import array

from .mm_types import NIL, PG_reserved

MAX_ORDER = 11                       # blocks of up to 2^10 pages (4 MiB)
PAGE_SHIFT = 12

# gfp flags (the few that matter here)
GFP_KERNEL = 0
GFP_HIGH = 1 << 5                  # may dip below the min watermark (atomic/emergency)
GFP_NORETRY = 1 << 12
GFP_NOWARN = 1 << 9
GFP_NORECLAIM = 1 << 10            # neither direct reclaim nor kswapd (no __GFP_RECLAIM)
GFP_FREE_CACHE = 1 << 24           # the 2010 series: reclaim unmapped page cache first (balloon pages)

# Linux retries an order-0 allocation for as long as reclaim makes progress; this bound only keeps a
# bug from looping for ever (each retry frees at least a page, so it is never reached in practice)
MAX_RECLAIM_RETRIES = 100_000

HZ_NS = 1_000_000_000

ALLOC_WMARK_MIN = 0
ALLOC_WMARK_LOW = 1
ALLOC_WMARK_HIGH = 2


class FreeArea:
    """struct free_area of one order: a view of the zone's arrays (the hot path links the blocks)."""
    __slots__ = ("heads", "tails", "counts", "order")

    def __init__(self, heads, tails, counts, order: int):
        self.heads, self.tails, self.counts, self.order = heads, tails, counts, order

    @property
    def head(self) -> int:
        return self.heads[self.order]

    @property
    def tail(self) -> int:
        return self.tails[self.order]

    @property
    def nr_free(self) -> int:
        return self.counts[self.order]


class Zone:
    """ZONE_NORMAL: every usable frame of this small machine. One zone per mem_map: the free
    lists and the free page count are kept by mem_map.hotpath.BuddyCore."""

    def __init__(self, mem_map, start_pfn: int, end_pfn: int):
        self.mem_map = mem_map
        self.zone_start_pfn = start_pfn
        self.spanned_pages = end_pfn - start_pfn
        self.present_pages = 0
        heads, tails = array("q", [NIL] * MAX_ORDER), array("q", [NIL] * MAX_ORDER)
        counts = array("q", [0] * MAX_ORDER)
        self.core = mem_map.hotpath.BuddyCore(mem_map.q, mem_map.u, heads, tails, counts, start_pfn, end_pfn)
        self.free_area = [FreeArea(heads, tails, counts, order) for order in range(MAX_ORDER)]
        self.watermark = [0, 0, 0]

    @property
    def nr_free_pages(self) -> int:
        return self.core.nr_free_pages

    # --- free lists, linked through struct page ---
    def free_pages(self, pfn: int, order: int) -> None:
        """Count the block free and list it, merged with its free buddies (__free_one_page)."""
        self.core.free_pages(pfn, order)

    def rmqueue(self, order: int) -> int:
        """__rmqueue_smallest(): the smallest free block that fits, split down (expand())."""
        return self.core.rmqueue(order)

    def isolate_free_block(self, pfn: int, order: int) -> None:
        """__isolate_free_page(): take one free block off its list (page reporting holds it)."""
        self.core.list_del(pfn, order)
        self.core.nr_free_pages -= 1 << order

    def putback_isolated_block(self, pfn: int, order: int) -> int:
        """__putback_isolated_page(): back at the tail of the free list, merged with its free
        buddies, without asking for another report; returns the first pfn of the merged block."""
        return self.core.putback_isolated_page(pfn, order)

    def watermark_ok(self, order: int, mark: int, alloc_flags_high: bool = False) -> bool:
        """zone_watermark_ok(): free pages above the mark even after this allocation,
        with enough of them in blocks of this order or larger."""
        min_pages = self.watermark[mark]
        if alloc_flags_high:
            min_pages -= min_pages // 2
        free = self.nr_free_pages - (1 << order) + 1
        if free <= min_pages:
            return False
        for o in range(order):
            free -= self.free_area[o].nr_free << o
            min_pages >>= 1
            if free <= min_pages:
                return False
        return True


def reset_struct_page(mem_map, pfn: int, refcount: int) -> None:
    """prep_new_page() / free_pages_prepare(): no flags, no mapping, this many references."""
    mem_map.hotpath.reset_struct_pages(mem_map.q, mem_map.i, [pfn], refcount)


def reset_struct_pages(mem_map, pfns: list, refcount: int) -> None:
    """reset_struct_page() of each (the hot path's loop)."""
    mem_map.hotpath.reset_struct_pages(mem_map.q, mem_map.i, pfns, refcount)


def min_free_kbytes_default(lowmem_kbytes: int) -> int:
    """init_per_zone_wmark_min(): sqrt(lowmem * 16), clamped to [128, 65536]."""
    return max(128, min(65536, int(math.sqrt(lowmem_kbytes * 16))))


class PageAllocator:
    def __init__(self, mem_map, start_pfn: int, end_pfn: int, vmstat):
        self.mem_map = mem_map
        self.zone = Zone(mem_map, start_pfn, end_pfn)
        self.vmstat = vmstat
        self.totalram_pages = 0
        self.min_free_kbytes = 0
        # set by the kernel once reclaim exists: freeing takes a page off its LRU list,
        # a failed allocation reclaims, one below the low watermark wakes kswapd
        self.on_free = None
        self.reclaim = None
        self.wake_kswapd = None
        self.oom_notify = None          # out_of_memory()'s notifier chain: returns pages freed
        self.policies = None            # the kernel's selected reclaim policies (mm/reclaim_policy.py)
        self.congestion_wait = None     # naps between direct reclaim retries (__alloc_pages_slowpath)
        self.report_hook = None         # page_reporting_notify_free(): a block of reporting order freed

    # --- boot: memblock_free_all ---
    def free_bootmem_range(self, start_pfn: int, end_pfn: int) -> None:
        """Hand a range of free frames to the allocator in the largest aligned blocks."""
        pfn = start_pfn
        zone = self.zone
        while pfn < end_pfn:
            order = MAX_ORDER - 1
            while order > 0 and (pfn & ((1 << order) - 1) or pfn + (1 << order) > end_pfn):
                order -= 1
            self.mem_map.clear(pfn, PG_reserved)
            zone.free_pages(pfn, order)
            zone.present_pages += 1 << order
            self.totalram_pages += 1 << order
            pfn += 1 << order

    def setup_per_zone_wmarks(self, min_free_kbytes: int = 0) -> None:
        if not min_free_kbytes:
            min_free_kbytes = min_free_kbytes_default(self.totalram_pages * 4)
        self.min_free_kbytes = min_free_kbytes
        pages_min = min_free_kbytes >> 2
        self.zone.watermark = [pages_min, pages_min + pages_min // 4, pages_min + pages_min // 2]

    # --- the API ---
    def watermark_slowpath(self, order: int, high_prio: bool = False, gfp: int = GFP_KERNEL) -> bool:
        """__alloc_pages_slowpath(): wake kswapd below low; below min, reclaim directly and retry
        (once with __GFP_NORETRY, never without __GFP_RECLAIM); then the OOM notifiers, whose
        freed pages spare the OOM killer (__GFP_NORETRY never gets that far)."""
        zone = self.zone
        if self.policies is not None:
            self.policies.allocator_fastpath()  # unmapped page-cache control looks at every allocation batch
        if gfp & GFP_NORECLAIM:
            return zone.watermark_ok(order, ALLOC_WMARK_LOW, high_prio)
        if self.wake_kswapd is not None and not zone.watermark_ok(order, ALLOC_WMARK_LOW, high_prio):
            self.wake_kswapd()
        if zone.watermark_ok(order, ALLOC_WMARK_MIN, high_prio):
            return True
        if self.reclaim is not None:
            # __alloc_pages_slowpath(): direct reclaim (its priority falls 12 -> 0 inside) and retry
            # while it makes progress; __GFP_NORETRY gives up after one pass; no progress: OOM
            for _ in range(MAX_RECLAIM_RETRIES):
                progress = self.reclaim(max(32, 1 << order), gfp, order)
                # shrinkers free pages that reclaim does not count: look at the lists anyway
                if zone.watermark_ok(order, ALLOC_WMARK_MIN, high_prio):
                    return True
                if not progress or gfp & GFP_NORETRY:
                    break
                if self.congestion_wait is not None:
                    self.congestion_wait(HZ_NS // 50)    # wait for some write requests to complete, retry
        if self.oom_notify is not None and not gfp & GFP_NORETRY:
            while self.oom_notify():
                if zone.watermark_ok(order, ALLOC_WMARK_MIN, high_prio):
                    return True
        self.vmstat["allocfail"] = self.vmstat.get("allocfail", 0) + 1
        return False

    def alloc_pages(self, gfp: int = GFP_KERNEL, order: int = 0) -> int:
        """A block of 2^order frames, or NIL when reclaim cannot bring the zone above min."""
        zone = self.zone
        if not self.watermark_slowpath(order, bool(gfp & GFP_HIGH), gfp):
            return NIL
        pfn = zone.rmqueue(order)
        if pfn == NIL:
            return NIL
        mm = self.mem_map
        for p in range(pfn, pfn + (1 << order)):
            reset_struct_page(mm, p, 1)
        self.vmstat["pgalloc_normal"] += 1 << order
        return pfn

    def free_pages(self, pfn: int, order: int = 0) -> None:
        # reclaim's hot path frees clean page-cache pages itself: keep account_freed() in step
        mm = self.mem_map
        if self.on_free is not None:
            for p in range(pfn, pfn + (1 << order)):
                self.on_free(p)
        for p in range(pfn, pfn + (1 << order)):
            reset_struct_page(mm, p, 0)
        self.vmstat["pgfree"] += 1 << order
        self.zone.free_pages(pfn, order)
        self._notify_reporting()

    def alloc_pages_bulk(self, gfp: int, nr_pages: int) -> list:
        """alloc_pages_bulk(): up to nr_pages order-0 pages, each allocation checked against the
        watermarks as alloc_pages() would; fewer (or none) when memory runs short."""
        zone, mm = self.zone, self.mem_map
        if gfp & GFP_FREE_CACHE and self.policies is not None:
            self.policies.balloon_pages("cache_first", nr_pages)      # the policy this flag asks for
        pfns = []
        high_prio = bool(gfp & GFP_HIGH)
        while len(pfns) < nr_pages:
            # while the zone is well above low, a whole batch passes one check
            room = zone.nr_free_pages - zone.watermark[ALLOC_WMARK_LOW] - 1
            if room <= 0:
                if not self.watermark_slowpath(0, high_prio, gfp):
                    break
                room = 1
            wanted = len(pfns) + min(room, nr_pages - len(pfns))
            zone.core.rmqueue_many(wanted - len(pfns), pfns)
            if len(pfns) < wanted:                  # the buddy lists ran dry
                break
        reset_struct_pages(mm, pfns, 1)
        self.vmstat["pgalloc_normal"] += len(pfns)
        return pfns

    def account_freed(self, nr: int) -> None:
        """The end of free_pages() for nr order-0 pages that reclaim's hot path (cython_ext/reclaim.py)
        took off their lists, reset and merged into the buddy lists itself."""
        self.vmstat["pgfree"] += nr
        if self.zone.core.report_notify:        # _notify_reporting(), without its frame in the common case
            self._notify_reporting()

    def _notify_reporting(self) -> None:
        """page_reporting_notify_free(): only a free that merged into a block of the reporting
        order or more (the buddy core raised report_notify) interests free page reporting."""
        core = self.zone.core
        if core.report_notify:
            core.report_notify = False
            if self.report_hook is not None:
                self.report_hook()

    def put_page(self, pfn: int) -> None:
        """Drop a reference; the last one frees the page."""
        mm = self.mem_map
        count = mm.refcount(pfn) - 1
        mm.set_refcount(pfn, count)
        if count == 0:
            self.free_pages(pfn, 0)

    @property
    def nr_free_pages(self) -> int:
        return self.zone.nr_free_pages


class PerCpuPages:
    """The per-cpu list of order-0 pages (struct per_cpu_pages).

    Watermarks are checked when the list is refilled from the buddy lists, so
    the native fault path and the Python one take exactly the same pages. With
    a native vCPU the list lives in its memory, where the native fast path of
    do_anonymous_page takes from it."""
    batch = 31
    high = 6 * 31

    def __init__(self, allocator: PageAllocator, native=None):
        self.allocator = allocator
        self.native = native
        self.pages = []                       # used when there is no native list

    @property
    def count(self) -> int:
        return self.native.pcp_count if self.native is not None else len(self.pages)

    def _pop(self) -> int:
        return self.native.pcp_pop() if self.native is not None else self.pages.pop()

    def _push(self, pfns) -> None:
        if self.native is not None:
            self.native.pcp_push(pfns)
        else:
            self.pages.extend(pfns)

    def rmqueue_bulk(self) -> bool:
        zone = self.allocator.zone
        got = []
        # one watermark check per refill, as get_page_from_freelist before rmqueue_bulk
        if not self.allocator.watermark_slowpath(0):
            return False
        zone.core.rmqueue_many(self.batch, got)
        # pushed in reverse so pages leave the list in the order the buddy gave them
        self._push(reversed(got))
        return bool(got)

    def alloc(self) -> int:
        """A zeroed-or-not order-0 page with its struct page reset, or NIL."""
        if self.count == 0 and not self.rmqueue_bulk():
            return NIL
        pfn = self._pop()
        reset_struct_page(self.allocator.mem_map, pfn, 1)
        self.allocator.vmstat["pgalloc_normal"] += 1
        return pfn

    def take(self, n: int) -> list:
        """n pages off the list (n <= count), in the order alloc() would take them; their struct pages
        are the caller's to reset and pgalloc_normal its to count (a batch of allocations)."""
        if self.native is not None:
            return self.native.pcp_take(n)
        pages = self.pages
        return [pages.pop() for _ in range(n)]

    def drain(self) -> None:
        """Give every page on the list back to the buddy allocator."""
        pfns = self.native.pcp_take_all() if self.native is not None else self.pages
        self.pages = []
        for pfn in pfns:
            self.allocator.zone.free_pages(pfn, 0)
