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
  file pages and anonymous pages, as the series' scan_control did (vmscan.keep_for_unmapped_first).
- cache-first balloon pages (patch 2/2, __GFP_FREE_CACHE): before the allocator hands pages to
  the balloon it reclaims as many clean unmapped page-cache pages.
- `pagecache_dedup` (ours, the thread's "talk about which pages to keep"): the host tells the
  guest which disk pages it caches (docs/host-cache-query.md); reclaim then drops the guest's
  copies of those first, keeping pages only the guest holds.

vm.min_unmapped_ratio existed only on NUMA kernels in 2.6.35 (zone_reclaim's floor); the series
moved zone->min_unmapped_pages out of CONFIG_NUMA, and v4 its sysctl too. Ballast's guest is one
zone and keeps both knobs in /proc/sys/vm for every policy (docs/unmapped-page-control.md).
"""
from .lru import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE, SWAP_CLUSTER_MAX
from .mm_types import PG_dirty, PG_locked, PG_lru, PG_referenced, PG_writeback
from . import vmscan                # a module cycle: names are looked up at call time

# vm.unmapped_page_control's values, in order
POLICIES = ("none", "v4-2011-01", "shrink_list", "rfc-2010-06")
SERIES = ("v4-2011-01", "rfc-2010-06")          # the versions that add a pass to kswapd
CMDLINE_WORDS = {"": "v4-2011-01", "1": "v4-2011-01", "kswapd": "v4-2011-01", "v4": "v4-2011-01",
                 "rfc": "rfc-2010-06", "shrink_list": "shrink_list"}
UNMAPPED_PAGE_RATIO = 16        # the RFC's trigger: this many times zone->min_unmapped_pages
ZONE_RECLAIM_PRIORITY = 4       # zone_reclaim's first priority: scans 1/16th of each list
HOST_CACHE_QUERY_INTERVAL_NS = 100_000_000     # the guest's view of the host cache is this fresh


def policy_from_cmdline(params) -> str:
    """`unmapped_page_control` alone (=1, =v4, =kswapd) is v4; `=rfc` the June 2010 RFC;
    `=shrink_list` the review's bias. The words are declared, and checked at boot, in kernel/cmdline.py."""
    value = params.value("unmapped_page_control")
    return "none" if value is None else CMDLINE_WORDS[value]


def unmapped_pages(k) -> int:
    """zone_unmapped_file_pages(): (active file + inactive file) - mapped file pages."""
    nr = k.lru.nr
    return max(0, nr[LRU_ACTIVE_FILE] + nr[LRU_INACTIVE_FILE] - k.vmstat["nr_mapped"])


def min_unmapped_pages(k) -> int:
    """zone->min_unmapped_pages: the floor the series shrinks unmapped page cache toward."""
    return k.page_alloc.zone.present_pages * k.sysctl_vm["min_unmapped_ratio"] // 100


def max_unmapped_pages(k) -> int:
    """The trigger that wakes kswapd: the RFC's 16 x the floor, v4's vm.max_unmapped_ratio."""
    if k.unmapped_policy == "rfc-2010-06":
        return UNMAPPED_PAGE_RATIO * min_unmapped_pages(k)
    return k.page_alloc.zone.present_pages * k.sysctl_vm["max_unmapped_ratio"] // 100


def should_balance_unmapped_pages(k) -> bool:
    """should_balance_unmapped_pages() (the RFC) / should_reclaim_unmapped_pages() (v4)."""
    return k.unmapped_policy in SERIES and unmapped_pages(k) > max_unmapped_pages(k)


def unmapped_above_min(k) -> bool:
    return unmapped_pages(k) > min_unmapped_pages(k)


def wakeup_if_unmapped_high(k) -> None:
    """From the allocator's fast path (get_page_from_freelist): too much unmapped page cache
    wakes kswapd even when the watermarks are fine."""
    if should_balance_unmapped_pages(k):
        k.vmstat["unmapped_wakeups"] += 1
        k.wakeup_kswapd(reason="unmapped-high")


def balance_unmapped_pages(k) -> int:
    """balance_unmapped_pages_steps() run to its end in one go; returns the pages freed."""
    steps = balance_unmapped_pages_steps(k)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def balance_unmapped_pages_steps(k):
    """The series' pass, called by balance_pgdat (balance_unmapped_pages() in the RFC,
    reclaim_unmapped_pages() in v4): while unmapped page cache is above the floor, reclaim an
    eighth of the excess through zone_reclaim's loop, with a scan_control that may not unmap,
    write or swap (swappiness 0). A generator yielding after each SWAP_CLUSTER_MAX batch, like
    the rest of kswapd's work; returns the pages freed."""
    if k.unmapped_policy not in SERIES:
        return 0
    excess = unmapped_pages(k) - min_unmapped_pages(k)
    if excess <= 0:
        return 0
    k.vmstat["unmapped_balance_runs"] += 1
    # kswapd's scan_control asks for ULONG_MAX pages: shrink_zone never stops early
    sc = vmscan.ScanControl(nr_to_reclaim=1 << 62, current_is_kswapd=True, may_writepage=False,
                            may_unmap=False, may_swap=False, policy="unmapped")
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
