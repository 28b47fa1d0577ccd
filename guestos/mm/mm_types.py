"""struct page, one per frame, kept in guest RAM (mem_map), as in include/linux/mm_types.h.

The layout is declared once, in guestos/layouts.py; the kernel reads and writes fields
through typed memoryviews over the same bytes (the fast view of that layout).
"""
import cython_ext

from .. import layouts_struct
from ..structview import StructView

STRUCT_PAGE = StructView(layouts_struct.StructPage_FIELDS)     # declared in guestos/layouts.py
STRUCT_PAGE_SIZE = STRUCT_PAGE.size                             # 64 bytes, as on x86-64 Linux
assert STRUCT_PAGE_SIZE == 64
OFF_FLAGS, OFF_REFCOUNT, OFF_MAPCOUNT, OFF_PRIVATE, OFF_MAPPING, OFF_INDEX, OFF_LRU_NEXT, OFF_LRU_PREV, \
    OFF_DISK_SECTOR = (STRUCT_PAGE.offset[name] for name in (
        "flags", "_refcount", "_mapcount", "private", "mapping", "index", "lru_next", "lru_prev", "disk_sector"))

NIL = 0xFFFFFFFF                                # end of a pfn-linked list

# page flags (include/linux/page-flags.h, 2.6.35 order)
PG_locked = 0
PG_error = 1
PG_referenced = 2
PG_uptodate = 3
PG_reported = PG_uptodate                       # on a free page: free page reporting sent it
PG_dirty = 4
PG_lru = 5
PG_active = 6
PG_slab = 7
PG_reserved = 10
PG_private = 11
PG_writeback = 13
PG_head = 14
PG_swapcache = 15
PG_mappedtodisk = 16
PG_reclaim = 17
PG_buddy = 19
PG_swapbacked = 20
PG_unevictable = 21
PG_mlocked = 22
PG_pgtable = 23                                 # ours: a page-table page (Linux keeps a counter)

PAGE_MAPPING_ANON = 1


class MemMap:
    """Typed access to the struct pages in guest RAM. `hotpath` is cython_ext.reclaim, the LRU, buddy
    and reclaim loops over these bytes: compiled, or its Python source when pure (or BALLAST_PURE);
    `native_rmap` (a cython_ext.rmap.Rmap, behind guestos/mm/rmap.py) and `native_pageout` (a
    cython_ext.pageout.Pageout over these pages, behind vmscan.pageout and AddressSpace.writepage)
    in the same mode."""

    def __init__(self, ram: memoryview, paddr: int, nr_pages: int, pure: bool = None):
        self.hotpath = cython_ext.load("reclaim", pure)
        self.native_rmap = cython_ext.load("rmap", pure).Rmap()
        self.paddr = paddr
        self.nr_pages = nr_pages
        raw = ram[paddr:paddr + nr_pages * STRUCT_PAGE_SIZE]
        self.raw = raw
        self.q = raw.cast("Q")      # 8 words per page
        self.i = raw.cast("i")      # 16 ints per page
        self.u = raw.cast("I")
        self.native_pageout = cython_ext.load("pageout", pure).Pageout(self.q)

    @property
    def size(self) -> int:
        return self.nr_pages * STRUCT_PAGE_SIZE

    # flags
    def flags(self, pfn: int) -> int:
        return self.q[pfn << 3]

    def test(self, pfn: int, bit: int) -> bool:
        return (self.q[pfn << 3] >> bit) & 1 == 1

    def set(self, pfn: int, bit: int) -> None:
        self.q[pfn << 3] |= 1 << bit

    def clear(self, pfn: int, bit: int) -> None:
        self.q[pfn << 3] &= ~(1 << bit)

    def set_flags(self, pfn: int, value: int) -> None:
        self.q[pfn << 3] = value

    def set_flags_many(self, pfns: list, value: int) -> None:
        self.hotpath.set_page_flags(self.q, pfns, value)

    def clear_many(self, pfns: list, bit: int) -> None:
        self.hotpath.clear_page_flag(self.q, pfns, bit)

    # counts
    def refcount(self, pfn: int) -> int:
        return self.i[(pfn << 4) + 2]

    def set_refcount(self, pfn: int, value: int) -> None:
        self.i[(pfn << 4) + 2] = value

    def mapcount(self, pfn: int) -> int:
        return self.i[(pfn << 4) + 3] + 1

    def set_mapcount(self, pfn: int, mapped: int) -> None:
        self.i[(pfn << 4) + 3] = mapped - 1

    # other words
    def private(self, pfn: int) -> int:
        return self.q[(pfn << 3) + 2]

    def set_private(self, pfn: int, value: int) -> None:
        self.q[(pfn << 3) + 2] = value

    def mapping(self, pfn: int) -> int:
        return self.q[(pfn << 3) + 3]

    def index(self, pfn: int) -> int:
        return self.q[(pfn << 3) + 4]

    def set_mapping(self, pfn: int, mapping: int, index: int) -> None:
        self.q[(pfn << 3) + 3] = mapping
        self.q[(pfn << 3) + 4] = index

    def disk_sector(self, pfn: int):
        """The first disk sector this page-cache page holds, or None (not on disk, or anonymous)."""
        v = self.q[(pfn << 3) + 6]
        return v - 1 if v else None

    def set_disk_sector(self, pfn: int, sector) -> None:
        self.q[(pfn << 3) + 6] = 0 if sector is None else sector + 1

    def lru_next(self, pfn: int) -> int:
        return self.u[(pfn << 4) + 10]

    def lru_prev(self, pfn: int) -> int:
        return self.u[(pfn << 4) + 11]

    def set_lru(self, pfn: int, nxt: int, prev: int) -> None:
        self.u[(pfn << 4) + 10] = nxt
        self.u[(pfn << 4) + 11] = prev

    def parse(self, pfn: int):
        """The declared layout, for debugging and tests."""
        base = pfn * STRUCT_PAGE_SIZE
        return STRUCT_PAGE.parse(self.raw, base)
