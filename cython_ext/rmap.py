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
# struct page words (guestos/mm/mm_types.py): q[(pfn << 3) + Q_*], i[(pfn << 4) + I_*]
Q_MAPPING = cython.declare(cython.int, 3)
Q_INDEX = cython.declare(cython.int, 4)
I_REFCOUNT = cython.declare(cython.int, 2)
I_MAPCOUNT = cython.declare(cython.int, 3)
U64 = 0xFFFFFFFFFFFFFFFF


def constants() -> dict:
    """The layout this module was written against."""
    return dict(_PAGE_PRESENT=_PAGE_PRESENT, _PAGE_ACCESSED=_PAGE_ACCESSED, _PAGE_DIRTY=_PAGE_DIRTY,
                PTE_PFN_MASK=PTE_PFN_MASK, PAGE_MAPPING_ANON=PAGE_MAPPING_ANON, VM_EXEC=VM_EXEC,
                OFF_MAPPING=Q_MAPPING * 8, OFF_INDEX=Q_INDEX * 8, OFF_MAPCOUNT=I_MAPCOUNT * 4,
                OFF_REFCOUNT=I_REFCOUNT * 4)


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


@cython.final
@cython.cclass
class Rmap:
    """The reverse map of one mem_map (MemMap.native_rmap). It keeps a typed view of the page tables'
    RAM (k.mm.q), taken again only when that buffer changes, so a walk does not pay for one.

    A walk's charges (the mappings walked, the PTEs cleared) go to the clock once per call, before
    anything else of the kernel runs, so the clock reads the same as with a charge each. The two calls
    for shrink_page_list's batch (reclaim_page_referenced, reclaim_try_to_unmap) leave theirs for
    charges_settle, which the batch calls before any other kernel code runs (and a walk settles before it
    calls the kernel itself); every other call still charges at its end. Inside a
    reclaim batch (tlb_batch_begin .. tlb_batch_flush, as Linux's try_to_unmap_flush), the TLB is
    flushed once at the end of the batch, not per page, and a page's walk is kept for the next look at
    the same page (try_to_unmap after page_referenced): no guest instruction and no other task runs in
    a batch, so its VMAs and page tables change only here. Before anything may sleep (wait_event),
    tlb_batch_sync flushes and forgets the walk."""
    ram: cython.ulonglong[::1]
    ram_source: object
    pq: cython.ulonglong[::1]           # the struct pages (k.mem_map.q, .i), likewise
    pi: cython.int[::1]
    pages_source: object
    pending_ns: object                  # charges of this call (or of the batch's calls) not yet given to the clock,
    pending_int: cython.longlong        # the part charged at integer costs (summed in C: the same total)
    int_costs: cython.bint              # walk_ns and unmap_ns are ints, also held as walk_int and unmap_int
    walk_int: cython.longlong
    unmap_int: cython.longlong
    defer_flush: cython.bint
    flush_pending: cython.bint
    walked_pfn: cython.Py_ssize_t       # in a batch: the page last walked (-1: none), its PTEs and mappings walked
    walked_found: list
    walked_count: cython.Py_ssize_t
    file_vmas: dict                     # in a batch: per file (page->mapping), [(mm, pgd, vma, vm_pgoff, vm_start, pages, vm_flags)]
    last_mapping: cython.ulonglong      # in a batch: the file last walked and its entry of file_vmas (None: none)
    last_vmas: list
    executable: cython.bint             # what the last referenced() found: a mapping of the page is executable
    batch_views: cython.bint            # in a batch: the views, the live address spaces and the costs below are taken
    live: list                          # the live address spaces as [(mm, pgd)] (in a batch, kept)
    walk_ns: object                     # costs.rmap_walk_ns and costs.reclaim_unmap_ns (in a batch, kept)
    unmap_ns: object

    def __init__(self):
        self.ram_source = None
        self.pages_source = None
        self.pending_ns = 0
        self.pending_int = 0
        self.int_costs = False
        self.defer_flush = False
        self.flush_pending = False
        self.walked_pfn = -1
        self.walked_found = None
        self.walked_count = 0
        self.file_vmas = {}
        self.batch_views = False
        self.live = None
        self.last_vmas = None
        self.executable = False

    @cython.cfunc
    def charge(self, k, ns) -> cython.void:
        self.pending_ns += int(ns)

    @cython.cfunc
    def charge_walked(self, k, walked: cython.Py_ssize_t) -> cython.void:
        """Each mapping walked (costs.rmap_walk_ns)."""
        if self.int_costs:
            self.pending_int += walked * self.walk_int
        else:
            self.charge(k, walked * self.walk_ns)

    @cython.cfunc
    def charge_unmapped(self, k) -> cython.void:
        """A PTE cleared (costs.reclaim_unmap_ns)."""
        if self.int_costs:
            self.pending_int += self.unmap_int
        else:
            self.charge(k, self.unmap_ns)

    @cython.cfunc
    def charge_now(self, k) -> cython.void:
        """Give the clock what this call charged, before the kernel could read it."""
        if self.pending_int:
            self.pending_ns += self.pending_int
            self.pending_int = 0
        if self.pending_ns:
            ns = self.pending_ns
            self.pending_ns = 0
            k.charge(ns)

    @cython.cfunc
    def charge_end(self, k, settled_later: cython.bint) -> cython.void:
        """The end of a service call: its charges to the clock, unless its caller settles them later."""
        if not settled_later:
            self.charge_now(k)

    @cython.ccall
    def charges_settle(self, k) -> cython.void:
        """The charges waiting, to the clock: the caller is about to run other kernel code."""
        self.charge_now(k)

    @cython.cfunc
    def flush_tlb(self, k) -> cython.void:
        if self.defer_flush:
            self.flush_pending = True
        else:
            k.flush_tlb()

    @cython.ccall
    def tlb_batch_begin(self) -> cython.void:
        """From here on, the TLB flushes of page_referenced and try_to_unmap wait for tlb_batch_flush."""
        self.defer_flush = True

    @cython.ccall
    def tlb_batch_flush(self, k) -> cython.void:
        """try_to_unmap_flush(): the batch's one TLB flush, if a PTE changed in it; its charges settled."""
        self.defer_flush = False
        self.tlb_batch_sync(k)

    @cython.ccall
    def tlb_batch_sync(self, k) -> cython.void:
        """Inside a batch, before the kernel may sleep (others could run): the pending flush now, and the
        kept walk forgotten; the charges waiting given to the clock."""
        self.charge_now(k)
        self.walked_pfn = -1
        self.walked_found = None
        self.batch_views = False
        self.live = None
        if self.file_vmas:
            self.file_vmas = {}
        self.last_vmas = None
        if self.flush_pending:
            self.flush_pending = False
            k.flush_tlb()

    @cython.ccall
    @cython.wraparound(False)
    def page_remove_rmap(self, k, mm, pfn: cython.Py_ssize_t, pte: cython.ulonglong) -> cython.void:
        """A PTE that mapped pfn is gone (MemoryManager.page_remove_rmap): a dirty PTE of a file page
        dirties the page, the mapcount and the address space's RSS fall, and the mapping's reference is
        dropped (put_page: the last one frees the page)."""
        self.struct_pages(k)
        i: cython.int[::1] = self.pi
        anon: cython.bint = (self.pq[(pfn << 3) + Q_MAPPING] & PAGE_MAPPING_ANON) != 0
        if pte & _PAGE_DIRTY and not anon:
            self.charge_now(k)
            k.set_page_dirty_pfn(pfn)                 # a shared file page written through its mapping
        mapped: cython.Py_ssize_t = i[(pfn << 4) + I_MAPCOUNT]    # page_mapcount() after this PTE: _mapcount + 1 - 1
        i[(pfn << 4) + I_MAPCOUNT] = mapped - 1
        if anon:
            mm.rss_anon -= 1
            if mapped == 0:
                k.vmstat["nr_anon_pages"] -= 1
        else:
            mm.rss_file -= 1
            if mapped == 0:
                k.vmstat["nr_mapped"] -= 1
        count: cython.Py_ssize_t = i[(pfn << 4) + I_REFCOUNT] - 1
        i[(pfn << 4) + I_REFCOUNT] = count
        if count == 0:
            self.charge_now(k)
            k.page_alloc.free_pages(pfn, 0)

    @cython.cfunc
    def struct_pages(self, k) -> cython.void:
        if self.batch_views:
            return
        mem_map = k.mem_map
        if mem_map.q is not self.pages_source:
            self.pq = mem_map.q
            self.pi = mem_map.i
            self.pages_source = mem_map.q

    @cython.cfunc
    def views(self, k) -> cython.bint:
        """self.ram (the page tables' RAM) and self.pq, self.pi (the struct pages), taken again only when a
        buffer changes, the live address spaces and the costs; inside a batch, once. False when no
        address space is live."""
        if self.batch_views:
            return len(self.live) > 0
        self.struct_pages(k)
        source = k.mm.q
        if source is not self.ram_source:
            self.ram = source
            self.ram_source = source
        self.live = [(mm, mm.pgd) for mm in k.live_mms]
        costs = k.costs
        self.walk_ns = costs.rmap_walk_ns
        self.unmap_ns = costs.reclaim_unmap_ns
        self.int_costs = type(self.walk_ns) is int and type(self.unmap_ns) is int and \
            0 <= self.walk_ns < (1 << 40) and 0 <= self.unmap_ns < (1 << 40)
        if self.int_costs:
            self.walk_int = self.walk_ns
            self.unmap_int = self.unmap_ns
        self.batch_views = self.defer_flush
        return len(self.live) > 0

    @cython.cfunc
    @cython.wraparound(False)
    def check(self, found: list, mm, pgd: cython.ulonglong, vaddr, pfn: cython.ulonglong, vma,
              flags: cython.longlong) -> cython.void:
        """found += (mm, vaddr, slot, vma, vm_flags or -1) when the PTE for vaddr in mm maps pfn."""
        slot: cython.Py_ssize_t = pte_offset(self.ram, pgd, vaddr & U64)
        if slot < 0:
            return
        pte: cython.ulonglong = self.ram[slot]
        if pte & _PAGE_PRESENT and (pte & PTE_PFN_MASK) >> 12 == pfn:
            found.append((mm, vaddr, slot, vma, flags))

    @cython.cfunc
    @cython.wraparound(False)
    def walk(self, k, pfn: cython.Py_ssize_t) -> list:
        """rmap_walk() with each PTE's file VMA and its vm_flags (None and -1 for an anonymous page)."""
        found = []
        if not self.views(k):
            return found
        ram: cython.ulonglong[::1] = self.ram
        slot: cython.Py_ssize_t
        pte: cython.ulonglong
        walked: cython.Py_ssize_t = 0
        if self.defer_flush and pfn == self.walked_pfn:
            # the same page again in a batch: its VMAs and page tables as they were, less the PTEs gone
            for entry in self.walked_found:
                slot = entry[2]
                pte = ram[slot]
                if pte & _PAGE_PRESENT and (pte & PTE_PFN_MASK) >> 12 == pfn:
                    found.append(entry)
            walked = self.walked_count
            self.charge_walked(k, walked)      # per mapping walked (costs.py)
            return found
        mapping_id: cython.ulonglong = self.pq[(pfn << 3) + Q_MAPPING]
        index: cython.ulonglong = self.pq[(pfn << 3) + Q_INDEX]
        pgoff: cython.ulonglong
        start: cython.ulonglong
        if mapping_id & PAGE_MAPPING_ANON:
            index_obj = self.pq[(pfn << 3) + Q_INDEX]
            vaddr = index_obj << 12
            for mm, pgd in self.live:
                walked += 1
                self.check(found, mm, pgd, vaddr, pfn, None, -1)
        else:
            vmas = None
            if self.defer_flush:
                if self.last_vmas is not None and self.last_mapping == mapping_id:
                    vmas = self.last_vmas
                else:
                    vmas = self.file_vmas.get(mapping_id)
            if vmas is None:
                mapping = mapping_id
                vmas = []
                for mm, pgd in self.live:
                    for vma in mm.vmas:               # those mapping this file, in order
                        f = vma.vm_file
                        if f is None or getattr(f, "mapping_id", None) != mapping:
                            continue
                        start = vma.vm_start
                        vmas.append((mm, pgd, vma, vma.vm_pgoff, start,
                                     (cython.cast(cython.ulonglong, vma.vm_end) - start) >> 12, vma.vm_flags))
                if self.defer_flush:
                    self.file_vmas[mapping] = vmas
            if self.defer_flush:
                self.last_mapping = mapping_id
                self.last_vmas = vmas
            for mm, pgd, vma, p, v, n, flags in vmas:  # those mapping this index
                pgoff = p
                if pgoff <= index and index - pgoff < cython.cast(cython.ulonglong, n):
                    walked += 1
                    start = v
                    self.check(found, mm, pgd, start + ((index - pgoff) << 12), pfn, vma, flags)
        self.charge_walked(k, walked)      # per mapping walked (costs.py)
        if self.defer_flush:
            self.walked_pfn = pfn
            self.walked_found = found
            self.walked_count = walked
        return found

    @cython.ccall
    def rmap_walk(self, k, pfn: cython.Py_ssize_t) -> list:
        """[(mm, vaddr, pte slot)] of every PTE that maps pfn; each mapping looked at is charged
        (costs.rmap_walk_ns)."""
        found = self.walk(k, pfn)
        self.charge_end(k, False)
        return [(mm, vaddr, slot) for mm, vaddr, slot, _, _ in found]

    @cython.ccall
    def page_referenced(self, k, pfn: cython.Py_ssize_t) -> tuple:
        """(PTEs whose accessed bit was set, and is now clear; whether one maps it executable)."""
        referenced: cython.Py_ssize_t = self.referenced(k, pfn, False)
        return referenced, self.executable

    @cython.ccall
    def reclaim_page_referenced(self, k, pfn: cython.Py_ssize_t) -> cython.Py_ssize_t:
        """page_referenced() as shrink_page_list's batch asks it: the PTEs whose accessed bit was set. Its
        charges wait for charges_settle."""
        return self.referenced(k, pfn, True)

    @cython.cfunc
    def referenced(self, k, pfn: cython.Py_ssize_t, settled_later: cython.bint) -> cython.Py_ssize_t:
        """page_referenced()'s work: the referenced PTEs, and whether a mapping is executable in
        self.executable."""
        self.executable = False
        ptes = self.walk(k, pfn)
        self.charge_end(k, settled_later)
        if not ptes:
            return 0
        ram: cython.ulonglong[::1] = self.ram
        referenced: cython.Py_ssize_t = 0
        executable: cython.bint = False
        slot: cython.Py_ssize_t
        pte: cython.ulonglong
        vm_flags: cython.longlong
        for mm, vaddr, s, vma, f in ptes:
            slot = s
            pte = ram[slot]
            if pte & _PAGE_ACCESSED:
                ram[slot] = pte & ~_PAGE_ACCESSED
                referenced += 1
            vm_flags = f
            if vm_flags < 0:                    # an anonymous page's
                vma = mm.find_vma(vaddr)
                vm_flags = 0 if vma is None else vma.vm_flags
            # (a file page's VMA contains vaddr, so it is what find_vma(vaddr) would return: VMAs are
            # sorted and do not overlap)
            if vm_flags & VM_EXEC:
                executable = True
        if referenced:
            self.flush_tlb(k)   # the TLB would otherwise keep using the entry without setting A again
        self.executable = executable
        return referenced

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
        return self.unmap(k, pfn, False)

    @cython.ccall
    def reclaim_try_to_unmap(self, k, pfn: cython.Py_ssize_t) -> bool:
        """try_to_unmap() as shrink_page_list's batch asks it: its charges wait for charges_settle."""
        return self.unmap(k, pfn, True)

    @cython.cfunc
    def unmap(self, k, pfn: cython.Py_ssize_t, settled_later: cython.bint) -> cython.bint:
        ptes = self.walk(k, pfn)
        if ptes:
            ram: cython.ulonglong[::1] = self.ram
            slot: cython.Py_ssize_t
            for mm, vaddr, s, _, _ in ptes:
                slot = s
                pte = ram[slot]
                ram[slot] = 0
                self.page_remove_rmap(k, mm, pfn, pte)
                self.charge_unmapped(k)
            self.flush_tlb(k)
        self.charge_end(k, settled_later)
        self.struct_pages(k)
        return self.pi[(pfn << 4) + I_MAPCOUNT] + 1 == 0
