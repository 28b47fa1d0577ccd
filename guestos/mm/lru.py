"""The LRU lists (include/linux/mm_inline.h, mm/swap.c): inactive/active x anon/file, plus
unevictable, doubly linked through struct page (lru_next/lru_prev by pfn) in guest RAM.
Heads are the most recently added pages; reclaim scans from the tails."""
from .mm_types import NIL, PG_active, PG_lru, PG_referenced, PG_swapbacked, PG_unevictable

LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE, LRU_UNEVICTABLE = range(5)
NR_LRU_LISTS = 5
LRU_NAMES = ("nr_inactive_anon", "nr_active_anon", "nr_inactive_file", "nr_active_file", "nr_unevictable")


def page_lru(mem_map, pfn: int) -> int:
    """Which list a page belongs on, from its flags."""
    flags = mem_map.flags(pfn)
    if flags & (1 << PG_unevictable):
        return LRU_UNEVICTABLE
    base = LRU_INACTIVE_ANON if flags & (1 << PG_swapbacked) else LRU_INACTIVE_FILE
    return base + (1 if flags & (1 << PG_active) else 0)


class LruLists:
    def __init__(self, mem_map, vmstat):
        self.mem_map = mem_map
        self.vmstat = vmstat
        self.head = [NIL] * NR_LRU_LISTS
        self.tail = [NIL] * NR_LRU_LISTS
        self.nr = [0] * NR_LRU_LISTS

    # --- list primitives ---
    def add(self, pfn: int, lru: int) -> None:
        """add_page_to_lru_list(): at the head."""
        mm = self.mem_map
        head = self.head[lru]
        mm.set_lru(pfn, head, NIL)
        if head != NIL:
            mm.set_lru(head, mm.lru_next(head), pfn)
        else:
            self.tail[lru] = pfn
        self.head[lru] = pfn
        self.nr[lru] += 1
        mm.set(pfn, PG_lru)

    def delete(self, pfn: int) -> int:
        """del_page_from_lru_list(); returns the list it was on."""
        mm = self.mem_map
        lru = page_lru(mm, pfn)
        nxt, prev = mm.lru_next(pfn), mm.lru_prev(pfn)
        if prev == NIL:
            self.head[lru] = nxt
        else:
            mm.set_lru(prev, nxt, mm.lru_prev(prev))
        if nxt == NIL:
            self.tail[lru] = prev
        else:
            mm.set_lru(nxt, mm.lru_next(nxt), prev)
        mm.set_lru(pfn, NIL, NIL)
        self.nr[lru] -= 1
        mm.clear(pfn, PG_lru)
        return lru

    def rotate(self, pfn: int) -> None:
        """Back to the head of its list (a second chance)."""
        lru = self.delete(pfn)
        self.add(pfn, lru)

    # --- the operations the rest of mm uses ---
    def lru_cache_add(self, pfn: int, active: bool = False) -> None:
        if active:
            self.mem_map.set(pfn, PG_active)
        self.add(pfn, page_lru(self.mem_map, pfn))

    def add_batch(self, pfns, lru: int, flags: int) -> None:
        """____pagevec_lru_add(): a batch of new pages at the head of one list, linked in one pass."""
        if not pfns:
            return
        mm = self.mem_map
        old_head = self.head[lru]
        prev = NIL
        for i in range(len(pfns) - 1, -1, -1):          # the last added ends up at the head
            pfn = pfns[i]
            mm.set_flags(pfn, mm.flags(pfn) | flags | (1 << PG_lru))
            nxt = pfns[i - 1] if i > 0 else old_head
            mm.set_lru(pfn, nxt, prev)
            prev = pfn
        if old_head != NIL:
            mm.set_lru(old_head, mm.lru_next(old_head), pfns[0])
        else:
            self.tail[lru] = pfns[0]
        self.head[lru] = pfns[-1]
        self.nr[lru] += len(pfns)

    def activate_page(self, pfn: int) -> None:
        mm = self.mem_map
        if not mm.test(pfn, PG_lru) or mm.test(pfn, PG_active) or mm.test(pfn, PG_unevictable):
            mm.set(pfn, PG_active)
            return
        self.delete(pfn)
        mm.set(pfn, PG_active)
        self.add(pfn, page_lru(mm, pfn))
        self.vmstat["pgactivate"] += 1

    def deactivate_page(self, pfn: int) -> None:
        mm = self.mem_map
        self.delete(pfn)
        mm.clear(pfn, PG_active)
        mm.clear(pfn, PG_referenced)
        self.add(pfn, page_lru(mm, pfn))
        self.vmstat["pgdeactivate"] += 1

    def remove_if_listed(self, pfn: int) -> None:
        """A page being freed leaves its list (release_pages -> del_page_from_lru)."""
        if self.mem_map.test(pfn, PG_lru):
            self.delete(pfn)

    def from_tail(self, lru: int):
        """Pfns from the tail towards the head, robust to the current page being moved."""
        pfn = self.tail[lru]
        while pfn != NIL:
            prev = self.mem_map.lru_prev(pfn)
            yield pfn
            pfn = prev

    def counts(self) -> dict:
        return dict(zip(LRU_NAMES, self.nr))
