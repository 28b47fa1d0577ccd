"""The native services reclaim's decisions call -- cython_ext.rmap (rmap_walk, page_referenced,
try_to_unmap through page tables in RAM) and cython_ext.pageout (pageout, writepage) -- compiled and
uncompiled (the same pure-Python-mode source) give the same results, page tables, struct pages,
counters, charges, trace and disk requests, on random mappings and random dirty pages."""
import random
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

import cython_ext
from guestos.kernel.costs import CostModel
from guestos.kernel.errno import ENOSPC, SyscallError
from guestos.mm import mm_types, pgtable, vmscan
from guestos.mm.filemap import AddressSpace
from guestos.mm.mm_types import MemMap, PG_dirty, PG_reclaim, PG_uptodate, PG_writeback
from guestos.mm.mmap import MM, VMA, VM_EXEC, VM_READ
from test_reclaim_differential import SmallKernel

MODULES = {name: (cython_ext.load(name, pure=False), cython_ext.load(name, pure=True)) for name in ("rmap", "pageout")}


def test_the_compiled_modules_are_native():
    for compiled, pure in MODULES.values():
        assert compiled.__file__.endswith(".so") and pure.__file__.endswith(".py")


def test_the_layout_is_the_kernel_s():
    rmap = dict(_PAGE_PRESENT=pgtable._PAGE_PRESENT, _PAGE_ACCESSED=pgtable._PAGE_ACCESSED,
                _PAGE_DIRTY=pgtable._PAGE_DIRTY, PTE_PFN_MASK=pgtable.PTE_PFN_MASK,
                PAGE_MAPPING_ANON=mm_types.PAGE_MAPPING_ANON, VM_EXEC=VM_EXEC, OFF_MAPPING=mm_types.OFF_MAPPING,
                OFF_INDEX=mm_types.OFF_INDEX, OFF_MAPCOUNT=mm_types.OFF_MAPCOUNT, OFF_REFCOUNT=mm_types.OFF_REFCOUNT)
    pageout = dict(PG_dirty=PG_dirty, PG_writeback=PG_writeback, PG_mappedtodisk=mm_types.PG_mappedtodisk,
                   PG_reclaim=PG_reclaim, OFF_FLAGS=mm_types.OFF_FLAGS, OFF_INDEX=mm_types.OFF_INDEX,
                   OFF_DISK_SECTOR=mm_types.OFF_DISK_SECTOR, PAGE_KEEP=vmscan.PAGE_KEEP,
                   PAGE_ACTIVATE=vmscan.PAGE_ACTIVATE, PAGE_SUCCESS=vmscan.PAGE_SUCCESS, PAGE_CLEAN=vmscan.PAGE_CLEAN)
    for module in MODULES["rmap"]:
        assert module.constants() == rmap
    for module in MODULES["pageout"]:
        assert module.constants() == pageout


# --- the reverse map: page tables in a small RAM --------------------------------------------

NFRAMES = 512                   # 2 MiB of "guest RAM": page tables and data frames
DATA = range(128, NFRAMES)      # data frames; below them, the page-table pool
FILES = (2, 4)                  # page->mapping of two files (even)
ANON = 7                        # page->mapping of anonymous pages (odd)
FILE_BASE = {2: 0x400000, 4: 0x7f0000200000}
ANON_BASE = 0x10000000


class RmapKernel:
    """What the reverse map uses of the kernel: live address spaces with page tables in RAM, mem_map,
    the counters, set_page_dirty_pfn and free_pages (page_remove_rmap's), the clock and the TLB."""

    def __init__(self, pure: bool, rng: random.Random, nr_mms: int, nr_pages: int):
        self.ram = bytearray(NFRAMES * 4096)
        self.mem_map = MemMap(memoryview(bytearray(NFRAMES * mm_types.STRUCT_PAGE_SIZE)), 0, NFRAMES, pure=pure)
        self.mm = SimpleNamespace(q=memoryview(self.ram).cast("Q"))
        self.costs = CostModel()
        self.charged = self.flushes = 0
        self.vmstat = dict(nr_mapped=0, nr_anon_pages=0)
        self.dirtied = []                       # set_page_dirty_pfn, with the clock as it was
        self.freed = []                         # free_pages, likewise
        self.page_alloc = SimpleNamespace(free_pages=lambda pfn, order: self.freed.append((pfn, self.charged)))
        self.next_table = 1
        self.live_mms = []
        for n in range(nr_mms):
            mm = MM(pgd=self.table())
            files = [VMA(FILE_BASE[m] + n * 0x200000, FILE_BASE[m] + n * 0x200000 + 64 * 4096,
                         VM_READ | (VM_EXEC if rng.random() < 0.5 else 0), SimpleNamespace(mapping_id=m),
                         vm_pgoff=rng.randrange(4)) for m in FILES if rng.random() < 0.8]
            odd = VMA(0x30000000, 0x30010000, VM_READ, object())          # a file with no page cache
            mm.vmas = sorted(files + [odd, VMA(ANON_BASE, ANON_BASE + 64 * 4096, VM_READ, anon_id=ANON)],
                             key=lambda v: v.vm_start)
            self.live_mms.append(mm)
        q = self.mem_map.q
        for pfn in rng.sample(DATA, nr_pages):
            mapping = rng.choice(FILES + (ANON,))
            index = rng.randrange(70) + (ANON_BASE >> 12 if mapping == ANON else 0)
            self.mem_map.set_mapping(pfn, mapping, index)
            self.mem_map.set_refcount(pfn, rng.choice((1, 2, 3)))        # 1: the mapping's last reference
            mapped = 0
            for mm in self.live_mms:
                vaddrs = [vma.vm_start + ((index - vma.vm_pgoff) << 12) for vma in mm.vmas
                          if (vma.anon_id == mapping if mapping == ANON else
                              getattr(vma.vm_file, "mapping_id", None) == mapping)
                          and vma.vm_pgoff <= index < vma.vm_pgoff + 64]
                if mapping == ANON:
                    vaddrs = [index << 12]
                for vaddr in vaddrs:
                    if rng.random() < 0.3:
                        continue                                    # not faulted in
                    slot = self.pte_alloc(mm, vaddr)
                    if self.mm.q[slot] and rng.random() < 0.5:
                        continue                                    # another page's PTE already there
                    target = pfn if rng.random() < 0.9 else rng.choice(DATA)      # a stale PTE now and then
                    bits = pgtable._PAGE_PRESENT if rng.random() < 0.9 else 0
                    bits |= pgtable._PAGE_ACCESSED if rng.random() < 0.5 else 0
                    bits |= pgtable._PAGE_DIRTY if rng.random() < 0.3 else 0
                    self.mm.q[slot] = (target << 12) | bits | pgtable._PAGE_USER
                    if target == pfn and bits & pgtable._PAGE_PRESENT:
                        mapped += 1
            self.mem_map.set_mapcount(pfn, mapped)
            q[pfn << 3] |= 1 << PG_uptodate

    def table(self) -> int:
        pfn, self.next_table = self.next_table, self.next_table + 1
        assert pfn < DATA.start
        return pfn

    def pte_alloc(self, mm, addr: int) -> int:
        q, table = self.mm.q, mm.pgd << 12
        for shift in pgtable.LEVEL_SHIFTS[:3]:
            slot = (table >> 3) + ((addr >> shift) & 511)
            if not q[slot] & pgtable._PAGE_PRESENT:
                q[slot] = (self.table() << 12) | pgtable._PAGE_TABLE
            table = q[slot] & pgtable.PTE_PFN_MASK
        return (table >> 3) + ((addr >> 12) & 511)

    def set_page_dirty_pfn(self, pfn: int) -> None:
        self.dirtied.append((pfn, self.charged))

    def charge(self, ns: int) -> None:
        self.charged += ns

    def flush_tlb(self) -> None:
        self.flushes += 1

    def state(self) -> dict:
        return dict(ram=bytes(self.ram), mem_map=bytes(self.mem_map.raw), charged=self.charged,
                    flushes=self.flushes, vmstat=dict(self.vmstat), dirtied=list(self.dirtied), freed=list(self.freed),
                    rss=[(mm.rss_file, mm.rss_anon) for mm in self.live_mms])


def comparable(k: RmapKernel, result):
    """A result with each mm as its number (the two kernels have their own mm objects)."""
    if isinstance(result, list):
        return [(k.live_mms.index(mm), vaddr, slot) for mm, vaddr, slot in result]
    return result


def call(k: RmapKernel, op: str, pfn: int):
    """One reverse-map call; the batch's calls (reclaim_*) settled after it, as shrink_page_list does
    before other kernel code runs."""
    result = comparable(k, getattr(k.mem_map.native_rmap, op)(k, pfn))
    if op.startswith("reclaim_"):
        k.mem_map.native_rmap.charges_settle(k)
    return result


RMAP_OPS = ("rmap_walk", "page_referenced", "page_referenced_vm_exec", "try_to_unmap",
            "reclaim_page_referenced", "reclaim_try_to_unmap")


@settings(max_examples=40, deadline=None, database=None)
@given(seed=st.integers(0, 1 << 32), nr_mms=st.integers(0, 3), nr_pages=st.integers(1, 200),
       steps=st.integers(1, 300))
def test_reverse_map_compiled_equals_pure(seed, nr_mms, nr_pages, steps):
    kernels = [RmapKernel(pure, random.Random(seed), nr_mms, nr_pages) for pure in (False, True)]
    assert kernels[0].state() == kernels[1].state()
    assert type(kernels[0].mem_map.native_rmap) is MODULES["rmap"][0].Rmap
    assert type(kernels[1].mem_map.native_rmap).__module__ == MODULES["rmap"][1].__name__
    rng = random.Random(seed + 1)
    for step in range(steps):
        op, pfn = rng.choice(RMAP_OPS), rng.choice(DATA)
        if rng.random() < 0.1:                  # the page is touched again: its PTEs young
            for k in kernels:
                for slot in range(512, k.next_table * 512):                    # the page tables
                    pte = k.mm.q[slot]
                    if pte & pgtable._PAGE_PRESENT and pgtable.pte_pfn(pte) == pfn:
                        k.mm.q[slot] = pte | pgtable._PAGE_ACCESSED
        results = [call(k, op, pfn) for k in kernels]
        assert results[0] == results[1], (step, op, pfn)
        assert kernels[0].state() == kernels[1].state(), (step, op, pfn)


@settings(max_examples=30, deadline=None, database=None)
@given(seed=st.integers(0, 1 << 32), nr_mms=st.integers(1, 3), nr_pages=st.integers(1, 200),
       steps=st.integers(1, 300), pure=st.booleans())
def test_a_reclaim_batch_changes_only_when_the_tlb_is_flushed(seed, nr_mms, nr_pages, steps, pure):
    """Inside a reclaim batch (tlb_batch_begin .. tlb_batch_flush) the walks keep a page's PTEs and each
    file's VMAs for the next look, and the TLB is flushed once at the end: every result, page table,
    struct page, counter and charge is as without the batch, and a flush is owed at the end exactly when
    one was skipped. A page looked at twice in a row (page_referenced, then try_to_unmap) is the common
    case; tlb_batch_sync (before the kernel may sleep) flushes and forgets in the middle."""
    plain, batched = (RmapKernel(pure, random.Random(seed), nr_mms, nr_pages) for _ in range(2))
    rng = random.Random(seed + 2)
    rmap = batched.mem_map.native_rmap
    rmap.tlb_batch_begin()
    pfn = rng.choice(DATA)
    for step in range(steps):
        if rng.random() < 0.5:
            pfn = rng.choice(DATA)                     # else the same page again
        op = rng.choice(RMAP_OPS)
        results = [call(k, op, pfn) for k in (plain, batched)]
        assert results[0] == results[1], (step, op, pfn)
        if rng.random() < 0.05:
            rmap.tlb_batch_sync(batched)
        elif rng.random() < 0.05:
            rmap.tlb_batch_flush(batched)
            rmap.tlb_batch_begin()
        a, b = plain.state(), batched.state()
        assert b.pop("flushes") <= a.pop("flushes")
        assert a == b, (step, op, pfn)
    skipped = plain.flushes > batched.flushes
    rmap.tlb_batch_flush(batched)
    assert batched.flushes <= plain.flushes and (batched.flushes > 0) == (plain.flushes > 0)
    assert skipped or batched.flushes == plain.flushes


def test_reverse_map_finds_clears_and_unmaps():
    """What the differential test compares is not vacuous: PTEs are found, referenced bits cleared,
    pages unmapped, in both builds."""
    for pure in (False, True):
        k = RmapKernel(pure, random.Random(5), 3, 150)
        native = k.mem_map.native_rmap
        found = referenced = unmapped = 0
        unmapped_pfns = set()
        for pfn in DATA:
            found += len(native.rmap_walk(k, pfn))
            referenced += native.page_referenced(k, pfn)[0]
            assert native.page_referenced(k, pfn)[0] == 0          # cleared by the first look
            mapped = k.mem_map.mapcount(pfn)
            if native.try_to_unmap(k, pfn) and mapped > 0:
                unmapped += 1
                unmapped_pfns.add(pfn)
            assert native.rmap_walk(k, pfn) == []
        assert found > 100 and referenced > 30 and unmapped > 50 and k.flushes and k.dirtied and k.freed
        # every page whose last PTE went: its counter down once (no fault counted them up here)
        assert -k.vmstat["nr_mapped"] - k.vmstat["nr_anon_pages"] == sum(
            1 for pfn in DATA if k.mem_map.mapping(pfn) and k.mem_map.mapcount(pfn) == 0 and pfn in unmapped_pfns)


# --- pageout: dirty pages written by reclaim ----------------------------------------------

class Extents:
    """A file system's block map with holes, several blocks per page, runs that join or not, and
    allocation failures (ENOSPC) now and then."""

    def __init__(self, seed: int):
        self.seed = seed

    def i_size(self):
        return 1 << 30

    def map_page_for_write(self, mapping, index):
        rng = random.Random(self.seed * 1000 + index)
        if rng.random() < 0.05:
            raise SyscallError(ENOSPC)
        nblocks = rng.choice((1, 1, 2, 4))
        bs = 4096 // nblocks
        out, offset = [], rng.randrange(1 << 20) * 4096
        for _ in range(nblocks):
            if rng.random() < 0.1:
                out.append((None, bs))                      # a hole
            else:
                out.append((offset, bs))
            offset += bs if rng.random() < 0.7 else 8 * bs   # contiguous, or not
        return out


class Disk:
    """Records each submission; asynchronous ones complete when the test says, with a status."""

    def __init__(self, asynchronous: bool, fail: bool):
        self.requests, self.pending, self.fail = [], [], fail
        if asynchronous:
            self.transfer_runs_async = self._async

    def transfer_runs(self, write, runs):
        self.requests.append(("sync", write, [(start, list(segs)) for start, segs in runs]))
        return 1 if self.fail else 0

    def _async(self, write, runs, end_io):
        self.requests.append(("async", write, [(start, list(segs)) for start, segs in runs]))
        self.pending.append(end_io)


@settings(max_examples=40, deadline=None, database=None)
@given(seed=st.integers(0, 1 << 32), asynchronous=st.booleans(), fail=st.booleans(),
       nr_pages=st.integers(1, 60), steps=st.integers(1, 120))
def test_pageout_compiled_equals_pure(seed, asynchronous, fail, nr_pages, steps):
    kernels = SmallKernel(pure_reclaim=False), SmallKernel(pure_reclaim=True)
    assert type(kernels[0].mem_map.native_pageout) is MODULES["pageout"][0].Pageout
    assert type(kernels[1].mem_map.native_pageout).__module__ == MODULES["pageout"][1].__name__
    mappings, disks = [], []
    for k in kernels:
        disk = Disk(asynchronous, fail)
        mapping = AddressSpace(k, 8, Extents(seed), disk)
        for index in range(nr_pages):
            k.mem_map.set(mapping.add_to_page_cache(index), PG_uptodate)
        mappings.append(mapping)
        disks.append(disk)
    rng = random.Random(seed)
    for step in range(steps):
        index, what, status = rng.randrange(nr_pages), rng.random(), rng.choice((0, 0, 1))
        results = [pageout_step(k, mapping, disk, index, what, status)
                   for k, mapping, disk in zip(kernels, mappings, disks)]
        assert results[0] == results[1], (step, results)
        states = [k.state() for k in kernels]
        for key in states[0]:
            assert states[0][key] == states[1][key], (step, key)
        assert disks[0].requests == disks[1].requests and len(disks[0].pending) == len(disks[1].pending)


def pageout_step(k, mapping, disk, index: int, what: float, status: int):
    """Dirty a page, page it out (as shrink_page_list would: dirty, not under writeback) or complete
    the oldest write in flight with `status`."""
    pfn = mapping.pages[index]
    if what < 0.3:
        mapping.set_page_dirty(index)
    elif what < 0.8:
        if k.mem_map.test(pfn, PG_dirty) and not k.mem_map.test(pfn, PG_writeback):
            return vmscan.pageout(k, mapping, pfn)
    elif disk.pending:
        disk.pending.pop(0)(status)
        return "completed"
    return None


def test_pageout_writes_and_completes():
    """What the differential test compares is not vacuous: in both builds pages are written
    asynchronously and synchronously, failed writes leave them dirty, completions rotate them."""
    for pure in (False, True):
        for asynchronous in (True, False):
            k = SmallKernel(pure_reclaim=pure)
            disk = Disk(asynchronous, fail=False)
            mapping = AddressSpace(k, 8, Extents(3), disk)
            for index in range(40):
                k.mem_map.set(mapping.add_to_page_cache(index), PG_uptodate)
                mapping.set_page_dirty(index)
            results = [vmscan.pageout(k, mapping, mapping.pages[index]) for index in range(40)]
            assert results.count(vmscan.PAGE_SUCCESS) > 30 and vmscan.PAGE_KEEP in results      # ENOSPC now and then
            assert k.vmstat["nr_vmscan_write"] == 40 and len(disk.requests) > 30
            kept = [index for index, r in enumerate(results) if r == vmscan.PAGE_KEEP]
            assert all(k.mem_map.test(mapping.pages[index], PG_dirty) for index in kept)
            assert k.vmstat["nr_dirty"] == len(kept)
            if asynchronous:
                assert k.vmstat["nr_writeback"] == len(disk.pending) > 30
                disk.pending.pop(0)(1)                               # a failed write: dirty again
                while disk.pending:
                    disk.pending.pop(0)(0)
                assert k.vmstat["nr_writeback"] == 0 and k.vmstat["pgrotated"] > 30
                assert k.vmstat["nr_dirty"] == len(kept) + 1
            assert not any(k.mem_map.test(pfn, PG_reclaim) or k.mem_map.test(pfn, PG_writeback)
                           for pfn in mapping.pages.values())
