"""Page reclaim (mm/vmscan.c), first part: the file LRU. Clean, unmapped page-cache pages are
freed from the tail of the inactive list, dirty ones are written back first, the active list
refills the inactive one; direct reclaim in the allocator's slow path and kswapd balancing
to the high watermark. Anonymous memory waits for swap, and mapped pages for reverse mapping."""
from dataclasses import dataclass

from .lru import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE
from .rmap import page_referenced, try_to_unmap
from .mm_types import PG_dirty, PG_locked, PG_referenced

SWAP_CLUSTER_MAX = 32
DEF_PRIORITY = 12


@dataclass
class ScanControl:
    nr_to_reclaim: int
    current_is_kswapd: bool
    may_writepage: bool = True
    priority: int = DEF_PRIORITY
    nr_scanned: int = 0
    nr_reclaimed: int = 0


def _counter(sc: ScanControl, base: str) -> str:
    return f"{base}_kswapd" if sc.current_is_kswapd else f"{base}_direct"


def inactive_file_is_low(k) -> bool:
    nr = k.lru.nr
    return nr[LRU_ACTIVE_FILE] > nr[LRU_INACTIVE_FILE]


def shrink_page_list(k, pfns, sc: ScanControl) -> int:
    """Try to free each isolated page; the survivors go back on a list."""
    mem_map, lru = k.mem_map, k.lru
    reclaimed = 0
    for pfn in pfns:
        mapping = k.address_spaces.get(mem_map.mapping(pfn))
        index = mem_map.index(pfn)
        referenced = mem_map.test(pfn, PG_referenced)
        mem_map.clear(pfn, PG_referenced)
        if mapping is None or mapping.pages.get(index) != pfn or mapping.unevictable_metadata \
                or mem_map.test(pfn, PG_locked):
            if referenced:
                mem_map.set(pfn, PG_referenced)
            lru.rotate(pfn)
            continue
        if mem_map.mapcount(pfn):
            # page_check_references(): a mapped page someone touched stays (or goes active)
            referenced_ptes, _ = page_referenced(k, pfn)
            if referenced_ptes:
                if referenced:
                    lru.activate_page(pfn)
                else:
                    mem_map.set(pfn, PG_referenced)
                    lru.rotate(pfn)
                continue
            if not try_to_unmap(k, pfn):
                lru.rotate(pfn)
                continue
        if mem_map.refcount(pfn) != 1:            # someone holds it (a copy in progress)
            lru.rotate(pfn)
            continue
        if mem_map.test(pfn, PG_dirty):
            if referenced or not sc.may_writepage:   # PAGEREF_RECLAIM_CLEAN: defer dirty ones
                lru.rotate(pfn)
                continue
            mapping.writepages([index])              # pageout(), done synchronously here
        mapping.remove_from_page_cache(index)          # the last reference: the page is freed
        reclaimed += 1
    k.vmstat[_counter(sc, "pgsteal")] += reclaimed
    return reclaimed


def shrink_inactive_list(k, nr_to_scan: int, sc: ScanControl) -> int:
    isolated = []
    for pfn in k.lru.from_tail(LRU_INACTIVE_FILE):
        if len(isolated) >= nr_to_scan:
            break
        isolated.append(pfn)
    sc.nr_scanned += len(isolated)
    k.vmstat[_counter(sc, "pgscan")] += len(isolated)
    return shrink_page_list(k, isolated, sc)


def shrink_active_list(k, nr_to_scan: int, sc: ScanControl) -> None:
    """Move pages from the active tail to the inactive list (they keep PG_referenced cleared)."""
    moved = []
    for pfn in k.lru.from_tail(LRU_ACTIVE_FILE):
        if len(moved) >= nr_to_scan:
            break
        moved.append(pfn)
    k.vmstat["pgrefill"] += len(moved)
    for pfn in moved:
        if k.mem_map.mapcount(pfn):
            referenced_ptes, executable = page_referenced(k, pfn)
            if referenced_ptes and executable:     # running code keeps its pages active
                k.lru.rotate(pfn)
                continue
        k.lru.deactivate_page(pfn)


def shrink_zone(k, sc: ScanControl) -> None:
    nr = k.lru.nr
    scan_inactive = max(nr[LRU_INACTIVE_FILE] >> sc.priority, 1 if sc.priority == 0 else 0)
    scan_active = nr[LRU_ACTIVE_FILE] >> sc.priority
    while scan_inactive or scan_active:
        if scan_active:
            n = min(scan_active, SWAP_CLUSTER_MAX)
            scan_active -= n
            if inactive_file_is_low(k):
                shrink_active_list(k, n, sc)
        if scan_inactive:
            n = min(scan_inactive, SWAP_CLUSTER_MAX)
            scan_inactive -= n
            sc.nr_reclaimed += shrink_inactive_list(k, n, sc)
        if sc.nr_reclaimed >= sc.nr_to_reclaim and sc.priority < DEF_PRIORITY:
            break
    if inactive_file_is_low(k):
        shrink_active_list(k, SWAP_CLUSTER_MAX, sc)


def try_to_free_pages(k, nr_to_reclaim: int = SWAP_CLUSTER_MAX) -> int:
    """Direct reclaim: the allocating task frees memory itself, priority 12 down to 0."""
    k.vmstat["allocstall"] += 1
    sc = ScanControl(nr_to_reclaim=nr_to_reclaim, current_is_kswapd=False)
    for priority in range(DEF_PRIORITY, -1, -1):
        sc.priority = priority
        shrink_zone(k, sc)
        if sc.nr_reclaimed >= nr_to_reclaim:
            break
    return sc.nr_reclaimed


def balance_pgdat(k) -> int:
    """kswapd: reclaim until the zone is back above its high watermark."""
    zone = k.page_alloc.zone
    high = zone.watermark[2]
    sc = ScanControl(nr_to_reclaim=SWAP_CLUSTER_MAX, current_is_kswapd=True)
    for priority in range(DEF_PRIORITY, -1, -1):
        if zone.nr_free_pages >= high:
            break
        sc.priority = priority
        sc.nr_to_reclaim = max(SWAP_CLUSTER_MAX, high - zone.nr_free_pages)
        shrink_zone(k, sc)
    k.vmstat["kswapd_runs"] += 1
    return sc.nr_reclaimed

