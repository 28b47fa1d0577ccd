"""Property tests of the LRU lists: whatever sequence of adds, activations, deactivations,
rotations and frees, every page is on at most one list, in the list its flags name, the
links agree both ways, and the list sizes equal the counters."""
from hypothesis import given, settings
from hypothesis import strategies as st

from guestos.mm.lru import NR_LRU_LISTS, LruLists, page_lru
from guestos.mm.mm_types import NIL, PG_active, PG_lru, PG_swapbacked, PG_unevictable, STRUCT_PAGE_SIZE, MemMap

NPAGES = 64

ops = st.lists(st.tuples(st.sampled_from(["add_file", "add_anon", "add_unevictable", "activate", "deactivate",
                                          "rotate", "free", "batch"]), st.integers(0, NPAGES - 1)), max_size=200)


def walk(lru: LruLists, mem_map: MemMap) -> dict:
    where = {}
    for lst in range(NR_LRU_LISTS):
        count, pfn, prev = 0, lru.head[lst], NIL
        while pfn != NIL:
            assert pfn not in where, "a page on two lists"
            where[pfn] = lst
            assert mem_map.lru_prev(pfn) == prev
            assert mem_map.test(pfn, PG_lru) and page_lru(mem_map, pfn) == lst
            prev, pfn = pfn, mem_map.lru_next(pfn)
            count += 1
        assert lru.tail[lst] == prev
        assert count == lru.nr[lst]
    return where


@settings(max_examples=300, deadline=None, database=None)
@given(ops)
def test_lru_lists_stay_coherent(sequence):
    ram = memoryview(bytearray(NPAGES * STRUCT_PAGE_SIZE))
    mem_map = MemMap(ram, 0, NPAGES)
    vmstat = {"pgactivate": 0, "pgdeactivate": 0}
    lru = LruLists(mem_map, vmstat)
    listed = set()
    for op, pfn in sequence:
        on_list = mem_map.test(pfn, PG_lru)
        assert on_list == (pfn in listed)
        if op.startswith("add") and not on_list:
            mem_map.set_flags(pfn, 0)
            if op == "add_anon":
                mem_map.set(pfn, PG_swapbacked)
            elif op == "add_unevictable":
                mem_map.set(pfn, PG_unevictable)
            lru.lru_cache_add(pfn, active=op == "add_anon")
            listed.add(pfn)
        elif op == "activate" and on_list:
            lru.activate_page(pfn)
        elif op == "deactivate" and on_list and not mem_map.test(pfn, PG_unevictable):
            lru.deactivate_page(pfn)
        elif op == "rotate" and on_list:
            lru.rotate(pfn)
        elif op == "batch":
            batch = [p for p in range(pfn, min(pfn + 4, NPAGES)) if p not in listed]
            for p in batch:
                mem_map.set_flags(p, 1 << PG_swapbacked)
            lru.add_batch(batch, page_lru(mem_map, batch[0]) + 1 if batch else 1, 1 << PG_active)
            listed.update(batch)
        elif op == "free":
            lru.remove_if_listed(pfn)
            listed.discard(pfn)
        where = walk(lru, mem_map)
        assert set(where) == listed
