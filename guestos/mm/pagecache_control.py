"""Page-cache control policies: the 2010 "unmapped page cache control" series and its rivals.

Chosen on the command line, switched and tuned in /proc/sys/vm (vm.unmapped_page_control 0-3):

- `unmapped_page_control=rfc` (1 below 3): the RFC of 8 June 2010, "[RFC][PATCH 1/2] Linux/Guest
  unmapped page cache control", the version Avi Kivity reviewed. A boot option; the allocator's
  fast path wakes kswapd when unmapped page cache exceeds UNMAPPED_PAGE_RATIO (16, a constant)
  times zone->min_unmapped_pages (vm.min_unmapped_ratio, 1% of the zone): a fixed 16% trigger.
- `unmapped_page_control` (alone, =1 or =v4): v4 of 25 January 2011, "[PATCH 3/3] Provide
  control over unmapped pages (v4)": the same, but the trigger is its own sysctl,
  vm.max_unmapped_ratio (default 16% of the zone).
  Both versions then do the same thing each time kswapd balances the zone (balance_pgdat calls
  it before looking at the watermarks and again before each shrink_zone): while unmapped page
  cache is above zone->min_unmapped_pages, reclaim an eighth of the excess with zone_reclaim's
  loop (shrink_zone from priority 4 down to 0) with swappiness 0, may_unmap and may_writepage
  off: clean, unmapped page cache only; mapped and dirty pages met on the way go back to the
  head of their list.
- `unmapped_page_control=shrink_list` (2): Andrew Morton's review of v5 (30 March 2011): "manage
  the mapped/unmapped bias within the core of the regular scanning, ie: in shrink_page_list()".
  No pass of its own; while unmapped page cache is above the floor, ordinary reclaim keeps mapped
  file pages and anonymous pages, as the series' scan_control did (ShrinkListBias.keep_page).
- cache-first balloon pages (patch 2/2, __GFP_FREE_CACHE): before the allocator hands pages to
  the balloon it reclaims as many clean unmapped page-cache pages.
- `pagecache_dedup` (ours, the thread's "talk about which pages to keep"): the host tells the
  guest which disk pages it caches (docs/host-cache-query.md); reclaim then drops the guest's
  copies of those first, keeping pages only the guest holds.

Each is a ReclaimPolicy registered under its name (guestos/mm/reclaim_policy.py, docs/policies.md):
the reclaim path calls the hooks of the selected ones and knows none of them.

vm.min_unmapped_ratio existed only on NUMA kernels in 2.6.35 (zone_reclaim's floor); the series
moved zone->min_unmapped_pages out of CONFIG_NUMA, and v4 its sysctl too. Ballast's guest is one
zone and keeps both knobs in /proc/sys/vm for every policy (docs/unmapped-page-control.md).
"""
from .lru import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE, SWAP_CLUSTER_MAX
from .mm_types import PG_referenced
from .reclaim_policy import ReclaimPolicy, by_sysctl, register
from . import vmscan                # a module cycle: names are looked up at call time

UNMAPPED_PAGE_RATIO = 16        # the RFC's trigger: this many times zone->min_unmapped_pages
ZONE_RECLAIM_PRIORITY = 4       # zone_reclaim's first priority: scans 1/16th of each list
HOST_CACHE_QUERY_INTERVAL_NS = 100_000_000     # the guest's view of the host cache is this fresh


def unmapped_policy(k) -> str:
    """vm.unmapped_page_control's policy by name: none (0), v4-2011-01 (1), shrink_list (2), rfc-2010-06 (3)."""
    policy = by_sysctl("unmapped_page_control", k.sysctl_vm["unmapped_page_control"])
    return "none" if policy is None else policy.name


def unmapped_pages(k) -> int:
    """zone_unmapped_file_pages(): (active file + inactive file) - mapped file pages."""
    nr = k.lru.nr
    return max(0, nr[LRU_ACTIVE_FILE] + nr[LRU_INACTIVE_FILE] - k.vmstat["nr_mapped"])


def min_unmapped_pages(k) -> int:
    """zone->min_unmapped_pages: the floor the series shrinks unmapped page cache toward."""
    return k.page_alloc.zone.present_pages * k.sysctl_vm["min_unmapped_ratio"] // 100


def unmapped_above_min(k) -> bool:
    return unmapped_pages(k) > min_unmapped_pages(k)


@register
class UnmappedV4(ReclaimPolicy):
    """v4 of 25 January 2011: kswapd trims unmapped page cache above vm.max_unmapped_ratio."""
    name = "v4-2011-01"
    trace_name = "unmapped"
    sysctl = ("unmapped_page_control", 1)
    cmdline_words = ("", "1", "kswapd", "v4")       # unmapped_page_control[=WORD]

    def max_unmapped_pages(self, k) -> int:
        """The trigger that wakes kswapd: v4's vm.max_unmapped_ratio of the zone."""
        return k.page_alloc.zone.present_pages * k.sysctl_vm["max_unmapped_ratio"] // 100

    def allocator_fastpath(self, k) -> None:
        """From the allocator's fast path (get_page_from_freelist): too much unmapped page cache
        (should_reclaim_unmapped_pages() in v4, should_balance_unmapped_pages() in the RFC) wakes kswapd
        even when the watermarks are fine."""
        if unmapped_pages(k) > self.max_unmapped_pages(k):
            k.vmstat["unmapped_wakeups"] += 1
            k.wakeup_kswapd(reason="unmapped-high")

    def balance_pgdat_pass(self, k):
        return (yield from balance_unmapped_pages_steps(k, self))


@register
class UnmappedRfc(UnmappedV4):
    """The RFC of 8 June 2010: the same, with a fixed trigger of 16 x the floor."""
    name = "rfc-2010-06"
    sysctl = ("unmapped_page_control", 3)
    cmdline_words = ("rfc",)

    def max_unmapped_pages(self, k) -> int:
        return UNMAPPED_PAGE_RATIO * min_unmapped_pages(k)


@register
class ShrinkListBias(ReclaimPolicy):
    """Morton's review of v5: the bias inside shrink_page_list, no pass of its own."""
    name = "shrink_list"
    sysctl = ("unmapped_page_control", 2)
    cmdline_words = ("shrink_list",)
    keep_reason = "unmapped-first"

    def keep_page(self, k, sc, pfn: int) -> bool:
        """While unmapped page cache is above the floor, ordinary reclaim keeps mapped file pages and
        anonymous pages (activated), as the series' scan_control did; its own passes never unmap anyway."""
        return sc.may_unmap and unmapped_above_min(k)


def balance_unmapped_pages(k, policy) -> int:
    """balance_unmapped_pages_steps() run to its end in one go; returns the pages freed."""
    steps = balance_unmapped_pages_steps(k, policy)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def balance_unmapped_pages_steps(k, policy):
    """The series' pass, called by balance_pgdat (balance_unmapped_pages() in the RFC,
    reclaim_unmapped_pages() in v4): while unmapped page cache is above the floor, reclaim an
    eighth of the excess through zone_reclaim's loop, with a scan_control that may not unmap,
    write or swap (swappiness 0). A generator yielding after each SWAP_CLUSTER_MAX batch, like
    the rest of kswapd's work; returns the pages freed."""
    excess = unmapped_pages(k) - min_unmapped_pages(k)
    if excess <= 0:
        return 0
    k.vmstat["unmapped_balance_runs"] += 1
    # kswapd's scan_control asks for ULONG_MAX pages: shrink_zone never stops early
    sc = vmscan.ScanControl(nr_to_reclaim=1 << 62, current_is_kswapd=True, may_writepage=False,
                            may_unmap=False, may_swap=False, policy=policy.trace_name)
    if k.tracepoints is not None:
        vmscan.trace_pass_begin(k, sc)
    nr_pages = excess >> 3
    scanned_before = k.vmstat["pgscan_kswapd"]
    for priority in range(ZONE_RECLAIM_PRIORITY, -1, -1):     # zone_reclaim_pages()
        sc.priority = priority
        yield from vmscan.shrink_zone_batches(k, sc)
        if sc.nr_reclaimed >= nr_pages:
            break
    k.vmstat["pgscan_unmapped"] += k.vmstat["pgscan_kswapd"] - scanned_before
    k.vmstat["pgsteal_unmapped"] += sc.nr_reclaimed
    if k.tracepoints is not None:
        vmscan.trace_pass_end(k, sc)
    return sc.nr_reclaimed


def reclaim_unmapped_pages(k, nr_to_reclaim: int, counter: str, kswapd: bool = True,
                           for_balloon: bool = False) -> int:
    """Reclaim up to nr_to_reclaim clean, unmapped page-cache pages, from DEF_PRIORITY toward 0,
    never going below vm.min_unmapped_ratio. Mapped and dirty pages stay where they are."""
    sc = vmscan.ScanControl(nr_to_reclaim=nr_to_reclaim, current_is_kswapd=kswapd, may_writepage=False,
                            may_unmap=False, may_swap=False, policy=counter, for_balloon=for_balloon)
    if k.tracepoints is not None:
        vmscan.trace_pass_begin(k, sc)
    floor = min_unmapped_pages(k)
    scan_counter = "pgscan_kswapd" if kswapd else "pgscan_direct"
    scanned_before = k.vmstat[scan_counter]
    for priority in range(vmscan.DEF_PRIORITY, -1, -1):
        room = unmapped_pages(k) - floor
        if sc.nr_reclaimed >= nr_to_reclaim or room <= 0:
            break
        sc.priority = priority
        nr = k.lru.nr
        if nr[LRU_ACTIVE_FILE] > nr[LRU_INACTIVE_FILE]:
            vmscan.shrink_active_list(k, max(SWAP_CLUSTER_MAX, nr[LRU_ACTIVE_FILE] >> priority), sc, LRU_ACTIVE_FILE)
        scan = min(max(SWAP_CLUSTER_MAX, k.lru.nr[LRU_INACTIVE_FILE] >> priority),
                   nr_to_reclaim - sc.nr_reclaimed, room)
        sc.nr_reclaimed += vmscan.shrink_inactive_list(k, scan, sc, LRU_INACTIVE_FILE)
    k.vmstat[f"pgscan_{counter}"] += k.vmstat[scan_counter] - scanned_before
    k.vmstat[f"pgsteal_{counter}"] += sc.nr_reclaimed
    if k.tracepoints is not None:
        vmscan.trace_pass_end(k, sc)
    return sc.nr_reclaimed


# --- cache-first balloon pages ---

@register
class CacheFirst(ReclaimPolicy):
    """Patch 2/2 (__GFP_FREE_CACHE): the balloon driver asks for it per request (virtio_balloon.cache_first,
    or the host's hint for a target); the allocator then calls balloon_pages before taking free memory."""
    name = "cache_first"

    def balloon_pages(self, k, nr_pages: int) -> int:
        """Reclaim unmapped page cache before the balloon takes free memory."""
        k.vmstat["balloon_cache_first_calls"] += 1
        return reclaim_unmapped_pages(k, nr_pages, self.trace_name, kswapd=False, for_balloon=True)


# --- duplication-aware reclaim ---

@register
class PagecacheDedup(ReclaimPolicy):
    """Ours: drop the guest's copies of pages the host also caches before anything else."""
    name = "dedup"
    sysctl = ("pagecache_dedup", 1)

    def kswapd_pass(self, k):
        """Woken kswapd first drops duplicates toward the high watermark."""
        zone = k.page_alloc.zone
        if zone.nr_free_pages < zone.watermark[2]:
            shrink_duplicates(k, zone.watermark[2] - zone.nr_free_pages)
            yield

    def direct_reclaim_pass(self, k, nr_to_reclaim: int) -> int:
        return shrink_duplicates(k, nr_to_reclaim)


def refresh_host_cached(k) -> None:
    """Ask each disk which of its pages the host caches (at most every 100 ms of guest time)."""
    now = k.hw.clock.now_ns()
    if now - k.host_cached_at < HOST_CACHE_QUERY_INTERVAL_NS and k.host_cached_at >= 0:
        return
    k.host_cached_at = now
    k.host_cached = {}
    for blk in k.block_devices.values():
        bitmap = blk.query_host_cache()
        if bitmap is not None:
            k.host_cached[id(blk)] = bitmap
    k.vmstat["host_cache_queries"] += 1


def host_caches(k, mapping, pfn: int) -> bool:
    bitmap = k.host_cached.get(id(mapping.blk))
    sector = k.mem_map.disk_sector(pfn)
    if bitmap is None or sector is None:
        return False
    page = sector >> 3
    return page >> 3 < len(bitmap) and bitmap[page >> 3] >> (page & 7) & 1 == 1


DEDUP_SCAN_MIN = 4096                           # pages looked at per call, at least


def shrink_duplicates(k, nr_to_reclaim: int) -> int:
    """Free clean, unmapped inactive page-cache pages the host also caches, oldest first; pages
    only the guest holds go back to the head of the list. A scan that finds none stops the
    search until the view of the host cache is refreshed. Which pages may go at all is reclaim's
    one rule (Reclaim.page_check_clean, cython_ext/reclaim.py); the others stay where they are."""
    refresh_host_cached(k)
    if not k.host_cached or k.host_cached_exhausted_at == k.host_cached_at:
        return 0
    mem_map, lru = k.mem_map, k.lru
    freed = scanned = 0
    limit = max(4 * nr_to_reclaim, DEDUP_SCAN_MIN)
    tracing = k.tracepoints is not None
    sc = vmscan.ScanControl(nr_to_reclaim=nr_to_reclaim, policy=PagecacheDedup.trace_name, may_writepage=False,
                            may_unmap=False, may_swap=False,
                            current_is_kswapd=tracing and k.scheduler.current is k.kswapd_task)
    if tracing:
        vmscan.trace_pass_begin(k, sc)
    hot = vmscan._hot(k, sc)
    reasons = k.mem_map.hotpath.REASONS
    for pfn in list(lru.from_tail(LRU_INACTIVE_FILE)):
        if freed >= nr_to_reclaim or scanned >= limit:
            break
        scanned += 1
        # as page_check_references(): an unmapped clean page goes even if it was referenced
        why = hot.page_check_clean(pfn)
        if why:
            if tracing:
                _trace_dedup(k, sc, pfn, mem_map.flags(pfn), "skipped", DEDUP_REASONS.get(reasons[why], reasons[why]))
            continue
        mapping = k.address_spaces[mem_map.mapping(pfn)]
        if not host_caches(k, mapping, pfn):
            lru.rotate(pfn)                 # only the guest holds it: a second chance, at the head
            if tracing:
                _trace_dedup(k, sc, pfn, mem_map.flags(pfn), "rotated", "guest-only")
            continue
        flags = mem_map.flags(pfn) if tracing else 0
        mapping.remove_from_page_cache(mem_map.index(pfn))
        freed += 1
        if tracing:
            _trace_dedup(k, sc, pfn, flags, "reclaimed", "host-cached")
    k.vmstat["pgscan_dedup"] += scanned
    k.vmstat["pgsteal_dedup"] += freed
    k.charge_reclaim(scanned, freed, scanned - freed)
    if tracing:
        sc.nr_scanned, sc.nr_reclaimed = scanned, freed
        vmscan.trace_pass_end(k, sc)
    if not freed and scanned < limit:           # the whole list, and not one duplicate in it
        k.host_cached_exhausted_at = k.host_cached_at
    return freed


# the dedup trace's words for the rule's reasons (docs/trace.md)
DEDUP_REASONS = {"still-mapped": "mapped", "dirty-deferred": "dirty"}


def _trace_dedup(k, sc, pfn: int, flags: int, decision: str, reason: str) -> None:
    vmscan.trace(k, pfn, "file", False, bool(flags & (1 << PG_referenced)), decision, reason, sc, flags)
