"""Page reclaim (mm/vmscan.c) as 2.6.35: get_scan_count() balances anon and file by swappiness and
recent rotations, shrink_zone() scans the lists, direct reclaim in the allocator's slow path and kswapd
balancing to the high watermark. What becomes of each page scanned is decided in one place,
cython_ext/reclaim.py (Reclaim.shrink_page_list, shrink_active_list), compiled or not, which calls
shrink_page_list() here for every batch it isolated; this module supplies the services those decisions use
(ReclaimOps: reverse map, swap, pageout) and the loops. Policies plug in through the kernel's selected
ones (k.policies: guestos/mm/reclaim_policy.py), never by name here."""
import math
from array import array
from typing import Callable

from ..record import Record
from .lru import LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE, SWAP_CLUSTER_MAX
from ..kernel.errno import SyscallError
from .mm_types import PG_dirty, PG_reclaim, PG_swapcache, PG_writeback
from .rmap import _PAGE_DIRTY, rmap_walk, try_to_unmap
from .swapfile import swp_pte

DEF_PRIORITY = 12
HZ_NS = 1_000_000_000                   # a second: congestion_wait's HZ/10 and HZ/50 are 100 and 20 ms
SHRINK_BATCH = 128
DEFAULT_SEEKS = 2


class ScanControl(Record):
    """Linux's struct scan_control: what one reclaim pass may do and what it did. (A plain class, as
    Shrinker: a dataclass would compile its methods at every start.)"""

    def __init__(self, nr_to_reclaim: int, current_is_kswapd: bool, may_writepage: bool = True,
                 may_unmap: bool = True, may_swap: bool = True, priority: int = DEF_PRIORITY,
                 nr_scanned: int = 0, nr_reclaimed: int = 0, policy: str = "none", pass_nr: int = 0,
                 for_balloon: bool = False):
        self.nr_to_reclaim = nr_to_reclaim
        self.current_is_kswapd = current_is_kswapd
        self.may_writepage = may_writepage
        self.may_unmap = may_unmap          # False: mapped pages stay (unmapped page-cache control)
        self.may_swap = may_swap            # False: anonymous pages stay
        self.priority = priority
        self.nr_scanned = nr_scanned
        self.nr_reclaimed = nr_reclaimed
        self.policy = policy                # who reclaims, for the trace: none or a policy's trace_name
        self.pass_nr = pass_nr              # the reclaim pass in the trace (0: not traced)
        self.for_balloon = for_balloon      # reclaiming for pages the balloon asked for


    @property
    def by(self) -> str:
        """Whose context the pass runs in, for the trace."""
        return "kswapd" if self.current_is_kswapd else "balloon" if self.for_balloon else "direct"


class Shrinker(Record):
    """struct shrinker, with today's two callbacks: count_objects() says how many objects could be
    freed, scan_objects(n) frees up to n of them and returns how many it freed."""

    def __init__(self, count_objects: Callable[[], int], scan_objects: Callable[[int], int],
                 seeks: int = DEFAULT_SEEKS, nr: int = 0):
        self.count_objects = count_objects
        self.scan_objects = scan_objects
        self.seeks = seeks
        self.nr = nr                        # scan work deferred to the next call



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


def inactive_ratio(k) -> int:
    """calculate_zone_inactive_ratio(): 1 below 1 GiB, else int_sqrt(10 x the zone's GiB) (3 at 1 GiB,
    4 at 2 GiB): how many active anon pages per inactive one the zone keeps."""
    gb = (k.page_alloc.zone.present_pages << 12) >> 30
    return math.isqrt(10 * gb) if gb else 1


def inactive_anon_is_low(k) -> bool:
    nr = k.lru.nr
    return nr[LRU_INACTIVE_ANON] * inactive_ratio(k) < nr[LRU_ACTIVE_ANON]


def charge_reclaim(k, isolated: int, freed: int, rotated: int) -> None:
    """The cost of a reclaim batch (guestos/kernel/costs.py): every page isolated and looked at in
    shrink_page_list or shrink_active_list, the freed ones freed, the rest put back on a list.
    The hot path (cython_ext/reclaim.py) calls it once per batch, compiled or not."""
    costs = k.costs
    k.charge(isolated * (costs.reclaim_isolate_ns + costs.reclaim_scan_ns) + freed * costs.reclaim_free_ns
             + rotated * costs.reclaim_rotate_ns)


def shrink_anon_page(k, pfn: int) -> str:
    """An inactive anonymous page reclaim decided to evict: into the swap cache (add_to_swap, which
    makes it dirty), unmapped everywhere into swap entries, then written by pageout() if the slot does
    not hold its contents yet, else freed. Returns "" when freed, "pageout" when its write started (it
    stays on the inactive list until written; a later scan frees it), else why it must stay (it is
    then activated)."""
    mem_map, swap = k.mem_map, k.swap
    in_cache = mem_map.test(pfn, PG_swapcache)
    if mem_map.refcount(pfn) != mem_map.mapcount(pfn) + (1 if in_cache else 0):
        return "held"                                         # a copy in progress
    if not in_cache:
        slot = swap.get_swap_page()
        if slot is None:
            return "swap-full"
        swap.add_to_swap_cache(pfn, slot)
        mem_map.set(pfn, PG_dirty)
    slot = mem_map.private(pfn)
    q = k.mm.q
    ptes = rmap_walk(k, pfn)
    for mm, vaddr, pte_slot in ptes:                          # try_to_unmap_anon()
        pte = q[pte_slot]
        q[pte_slot] = swp_pte(slot)
        swap.swap_duplicate(slot)
        if pte & _PAGE_DIRTY:
            mem_map.set(pfn, PG_dirty)                        # written since the slot was
        k.mm.page_remove_rmap(mm, pfn, pte)
        k.charge(k.costs.reclaim_unmap_ns)
    if ptes:
        k.flush_tlb()
    if mem_map.mapcount(pfn):
        return "still-mapped"
    if mem_map.test(pfn, PG_dirty):
        if k.tracepoints is not None:
            k.tracepoints.emit("mm_vmscan_writepage", pfn=pfn, reclaim_flags="RECLAIM_WB_ANON|RECLAIM_WB_ASYNC")
        k.vmstat["nr_vmscan_write"] += 1
        if swap.swap_writepage_async(pfn, slot, end_page_writeback):
            return "pageout"
    swap.delete_from_swap_cache(slot)                         # the last reference: freed
    return ""


LRU_NAMES = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")


def trace(k, pfn: int, kind: str, mapped: bool, referenced: bool, decision: str, reason: str, sc,
          flags: int) -> None:
    """One reclaim decision (mm_vmscan_page_decision); flags as the page had them when scanned. Made
    by the decisions in cython_ext/reclaim.py (through ReclaimOps) and by the policies."""
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


# --- the services reclaim's decisions use (cython_ext/reclaim.py: Reclaim decides) ---

PAGE_KEEP, PAGE_ACTIVATE, PAGE_SUCCESS, PAGE_CLEAN = range(4)      # pageout()'s results
WRITE_ERROR = -1        # cython_ext.pageout's pageout(): the write failed at once (handle_write_error)


def page_referenced_vm_exec(k, pfn: int) -> tuple:
    """page_referenced(): (PTEs whose accessed bit was set, and now is clear; whether a referencing
    mapping is executable). The walk is cython_ext/rmap.py's."""
    return k.mem_map.native_rmap.page_referenced_vm_exec(k, pfn)


def swap_out(k, pfn: int) -> str:
    """An inactive anonymous page reclaim decided to evict: "" when it went to swap and was freed, else
    why it could not (it is then activated)."""
    if k.swap is None:
        return "no-swap"
    return shrink_anon_page(k, pfn)


def pageout(k, mapping, pfn: int) -> int:
    """pageout(): clear the dirty bit for I/O, set PG_reclaim and start writing the page. The write is
    asynchronous when the disk can complete it later (the page stays under PG_writeback until
    end_page_writeback()); a synchronous one leaves the page clean at once. The steps are
    cython_ext/pageout.py's (native when compiled); a failed write is handled here."""
    try:
        result = k.mem_map.native_pageout.pageout(k, mapping, pfn, end_page_writeback)
    except WRITE_ERRORS:
        result = WRITE_ERROR
    if result == WRITE_ERROR:
        return pageout_failed(k, mapping, pfn)
    return result


WRITE_ERRORS = (SyscallError,)          # what a failed write raises (the block map's ENOSPC, the disk's EIO)


def pageout_failed(k, mapping, pfn: int) -> int:
    """pageout()'s end for a write that failed at once."""
    handle_write_error(k, mapping, pfn)
    return PAGE_KEEP


def handle_write_error(k, mapping, pfn: int) -> None:
    """The write failed: the page stays dirty (and is kept)."""
    k.mem_map.clear(pfn, PG_reclaim)
    mapping.set_page_dirty(k.mem_map.index(pfn))


def end_page_writeback(k, pfn: int) -> None:
    """The write of a page finished: a page reclaim wrote goes to the tail of the inactive list
    (rotate_reclaimable_page), so the next scan frees it; then PG_writeback clears."""
    mem_map = k.mem_map
    if mem_map.test(pfn, PG_reclaim):
        mem_map.clear(pfn, PG_reclaim)
        if k.lru.core.rotate_reclaimable_page(pfn):
            k.vmstat["pgrotated"] += 1
    mem_map.clear(pfn, PG_writeback)
    k.vmstat["nr_writeback"] -= 1
    k.writeback_completions = getattr(k, "writeback_completions", 0) + 1    # clear_bdi_congested's wake-up


class ReclaimOps:
    """What the decisions in cython_ext/reclaim.py (Reclaim) call on the kernel."""
    page_referenced = staticmethod(page_referenced_vm_exec)
    try_to_unmap = staticmethod(try_to_unmap)
    swap_out = staticmethod(swap_out)
    pageout = staticmethod(pageout)
    # the trace (guestos/kernel/tracepoint.py), called only while tracing
    trace = staticmethod(trace)
    lru_names = LRU_NAMES

    @staticmethod
    def trace_delete_from_page_cache(k, pfn: int, mapping: int, index: int) -> None:
        """A page the hot path frees leaves its page cache (emitted while the page is still whole)."""
        k.tracepoints.emit("mm_filemap_delete_from_page_cache", pfn=pfn, mapping=mapping, index=index)

    @classmethod
    def native_rmap(cls, k):
        """The reverse map (cython_ext/rmap.py) that page_referenced and try_to_unmap above are, for the hot
        path to call without their Python fronts; None when either was replaced."""
        if cls.page_referenced is page_referenced_vm_exec and cls.try_to_unmap is try_to_unmap:
            return k.mem_map.native_rmap
        return None

    @classmethod
    def native_pageout(cls, k):
        """The native pageout (cython_ext/pageout.py) that pageout above calls, for the hot path to call
        without its Python front: then it catches write_errors and calls pageout_failed as the front does,
        with end_page_writeback as the completion. None when pageout was replaced."""
        if cls.pageout is pageout:
            return k.mem_map.native_pageout
        return None

    write_errors = WRITE_ERRORS
    pageout_failed = staticmethod(pageout_failed)
    end_page_writeback = staticmethod(end_page_writeback)

    @staticmethod
    def policy_keeps_page(k, sc, pfn: int) -> str | None:
        """A selected policy's bias keeps this mapped or anonymous page (reclaim_policy.keep_page): the
        policy's keep_reason, or None."""
        return k.policies.keep_page(sc, pfn)

    @staticmethod
    def policies_keep_pages(k) -> bool:
        """Whether a selected policy has a keep_page hook: the hot path asks policy_keeps_page only then
        (asked once per batch; policies change only when a sysctl is written, never inside a batch)."""
        return k.policies.keep_pages

    @staticmethod
    def shrink_page_list(k, hot, nr_taken: int) -> int:
        return shrink_page_list(k, hot, nr_taken)


def _hot(k, sc: ScanControl):
    """The reclaim pass of this scan control (cython_ext/reclaim.py): it isolates pages and decides
    what becomes of each, calling ReclaimOps for the kernel's services."""
    hot = k.mem_map.hotpath.Reclaim(k.lru.core, k.page_alloc.zone.core, k.address_spaces, k.vmstat,
                                    k.page_alloc.account_freed, k, sc, ReclaimOps, k.lru.reclaim_stat,
                                    k.tracepoints is not None)
    hot.inactive_ratio = inactive_ratio(k)
    return hot


def shrink_page_list(k, hot, nr_taken: int) -> int:
    """shrink_page_list(): what becomes of each of the nr_taken pages a scan just isolated (in order from
    the tail: hot.isolated_pfns(nr_taken) lists them), decided by the one decision place,
    Reclaim.shrink_page_list in cython_ext/reclaim.py; returns how many were freed. Called for every batch
    of shrink_inactive_list, compiled or not, so `b guestos.mm.vmscan.shrink_page_list` stops at each."""
    return hot.shrink_page_list(nr_taken)


def shrink_inactive_list(k, nr_to_scan: int, sc: ScanControl, lru_list: int = LRU_INACTIVE_FILE) -> int:
    """Isolate up to nr_to_scan pages from the tail, count them scanned, shrink_page_list() them;
    returns how many were freed."""
    with reclaim_batch(k):
        return _hot(k, sc).shrink_inactive_list(nr_to_scan, lru_list)



def shrink_active_list(k, nr_to_scan: int, sc: ScanControl, lru_list: int = LRU_ACTIVE_FILE) -> None:
    """Move pages from the active tail to the inactive list (only PG_active is cleared); referenced
    executable file pages stay active."""
    with reclaim_batch(k):
        _hot(k, sc).shrink_active_list(nr_to_scan, lru_list)


def nr_scan_try_batch(k, lru: int, nr_to_scan: int) -> int:
    """Small counts are saved up until they make SWAP_CLUSTER_MAX."""
    saved = k.lru.nr_saved_scan
    saved[lru] += nr_to_scan
    nr = saved[lru]
    if nr >= SWAP_CLUSTER_MAX:
        saved[lru] = 0
        return nr
    return 0


def get_scan_count(k, sc: ScanControl) -> dict:
    """2.6.35's get_scan_count(): how many pages of each list to scan at this priority. Anon and file
    are weighed by vm.swappiness and by how many of the pages recently scanned on each were rotated
    back (referenced): ap = (anon_prio + 1) * (scanned + 1) / (rotated + 1), fp likewise, each list's
    share list >> priority times ap or fp over ap + fp + 1. The recent counts halve once scanned
    exceeds a quarter of the list, so they follow the workload."""
    nr = k.lru.nr
    stat = k.lru.reclaim_stat
    noswap = not sc.may_swap or k.swap is None or k.swap.nr_free <= 0
    if noswap:
        fraction, denominator = (0, 1), 1
    else:
        anon = nr[LRU_ACTIVE_ANON] + nr[LRU_INACTIVE_ANON]
        file = nr[LRU_ACTIVE_FILE] + nr[LRU_INACTIVE_FILE]
        zone = k.page_alloc.zone
        if file + zone.nr_free_pages <= zone.watermark[2]:
            fraction, denominator = (1, 0), 1             # very little page cache: anon only
        else:
            if stat[0] > anon // 4:
                stat[0] //= 2
                stat[2] //= 2
            if stat[1] > file // 4:
                stat[1] //= 2
                stat[3] //= 2
            anon_prio = k.sysctl_vm["swappiness"]
            file_prio = 200 - anon_prio
            ap = (anon_prio + 1) * (stat[0] + 1) // (stat[2] + 1)
            fp = (file_prio + 1) * (stat[1] + 1) // (stat[3] + 1)
            fraction, denominator = (ap, fp), ap + fp + 1
    scan = {}
    for lru in (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE):
        n = nr[lru]
        if sc.priority or noswap:
            n = (n >> sc.priority) * fraction[lru >= LRU_INACTIVE_FILE] // denominator
        scan[lru] = nr_scan_try_batch(k, lru, n)
    return scan


def shrink_zone(k, sc: ScanControl) -> None:
    """shrink_zone() in one go (direct reclaim and the policies' passes)."""
    for _ in shrink_zone_batches(k, sc):
        pass


def shrink_zone_batches(k, sc: ScanControl):
    """SWAP_CLUSTER_MAX pages of each list in turn until get_scan_count()'s counts are used up
    (each round runs in the hot path: Reclaim.shrink_lists), then age the anon lists if they need it.
    A generator: it yields after every round, where kswapd may give up the CPU (cond_resched)."""
    scan = get_scan_count(k, sc)
    left = [scan[lru] for lru in (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE)]
    hot = _hot(k, sc)
    may_stop = sc.priority < DEF_PRIORITY
    while any(left):
        batch = array("q", [min(n, SWAP_CLUSTER_MAX) for n in left])
        left = [n - b for n, b in zip(left, batch)]
        with reclaim_batch(k):
            hot.shrink_lists(batch, SWAP_CLUSTER_MAX, may_stop)
        if may_stop and sc.nr_reclaimed >= sc.nr_to_reclaim:
            break
        yield
    if k.swap is not None and k.swap.nr_free > 0 and inactive_anon_is_low(k):
        with reclaim_batch(k):
            hot.shrink_active_list(SWAP_CLUSTER_MAX, LRU_ACTIVE_ANON)


def try_to_free_pages(k, nr_to_reclaim: int = SWAP_CLUSTER_MAX) -> int:
    """Direct reclaim (do_try_to_free_pages): the allocating task frees memory itself, its
    priority falling from 12 toward 0 while a pass frees fewer than nr_to_reclaim pages."""
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
        # Take a nap, wait for some writeback to complete (do_try_to_free_pages)
        if sc.nr_scanned and priority < DEF_PRIORITY - 2:
            congestion_wait(k, HZ_NS // 10)
    if k.tracepoints is not None:
        k.tracepoints.emit("mm_vmscan_direct_reclaim_end", nr_reclaimed=sc.nr_reclaimed, pass_nr=sc.pass_nr)
        trace_pass_end(k, sc)
    return sc.nr_reclaimed


def plain_policy(k) -> str:
    """Ordinary reclaim's policy in the trace: a selected policy biasing it (shrink_list), else none."""
    return k.policies.plain_trace_name


def congestion_wait(k, timeout_ns: int) -> None:
    """congestion_wait(BLK_RW_ASYNC, timeout): nap until an asynchronous write completes or the
    timeout passes; other tasks run meanwhile (Kernel.congestion_wait)."""
    nap = getattr(k, "congestion_wait", None)
    if nap is not None:
        nap(timeout_ns)


class reclaim_batch:
    """A reclaim batch is not interleaved with another task's (its isolated pages stay linked on
    their list, docs/linux-differences.md): a wait inside it (a full disk queue under pageout)
    idles the CPU instead of switching tasks."""
    __slots__ = ("k",)

    def __init__(self, k):
        self.k = k

    def __enter__(self):
        self.k.atomic = getattr(self.k, "atomic", 0) + 1

    def __exit__(self, *exc):
        self.k.atomic -= 1


def balance_pgdat(k) -> int:
    """balance_pgdat() run to its end in one go; returns the pages reclaimed."""
    steps = balance_pgdat_steps(k)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def balance_pgdat_steps(k):
    """kswapd's balance_pgdat() (2.6.35): priority DEF_PRIORITY down to 0 until the zone is above its
    high watermark; a pass that reclaimed SWAP_CLUSTER_MAX pages starts again at DEF_PRIORITY
    (loop_again). Linux gives up when the zone is all unreclaimable; here, when a whole pass from 12
    to 0 frees nothing. A generator yielding after each reclaim batch (kswapd is preemptible);
    returns the pages reclaimed."""
    zone = k.page_alloc.zone
    total = 0
    k.vmstat["kswapd_runs"] += 1
    while True:                                               # loop_again
        sc = ScanControl(nr_to_reclaim=1 << 62, current_is_kswapd=True,    # ULONG_MAX: no early stop
                         policy=plain_policy(k))
        if k.tracepoints is not None:
            trace_pass_begin(k, sc)
        balanced = False
        for priority in range(DEF_PRIORITY, -1, -1):
            if k.swap is not None and inactive_anon_is_low(k):
                with reclaim_batch(k):
                    _hot(k, sc).shrink_active_list(SWAP_CLUSTER_MAX, LRU_ACTIVE_ANON)    # background aging
            yield from k.policies.balance_pgdat_passes()      # the 2010 series: before the watermark check
            if zone.watermark_ok(0, 2):                       # high_wmark_pages: all zones ok
                balanced = True
                break
            sc.priority = priority
            scanned = sc.nr_scanned
            yield from k.policies.balance_pgdat_passes()      # and again before shrink_zone
            yield from shrink_zone_batches(k, sc)
            shrink_slab(k, sc.nr_scanned - scanned)
            yield
            if zone.watermark_ok(0, 2):
                balanced = True
                break
            nr_writeback = k.vmstat["nr_writeback"]
            if sc.nr_scanned and priority < DEF_PRIORITY - 2 and nr_writeback > 0:
                # congestion_wait(): kswapd sleeps until a write reclaim started completes
                yield lambda: k.vmstat["nr_writeback"] < nr_writeback
            if sc.nr_reclaimed >= SWAP_CLUSTER_MAX:
                break                                         # to loop_again, at DEF_PRIORITY
        if k.tracepoints is not None:
            trace_pass_end(k, sc)
        total += sc.nr_reclaimed
        if balanced or not sc.nr_reclaimed:
            return total
