"""Reverse mapping (mm/rmap.c) for reclaim: from a page to the PTEs that map it, to test and clear their
accessed bits (page_referenced) and to unmap the page (try_to_unmap). guestos/mm/rmap.py is its
readable Linux-named front.

One source in Cython's pure-Python mode (BALLAST_PURE=1 runs it as Python). Compiled, the page tables
are walked in guest RAM through a typed view of its 64-bit words, and a page no process maps (no live
address space) costs a call and a test. The walks are methods of an Rmap, one per mem_map
(MemMap.native_rmap).

Anonymous pages keep their user address in page->index, so each live address space is checked at that
address; file pages are found through the VMAs that map their file."""
import cython

_PAGE_PRESENT = cython.declare(cython.ulonglong, 1 << 0)
_PAGE_ACCESSED = cython.declare(cython.ulonglong, 1 << 5)
_PAGE_DIRTY = cython.declare(cython.ulonglong, 1 << 6)
PTE_PFN_MASK = cython.declare(cython.ulonglong, 0x000FFFFFFFFFF000)
PAGE_MAPPING_ANON = cython.declare(cython.ulonglong, 1)
VM_EXEC = cython.declare(cython.longlong, 0x4)
# struct page words (guestos/mm/mm_types.py): q[(pfn << 3) + Q_*], i[(pfn << 4) + I_MAPCOUNT]
Q_MAPPING = cython.declare(cython.int, 3)
Q_INDEX = cython.declare(cython.int, 4)
I_MAPCOUNT = cython.declare(cython.int, 3)
U64 = 0xFFFFFFFFFFFFFFFF


def constants() -> dict:
    """The layout this module was written against."""
    return dict(_PAGE_PRESENT=_PAGE_PRESENT, _PAGE_ACCESSED=_PAGE_ACCESSED, _PAGE_DIRTY=_PAGE_DIRTY,
                PTE_PFN_MASK=PTE_PFN_MASK, PAGE_MAPPING_ANON=PAGE_MAPPING_ANON, VM_EXEC=VM_EXEC,
                OFF_MAPPING=Q_MAPPING * 8, OFF_INDEX=Q_INDEX * 8, OFF_MAPCOUNT=I_MAPCOUNT * 4)


@cython.cfunc
def pte_offset(ram: cython.ulonglong[::1], pgd: cython.ulonglong, addr: cython.ulonglong) -> cython.Py_ssize_t:
    """Word index of the PTE for addr in guest RAM, or -1 when a table above it is missing
    (MemoryManager.pte_offset)."""
    table: cython.ulonglong = pgd << 12
    e: cython.ulonglong
    level: cython.int
    for level in range(3):                      # pgd (bits 39..47), pud (30..38), pmd (21..29)
        e = ram[(table >> 3) + ((addr >> (39 - 9 * level)) & 511)]
        if not e & _PAGE_PRESENT:
            return -1
        table = e & PTE_PFN_MASK
    return (table >> 3) + ((addr >> 12) & 511)


@cython.cfunc
def _check(found: list, ram: cython.ulonglong[::1], mm, vaddr, pfn: cython.ulonglong, vma) -> cython.void:
    """found += (mm, vaddr, slot, vma) when the PTE for vaddr in mm maps pfn."""
    slot: cython.Py_ssize_t = pte_offset(ram, mm.pgd, vaddr & U64)
    if slot < 0:
        return
    pte: cython.ulonglong = ram[slot]
    if pte & _PAGE_PRESENT and (pte & PTE_PFN_MASK) >> 12 == pfn:
        found.append((mm, vaddr, slot, vma))


@cython.final
@cython.cclass
class Rmap:
    """The reverse map of one mem_map (MemMap.native_rmap). It keeps a typed view of the page tables'
    RAM (k.mm.q), taken again only when that buffer changes, so a walk does not pay for one."""
    ram: cython.ulonglong[::1]
    ram_source: object

    def __init__(self):
        self.ram_source = None

    @cython.cfunc
    def page_tables(self, k) -> cython.ulonglong[::1]:
        source = k.mm.q
        if source is not self.ram_source:
            self.ram = source
            self.ram_source = source
        return self.ram

    @cython.cfunc
    def walk(self, k, pfn: cython.Py_ssize_t) -> list:
        """rmap_walk() with each PTE's file VMA (None for an anonymous page)."""
        found = []
        live = k.live_mms
        if not live:
            return found
        q = k.mem_map.q
        mapping = q[(pfn << 3) + Q_MAPPING]
        index = q[(pfn << 3) + Q_INDEX]
        ram: cython.ulonglong[::1] = self.page_tables(k)
        walked: cython.Py_ssize_t = 0
        for mm in list(live):
            if mapping & PAGE_MAPPING_ANON:
                walked += 1
                _check(found, ram, mm, index << 12, pfn, None)
                continue
            vmas = []
            for vma in mm.vmas:                       # those mapping this file at this index, in order
                f = vma.vm_file
                if f is not None and getattr(f, "mapping_id", None) == mapping \
                        and vma.vm_pgoff <= index < vma.vm_pgoff + ((vma.vm_end - vma.vm_start) >> 12):
                    vmas.append(vma)
            walked += len(vmas)
            for vma in vmas:
                _check(found, ram, mm, vma.vm_start + ((index - vma.vm_pgoff) << 12), pfn, vma)
        k.charge(walked * k.costs.rmap_walk_ns)      # per mapping walked (costs.py)
        return found

    @cython.ccall
    def rmap_walk(self, k, pfn: cython.Py_ssize_t) -> list:
        """[(mm, vaddr, pte slot)] of every PTE that maps pfn; each mapping looked at is charged
        (costs.rmap_walk_ns)."""
        return [(mm, vaddr, slot) for mm, vaddr, slot, _ in self.walk(k, pfn)]

    @cython.ccall
    def page_referenced(self, k, pfn: cython.Py_ssize_t) -> tuple:
        """(PTEs whose accessed bit was set, and is now clear; whether one maps it executable)."""
        ptes = self.walk(k, pfn)
        if not ptes:
            return 0, False
        ram: cython.ulonglong[::1] = self.page_tables(k)
        referenced: cython.Py_ssize_t = 0
        executable: cython.bint = False
        slot: cython.Py_ssize_t
        pte: cython.ulonglong
        for mm, vaddr, s, vma in ptes:
            slot = s
            pte = ram[slot]
            if pte & _PAGE_ACCESSED:
                ram[slot] = pte & ~_PAGE_ACCESSED
                referenced += 1
            if vma is None:
                vma = mm.find_vma(vaddr)
            # (a file page's VMA contains vaddr, so it is what find_vma(vaddr) would return: VMAs are
            # sorted and do not overlap)
            if vma is not None and vma.vm_flags & VM_EXEC:
                executable = True
        if referenced:
            k.flush_tlb()       # the TLB would otherwise keep using the entry without setting A again
        return referenced, executable

    @cython.ccall
    def page_referenced_vm_exec(self, k, pfn: cython.Py_ssize_t) -> tuple:
        """page_referenced() as reclaim asks it: (referenced PTEs, whether a referencing mapping is
        executable)."""
        got = self.page_referenced(k, pfn)
        if not got[0]:
            return 0, False
        return got[0], bool(got[1])

    @cython.ccall
    def try_to_unmap(self, k, pfn: cython.Py_ssize_t) -> bool:
        """Clear every PTE of a file page (its dirty bits go to the page); True when none is left."""
        ptes = self.walk(k, pfn)
        if ptes:
            ram: cython.ulonglong[::1] = self.page_tables(k)
            slot: cython.Py_ssize_t
            mmu = k.mm
            for mm, vaddr, s, _ in ptes:
                slot = s
                pte = ram[slot]
                ram[slot] = 0
                mmu.page_remove_rmap(mm, pfn, pte)
                k.charge(k.costs.reclaim_unmap_ns)
            k.flush_tlb()
        i = k.mem_map.i
        return i[(pfn << 4) + I_MAPCOUNT] + 1 == 0
