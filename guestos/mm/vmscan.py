"""Page reclaim (mm/vmscan.c), first part: the file LRU. Clean, unmapped page-cache pages are
freed from the tail of the inactive list, dirty ones are written back first, the active list
refills the inactive one; direct reclaim in the allocator's slow path and kswapd balancing
to the high watermark. Anonymous memory waits for swap, and mapped pages for reverse mapping."""
from dataclasses import dataclass

from .lru import LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE
from .mm_types import PG_dirty, PG_locked, PG_lru, PG_referenced, PG_swapbacked, PG_swapcache
from .rmap import page_referenced, rmap_walk, try_to_unmap
from .swapfile import swp_pte

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
    swap.swap_writepage(pfn, slot)
    swap.delete_from_swap_cache(slot)                         # the last reference: freed
    return ""


def trace(k, pfn: int, kind: str, mapped: bool, referenced: bool, decision: str, reason: str, sc) -> None:
    """One reclaim decision into the ring buffer (reclaim_trace=N on the command line)."""
    k.reclaim_trace.append((k.hw.clock.now_ns(), pfn, kind, mapped, referenced, k.mem_map.flags(pfn),
                            decision, reason, "kswapd" if sc.current_is_kswapd else "direct"))


def shrink_page_list(k, pfns, sc: ScanControl) -> int:
    """Try to free each isolated page; the survivors go back on a list."""
    mem_map, lru = k.mem_map, k.lru
    tracing = k.reclaim_trace is not None
    reclaimed = 0
    for pfn in pfns:
        if mem_map.test(pfn, PG_swapbacked):
            mapped = mem_map.mapcount(pfn) > 0
            why = shrink_anon_page(k, pfn, sc) if k.swap is not None else "no-swap"
            if not why:
                reclaimed += 1
                decision = "swapped-out"
            elif mem_map.test(pfn, PG_lru):                    # still on a list: back to active
                lru.activate_page(pfn)
                decision = "activated"
            else:
                decision = "kept"
            if tracing:
                trace(k, pfn, "anon", mapped, why == "referenced", decision, why or "cold", sc)
            continue
        decision, reason, referenced, mapped = _shrink_file_page(k, pfn, sc)
        if decision == "reclaimed":
            reclaimed += 1
        if tracing:
            trace(k, pfn, "file", mapped, referenced, decision, reason, sc)
    k.vmstat[_counter(sc, "pgsteal")] += reclaimed
    return reclaimed


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
        mapping.writepages([index])                  # pageout(), done synchronously here
        reason = "written-back"
    mapping.remove_from_page_cache(index)            # the last reference: the page is freed
    return "reclaimed", reason, referenced, mapped


def shrink_inactive_list(k, nr_to_scan: int, sc: ScanControl, lru_list: int = LRU_INACTIVE_FILE) -> int:
    isolated = []
    for pfn in k.lru.from_tail(lru_list):
        if len(isolated) >= nr_to_scan:
            break
        isolated.append(pfn)
    sc.nr_scanned += len(isolated)
    k.vmstat[_counter(sc, "pgscan")] += len(isolated)
    return shrink_page_list(k, isolated, sc)


def shrink_active_list(k, nr_to_scan: int, sc: ScanControl, lru_list: int = LRU_ACTIVE_FILE) -> None:
    """Move pages from the active tail to the inactive list (they keep PG_referenced cleared)."""
    moved = []
    for pfn in k.lru.from_tail(lru_list):
        if len(moved) >= nr_to_scan:
            break
        moved.append(pfn)
    k.vmstat["pgrefill"] += len(moved)
    tracing = k.reclaim_trace is not None
    for pfn in moved:
        anon = k.mem_map.test(pfn, PG_swapbacked)
        mapped = k.mem_map.mapcount(pfn) > 0
        referenced_ptes = 0
        if mapped:
            referenced_ptes, executable = page_referenced(k, pfn)
            if referenced_ptes and executable and not anon:
                # running code keeps its file pages active
                k.lru.rotate(pfn)
                if tracing:
                    trace(k, pfn, "file", True, True, "kept-active", "executable", sc)
                continue
        k.lru.deactivate_page(pfn)
        if tracing:
            trace(k, pfn, "anon" if anon else "file", mapped, bool(referenced_ptes), "deactivated",
                  "inactive-low", sc)


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
    scan = get_scan_count(k, sc)
    low = {LRU_ACTIVE_FILE: inactive_file_is_low, LRU_ACTIVE_ANON: inactive_anon_is_low}
    while any(scan.values()):
        for lru in (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE):
            if not scan[lru]:
                continue
            n = min(scan[lru], SWAP_CLUSTER_MAX)
            scan[lru] -= n
            if lru in low:
                if low[lru](k):
                    shrink_active_list(k, n, sc, lru)
            else:
                sc.nr_reclaimed += shrink_inactive_list(k, n, sc, lru)
        if sc.nr_reclaimed >= sc.nr_to_reclaim and sc.priority < DEF_PRIORITY:
            break
    if inactive_file_is_low(k):
        shrink_active_list(k, SWAP_CLUSTER_MAX, sc, LRU_ACTIVE_FILE)
    if k.swap is not None and inactive_anon_is_low(k):
        shrink_active_list(k, SWAP_CLUSTER_MAX, sc, LRU_ACTIVE_ANON)


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

