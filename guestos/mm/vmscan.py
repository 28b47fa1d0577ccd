"""Page reclaim (mm/vmscan.c), first part: the file LRU. Clean, unmapped page-cache pages are
freed from the tail of the inactive list, dirty ones are written back first, the active list
refills the inactive one; direct reclaim in the allocator's slow path and kswapd balancing
to the high watermark. Anonymous memory waits for swap, and mapped pages for reverse mapping."""
from array import array
from dataclasses import dataclass
from typing import Callable

from .lru import LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE, SWAP_CLUSTER_MAX
from .mm_types import PG_dirty, PG_locked, PG_lru, PG_referenced, PG_swapbacked, PG_swapcache
from .rmap import page_referenced, rmap_walk, try_to_unmap
from .swapfile import swp_pte
from . import pagecache_control

DEF_PRIORITY = 12
SHRINK_BATCH = 128
DEFAULT_SEEKS = 2


@dataclass
class ScanControl:
    nr_to_reclaim: int
    current_is_kswapd: bool
    may_writepage: bool = True
    may_unmap: bool = True            # False: mapped pages stay (unmapped page-cache control)
    may_swap: bool = True             # False: anonymous pages stay
    priority: int = DEF_PRIORITY
    nr_scanned: int = 0
    nr_reclaimed: int = 0
    policy: str = "none"              # who reclaims, for the trace: none, shrink_list, unmapped, cache_first
    pass_nr: int = 0                  # the reclaim pass in the trace (0: not traced)

    @property
    def by(self) -> str:
        """Whose context the pass runs in, for the trace."""
        return "kswapd" if self.current_is_kswapd else "balloon" if self.policy == "cache_first" else "direct"


@dataclass
class Shrinker:
    """struct shrinker, with today's two callbacks: count_objects() says how many objects could be
    freed, scan_objects(n) frees up to n of them and returns how many it freed."""
    count_objects: Callable[[], int]
    scan_objects: Callable[[int], int]
    seeks: int = DEFAULT_SEEKS
    nr: int = 0                       # scan work deferred to the next call


def shrink_slab(k, scanned: int) -> int:
    """2.6.35's shrink_slab(): every shrinker scans in proportion to the LRU pages reclaim just
    scanned, in batches of SHRINK_BATCH, carrying the remainder; returns the objects freed."""
    if not k.shrinkers:
        return 0
    lru_pages = zone_reclaimable_pages(k)
    freed = 0
    for shrinker in k.shrinkers:
        max_pass = shrinker.count_objects()
        total_scan = shrinker.nr + (4 * scanned) // shrinker.seeks * max_pass // (lru_pages + 1)
        total_scan = min(total_scan, max_pass * 2)        # never more than twice what there is
        while total_scan >= SHRINK_BATCH:
            freed += shrinker.scan_objects(SHRINK_BATCH)
            k.vmstat["slabs_scanned"] += SHRINK_BATCH
            total_scan -= SHRINK_BATCH
        shrinker.nr = total_scan
    return freed


def zone_reclaimable_pages(k) -> int:
    """The file LRU pages, and the anonymous ones when there is swap to put them in."""
    nr = k.lru.nr
    pages = nr[LRU_INACTIVE_FILE] + nr[LRU_ACTIVE_FILE]
    if k.swap is not None and k.swap.nr_free > 0:
        pages += nr[LRU_INACTIVE_ANON] + nr[LRU_ACTIVE_ANON]
    return pages


def inactive_file_is_low(k) -> bool:
    nr = k.lru.nr
    return nr[LRU_ACTIVE_FILE] > nr[LRU_INACTIVE_FILE]


def inactive_anon_is_low(k) -> bool:
    """inactive_ratio is 1 below 1 GiB of memory: keep as many inactive anon pages as active."""
    nr = k.lru.nr
    return nr[LRU_ACTIVE_ANON] > nr[LRU_INACTIVE_ANON]


def shrink_anon_page(k, pfn: int, sc: ScanControl) -> str:
    """An inactive anonymous page: into the swap cache, unmapped everywhere, written, freed.
    Returns "" when freed, else why it must stay (it is then activated)."""
    mem_map, swap = k.mem_map, k.swap
    if mem_map.mapcount(pfn):
        referenced_ptes, _ = page_referenced(k, pfn)
        if referenced_ptes:
            return "referenced"
    in_cache = mem_map.test(pfn, PG_swapcache)
    if mem_map.refcount(pfn) != mem_map.mapcount(pfn) + (1 if in_cache else 0):
        return "held"                                         # a copy in progress
    if not in_cache:
        slot = swap.get_swap_page()
        if slot is None:
            return "swap-full"
        swap.add_to_swap_cache(pfn, slot)
    slot = mem_map.private(pfn)
    q = k.mm.q
    for mm, vaddr, pte_slot in rmap_walk(k, pfn):             # try_to_unmap_anon()
        pte = q[pte_slot]
        q[pte_slot] = swp_pte(slot)
        swap.swap_duplicate(slot)
        k.mm.page_remove_rmap(mm, pfn, pte)
    k.flush_tlb()
    if mem_map.mapcount(pfn):
        return "still-mapped"
    if k.tracepoints is not None:
        k.tracepoints.emit("mm_vmscan_writepage", pfn=pfn, reclaim_flags="RECLAIM_WB_ANON|RECLAIM_WB_SYNC")
    swap.swap_writepage(pfn, slot)
    swap.delete_from_swap_cache(slot)                         # the last reference: freed
    return ""


LRU_NAMES = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")


def trace(k, pfn: int, kind: str, mapped: bool, referenced: bool, decision: str, reason: str, sc,
          flags: int) -> None:
    """One reclaim decision (mm_vmscan_page_decision); flags as the page had them when scanned."""
    k.tracepoints.emit("mm_vmscan_page_decision", pfn=pfn, lru=kind, mapped=mapped, referenced=referenced,
                       flags=flags, decision=decision, reason=reason, by=sc.by, policy=sc.policy,
                       priority=sc.priority, pass_nr=sc.pass_nr)


def trace_pass_begin(k, sc: ScanControl) -> None:
    """A reclaim pass begins (mm_vmscan_reclaim_pass_begin): number it for the events inside."""
    sc.pass_nr = k.tracepoints.next_pass()
    k.tracepoints.emit("mm_vmscan_reclaim_pass_begin", pass_nr=sc.pass_nr, policy=sc.policy, by=sc.by,
                       nr_to_reclaim=sc.nr_to_reclaim, nr_free_pages=k.page_alloc.zone.nr_free_pages)


def trace_pass_end(k, sc: ScanControl) -> None:
    k.tracepoints.emit("mm_vmscan_reclaim_pass_end", pass_nr=sc.pass_nr, policy=sc.policy, by=sc.by,
                       nr_scanned=sc.nr_scanned, nr_reclaimed=sc.nr_reclaimed,
                       nr_free_pages=k.page_alloc.zone.nr_free_pages)


class ReclaimTrace:
    """What the hot path (cython_ext/reclaim.py) reports while tracing: the events of the pages and
    scans it handles itself, the same as the Python path emits for the others."""
    __slots__ = ("k", "sc")

    def __init__(self, k, sc: ScanControl):
        self.k, self.sc = k, sc

    def delete_from_page_cache(self, pfn: int, mapping: int, index: int) -> None:
        """A clean unmapped page-cache page it is about to free leaves the page cache (the page still whole)."""
        self.k.tracepoints.emit("mm_filemap_delete_from_page_cache", pfn=pfn, mapping=mapping, index=index)

    def freed(self, pfn: int, flags: int, mapping: int, index: int) -> None:
        """The decision about that page, once freed."""
        trace(self.k, pfn, "file", False, bool(flags & (1 << PG_referenced)), "reclaimed", "clean", self.sc, flags)

    def deactivated(self, pfn: int, flags: int) -> None:
        trace(self.k, pfn, "anon" if flags & (1 << PG_swapbacked) else "file", False, False, "deactivated",
              "inactive-low", self.sc, flags)

    def isolate(self, lru: int, nr_requested: int, nr_taken: int) -> None:
        sc = self.sc
        self.k.tracepoints.emit("mm_vmscan_lru_isolate", order=0, nr_requested=nr_requested, nr_scanned=nr_taken,
                                nr_taken=nr_taken, isolate_mode=lru & 1, file=lru >> 1, lru=LRU_NAMES[lru],
                                policy=sc.policy, priority=sc.priority, pass_nr=sc.pass_nr)

    def shrink_inactive(self, lru: int, nr_scanned: int, nr_reclaimed: int) -> None:
        sc = self.sc
        self.k.tracepoints.emit("mm_vmscan_lru_shrink_inactive", nid=0, nr_scanned=nr_scanned,
                                nr_reclaimed=nr_reclaimed, file=lru >> 1, lru=LRU_NAMES[lru], policy=sc.policy,
                                priority=sc.priority, pass_nr=sc.pass_nr)

    def shrink_active(self, lru: int, nr_taken: int, nr_deactivated: int) -> None:
        sc = self.sc
        self.k.tracepoints.emit("mm_vmscan_lru_shrink_active", nid=0, nr_taken=nr_taken,
                                nr_active=nr_taken - nr_deactivated, nr_deactivated=nr_deactivated,
                                nr_referenced=nr_taken - nr_deactivated, file=lru >> 1, lru=LRU_NAMES[lru],
                                policy=sc.policy, priority=sc.priority, pass_nr=sc.pass_nr)


def _hot(k, sc: ScanControl):
    """The hot path of this scan (cython_ext/reclaim.py): it isolates pages, frees the clean
    unmapped page-cache pages and deactivates unmapped active pages itself, and hands every
    other page to shrink_page() or shrink_active_page() below."""
    return k.mem_map.hotpath.Reclaim(k.lru.core, k.page_alloc.zone.core, k.address_spaces, k.vmstat,
                                     k.page_alloc.account_freed, k, sc, shrink_page, shrink_active_page,
                                     ReclaimTrace(k, sc) if k.tracepoints is not None else None)


def shrink_page(k, pfn: int, sc: ScanControl) -> bool:
    """One isolated page that is not the common case; True when it was freed. (The common case,
    a clean, unlocked, unmapped page-cache page that only the page cache holds, is freed in
    Reclaim.shrink_page_list without coming here: a new rule for such pages belongs there too.)"""
    mem_map, lru = k.mem_map, k.lru
    tracing = k.tracepoints is not None
    flags = mem_map.flags(pfn) if tracing else 0
    if mem_map.test(pfn, PG_swapbacked):
        mapped = mem_map.mapcount(pfn) > 0
        if k.swap is None:
            why = "no-swap"
        elif not sc.may_swap or keep_for_unmapped_first(k, sc):
            why = "unmapped-first"
        else:
            why = shrink_anon_page(k, pfn, sc)
        if not why:
            decision = "swapped-out"
        elif mem_map.test(pfn, PG_lru):                    # still on a list: back to active
            lru.activate_page(pfn)
            decision = "activated"
        else:
            decision = "kept"
        if tracing:
            trace(k, pfn, "anon", mapped, why == "referenced", decision, why or "cold", sc, flags)
        return not why
    decision, reason, referenced, mapped = _shrink_file_page(k, pfn, sc)
    if tracing:
        trace(k, pfn, "file", mapped, referenced, decision, reason, sc, flags)
    return decision == "reclaimed"


def _shrink_file_page(k, pfn: int, sc: ScanControl):
    """-> (decision, reason, referenced, mapped) for one inactive page-cache page."""
    mem_map, lru = k.mem_map, k.lru
    mapping = k.address_spaces.get(mem_map.mapping(pfn))
    index = mem_map.index(pfn)
    referenced = mem_map.test(pfn, PG_referenced)
    mapped = mem_map.mapcount(pfn) > 0
    mem_map.clear(pfn, PG_referenced)
    if mapping is None or mapping.pages.get(index) != pfn or mapping.unevictable_metadata \
            or mem_map.test(pfn, PG_locked):
        if referenced:
            mem_map.set(pfn, PG_referenced)
        lru.rotate(pfn)
        return "rotated", "locked" if mem_map.test(pfn, PG_locked) else "metadata", referenced, mapped
    if mapped and (not sc.may_unmap or keep_for_unmapped_first(k, sc)):
        if referenced:
            mem_map.set(pfn, PG_referenced)
        lru.rotate(pfn)
        return "rotated", "unmapped-first", referenced, True
    if mapped:
        # page_check_references(): a mapped page someone touched stays (or goes active)
        referenced_ptes, _ = page_referenced(k, pfn)
        if referenced_ptes:
            if referenced:
                lru.activate_page(pfn)
                return "activated", "referenced-twice", True, True
            mem_map.set(pfn, PG_referenced)
            lru.rotate(pfn)
            return "rotated", "pte-referenced", True, True
        if not try_to_unmap(k, pfn):
            lru.rotate(pfn)
            return "rotated", "still-mapped", referenced, True
    if mem_map.refcount(pfn) != 1:                # someone holds it (a copy in progress)
        lru.rotate(pfn)
        return "rotated", "held", referenced, mapped
    reason = "clean"
    if mem_map.test(pfn, PG_dirty):
        if referenced or not sc.may_writepage:       # PAGEREF_RECLAIM_CLEAN: defer dirty ones
            lru.rotate(pfn)
            return "rotated", "dirty-deferred", referenced, mapped
        if k.tracepoints is not None:
            k.tracepoints.emit("mm_vmscan_writepage", pfn=pfn, reclaim_flags="RECLAIM_WB_FILE|RECLAIM_WB_SYNC")
        mapping.writepages([index])                  # pageout(), done synchronously here
        reason = "written-back"
    mapping.remove_from_page_cache(index)            # the last reference: the page is freed
    return "reclaimed", reason, referenced, mapped


def shrink_inactive_list(k, nr_to_scan: int, sc: ScanControl, lru_list: int = LRU_INACTIVE_FILE) -> int:
    """Isolate up to nr_to_scan pages from the tail, count them scanned, shrink_page_list() them
    (each through shrink_page() unless it is the common case); returns how many were freed."""
    return _hot(k, sc).shrink_inactive_list(nr_to_scan, lru_list)


def shrink_active_list(k, nr_to_scan: int, sc: ScanControl, lru_list: int = LRU_ACTIVE_FILE) -> None:
    """Move pages from the active tail to the inactive list (they keep PG_referenced cleared);
    mapped ones go through shrink_active_page()."""
    _hot(k, sc).shrink_active_list(nr_to_scan, lru_list)


def shrink_active_page(k, pfn: int, sc: ScanControl) -> None:
    """A mapped active page: running code keeps its file pages active, the rest go inactive."""
    anon = k.mem_map.test(pfn, PG_swapbacked)
    flags = k.mem_map.flags(pfn)
    referenced_ptes, executable = page_referenced(k, pfn)
    if referenced_ptes and executable and not anon:
        k.lru.rotate(pfn)
        if k.tracepoints is not None:
            trace(k, pfn, "file", True, True, "kept-active", "executable", sc, flags)
        return
    k.lru.deactivate_page(pfn)
    if k.tracepoints is not None:
        trace(k, pfn, "anon" if anon else "file", True, bool(referenced_ptes), "deactivated", "inactive-low", sc,
              flags)


def get_scan_count(k, sc: ScanControl) -> dict:
    """How many pages of each list to scan at this priority: file and anon by vm.swappiness,
    anon only when there is swap to put it in (a simplified get_scan_count)."""
    nr = k.lru.nr
    scan = {lru: nr[lru] >> sc.priority for lru in (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON,
                                                   LRU_INACTIVE_FILE, LRU_ACTIVE_FILE)}
    if k.swap is None or k.swap.nr_free == 0:
        scan[LRU_INACTIVE_ANON] = scan[LRU_ACTIVE_ANON] = 0
    else:
        anon_prio = k.sysctl_vm["swappiness"]
        file_prio = 200 - anon_prio
        for lru in (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON):
            scan[lru] = scan[lru] * 2 * anon_prio // (anon_prio + file_prio)
        for lru in (LRU_INACTIVE_FILE, LRU_ACTIVE_FILE):
            scan[lru] = scan[lru] * 2 * file_prio // (anon_prio + file_prio)
    if sc.priority == 0:
        for lru in scan:
            scan[lru] = max(scan[lru], min(nr[lru], SWAP_CLUSTER_MAX))
        if k.swap is None or k.swap.nr_free == 0:
            scan[LRU_INACTIVE_ANON] = scan[LRU_ACTIVE_ANON] = 0
    return scan


def shrink_zone(k, sc: ScanControl) -> None:
    """SWAP_CLUSTER_MAX pages of each list in turn until get_scan_count()'s counts are used up
    (the loop runs in the hot path: Reclaim.shrink_lists), then rebalance the active lists."""
    scan = get_scan_count(k, sc)
    hot = _hot(k, sc)
    hot.shrink_lists(array("q", [scan[lru] for lru in (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE,
                                                       LRU_ACTIVE_FILE)]),
                     SWAP_CLUSTER_MAX, sc.priority < DEF_PRIORITY)
    if inactive_file_is_low(k):
        hot.shrink_active_list(SWAP_CLUSTER_MAX, LRU_ACTIVE_FILE)
    if k.swap is not None and inactive_anon_is_low(k):
        hot.shrink_active_list(SWAP_CLUSTER_MAX, LRU_ACTIVE_ANON)


def keep_for_unmapped_first(k, sc: ScanControl) -> bool:
    """The review's variant of unmapped page-cache control lives here, in shrink_page_list."""
    return k.unmapped_policy == "shrink_list" and sc.may_unmap and pagecache_control.unmapped_above_min(k)


def try_to_free_pages(k, nr_to_reclaim: int = SWAP_CLUSTER_MAX) -> int:
    """Direct reclaim: the allocating task frees memory itself, priority 12 down to 0."""
    k.vmstat["allocstall"] += 1
    sc = ScanControl(nr_to_reclaim=nr_to_reclaim, current_is_kswapd=False, policy=plain_policy(k))
    if k.tracepoints is not None:
        trace_pass_begin(k, sc)
        k.tracepoints.emit("mm_vmscan_direct_reclaim_begin", order=0, may_writepage=sc.may_writepage,
                           nr_to_reclaim=nr_to_reclaim, pass_nr=sc.pass_nr)
    for priority in range(DEF_PRIORITY, -1, -1):
        sc.priority = priority
        scanned = sc.nr_scanned
        shrink_zone(k, sc)
        shrink_slab(k, sc.nr_scanned - scanned)
        if sc.nr_reclaimed >= nr_to_reclaim:
            break
    if k.tracepoints is not None:
        k.tracepoints.emit("mm_vmscan_direct_reclaim_end", nr_reclaimed=sc.nr_reclaimed, pass_nr=sc.pass_nr)
        trace_pass_end(k, sc)
    return sc.nr_reclaimed


def plain_policy(k) -> str:
    """Ordinary reclaim's policy in the trace: the review's bias when it is on, else none."""
    return "shrink_list" if k.unmapped_policy == "shrink_list" else "none"


def balance_pgdat(k) -> int:
    """kswapd: reclaim until the zone is back above its high watermark."""
    zone = k.page_alloc.zone
    high = zone.watermark[2]
    sc = ScanControl(nr_to_reclaim=SWAP_CLUSTER_MAX, current_is_kswapd=True, policy=plain_policy(k))
    if k.tracepoints is not None:
        trace_pass_begin(k, sc)
    for priority in range(DEF_PRIORITY, -1, -1):
        if zone.nr_free_pages >= high:
            break
        sc.priority = priority
        sc.nr_to_reclaim = max(SWAP_CLUSTER_MAX, high - zone.nr_free_pages)
        scanned = sc.nr_scanned
        shrink_zone(k, sc)
        shrink_slab(k, sc.nr_scanned - scanned)
    if k.tracepoints is not None:
        trace_pass_end(k, sc)
    k.vmstat["kswapd_runs"] += 1
    return sc.nr_reclaimed

