"""The hot loops of memory management: the LRU lists, the buddy free lists and the reclaim scans.
guestos/mm/lru.py, page_alloc.py and vmscan.py are their readable Linux-named fronts.

One source in Cython's pure-Python mode. Compiled, a clean page-cache page found at the tail of
the inactive list is isolated, tested, removed from its page cache, taken off the LRU and merged
into the buddy lists without leaving C. Uncompiled (BALLAST_PURE=1), the same steps run as Python
that pdb can step through. Every page that is not that common case goes back to the kernel's
Python code (vmscan.shrink_page and shrink_active_page), one page at a time, in order.

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
LRU_INACTIVE_FILE = cython.declare(cython.int, 2)
LRU_UNEVICTABLE = cython.declare(cython.int, 4)
MAX_ORDER = cython.declare(cython.int, 11)
NO_REPORTING = cython.declare(cython.int, 11)       # reporting_order when nobody reports free pages

# a page with any of these is not the common case of shrink_page_list
NOT_SIMPLE_FILE = cython.declare(cython.ulonglong, (1 << 20) | (1 << 0) | (1 << 4))   # swapbacked, locked, dirty


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
        self.delete(pfn)
        self.q[pfn << 3] &= ~((cython.cast(cython.ulonglong, 1) << PG_active) |
                              (cython.cast(cython.ulonglong, 1) << PG_referenced))
        self.add(pfn, self.page_lru(pfn))

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
    """One reclaim pass (a ScanControl) seen from the hot path: the LRU lists, the buddy lists,
    the page caches (mapping id -> address space with a `pages` dict index -> pfn), the vmstat
    dict, pages_freed(n) for what the page allocator does for the pages freed here besides
    listing them, and the kernel's Python code for the pages that are not the common case:
    shrink_page(k, pfn, sc) -> freed, shrink_active_page(k, pfn, sc); with tracing on, `trace`
    (guestos.mm.vmscan.ReclaimTrace) emits the events of the scans and of the decisions taken here:
    trace.isolate, shrink_inactive, shrink_active, freed and deactivated."""
    lru: LruCore
    buddy: BuddyCore
    address_spaces: dict
    vmstat: dict
    pages_freed: object
    k: object
    sc: object
    shrink_page: object
    shrink_active_page: object
    trace: object
    pgscan: str
    pgsteal: str

    def __init__(self, lru: LruCore, buddy: BuddyCore, address_spaces: dict, vmstat: dict, pages_freed, k, sc,
                 shrink_page, shrink_active_page, trace):
        self.lru = lru
        self.buddy = buddy
        self.address_spaces = address_spaces
        self.vmstat = vmstat
        self.pages_freed = pages_freed
        self.k = k
        self.sc = sc
        self.shrink_page = shrink_page
        self.shrink_active_page = shrink_active_page
        self.trace = trace
        self.pgscan = "pgscan_kswapd" if sc.current_is_kswapd else "pgscan_direct"
        self.pgsteal = "pgsteal_kswapd" if sc.current_is_kswapd else "pgsteal_direct"

    @cython.ccall
    def shrink_lists(self, scan: cython.longlong[::1], cluster: cython.Py_ssize_t, may_stop: cython.bint) -> None:
        """The loop of shrink_zone(): up to `cluster` pages of each list in turn (inactive anon,
        active anon, inactive file, active file) until the counts in `scan` are used up, or,
        when may_stop, until sc.nr_reclaimed reaches sc.nr_to_reclaim. An active list is scanned
        only while its inactive list is the smaller."""
        nr = self.lru.nr
        lru: cython.int
        n: cython.Py_ssize_t
        while scan[0] or scan[1] or scan[2] or scan[3]:
            for lru in range(4):
                if not scan[lru]:
                    continue
                n = scan[lru] if scan[lru] < cluster else cluster
                scan[lru] -= n
                if lru & 1:                                   # LRU_ACTIVE_ANON, LRU_ACTIVE_FILE
                    if nr[lru] > nr[lru - 1]:                 # inactive_anon/file_is_low()
                        self.shrink_active_list(n, lru)
                else:
                    self.sc.nr_reclaimed += self.shrink_inactive_list(n, lru)
            if may_stop and self.sc.nr_reclaimed >= self.sc.nr_to_reclaim:
                break

    @cython.ccall
    def shrink_inactive_list(self, nr_to_scan: cython.Py_ssize_t, lru: cython.int) -> cython.Py_ssize_t:
        """Isolate up to nr_to_scan pages from the tail and try to free them; returns how many were."""
        nr_taken: cython.Py_ssize_t = self.lru.isolate_lru_pages(lru, nr_to_scan)
        self.sc.nr_scanned += nr_taken
        self.vmstat[self.pgscan] += nr_taken
        if self.trace is not None:
            self.trace.isolate(lru, nr_to_scan, nr_taken)
        reclaimed: cython.Py_ssize_t = self.shrink_page_list(nr_taken)
        self.vmstat[self.pgsteal] += reclaimed
        if self.trace is not None:
            self.trace.shrink_inactive(lru, nr_taken, reclaimed)
        return reclaimed

    @cython.ccall
    @cython.wraparound(False)
    def shrink_page_list(self, n: cython.Py_ssize_t) -> cython.Py_ssize_t:
        """shrink_page_list() over the n isolated pages; returns how many were freed.

        The common case is done here: a clean, unlocked, unmapped page-cache page that its
        mapping still indexes, that only the page cache holds (refcount 1), in a mapping that
        reclaim may touch. Its PG_referenced does not save it (that is for mapped pages). It is
        removed from the page cache (remove_from_page_cache), its last reference dropped
        (put_page), it leaves its list and goes to the buddy lists (free_pages). Any other page
        goes to shrink_page()."""
        q: cython.ulonglong[::1] = self.lru.q
        i: cython.int[::1] = self.lru.i
        isolated: cython.longlong[::1] = self.lru.isolated
        reclaimed: cython.Py_ssize_t = 0
        freed: cython.Py_ssize_t = 0              # nr_file_pages and pgfree not yet counted
        cached: cython.bint = False               # the mapping of the last page, looked up once
        cached_id: cython.ulonglong = 0
        pages: dict = None
        j: cython.Py_ssize_t
        pfn: cython.Py_ssize_t
        cur_pfn: cython.Py_ssize_t
        base: cython.Py_ssize_t
        flags: cython.ulonglong
        mapping_id: cython.ulonglong
        index: object
        simple: cython.bint
        for j in range(n):
            pfn = isolated[j]
            base = pfn << 3
            flags = q[base]
            simple = False
            if flags & NOT_SIMPLE_FILE == 0 and i[(pfn << 4) + I_MAPCOUNT] == -1 and \
                    i[(pfn << 4) + I_REFCOUNT] == 1:
                mapping_id = q[base + Q_MAPPING]
                if not cached or mapping_id != cached_id:
                    mapping = self.address_spaces.get(mapping_id)
                    pages = None if mapping is None or mapping.unevictable_metadata else mapping.pages
                    cached, cached_id = True, mapping_id
                if pages is not None:
                    index = q[base + Q_INDEX]             # one Python int for the lookup and the removal
                    cur = pages.get(index)
                    if cur is not None:
                        cur_pfn = cur
                        simple = cur_pfn == pfn
            if not simple:
                if freed:
                    self.account_freed(freed)
                    freed = 0
                if self.shrink_page(self.k, pfn, self.sc):
                    reclaimed += 1
                cached = False                    # the kernel may have changed anything
                continue
            if self.trace is not None:            # while the page is still whole, as remove_from_page_cache's
                self.trace.delete_from_page_cache(pfn, mapping_id, index)
            del pages[index]                      # remove_from_page_cache(): clean, so no dirty tag
            q[base + Q_MAPPING] = 0
            q[base + Q_INDEX] = 0
            q[base + Q_DISK_SECTOR] = 0
            i[(pfn << 4) + I_REFCOUNT] = 0        # put_page(): the last reference
            if (flags >> PG_lru) & 1:             # free_pages(): off its list (on_free),
                self.lru.delete(pfn)
            q[base] = 0                           # the struct page reset,
            i[(pfn << 4) + I_MAPCOUNT] = -1
            self.buddy.free_pages(pfn, 0)         # into the buddy lists
            freed += 1
            reclaimed += 1
            if self.trace is not None:
                self.trace.freed(pfn, flags, mapping_id, index)
        if freed:
            self.account_freed(freed)
        return reclaimed

    @cython.cfunc
    def account_freed(self, freed: cython.Py_ssize_t) -> cython.void:
        """What remove_from_page_cache and free_pages do besides the lists, for `freed` pages."""
        self.vmstat["nr_file_pages"] -= freed
        self.pages_freed(freed)

    @cython.ccall
    @cython.wraparound(False)
    def shrink_active_list(self, nr_to_scan: cython.Py_ssize_t, lru: cython.int) -> cython.void:
        """Up to nr_to_scan pages from the active tail to the inactive list (pgdeactivate), their
        PG_referenced cleared; a mapped page goes to shrink_active_page(), which asks the reverse map."""
        nr_taken: cython.Py_ssize_t = self.lru.isolate_lru_pages(lru, nr_to_scan)
        self.vmstat["pgrefill"] += nr_taken
        deactivated_before = self.vmstat["pgdeactivate"] if self.trace is not None else 0
        if self.trace is not None:
            self.trace.isolate(lru, nr_to_scan, nr_taken)
        isolated: cython.longlong[::1] = self.lru.isolated
        deactivated: cython.Py_ssize_t = 0
        j: cython.Py_ssize_t
        flags: cython.ulonglong = 0
        pfn: cython.Py_ssize_t
        for j in range(nr_taken):
            pfn = isolated[j]
            if self.lru.i[(pfn << 4) + I_MAPCOUNT] + 1 > 0:
                if deactivated:
                    self.vmstat["pgdeactivate"] += deactivated
                    deactivated = 0
                self.shrink_active_page(self.k, pfn, self.sc)
                continue
            if self.trace is not None:
                flags = self.lru.q[pfn << 3]
            self.lru.deactivate_page(pfn)
            deactivated += 1
            if self.trace is not None:
                self.trace.deactivated(pfn, flags)
        if deactivated:
            self.vmstat["pgdeactivate"] += deactivated
        if self.trace is not None:
            self.trace.shrink_active(lru, nr_taken, self.vmstat["pgdeactivate"] - deactivated_before)
