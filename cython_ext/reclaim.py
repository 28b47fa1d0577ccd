"""The hot loops of memory management: the LRU lists, the buddy free lists and the reclaim scans.
guestos/mm/lru.py, page_alloc.py and vmscan.py are their readable Linux-named fronts.

One source in Cython's pure-Python mode. Compiled, a clean page-cache page found at the tail of
the inactive list is isolated, tested, removed from its page cache, taken off the LRU and merged
into the buddy lists without leaving C. Uncompiled (BALLAST_PURE=1), the same steps run as Python
that pdb can step through. Every page that is not that common case goes back to the kernel's
Python services (rmap, swap, writepage: vmscan.ReclaimOps), one page at a time, in order; the decisions
themselves are all taken here (Reclaim), compiled or not.

Both work on the struct pages in guest RAM through the MemMap's views over the same bytes:
q (64-bit words, 8 per page), i (signed ints, 16 per page), u (unsigned ints, 16 per page)."""
from array import array

import cython

# struct page (guestos/mm/mm_types.py; constants() lets a test hold both equal)
NIL = cython.declare(cython.longlong, 0xFFFFFFFF)
PG_locked = cython.declare(cython.int, 0)
PG_referenced = cython.declare(cython.int, 2)
PG_reported = cython.declare(cython.int, 3)         # PG_uptodate, which a free page reuses
PG_dirty = cython.declare(cython.int, 4)
PG_lru = cython.declare(cython.int, 5)
PG_active = cython.declare(cython.int, 6)
PG_writeback = cython.declare(cython.int, 13)
PG_reclaim = cython.declare(cython.int, 17)
PG_buddy = cython.declare(cython.int, 19)
PG_swapbacked = cython.declare(cython.int, 20)
PG_unevictable = cython.declare(cython.int, 21)
# word offsets: q[(pfn << 3) + Q_*], i/u[(pfn << 4) + I_*]
Q_FLAGS = cython.declare(cython.int, 0)
Q_PRIVATE = cython.declare(cython.int, 2)
Q_MAPPING = cython.declare(cython.int, 3)
Q_INDEX = cython.declare(cython.int, 4)
Q_DISK_SECTOR = cython.declare(cython.int, 6)
I_REFCOUNT = cython.declare(cython.int, 2)
I_MAPCOUNT = cython.declare(cython.int, 3)
I_LRU_NEXT = cython.declare(cython.int, 10)
I_LRU_PREV = cython.declare(cython.int, 11)

LRU_INACTIVE_ANON = cython.declare(cython.int, 0)
LRU_ACTIVE_ANON = cython.declare(cython.int, 1)
LRU_INACTIVE_FILE = cython.declare(cython.int, 2)
LRU_ACTIVE_FILE = cython.declare(cython.int, 3)
LRU_UNEVICTABLE = cython.declare(cython.int, 4)
MAX_ORDER = cython.declare(cython.int, 11)
NO_REPORTING = cython.declare(cython.int, 11)       # reporting_order when nobody reports free pages

# a page with any of these is not the common case of shrink_page_list
NOT_SIMPLE_FILE = cython.declare(cython.ulonglong, (1 << 20) | (1 << 0) | (1 << 4))   # swapbacked, locked, dirty

# page_check_references() (mm/vmscan.c)
PAGEREF_RECLAIM = cython.declare(cython.int, 0)
PAGEREF_RECLAIM_CLEAN = cython.declare(cython.int, 1)
PAGEREF_KEEP = cython.declare(cython.int, 2)
PAGEREF_ACTIVATE = cython.declare(cython.int, 3)
# pageout()
PAGE_KEEP = cython.declare(cython.int, 0)
PAGE_ACTIVATE = cython.declare(cython.int, 1)
PAGE_SUCCESS = cython.declare(cython.int, 2)
PAGE_CLEAN = cython.declare(cython.int, 3)
WRITE_ERROR = cython.declare(cython.int, -1)         # cython_ext/pageout.py's: the write failed at once
# shrink_page_list()'s outcome for a page (a decision | WHY_* << 2) and, for the trace, their names
FREE = cython.declare(cython.int, 0)
KEEP = cython.declare(cython.int, 1)
ACTIVATE = cython.declare(cython.int, 2)
KEPT = cython.declare(cython.int, 3)                 # to activate, but no longer on a list
DECISIONS = ("reclaimed", "rotated", "activated", "kept")
WHY_CLEAN = cython.declare(cython.int, 0)
WHY_METADATA = cython.declare(cython.int, 1)
WHY_LOCKED = cython.declare(cython.int, 2)
WHY_UNMAPPED_FIRST = cython.declare(cython.int, 3)
WHY_WRITEBACK = cython.declare(cython.int, 4)
WHY_REFERENCED = cython.declare(cython.int, 5)
WHY_REFERENCED_TWICE = cython.declare(cython.int, 6)
WHY_PTE_REFERENCED = cython.declare(cython.int, 7)
WHY_SWAPPED_OUT = cython.declare(cython.int, 8)
WHY_SWAP = cython.declare(cython.int, 9)             # swap_out's own reason (no-swap, swap-full, ...)
WHY_STILL_MAPPED = cython.declare(cython.int, 10)
WHY_HELD = cython.declare(cython.int, 11)
WHY_DIRTY_DEFERRED = cython.declare(cython.int, 12)
WHY_PAGEOUT = cython.declare(cython.int, 13)         # from here on, pageout() ran
WHY_PAGEOUT_KEEP = cython.declare(cython.int, 14)
WHY_PAGEOUT_ACTIVATE = cython.declare(cython.int, 15)
WHY_WRITTEN_BACK = cython.declare(cython.int, 16)
WHY_POLICY = cython.declare(cython.int, 17)          # a policy's keep_page: its own keep_reason
REASONS = ("clean", "metadata", "locked", "unmapped-first", "writeback", "referenced", "referenced-twice",
           "pte-referenced", "swapped-out", "", "still-mapped", "held", "dirty-deferred", "pageout", "pageout-keep",
           "pageout-activate", "written-back", "")
# struct zone_reclaim_stat, in one array: recent_scanned[anon, file], recent_rotated[anon, file]
RECENT_SCANNED = cython.declare(cython.int, 0)
RECENT_ROTATED = cython.declare(cython.int, 2)


def constants() -> dict:
    """The layout this module was written against."""
    return dict(NIL=NIL, PG_locked=PG_locked, PG_referenced=PG_referenced, PG_reported=PG_reported, PG_dirty=PG_dirty, PG_lru=PG_lru,
                PG_active=PG_active, PG_buddy=PG_buddy, PG_swapbacked=PG_swapbacked, PG_unevictable=PG_unevictable,
                OFF_FLAGS=Q_FLAGS * 8, OFF_PRIVATE=Q_PRIVATE * 8, OFF_MAPPING=Q_MAPPING * 8, OFF_INDEX=Q_INDEX * 8,
                OFF_DISK_SECTOR=Q_DISK_SECTOR * 8, OFF_REFCOUNT=I_REFCOUNT * 4, OFF_MAPCOUNT=I_MAPCOUNT * 4,
                OFF_LRU_NEXT=I_LRU_NEXT * 4, OFF_LRU_PREV=I_LRU_PREV * 4, MAX_ORDER=MAX_ORDER,
                NOT_SIMPLE_FILE=NOT_SIMPLE_FILE)


@cython.boundscheck(False)
@cython.wraparound(False)
def reset_struct_pages(q: cython.ulonglong[::1], i: cython.int[::1], pfns: list, refcount: cython.int) -> None:
    """prep_new_page() / free_pages_prepare() of each page: no flags, no mapping, no disk sector,
    unmapped, `refcount` references (guestos.mm.page_alloc.reset_struct_page)."""
    nr_pages: cython.Py_ssize_t = q.shape[0] >> 3
    pfn: cython.Py_ssize_t
    for p in pfns:
        pfn = p
        if pfn < 0 or pfn >= nr_pages:
            raise IndexError(f"pfn {pfn} outside mem_map")
        q[pfn << 3] = 0
        i[(pfn << 4) + I_REFCOUNT] = refcount
        i[(pfn << 4) + I_MAPCOUNT] = -1
        q[(pfn << 3) + Q_MAPPING] = 0
        q[(pfn << 3) + Q_INDEX] = 0
        q[(pfn << 3) + Q_DISK_SECTOR] = 0


@cython.boundscheck(False)
@cython.wraparound(False)
def clear_page_flag(q: cython.ulonglong[::1], pfns: list, bit: cython.int) -> None:
    """ClearPageX() of each page (e.g. unlock_page() after a read)."""
    nr_pages: cython.Py_ssize_t = q.shape[0] >> 3
    pfn: cython.Py_ssize_t
    for p in pfns:
        pfn = p
        if pfn < 0 or pfn >= nr_pages:
            raise IndexError(f"pfn {pfn} outside mem_map")
        q[pfn << 3] &= ~(cython.cast(cython.ulonglong, 1) << bit)


@cython.boundscheck(False)
@cython.wraparound(False)
def set_page_flags(q: cython.ulonglong[::1], pfns: list, value: cython.ulonglong) -> None:
    """page->flags = value for each page."""
    nr_pages: cython.Py_ssize_t = q.shape[0] >> 3
    pfn: cython.Py_ssize_t
    for p in pfns:
        pfn = p
        if pfn < 0 or pfn >= nr_pages:
            raise IndexError(f"pfn {pfn} outside mem_map")
        q[pfn << 3] = value


@cython.final
@cython.cclass
class BuddyCore:
    """A zone's free lists (struct free_area): a head, a tail and a count per order in arrays that
    the Zone owns, the blocks linked through their first struct page.

    Free page reporting (mm/page_reporting.c) hooks in here as in Linux: a block that leaves its
    list loses PG_reported (del_page_from_free_list), and a free that ends in a block of
    reporting_order or more raises report_notify (page_reporting_notify_free)."""
    q: cython.ulonglong[::1]
    u: cython.uint[::1]
    area_head: cython.longlong[::1]
    area_tail: cython.longlong[::1]
    area_nr: cython.longlong[::1]
    start_pfn: cython.Py_ssize_t
    end_pfn: cython.Py_ssize_t
    nr_free_pages = cython.declare(cython.Py_ssize_t, visibility="public")
    reporting_order = cython.declare(cython.Py_ssize_t, visibility="public")
    report_notify = cython.declare(cython.bint, visibility="public")

    def __init__(self, q, u, area_head, area_tail, area_nr, start_pfn: cython.Py_ssize_t,
                 end_pfn: cython.Py_ssize_t):
        self.q = q
        self.u = u
        self.area_head = area_head
        self.area_tail = area_tail
        self.area_nr = area_nr
        self.start_pfn = start_pfn
        self.end_pfn = end_pfn
        self.nr_free_pages = 0
        self.reporting_order = NO_REPORTING
        self.report_notify = False

    @cython.cfunc
    @cython.inline
    def _listed(self, pfn: cython.Py_ssize_t, order: cython.Py_ssize_t) -> cython.void:
        self.area_nr[order] += 1
        self.q[pfn << 3] |= 1 << PG_buddy
        self.q[(pfn << 3) + Q_PRIVATE] = order

    @cython.ccall
    @cython.wraparound(False)
    def list_add(self, pfn: cython.Py_ssize_t, order: cython.Py_ssize_t) -> cython.void:
        head: cython.Py_ssize_t = self.area_head[order]
        self.u[(pfn << 4) + I_LRU_NEXT] = head
        self.u[(pfn << 4) + I_LRU_PREV] = NIL
        if head != NIL:
            self.u[(head << 4) + I_LRU_PREV] = pfn
        else:
            self.area_tail[order] = pfn
        self.area_head[order] = pfn
        self._listed(pfn, order)

    @cython.ccall
    @cython.wraparound(False)
    def list_add_tail(self, pfn: cython.Py_ssize_t, order: cython.Py_ssize_t) -> cython.void:
        tail: cython.Py_ssize_t = self.area_tail[order]
        self.u[(pfn << 4) + I_LRU_NEXT] = NIL
        self.u[(pfn << 4) + I_LRU_PREV] = tail
        if tail != NIL:
            self.u[(tail << 4) + I_LRU_NEXT] = pfn
        else:
            self.area_head[order] = pfn
        self.area_tail[order] = pfn
        self._listed(pfn, order)

    @cython.ccall
    @cython.wraparound(False)
    def list_del(self, pfn: cython.Py_ssize_t, order: cython.Py_ssize_t) -> cython.void:
        nxt: cython.Py_ssize_t = self.u[(pfn << 4) + I_LRU_NEXT]
        prev: cython.Py_ssize_t = self.u[(pfn << 4) + I_LRU_PREV]
        if prev == NIL:
            self.area_head[order] = nxt
        else:
            self.u[(prev << 4) + I_LRU_NEXT] = nxt
        if nxt == NIL:
            self.area_tail[order] = prev
        else:
            self.u[(nxt << 4) + I_LRU_PREV] = prev
        self.u[(pfn << 4) + I_LRU_NEXT] = NIL
        self.u[(pfn << 4) + I_LRU_PREV] = NIL
        self.area_nr[order] -= 1
        self.q[pfn << 3] &= ~((cython.cast(cython.ulonglong, 1) << PG_buddy) |
                              (cython.cast(cython.ulonglong, 1) << PG_reported))
        self.q[(pfn << 3) + Q_PRIVATE] = 0

    @cython.ccall
    @cython.wraparound(False)
    def page_is_buddy(self, pfn: cython.Py_ssize_t, order: cython.Py_ssize_t) -> cython.bint:
        if pfn < self.start_pfn or pfn >= self.end_pfn:
            return False
        return (self.q[pfn << 3] >> PG_buddy) & 1 == 1 and self.q[(pfn << 3) + Q_PRIVATE] == order

    @cython.ccall
    def free_one_page(self, pfn: cython.Py_ssize_t, order: cython.Py_ssize_t, to_tail: cython.bint = False,
                      report: cython.bint = True) -> cython.Py_ssize_t:
        """__free_one_page(): merge with free buddies while they are whole, then list the block
        (at the tail for FPI_TO_TAIL); without FPI_SKIP_REPORT_NOTIFY a block of reporting order
        or more asks for a report. Returns the block's first pfn."""
        buddy: cython.Py_ssize_t
        while order < MAX_ORDER - 1:
            buddy = pfn ^ (1 << order)
            if not self.page_is_buddy(buddy, order):
                break
            self.list_del(buddy, order)
            pfn &= buddy
            order += 1
        if to_tail:
            self.list_add_tail(pfn, order)
        else:
            self.list_add(pfn, order)
        if report and order >= self.reporting_order:
            self.report_notify = True
        return pfn

    @cython.ccall
    def free_pages(self, pfn: cython.Py_ssize_t, order: cython.Py_ssize_t) -> cython.void:
        self.nr_free_pages += 1 << order
        self.free_one_page(pfn, order, False, True)

    @cython.ccall
    def putback_isolated_page(self, pfn: cython.Py_ssize_t, order: cython.Py_ssize_t) -> cython.Py_ssize_t:
        """__putback_isolated_page(): back at the tail, without a new report; the block's first pfn."""
        self.nr_free_pages += 1 << order
        return self.free_one_page(pfn, order, True, False)

    def rmqueue_many(self, n: cython.Py_ssize_t, out: list) -> cython.Py_ssize_t:
        """rmqueue(0) up to n times, the pages appended to out, until the lists run dry; how many."""
        got: cython.Py_ssize_t = 0
        pfn: cython.Py_ssize_t
        while got < n:
            pfn = self.rmqueue(0)
            if pfn == NIL:
                break
            out.append(pfn)
            got += 1
        return got

    @cython.ccall
    @cython.wraparound(False)
    def rmqueue(self, order: cython.Py_ssize_t) -> cython.Py_ssize_t:
        """__rmqueue_smallest(): the first block of this order or larger, its upper halves given
        back (expand()); NIL when there is none."""
        current: cython.Py_ssize_t
        pfn: cython.Py_ssize_t
        for current in range(order, MAX_ORDER):
            pfn = self.area_head[current]
            if pfn == NIL:
                continue
            self.list_del(pfn, current)
            while current > order:
                current -= 1
                self.list_add(pfn + (1 << current), current)
            self.nr_free_pages -= 1 << order
            return pfn
        return NIL


@cython.final
@cython.cclass
class LruCore:
    """The LRU lists (heads, tails and sizes in three arrays that LruLists owns), linked through
    struct page, heads most recent; and the pages isolated from a tail for one scan."""
    q: cython.ulonglong[::1]
    i: cython.int[::1]
    u: cython.uint[::1]
    head: cython.longlong[::1]
    tail: cython.longlong[::1]
    nr: cython.longlong[::1]
    isolated: cython.longlong[::1]
    isolated_buf: object
    nr_pages: cython.Py_ssize_t

    def __init__(self, q, i, u, head, tail, nr, isolated_buf):
        self.q = q
        self.i = i
        self.u = u
        self.head = head
        self.tail = tail
        self.nr = nr
        self.isolated_buf = isolated_buf
        self.isolated = isolated_buf
        self.nr_pages = len(q) >> 3

    @cython.ccall
    @cython.wraparound(False)
    def page_lru(self, pfn: cython.Py_ssize_t) -> cython.int:
        """Which list a page belongs on, from its flags."""
        flags: cython.ulonglong = self.q[pfn << 3]
        if flags & (1 << PG_unevictable):
            return LRU_UNEVICTABLE
        base: cython.int = LRU_INACTIVE_ANON if flags & (1 << PG_swapbacked) else LRU_INACTIVE_FILE
        return base + (1 if flags & (1 << PG_active) else 0)

    @cython.ccall
    @cython.wraparound(False)
    def add(self, pfn: cython.Py_ssize_t, lru: cython.int) -> cython.void:
        """add_page_to_lru_list(): at the head."""
        head: cython.Py_ssize_t = self.head[lru]
        self.u[(pfn << 4) + I_LRU_NEXT] = head
        self.u[(pfn << 4) + I_LRU_PREV] = NIL
        if head != NIL:
            self.u[(head << 4) + I_LRU_PREV] = pfn
        else:
            self.tail[lru] = pfn
        self.head[lru] = pfn
        self.nr[lru] += 1
        self.q[pfn << 3] |= 1 << PG_lru

    @cython.ccall
    @cython.wraparound(False)
    def delete(self, pfn: cython.Py_ssize_t) -> cython.int:
        """del_page_from_lru_list(); returns the list it was on."""
        lru: cython.int = self.page_lru(pfn)
        nxt: cython.Py_ssize_t = self.u[(pfn << 4) + I_LRU_NEXT]
        prev: cython.Py_ssize_t = self.u[(pfn << 4) + I_LRU_PREV]
        if prev == NIL:
            self.head[lru] = nxt
        else:
            self.u[(prev << 4) + I_LRU_NEXT] = nxt
        if nxt == NIL:
            self.tail[lru] = prev
        else:
            self.u[(nxt << 4) + I_LRU_PREV] = prev
        self.u[(pfn << 4) + I_LRU_NEXT] = NIL
        self.u[(pfn << 4) + I_LRU_PREV] = NIL
        self.nr[lru] -= 1
        self.q[pfn << 3] &= ~(cython.cast(cython.ulonglong, 1) << PG_lru)
        return lru

    @cython.ccall
    def rotate(self, pfn: cython.Py_ssize_t) -> cython.void:
        """Back to the head of its list (a second chance)."""
        self.add(pfn, self.delete(pfn))

    @cython.ccall
    @cython.wraparound(False)
    def remove_if_listed(self, pfn: cython.Py_ssize_t) -> cython.void:
        if (self.q[pfn << 3] >> PG_lru) & 1:
            self.delete(pfn)

    @cython.ccall
    @cython.wraparound(False)
    def activate_page(self, pfn: cython.Py_ssize_t) -> cython.bint:
        """To the active list; True when it moved (a pgactivate), False when only flagged."""
        flags: cython.ulonglong = self.q[pfn << 3]
        if not (flags >> PG_lru) & 1 or (flags >> PG_active) & 1 or (flags >> PG_unevictable) & 1:
            self.q[pfn << 3] |= 1 << PG_active
            return False
        self.delete(pfn)
        self.q[pfn << 3] |= 1 << PG_active
        self.add(pfn, self.page_lru(pfn))
        return True

    @cython.ccall
    @cython.wraparound(False)
    def deactivate_page(self, pfn: cython.Py_ssize_t) -> cython.void:
        """shrink_active_list()'s ClearPageActive(): to the head of the inactive list. PG_referenced stays,
        so a page used again soon after is activated again at its next access (mark_page_accessed)."""
        self.delete(pfn)
        self.q[pfn << 3] &= ~(cython.cast(cython.ulonglong, 1) << PG_active)
        self.add(pfn, self.page_lru(pfn))

    @cython.ccall
    @cython.wraparound(False)
    def rotate_reclaimable_page(self, pfn: cython.Py_ssize_t) -> cython.bint:
        """A page whose writeback reclaim started has been written: to the tail of the inactive list, where
        the next scan finds it first (mm/swap.c). True when it moved (a pgrotated)."""
        flags: cython.ulonglong = self.q[pfn << 3]
        if flags & ((1 << PG_locked) | (1 << PG_dirty) | (1 << PG_active) | (1 << PG_unevictable)) \
                or not flags & (1 << PG_lru):
            return False
        lru: cython.int = self.delete(pfn)
        tail: cython.Py_ssize_t = self.tail[lru]
        self.u[(pfn << 4) + I_LRU_NEXT] = NIL
        self.u[(pfn << 4) + I_LRU_PREV] = tail
        if tail != NIL:
            self.u[(tail << 4) + I_LRU_NEXT] = pfn
        else:
            self.head[lru] = pfn
        self.tail[lru] = pfn
        self.nr[lru] += 1
        self.q[pfn << 3] |= 1 << PG_lru
        return True

    @cython.wraparound(False)
    def add_batch(self, pfns: list, lru: cython.int, flags: cython.ulonglong) -> None:
        """____pagevec_lru_add(): a batch of new pages at the head of one list, linked in one pass;
        the last of the batch ends up at the head."""
        n: cython.Py_ssize_t = len(pfns)
        if n == 0:
            return
        old_head: cython.Py_ssize_t = self.head[lru]
        prev: cython.Py_ssize_t = NIL
        nxt: cython.Py_ssize_t
        pfn: cython.Py_ssize_t
        j: cython.Py_ssize_t
        for j in range(n - 1, -1, -1):
            pfn = pfns[j]
            self.q[pfn << 3] |= flags | (1 << PG_lru)
            nxt = pfns[j - 1] if j > 0 else old_head
            self.u[(pfn << 4) + I_LRU_NEXT] = nxt
            self.u[(pfn << 4) + I_LRU_PREV] = prev
            prev = pfn
        first: cython.Py_ssize_t = pfns[0]
        if old_head != NIL:
            self.u[(old_head << 4) + I_LRU_PREV] = first
        else:
            self.tail[lru] = first
        self.head[lru] = pfns[n - 1]
        self.nr[lru] += n

    @cython.ccall
    @cython.wraparound(False)
    def mark_page_accessed(self, pfn: cython.Py_ssize_t) -> cython.bint:
        """mark_page_accessed() (mm/swap.c): inactive,unreferenced -> inactive,referenced -> active.
        True when the page moved to the active list (a pgactivate)."""
        flags: cython.ulonglong = self.q[pfn << 3]
        if not flags & ((1 << PG_active) | (1 << PG_unevictable)) and flags & (1 << PG_referenced) \
                and flags & (1 << PG_lru):
            moved: cython.bint = self.activate_page(pfn)
            self.q[pfn << 3] &= ~(cython.cast(cython.ulonglong, 1) << PG_referenced)
            return moved
        if not flags & (1 << PG_referenced):
            self.q[pfn << 3] |= 1 << PG_referenced
        return False

    @cython.wraparound(False)
    def flags_of(self, pfns: list) -> list:
        """Each page's flags, -1 for None (a page-cache lookup's misses)."""
        out = []
        pfn: cython.Py_ssize_t
        for p in pfns:
            if p is None:
                out.append(-1)
                continue
            pfn = p
            if pfn < 0 or pfn >= self.nr_pages:
                raise IndexError(f"pfn {pfn} outside mem_map")
            out.append(self.q[pfn << 3])
        return out

    @cython.wraparound(False)
    def read_pages_accessed(self, pfns: list, flags: list, start: cython.Py_ssize_t, hold: cython.bint,
                            stop_flags: cython.longlong, held: list) -> tuple:
        """do_generic_file_read()'s loop over the pages it found cached, with their flags as looked up
        before it: from `start`, mark each accessed unless already active and referenced, and with `hold`
        take a reference (its pfn appended to `held`); stop at the first page missing (flags -1) or with a
        bit of stop_flags (the readahead mark). Returns (where it stopped, pages moved to the active list)."""
        n: cython.Py_ssize_t = len(pfns)
        settled: cython.longlong = (1 << PG_active) | (1 << PG_referenced)
        activated: cython.Py_ssize_t = 0
        j: cython.Py_ssize_t = start
        f: cython.longlong
        pfn: cython.Py_ssize_t
        while j < n:
            f = flags[j]
            if f < 0 or f & stop_flags:
                break
            pfn = pfns[j]
            if pfn < 0 or pfn >= self.nr_pages:
                raise IndexError(f"pfn {pfn} outside mem_map")
            if f & settled != settled:
                activated += self.mark_page_accessed(pfn)
            if hold:
                self.i[(pfn << 4) + I_REFCOUNT] += 1
                held.append(pfn)
            j += 1
        return j, activated

    @cython.wraparound(False)
    def put_pages(self, pfns: list) -> list:
        """put_page() of each: drop a reference; returns the pages whose last reference it was, in order,
        for the allocator to free."""
        last = []
        pfn: cython.Py_ssize_t
        for p in pfns:
            pfn = p
            if pfn < 0 or pfn >= self.nr_pages:
                raise IndexError(f"pfn {pfn} outside mem_map")
            self.i[(pfn << 4) + I_REFCOUNT] -= 1
            if self.i[(pfn << 4) + I_REFCOUNT] == 0:
                last.append(p)
        return last

    @cython.wraparound(False)
    def add_page_cache_batch(self, pfns: list, mapping: cython.ulonglong, indices: list, sectors: list,
                             flags: cython.ulonglong) -> None:
        """add_to_page_cache_lru() for a batch of fresh pages being read: each struct page as the allocator
        leaves it (one reference, unmapped), at `mapping` and its index, holding disk sector `sectors[j]`
        (None: no block), with `flags`; then all on the inactive file list, in order."""
        n: cython.Py_ssize_t = len(pfns)
        if len(indices) != n or len(sectors) != n:
            raise ValueError("add_page_cache_batch: pfns, indices and sectors differ in length")
        j: cython.Py_ssize_t
        pfn: cython.Py_ssize_t
        for j in range(n):
            pfn = pfns[j]
            if pfn < 0 or pfn >= self.nr_pages:
                raise IndexError(f"pfn {pfn} outside mem_map")
        for j in range(n):
            pfn = pfns[j]
            sector = sectors[j]
            self.q[pfn << 3] = 0
            self.i[(pfn << 4) + I_REFCOUNT] = 1
            self.i[(pfn << 4) + I_MAPCOUNT] = -1
            self.q[(pfn << 3) + Q_MAPPING] = mapping
            self.q[(pfn << 3) + Q_INDEX] = indices[j]
            self.q[(pfn << 3) + Q_DISK_SECTOR] = 0 if sector is None else sector + 1
        self.add_batch(pfns, LRU_INACTIVE_FILE, flags)

    # --- scans ---
    @cython.ccall
    @cython.wraparound(False)
    def isolate_lru_pages(self, lru: cython.int, nr_to_scan: cython.Py_ssize_t) -> cython.Py_ssize_t:
        """Up to nr_to_scan pages from the tail towards the head into `isolated`; returns how many.
        (They stay linked: a survivor is moved by rotate or activate, a freed page leaves its list.)"""
        if nr_to_scan > len(self.isolated_buf):
            self.isolated_buf = array("q", bytes(8 * nr_to_scan))
            self.isolated = self.isolated_buf
        n: cython.Py_ssize_t = 0
        pfn: cython.Py_ssize_t = self.tail[lru]
        while pfn != NIL and n < nr_to_scan:
            if pfn >= self.nr_pages:
                raise IndexError("LRU link outside mem_map")
            self.isolated[n] = pfn
            n += 1
            pfn = self.u[(pfn << 4) + I_LRU_PREV]
        return n

    def isolated_pfns(self, n: cython.Py_ssize_t) -> list:
        return [self.isolated[j] for j in range(n)]


@cython.final
@cython.cclass
class Reclaim:
    """One reclaim pass (a ScanControl) seen from the hot path, and the one place that decides what
    happens to each page it scans: keep it (back to the head of its list), activate it, start its
    writeback, unmap it, swap it out or free it -- 2.6.35's shrink_page_list() and shrink_active_list().

    It holds the LRU lists, the buddy lists, the page caches (mapping id -> address space with a `pages`
    dict index -> pfn), the vmstat dict, pages_freed(n) for what the page allocator does for the pages
    freed here besides listing them, zone_reclaim_stat (recent_scanned and recent_rotated, anon and file),
    and `ops`: the kernel services a decision may need, never a decision of their own --
    ops.page_referenced(k, pfn) -> (referenced PTEs, mapped executable) through the reverse map,
    ops.try_to_unmap(k, pfn) -> unmapped, ops.swap_out(k, pfn) -> "" when freed else why not,
    ops.pageout(k, mapping, pfn) -> PAGE_*, ops.policy_keeps_page(k, sc, pfn) (the selected policies' bias:
    guestos/mm/reclaim_policy.py) and,
    with tracing on, ops.trace(k, pfn, kind, mapped, referenced, decision, reason, sc, flags) for each
    decision, ops.trace_delete_from_page_cache(k, pfn, mapping, index) for a page freed here, and the scans'
    events with ops.lru_names (guestos/mm/vmscan.py; docs/trace.md). A clean,
    unmapped page-cache page (the common case) never leaves native code."""
    lru: LruCore
    buddy: BuddyCore
    address_spaces: dict
    vmstat: dict
    pages_freed: object
    k: object
    sc: object
    ops: object
    reclaim_stat: cython.longlong[::1]
    tracing: cython.bint
    inactive_ratio = cython.declare(cython.longlong, visibility="public")    # the zone's, for anon
    referenced_ptes: cython.Py_ssize_t            # what the last decide() found through the reverse map
    swap_why: str                                 # why the last swap_out() could not
    policy_why: str                               # the keep_reason of the policy that kept the last page
    rmap: object                                  # in a batch, ops' reverse map to call directly (or None)
    batch_rmap: object                            # the reverse map whose TLB batch is open (or None)
    rmap_charged: cython.bint                     # the batch's reverse map may hold charges not yet on the clock
    owed: cython.Py_ssize_t                       # freed pages uncompiled code would have counted already
    policy_bias: cython.bint                      # a selected policy has a keep_page hook (asked per batch)
    pageout_looked: cython.bint                   # in a batch, ops' native pageout looked up (at its first write)
    native_pageout: object                        # ops' pageout to call directly (or None), its completion
    end_io: object
    pgscan: str
    pgsteal: str

    def __init__(self, lru: LruCore, buddy: BuddyCore, address_spaces: dict, vmstat: dict, pages_freed, k, sc,
                 ops, reclaim_stat, tracing: cython.bint):
        self.lru = lru
        self.buddy = buddy
        self.address_spaces = address_spaces
        self.vmstat = vmstat
        self.pages_freed = pages_freed
        self.k = k
        self.sc = sc
        self.ops = ops
        self.reclaim_stat = reclaim_stat
        self.tracing = tracing
        self.inactive_ratio = 1
        self.referenced_ptes = 0
        self.swap_why = ""
        self.policy_why = ""
        self.rmap = None
        self.batch_rmap = None
        self.rmap_charged = False
        self.owed = 0
        self.policy_bias = True
        self.pageout_looked = False
        self.native_pageout = None
        self.end_io = None
        self.pgscan = "pgscan_kswapd" if sc.current_is_kswapd else "pgscan_direct"
        self.pgsteal = "pgsteal_kswapd" if sc.current_is_kswapd else "pgsteal_direct"

    @cython.ccall
    def shrink_lists(self, scan: cython.longlong[::1], cluster: cython.Py_ssize_t, may_stop: cython.bint) -> None:
        """The loop of shrink_zone(): up to `cluster` pages of each list in turn (inactive anon,
        active anon, inactive file, active file) while the inactive anon, active file or inactive
        file counts in `scan` last, or, when may_stop, until sc.nr_reclaimed reaches sc.nr_to_reclaim.
        An active list is scanned only while its inactive list is low: for file pages, smaller than the
        active one; for anon, smaller than the active one over the zone's inactive_ratio."""
        nr = self.lru.nr
        lru: cython.int
        n: cython.Py_ssize_t
        while scan[LRU_INACTIVE_ANON] or scan[LRU_ACTIVE_FILE] or scan[LRU_INACTIVE_FILE]:
            for lru in range(4):
                if not scan[lru]:
                    continue
                n = scan[lru] if scan[lru] < cluster else cluster
                scan[lru] -= n
                if lru == LRU_ACTIVE_FILE:
                    if nr[lru] > nr[lru - 1]:                 # inactive_file_is_low()
                        self.shrink_active_list(n, lru)
                elif lru == LRU_ACTIVE_ANON:
                    if nr[lru - 1] * self.inactive_ratio < nr[lru]:      # inactive_anon_is_low()
                        self.shrink_active_list(n, lru)
                else:
                    self.sc.nr_reclaimed += self.shrink_inactive_list(n, lru)
            if may_stop and self.sc.nr_reclaimed >= self.sc.nr_to_reclaim:
                break

    @cython.ccall
    def shrink_inactive_list(self, nr_to_scan: cython.Py_ssize_t, lru: cython.int) -> cython.Py_ssize_t:
        """Isolate up to nr_to_scan pages from the tail and try to free them; returns how many were."""
        nr_taken: cython.Py_ssize_t = self.lru.isolate_lru_pages(lru, nr_to_scan)
        file: cython.int = 1 if lru >= LRU_INACTIVE_FILE else 0
        self.sc.nr_scanned += nr_taken
        self.vmstat[self.pgscan] += nr_taken
        self.reclaim_stat[RECENT_SCANNED + file] += nr_taken
        # vmscan.shrink_page_list (Linux's name in Linux's file) hands the batch back to shrink_page_list here
        reclaimed: cython.Py_ssize_t = self.ops.shrink_page_list(self.k, self, nr_taken)
        self.vmstat[self.pgsteal] += reclaimed
        self.k.charge_reclaim(nr_taken, reclaimed, nr_taken - reclaimed)     # the batch's cost, as uncompiled
        if self.tracing:
            sc = self.sc
            name = self.ops.lru_names[lru]
            self.k.tracepoints.emit("mm_vmscan_lru_isolate", order=0, nr_requested=nr_to_scan, nr_scanned=nr_taken,
                                    nr_taken=nr_taken, isolate_mode=0, file=file, lru=name, policy=sc.policy,
                                    priority=sc.priority, pass_nr=sc.pass_nr)
            self.k.tracepoints.emit("mm_vmscan_lru_shrink_inactive", nid=0, nr_scanned=nr_taken,
                                    nr_reclaimed=reclaimed, file=file, lru=name, policy=sc.policy,
                                    priority=sc.priority, pass_nr=sc.pass_nr)
        return reclaimed

    def isolated_pfns(self, n: cython.Py_ssize_t) -> list:
        """The first n pages of the batch isolated last, from the tail on."""
        return self.lru.isolated_pfns(n)

    @cython.cfunc
    def keep(self, pfn: cython.Py_ssize_t) -> cython.void:
        """keep: back to the head of its list (if something it called left it there)."""
        if (self.lru.q[pfn << 3] >> PG_lru) & 1:
            self.lru.rotate(pfn)

    @cython.cfunc
    def activate(self, pfn: cython.Py_ssize_t, file: cython.int) -> cython.void:
        """activate_locked: to the active list, a rotation for get_scan_count's balance."""
        if self.lru.activate_page(pfn):
            self.vmstat["pgactivate"] += 1
        self.reclaim_stat[RECENT_ROTATED + file] += 1

    @cython.cfunc
    def decide(self, pfn: cython.Py_ssize_t, base: cython.Py_ssize_t, mapped: cython.bint, anon: cython.bint,
               referenced_page: cython.bint, mapping: object, index: object) -> cython.int:
        """From page_check_references() on, for a page none of the first tests kept: FREE, KEEP or ACTIVATE
        plus WHY_* << 2 (an anonymous page to free is already freed); the PTE references found are left in
        self.referenced_ptes."""
        q: cython.ulonglong[::1] = self.lru.q
        i: cython.int[::1] = self.lru.i
        ops = self.ops
        references: cython.int
        result: cython.int
        unmapped: cython.bint
        self.referenced_ptes = 0
        if mapped:
            if self.batch_rmap is None:
                self.rmap_batch()
            if self.rmap is not None:
                self.rmap_charged = True
                self.referenced_ptes = self.rmap.reclaim_page_referenced(self.k, pfn)   # charges: settle
            else:
                self.settle()
                self.referenced_ptes = ops.page_referenced(self.k, pfn)[0]
        q[base] &= ~(cython.cast(cython.ulonglong, 1) << PG_referenced)
        if self.referenced_ptes:
            if anon:
                return ACTIVATE | WHY_REFERENCED << 2
            q[base] |= 1 << PG_referenced                            # look twice at a mapped file page
            if referenced_page:
                return ACTIVATE | WHY_REFERENCED_TWICE << 2
            return KEEP | WHY_PTE_REFERENCED << 2
        references = PAGEREF_RECLAIM_CLEAN if referenced_page else PAGEREF_RECLAIM
        if anon:
            # add_to_swap(), try_to_unmap() into swap entries, the write, the swap cache's reference
            self.settle()
            why = ops.swap_out(self.k, pfn)
            if not why:
                return FREE | WHY_SWAPPED_OUT << 2
            if why == "pageout":
                return KEEP | WHY_PAGEOUT << 2                        # its write started: kept until written
            self.swap_why = why
            return ACTIVATE | WHY_SWAP << 2
        if mapped:
            if self.rmap is not None:
                self.rmap_charged = True
                unmapped = self.rmap.reclaim_try_to_unmap(self.k, pfn)                 # charges: settle
            else:
                self.settle()
                unmapped = ops.try_to_unmap(self.k, pfn)
            if not unmapped:
                return KEEP | WHY_STILL_MAPPED << 2
        if i[(pfn << 4) + I_REFCOUNT] != 1:
            return KEEP | WHY_HELD << 2                                # someone holds it (a copy in progress)
        if not (q[base] >> PG_dirty) & 1:
            return FREE | WHY_CLEAN << 2
        if references == PAGEREF_RECLAIM_CLEAN or not self.sc.may_writepage:
            return KEEP | WHY_DIRTY_DEFERRED << 2
        self.settle()
        if not self.pageout_looked:
            self.pageout_looked = True
            self.native_pageout = ops.native_pageout(self.k)
            self.end_io = ops.end_page_writeback
        if self.native_pageout is not None:         # ops.pageout without its Python front
            try:
                result = self.native_pageout.pageout(self.k, mapping, pfn, self.end_io)
            except ops.write_errors:
                result = WRITE_ERROR
            if result == WRITE_ERROR:
                result = ops.pageout_failed(self.k, mapping, pfn)
        else:
            result = ops.pageout(self.k, mapping, pfn)
        if result == PAGE_KEEP:
            return KEEP | WHY_PAGEOUT_KEEP << 2
        if result == PAGE_ACTIVATE:
            return ACTIVATE | WHY_PAGEOUT_ACTIVATE << 2
        if (q[base] & ((1 << PG_dirty) | (1 << PG_writeback) | (1 << PG_locked))) \
                or i[(pfn << 4) + I_REFCOUNT] != 1 or mapping.pages.get(index) != pfn:
            # written asynchronously: it stays inactive until end_page_writeback() moves it to the
            # tail, where the next scan frees it
            return KEEP | WHY_PAGEOUT << 2
        return FREE | WHY_WRITTEN_BACK << 2                            # a synchronous write: free it now

    @cython.ccall
    @cython.wraparound(False)
    def page_check_clean(self, pfn: cython.Py_ssize_t) -> cython.int:
        """The one rule for a page-cache page that may be freed as it is, without writing or unmapping it
        (shrink_page_list's common case; the dedup policy asks it too): WHY_CLEAN (0) when it may, else
        why not (REASONS[why])."""
        if pfn < 0 or pfn >= self.lru.nr_pages:
            raise IndexError(f"pfn {pfn} outside mem_map")
        q: cython.ulonglong[::1] = self.lru.q
        mapping = self.address_spaces.get(q[(pfn << 3) + Q_MAPPING])
        pages = None if mapping is None or mapping.unevictable_metadata else mapping.pages
        return self.clean_page_why(pfn, q[pfn << 3], pages, q[(pfn << 3) + Q_INDEX])

    @cython.cfunc
    def clean_page_why(self, pfn: cython.Py_ssize_t, flags: cython.ulonglong, pages: object,
                       index: object) -> cython.int:
        """page_check_clean() for a page whose flags and page cache (None: metadata, not reclaim's) are
        looked up, in shrink_page_list's order of tests: not in its page cache, locked, mapped, under
        writeback, dirty, held by someone else or off the LRU."""
        cur_pfn: cython.Py_ssize_t = -1
        if pages is not None:
            cur = cython.cast(dict, pages).get(index)
            if cur is not None:
                cur_pfn = cur
        if cur_pfn != pfn:
            return WHY_METADATA
        if flags & (1 << PG_locked):
            return WHY_LOCKED                              # trylock_page() would fail
        if self.lru.i[(pfn << 4) + I_MAPCOUNT] >= 0:
            return WHY_STILL_MAPPED
        if flags & (1 << PG_writeback):
            return WHY_WRITEBACK                           # its write is in flight
        if flags & (1 << PG_dirty):
            return WHY_DIRTY_DEFERRED
        if self.lru.i[(pfn << 4) + I_REFCOUNT] != 1 or not flags & (1 << PG_lru):
            return WHY_HELD
        return WHY_CLEAN

    @cython.ccall
    @cython.wraparound(False)
    def shrink_page_list(self, n: cython.Py_ssize_t) -> cython.Py_ssize_t:
        """shrink_page_list() over the n isolated pages, in Linux's order of tests; returns how many were
        freed. A page that passes them all is removed from its page cache (remove_mapping), its last
        reference dropped, off its list and into the buddy lists (free_pages)."""
        self.policy_bias = self.ops.policies_keep_pages(self.k)
        self.pageout_looked = False
        try:
            return self.shrink_pages(n)
        finally:
            self.settle()
            if self.batch_rmap is not None:       # the batch's one TLB flush (try_to_unmap_flush)
                rmap = self.batch_rmap
                self.batch_rmap = None
                self.rmap = None
                self.rmap_charged = False
                rmap.tlb_batch_flush(self.k)

    @cython.cfunc
    def settle(self) -> cython.void:
        """Before any other kernel code runs (it may read the clock or the counters): the reverse map's
        charges of this batch to the clock, and the pages freed that uncompiled-order accounting
        (account_freed at once) would already have counted. Between two settles only this module's
        code and the native reverse map run, so the clock and the counters read the same wherever
        anything can read them as with a charge and a count per page."""
        if self.rmap_charged:
            self.rmap_charged = False
            self.batch_rmap.charges_settle(self.k)
        if self.owed:
            owed: cython.Py_ssize_t = self.owed
            self.owed = 0
            self.account_freed(owed)

    @cython.cfunc
    def count_freed(self, freed: cython.Py_ssize_t) -> cython.void:
        """Freed pages counted at once, as remove_from_page_cache counts them: with nobody reporting free
        pages (then counting is all account_freed does) at the next settle, else now, so free page
        reporting is notified in the same order."""
        self.owed += freed
        if self.buddy.reporting_order != NO_REPORTING or self.buddy.report_notify:
            self.settle()

    @cython.cfunc
    def rmap_batch(self) -> cython.void:
        """At the batch's first mapped page: its TLB flushes wait for the end of the batch, and ops' reverse
        map is called without its Python fronts when it is the native one."""
        self.batch_rmap = self.k.mem_map.native_rmap
        self.rmap = self.ops.native_rmap(self.k)
        self.batch_rmap.tlb_batch_begin()

    @cython.cfunc
    @cython.wraparound(False)
    def shrink_pages(self, n: cython.Py_ssize_t) -> cython.Py_ssize_t:
        """shrink_page_list()'s loop over the isolated pages."""
        q: cython.ulonglong[::1] = self.lru.q
        i: cython.int[::1] = self.lru.i
        isolated: cython.longlong[::1] = self.lru.isolated
        reclaimed: cython.Py_ssize_t = 0
        freed: cython.Py_ssize_t = 0              # nr_file_pages and pgfree not yet counted
        cached: cython.bint = False               # the mapping of the last page, looked up once
        cached_id: cython.ulonglong = 0
        pages: dict = None
        mapping = None
        sc = self.sc
        ops = self.ops
        j: cython.Py_ssize_t
        pfn: cython.Py_ssize_t
        base: cython.Py_ssize_t
        flags: cython.ulonglong
        mapping_id: cython.ulonglong
        mapped: cython.bint
        anon: cython.bint
        referenced_page: cython.bint
        code: cython.int
        decision: cython.int
        why: cython.int
        unmapped: cython.bint
        index: object
        for j in range(n):
            pfn = isolated[j]
            base = pfn << 3
            flags = q[base]
            mapped = i[(pfn << 4) + I_MAPCOUNT] >= 0
            anon = (flags >> PG_swapbacked) & 1 == 1
            referenced_page = (flags >> PG_referenced) & 1 == 1
            index = None
            code = FREE
            self.referenced_ptes = 0
            if not anon:
                mapping_id = q[base + Q_MAPPING]
                if not cached or mapping_id != cached_id:
                    mapping = self.address_spaces.get(mapping_id)
                    pages = None if mapping is None or mapping.unevictable_metadata else mapping.pages
                    cached, cached_id = True, mapping_id
                index = q[base + Q_INDEX]             # one Python int for the lookup and the removal
                why = self.clean_page_why(pfn, flags, pages, index)
                if why == WHY_CLEAN:                             # the common case: free it as it is
                    q[base] &= ~(cython.cast(cython.ulonglong, 1) << PG_referenced)   # page_check_references()
                    code = FREE | WHY_CLEAN << 2
                elif why == WHY_DIRTY_DEFERRED or why == WHY_HELD:
                    code = self.decide(pfn, base, mapped, anon, referenced_page, mapping, index)
                    if code >> 2 >= WHY_PAGEOUT:
                        cached = False                            # the kernel ran: it may have changed anything
                elif why != WHY_STILL_MAPPED:
                    code = KEEP | why << 2                       # metadata, locked, under writeback
            if code != FREE or (not anon and not mapped):
                pass
            elif flags & (1 << PG_locked):
                code = KEEP | WHY_LOCKED << 2                    # trylock_page() failed
            elif mapped and not sc.may_unmap:
                code = KEEP | WHY_UNMAPPED_FIRST << 2
            elif flags & (1 << PG_writeback):
                code = KEEP | WHY_WRITEBACK << 2                 # its write is in flight
            elif anon and not sc.may_swap:
                code = ACTIVATE | WHY_UNMAPPED_FIRST << 2
            elif self.policy_bias and self.policy_keeps(pfn):     # a policy's bias (reclaim_policy.keep_page)
                code = (ACTIVATE if anon else KEEP) | WHY_POLICY << 2
                cached = False
            else:
                code = self.decide(pfn, base, mapped, anon, referenced_page, mapping, index)
                if mapped or anon or code >> 2 >= WHY_PAGEOUT:
                    cached = False                                # the kernel ran: it may have changed anything
            decision = code & 3
            why = code >> 2
            if decision != FREE:
                if decision == ACTIVATE:
                    if (q[base] >> PG_lru) & 1:
                        self.activate(pfn, 0 if anon else 1)
                    else:
                        decision = KEPT
                else:
                    self.keep(pfn)
                if self.tracing:
                    self.settle()
                    ops.trace(self.k, pfn, "anon" if anon else "file", mapped,
                              referenced_page or self.referenced_ptes > 0, DECISIONS[decision],
                              self.swap_why if why == WHY_SWAP else self.policy_why if why == WHY_POLICY
                              else REASONS[why], sc, flags)
                continue
            reclaimed += 1
            if anon:                                    # freed by swap_out
                if self.tracing:
                    self.settle()
                    ops.trace(self.k, pfn, "anon", mapped, False, "swapped-out", "cold", sc, flags)
                continue
            unmapped = False
            if mapped or why == WHY_WRITTEN_BACK:       # the kernel ran: look the mapping up again
                if freed:
                    self.count_freed(freed)
                    freed = 0
                cached = False
                pages = mapping.pages
                if why == WHY_CLEAN and pages.get(index) == pfn and not q[base] & (
                        (1 << PG_writeback) | (1 << PG_dirty)):
                    unmapped = True                     # unmapped and clean: freed below as the others
                else:
                    self.settle()
                    mapping.remove_from_page_cache(index)   # the last reference: the page is freed
                    if self.tracing:
                        ops.trace(self.k, pfn, "file", mapped, referenced_page, "reclaimed", REASONS[why], sc,
                                  flags)
                    continue
            if self.tracing:                      # while the page is still whole, as remove_from_page_cache's
                self.settle()
                ops.trace_delete_from_page_cache(self.k, pfn, mapping_id, index)
            del pages[index]                      # remove_from_page_cache(): clean, so no dirty tag
            q[base + Q_MAPPING] = 0
            q[base + Q_INDEX] = 0
            q[base + Q_DISK_SECTOR] = 0
            i[(pfn << 4) + I_REFCOUNT] = 0        # put_page(): the last reference
            if (q[base] >> PG_lru) & 1:           # free_pages(): off its list (on_free),
                self.lru.delete(pfn)
            q[base] = 0                           # the struct page reset,
            i[(pfn << 4) + I_MAPCOUNT] = -1
            self.buddy.free_pages(pfn, 0)         # into the buddy lists
            freed += 1
            if unmapped:                          # counted at once, as remove_from_page_cache would
                self.count_freed(freed)
                freed = 0
            if self.tracing:
                self.settle()
                ops.trace(self.k, pfn, "file", mapped, referenced_page, "reclaimed", REASONS[why], sc, flags)
        self.settle()
        if freed:
            self.account_freed(freed)
        return reclaimed

    @cython.cfunc
    def policy_keeps(self, pfn: cython.Py_ssize_t) -> cython.bint:
        """ops.policy_keeps_page, after settling (a policy reads the counters); the reason it gives is
        traced."""
        self.settle()
        reason = self.ops.policy_keeps_page(self.k, self.sc, pfn)
        if not reason:
            return False
        self.policy_why = reason
        return True

    @cython.cfunc
    def account_freed(self, freed: cython.Py_ssize_t) -> cython.void:
        """What remove_from_page_cache and free_pages do besides the lists, for `freed` pages."""
        self.vmstat["nr_file_pages"] -= freed
        self.pages_freed(freed)

    @cython.ccall
    @cython.wraparound(False)
    def shrink_active_list(self, nr_to_scan: cython.Py_ssize_t, lru: cython.int) -> cython.void:
        """Up to nr_to_scan pages from the active tail to the inactive list (pgdeactivate). Only PG_active
        is cleared. A mapped page is asked through the reverse map whether it was referenced (a rotation
        for get_scan_count); a referenced file page mapped executable stays active (running code)."""
        nr_taken: cython.Py_ssize_t = self.lru.isolate_lru_pages(lru, nr_to_scan)
        file: cython.int = 1 if lru >= LRU_INACTIVE_FILE else 0
        self.vmstat["pgrefill"] += nr_taken
        self.reclaim_stat[RECENT_SCANNED + file] += nr_taken
        isolated: cython.longlong[::1] = self.lru.isolated
        deactivated: cython.Py_ssize_t = 0
        kept_active: cython.Py_ssize_t = 0
        rotated: cython.Py_ssize_t = 0
        j: cython.Py_ssize_t
        flags: cython.ulonglong = 0
        pfn: cython.Py_ssize_t
        referenced: cython.bint
        for j in range(nr_taken):
            pfn = isolated[j]
            if self.tracing:
                flags = self.lru.q[pfn << 3]
            referenced = False
            if self.lru.i[(pfn << 4) + I_MAPCOUNT] >= 0:
                got = self.ops.page_referenced(self.k, pfn)
                referenced = got[0] > 0
                if referenced:
                    rotated += 1
                    if got[1] and file:
                        self.lru.rotate(pfn)
                        kept_active += 1
                        if self.tracing:
                            self.ops.trace(self.k, pfn, "file", True, True, "kept-active", "executable", self.sc,
                                           flags)
                        continue
            self.lru.deactivate_page(pfn)
            deactivated += 1
            if self.tracing:
                self.ops.trace(self.k, pfn, "file" if file else "anon", self.lru.i[(pfn << 4) + I_MAPCOUNT] >= 0,
                               referenced, "deactivated", "inactive-low", self.sc, flags)
        self.reclaim_stat[RECENT_ROTATED + file] += rotated
        if deactivated:
            self.vmstat["pgdeactivate"] += deactivated
        self.k.charge_reclaim(nr_taken, 0, nr_taken)          # each page moved to a list again
        if self.tracing:
            sc = self.sc
            name = self.ops.lru_names[lru]
            self.k.tracepoints.emit("mm_vmscan_lru_isolate", order=0, nr_requested=nr_to_scan, nr_scanned=nr_taken,
                                    nr_taken=nr_taken, isolate_mode=1, file=file, lru=name, policy=sc.policy,
                                    priority=sc.priority, pass_nr=sc.pass_nr)
            self.k.tracepoints.emit("mm_vmscan_lru_shrink_active", nid=0, nr_taken=nr_taken, nr_active=kept_active,
                                    nr_deactivated=deactivated, nr_referenced=rotated, file=file, lru=name,
                                    policy=sc.policy, priority=sc.priority, pass_nr=sc.pass_nr)
