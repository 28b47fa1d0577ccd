"""Page-cache control policies: the 2010 "unmapped page cache control" series and its rivals.

Chosen on the command line, tuned in /proc/sys/vm:

- `unmapped_page_control` (the series, v4): when unmapped page cache grows past
  vm.max_unmapped_ratio percent of the zone, kswapd (woken from the allocator) reclaims clean,
  unmapped page-cache pages only, never mapped, dirty or anonymous ones, down toward
  vm.min_unmapped_ratio percent; each pass aims at (unmapped - min) / 8, raising the scan
  priority until it gets there.
- `unmapped_page_control=shrink_list` (Morton's review): no background pass; the same bias sits
  in shrink_page_list, which keeps mapped and anonymous pages while unmapped page cache is above
  vm.min_unmapped_ratio, so ordinary reclaim takes unmapped cache first.
- cache-first balloon pages (patch 2/2, __GFP_FREE_CACHE): before the allocator hands pages to
  the balloon it reclaims as many clean unmapped page-cache pages.
- `pagecache_dedup` (ours, the thread's "talk about which pages to keep"): the host tells the
  guest which disk pages it caches (docs/host-cache-query.md); reclaim then drops the guest's
  copies of those first, keeping pages only the guest holds.
"""
from .lru import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE, SWAP_CLUSTER_MAX
from .mm_types import PG_dirty, PG_locked, PG_lru, PG_referenced, PG_writeback
from . import vmscan                # a module cycle: names are looked up at call time

POLICIES = ("none", "kswapd", "shrink_list")
HOST_CACHE_QUERY_INTERVAL_NS = 100_000_000     # the guest's view of the host cache is this fresh


def policy_from_cmdline(params) -> str:
    """`unmapped_page_control` alone (or =1, =kswapd) is the series' kswapd pass; `=shrink_list` the
    review's bias. The words it takes are declared, and checked at boot, in kernel/cmdline.py."""
    value = params.value("unmapped_page_control")
    if value is None:
        return "none"
    return "shrink_list" if value == "shrink_list" else "kswapd"


def unmapped_pages(k) -> int:
    """Unmapped page cache: (active file + inactive file) - mapped file pages."""
    nr = k.lru.nr
    return max(0, nr[LRU_ACTIVE_FILE] + nr[LRU_INACTIVE_FILE] - k.vmstat["nr_mapped"])


def min_unmapped_pages(k) -> int:
    return k.page_alloc.zone.present_pages * k.sysctl_vm["min_unmapped_ratio"] // 100


def max_unmapped_pages(k) -> int:
    return k.page_alloc.zone.present_pages * k.sysctl_vm["max_unmapped_ratio"] // 100


def should_balance_unmapped_pages(k) -> bool:
    return k.unmapped_policy == "kswapd" and unmapped_pages(k) > max_unmapped_pages(k)


def unmapped_above_min(k) -> bool:
    return unmapped_pages(k) > min_unmapped_pages(k)


def wakeup_if_unmapped_high(k) -> None:
    """From the allocator's fast path: too much unmapped page cache wakes kswapd."""
    if should_balance_unmapped_pages(k):
        k.vmstat["unmapped_wakeups"] += 1
        k.unmapped_wanted = True
        k.wakeup_kswapd(reason="unmapped-high")


def reclaim_unmapped_pages(k, nr_to_reclaim: int, counter: str, kswapd: bool = True) -> int:
    """Reclaim up to nr_to_reclaim clean, unmapped page-cache pages, from DEF_PRIORITY toward 0,
    never going below vm.min_unmapped_ratio. Mapped and dirty pages stay where they are."""
    sc = vmscan.ScanControl(nr_to_reclaim=nr_to_reclaim, current_is_kswapd=kswapd, may_writepage=False,
                            may_unmap=False, may_swap=False, policy=counter)
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


def balance_unmapped_pages(k) -> int:
    """kswapd's pass of the series: one eighth of the excess over the floor per pass."""
    k.unmapped_wanted = False
    if not should_balance_unmapped_pages(k):
        return 0
    k.vmstat["unmapped_balance_runs"] += 1
    target = max(SWAP_CLUSTER_MAX, (unmapped_pages(k) - min_unmapped_pages(k)) // 8)
    return reclaim_unmapped_pages(k, target, "unmapped")


# --- cache-first balloon pages ---

def free_cache_for_balloon(k, nr_pages: int) -> int:
    """__GFP_FREE_CACHE: reclaim unmapped page cache before the balloon takes free memory."""
    k.vmstat["balloon_cache_first_calls"] += 1
    return reclaim_unmapped_pages(k, nr_pages, "cache_first", kswapd=False)


# --- duplication-aware reclaim ---

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
    search until the view of the host cache is refreshed."""
    refresh_host_cached(k)
    if not k.host_cached or k.host_cached_exhausted_at == k.host_cached_at:
        return 0
    mem_map, lru = k.mem_map, k.lru
    freed = scanned = 0
    limit = max(4 * nr_to_reclaim, DEDUP_SCAN_MIN)
    sc = None
    if k.tracepoints is not None:
        sc = vmscan.ScanControl(nr_to_reclaim=nr_to_reclaim, policy="dedup", may_writepage=False, may_unmap=False,
                                may_swap=False, current_is_kswapd=k.scheduler.current is k.kswapd_task)
        vmscan.trace_pass_begin(k, sc)
    for pfn in list(lru.from_tail(LRU_INACTIVE_FILE)):
        if freed >= nr_to_reclaim or scanned >= limit:
            break
        scanned += 1
        flags = mem_map.flags(pfn)
        # as page_check_references(): an unmapped clean page goes even if it was referenced
        why = dedup_skip(k, pfn, flags)
        if why:
            if sc is not None:
                _trace_dedup(k, sc, pfn, flags, "skipped", why)
            continue
        mapping = k.address_spaces[mem_map.mapping(pfn)]
        if not host_caches(k, mapping, pfn):
            lru.rotate(pfn)                 # only the guest holds it: a second chance, at the head
            if sc is not None:
                _trace_dedup(k, sc, pfn, flags, "rotated", "guest-only")
            continue
        mapping.remove_from_page_cache(mem_map.index(pfn))
        freed += 1
        if sc is not None:
            _trace_dedup(k, sc, pfn, flags, "reclaimed", "host-cached")
    k.vmstat["pgscan_dedup"] += scanned
    k.vmstat["pgsteal_dedup"] += freed
    k.charge_reclaim(scanned, freed, scanned - freed)
    if sc is not None:
        sc.nr_scanned, sc.nr_reclaimed = scanned, freed
        vmscan.trace_pass_end(k, sc)
    if not freed and scanned < limit:           # the whole list, and not one duplicate in it
        k.host_cached_exhausted_at = k.host_cached_at
    return freed


def dedup_skip(k, pfn: int, flags: int) -> str:
    """Why the dedup scan must leave this page alone ("" when it may go): the tests of
    shrink_page_list's common case (cython_ext/reclaim.py) and _shrink_file_page."""
    mem_map = k.mem_map
    if flags & (1 << PG_dirty):
        return "dirty"
    if flags & (1 << PG_locked):
        return "locked"
    if flags & (1 << PG_writeback):
        return "writeback"
    if not flags & (1 << PG_lru):
        return "held"
    if mem_map.mapcount(pfn):
        return "mapped"
    if mem_map.refcount(pfn) != 1:
        return "held"
    mapping = k.address_spaces.get(mem_map.mapping(pfn))
    if mapping is None or mapping.unevictable_metadata or mapping.pages.get(mem_map.index(pfn)) != pfn:
        return "metadata"
    return ""


def _trace_dedup(k, sc, pfn: int, flags: int, decision: str, reason: str) -> None:
    vmscan.trace(k, pfn, "file", False, bool(flags & (1 << PG_referenced)), decision, reason, sc, flags)
