"""Swap (mm/swapfile.c, mm/swap_state.c, mm/page_io.c): a swap area on a virtio disk made by
the real mkswap, its slot map, the swap cache, and page-sized reads and writes to it.

A swapped-out PTE holds its slot: (slot << 12) | SWP_PTE_MARK, present bit clear, so the
hardware faults on it and the kernel knows where the page went."""
from .. import layouts_struct
from ..structview import StructView
from .mm_types import NIL, PG_dirty, PG_locked, PG_reclaim, PG_swapbacked, PG_swapcache, PG_uptodate, PG_writeback

PAGE_SIZE = 4096
SWP_PTE_MARK = 0x2                 # bit 1 of a non-present PTE: "this is a swap entry"

# the first page of a swap area, as mkswap writes it (SwapHeader in guestos/layouts.py)
SWAP_HEADER = StructView(layouts_struct.SwapHeader_FIELDS)


def is_swap_pte(pte: int) -> bool:
    return pte != 0 and not pte & 1


def swp_pte(slot: int) -> int:
    return (slot << 12) | SWP_PTE_MARK


def swp_slot(pte: int) -> int:
    return pte >> 12


class SwapError(Exception):
    pass


class SwapArea:
    def __init__(self, k, blk, name: str):
        self.k, self.blk, self.name = k, blk, name
        page = k.page_alloc.alloc_pages()
        try:
            if blk.transfer(False, 0, [(page << 12, PAGE_SIZE)]) != 0:
                raise SwapError(f"{name}: cannot read the swap header")
            try:
                header = SWAP_HEADER.parse(k.ram, page << 12)
            except ValueError:
                raise SwapError(f"{name}: no swap signature (make it with mkswap)") from None
        finally:
            k.page_alloc.free_pages(page)
        if header.version != 1:
            raise SwapError(f"{name}: swap header version {header.version}, not 1")
        self.pages = min(header.last_page + 1, blk.size_bytes // PAGE_SIZE)
        self.swap_map = bytearray(self.pages)      # PTE references per slot; slot 0 is the header
        self.swap_map[0] = 0xFF
        self.inuse = 0
        self.cluster_next = 1
        self.cache = {}                           # slot -> pfn: the swap cache

    @property
    def nr_free(self) -> int:
        return self.pages - 1 - self.inuse

    # --- slots ---
    def get_swap_page(self):
        """scan_swap_map(): the next free slot after the last one given (sequential writes)."""
        if self.nr_free == 0:
            return None
        slot = self.cluster_next
        for _ in range(self.pages):
            if slot >= self.pages:
                slot = 1
            if self.swap_map[slot] == 0 and slot not in self.cache:
                self.cluster_next = slot + 1
                self.inuse += 1
                return slot
            slot += 1
        return None

    def swap_duplicate(self, slot: int) -> None:
        self.swap_map[slot] += 1

    def swap_free(self, slot: int) -> None:
        """A PTE let go of its slot; with no PTE left the slot (and its cache page) is free."""
        self.swap_map[slot] -= 1
        if self.swap_map[slot] == 0:
            if slot in self.cache:
                if not self.k.mem_map.test(self.cache[slot], PG_writeback):
                    self.delete_from_swap_cache(slot)
                # else: being written; reclaim frees it from the swap cache once it is (the slot waits)
            else:
                self.inuse -= 1

    # --- the swap cache ---
    def add_to_swap_cache(self, pfn: int, slot: int) -> None:
        mem_map = self.k.mem_map
        mem_map.set(pfn, PG_swapcache)
        mem_map.set_private(pfn, slot)
        mem_map.set_refcount(pfn, mem_map.refcount(pfn) + 1)
        self.cache[slot] = pfn

    def delete_from_swap_cache(self, slot: int) -> None:
        pfn = self.cache.pop(slot)
        mem_map = self.k.mem_map
        mem_map.clear(pfn, PG_swapcache)
        mem_map.set_private(pfn, 0)
        if self.swap_map[slot] == 0:
            self.inuse -= 1
        self.k.page_alloc.put_page(pfn)

    # --- page I/O ---
    def swap_writepage(self, pfn: int, slot: int) -> None:
        if self.blk.transfer(True, slot * PAGE_SIZE, [(pfn << 12, PAGE_SIZE)]) != 0:
            raise SwapError("swap write failed")
        self.k.mem_map.clear(pfn, PG_dirty)
        self.k.vmstat["pswpout"] += 1
        if self.k.tracepoints is not None:
            self.k.tracepoints.emit("mm_swap_out", pfn=pfn, slot=slot)

    def swap_writepage_async(self, pfn: int, slot: int, end_io) -> bool:
        """swap_writepage() for reclaim: on a disk that completes later the page is cleaned for I/O, gets
        PG_reclaim and PG_writeback and end_io(k, pfn) runs at the completion (True); otherwise it is
        written before this returns (False)."""
        submit = getattr(self.blk, "transfer_runs_async", None)
        if submit is None:
            self.swap_writepage(pfn, slot)
            return False
        k = self.k
        q = k.mem_map.q
        q[pfn << 3] = q[pfn << 3] & ~(1 << PG_dirty) | (1 << PG_writeback) | (1 << PG_reclaim)
        k.vmstat["nr_writeback"] += 1
        k.vmstat["pswpout"] += 1
        if k.tracepoints is not None:
            k.tracepoints.emit("mm_swap_out", pfn=pfn, slot=slot)

        def done(status: int) -> None:
            if status != 0:
                k.mem_map.set(pfn, PG_dirty)          # not written: write it again next time
            end_io(k, pfn)
        submit(True, [(slot * PAGE_SIZE, [(pfn << 12, PAGE_SIZE)])], done)
        return True

    def swap_readpage(self, slot: int) -> int:
        """A new page holding the slot's contents, added to the swap cache (read_swap_cache_async):
        in the cache and locked while it is read, so that a task faulting on the same slot meanwhile
        waits for this read instead of starting its own."""
        k = self.k
        pfn = k.pcp.alloc()
        if pfn == NIL:
            return NIL
        other = self.cache.get(slot)
        if other is not None:                     # read in by another task while this one slept in reclaim
            k.page_alloc.put_page(pfn)
            return other
        k.mem_map.set_flags(pfn, (1 << PG_swapbacked) | (1 << PG_uptodate) | (1 << PG_locked))
        self.add_to_swap_cache(pfn, slot)         # the cache's reference, beside the reader's
        status = self.blk.transfer(False, slot * PAGE_SIZE, [(pfn << 12, PAGE_SIZE)])
        k.mem_map.clear(pfn, PG_locked)
        if status != 0:
            if self.cache.get(slot) == pfn:
                self.delete_from_swap_cache(slot)
            k.page_alloc.put_page(pfn)
            raise SwapError("swap read failed")
        k.vmstat["pswpin"] += 1
        if k.tracepoints is not None:
            k.tracepoints.emit("mm_swap_in", pfn=pfn, slot=slot)
        k.page_alloc.put_page(pfn)                # the reader's reference: the cache's stays
        return pfn
