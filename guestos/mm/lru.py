"""The LRU lists (include/linux/mm_inline.h, mm/swap.c): inactive/active x anon/file, plus
unevictable, doubly linked through struct page (lru_next/lru_prev by pfn) in guest RAM.
Heads are the most recently added pages; reclaim scans from the tails."""
from array import array

from .mm_types import NIL, PG_active, PG_swapbacked, PG_unevictable

LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE, LRU_UNEVICTABLE = range(5)
NR_LRU_LISTS = 5
SWAP_CLUSTER_MAX = 32                  # pages isolated per scan (vmscan.py)
LRU_NAMES = ("nr_inactive_anon", "nr_active_anon", "nr_inactive_file", "nr_active_file", "nr_unevictable")


def page_lru(mem_map, pfn: int) -> int:
    """Which list a page belongs on, from its flags."""
    flags = mem_map.flags(pfn)
    if flags & (1 << PG_unevictable):
        return LRU_UNEVICTABLE
    base = LRU_INACTIVE_ANON if flags & (1 << PG_swapbacked) else LRU_INACTIVE_FILE
    return base + (1 if flags & (1 << PG_active) else 0)


class LruLists:
    """The five lists. Their heads, tails and sizes live in arrays shared with the hot path
    (mem_map.hotpath.LruCore), which does the linking; this is the kernel's face of it."""

    def __init__(self, mem_map, vmstat):
        self.mem_map = mem_map
        self.vmstat = vmstat
        self.head = array("q", [NIL] * NR_LRU_LISTS)
        self.tail = array("q", [NIL] * NR_LRU_LISTS)
        self.nr = array("q", [0] * NR_LRU_LISTS)
        # struct zone_reclaim_stat: recent_scanned[anon, file], recent_rotated[anon, file] (get_scan_count)
        self.reclaim_stat = array("q", [0] * 4)
        self.nr_saved_scan = [0] * NR_LRU_LISTS          # scan counts too small to act on yet
        self.core = mem_map.hotpath.LruCore(mem_map.q, mem_map.i, mem_map.u, self.head, self.tail, self.nr,
                                            array("q", bytes(8 * SWAP_CLUSTER_MAX)))

    # --- list primitives ---
    def add(self, pfn: int, lru: int) -> None:
        """add_page_to_lru_list(): at the head."""
        self.core.add(pfn, lru)

    def delete(self, pfn: int) -> int:
        """del_page_from_lru_list(); returns the list it was on."""
        return self.core.delete(pfn)

    def rotate(self, pfn: int) -> None:
        """Back to the head of its list (a second chance)."""
        self.core.rotate(pfn)

    # --- the operations the rest of mm uses ---
    def lru_cache_add(self, pfn: int, active: bool = False) -> None:
        if active:
            self.mem_map.set(pfn, PG_active)
        self.core.add(pfn, self.core.page_lru(pfn))

    def add_batch(self, pfns, lru: int, flags: int) -> None:
        """____pagevec_lru_add(): a batch of new pages at the head of one list, linked in one pass."""
        self.core.add_batch(list(pfns), lru, flags)

    def activate_page(self, pfn: int) -> None:
        if self.core.activate_page(pfn):
            self.vmstat["pgactivate"] += 1

    def deactivate_page(self, pfn: int) -> None:
        """ClearPageActive and to the inactive list; PG_referenced stays (2.6.35's shrink_active_list)."""
        self.core.deactivate_page(pfn)
        self.vmstat["pgdeactivate"] += 1

    def remove_if_listed(self, pfn: int) -> None:
        """A page being freed leaves its list (release_pages -> del_page_from_lru)."""
        self.core.remove_if_listed(pfn)

    def from_tail(self, lru: int):
        """Pfns from the tail towards the head, robust to the current page being moved."""
        pfn = self.tail[lru]
        while pfn != NIL:
            prev = self.mem_map.lru_prev(pfn)
            yield pfn
            pfn = prev

    def counts(self) -> dict:
        return dict(zip(LRU_NAMES, self.nr))
