"""Reverse mapping (mm/rmap.c): from a page to the PTEs that map it, to test and clear their
accessed bits (page_referenced) and to unmap the page (try_to_unmap).

Anonymous pages keep their user address in page->index, so each live address space is
checked at that address; file pages are found through the VMAs that map their file."""
from .mm_types import PAGE_MAPPING_ANON
from .pgtable import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, pte_pfn


def rmap_walk(k, pfn: int) -> list:
    """[(mm, vaddr, pte slot)] of every PTE that maps pfn."""
    found = []
    if not k.live_mms:
        return found
    mem_map, q, pte_offset = k.mem_map, k.mm.q, k.mm.pte_offset
    mapping, index = mem_map.mapping(pfn), mem_map.index(pfn)
    walked = 0
    for mm in list(k.live_mms):
        if mapping & PAGE_MAPPING_ANON:
            vaddrs = (index << 12,)
        else:
            vaddrs = [vma.vm_start + ((index - vma.vm_pgoff) << 12) for vma in mm.vmas
                      if getattr(vma.vm_file, "mapping_id", None) == mapping
                      and vma.vm_pgoff <= index < vma.vm_pgoff + ((vma.vm_end - vma.vm_start) >> 12)]
        walked += len(vaddrs)
        for vaddr in vaddrs:
            slot = pte_offset(mm, vaddr)
            if slot is not None and q[slot] & _PAGE_PRESENT and pte_pfn(q[slot]) == pfn:
                found.append((mm, vaddr, slot))
    k.charge(walked * k.costs.rmap_walk_ns)          # per mapping walked (costs.py)
    return found


def page_referenced(k, pfn: int) -> tuple[int, bool]:
    """(PTEs whose accessed bit was set, and is now clear; whether one maps it executable)."""
    q = k.mm.q
    referenced, executable = 0, False
    for mm, vaddr, slot in rmap_walk(k, pfn):
        pte = q[slot]
        if pte & _PAGE_ACCESSED:
            q[slot] = pte & ~_PAGE_ACCESSED
            referenced += 1
        vma = mm.find_vma(vaddr)
        if vma is not None and vma.vm_flags & 4:          # VM_EXEC
            executable = True
    if referenced:
        k.flush_tlb()           # the TLB would otherwise keep using the entry without setting A again
    return referenced, executable


def try_to_unmap(k, pfn: int) -> bool:
    """Clear every PTE of a file page (its dirty bits go to the page); True when none is left."""
    q = k.mm.q
    ptes = rmap_walk(k, pfn)
    for mm, vaddr, slot in ptes:
        pte = q[slot]
        q[slot] = 0
        k.mm.page_remove_rmap(mm, pfn, pte)
        k.charge(k.costs.reclaim_unmap_ns)
    if ptes:
        k.flush_tlb()
    return k.mem_map.mapcount(pfn) == 0


__all__ = ["rmap_walk", "page_referenced", "try_to_unmap", "_PAGE_DIRTY"]
