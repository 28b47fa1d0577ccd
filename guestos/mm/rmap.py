"""Reverse mapping (mm/rmap.c): from a page to the PTEs that map it, to test and clear their
accessed bits (page_referenced) and to unmap the page (try_to_unmap).

Anonymous pages keep their user address in page->index, so each live address space is
checked at that address; file pages are found through the VMAs that map their file.
The walks themselves are cython_ext/rmap.py (compiled, or its Python source with the kernel's
mem_map when pure): these are their kernel-side names."""
from .pgtable import _PAGE_DIRTY


def rmap_walk(k, pfn: int) -> list:
    """[(mm, vaddr, pte slot)] of every PTE that maps pfn."""
    return k.mem_map.native_rmap.rmap_walk(k, pfn)


def page_referenced(k, pfn: int) -> tuple[int, bool]:
    """(PTEs whose accessed bit was set, and is now clear; whether one maps it executable)."""
    return k.mem_map.native_rmap.page_referenced(k, pfn)


def try_to_unmap(k, pfn: int) -> bool:
    """Clear every PTE of a file page (its dirty bits go to the page); True when none is left."""
    return k.mem_map.native_rmap.try_to_unmap(k, pfn)


__all__ = ["rmap_walk", "page_referenced", "try_to_unmap", "_PAGE_DIRTY"]
