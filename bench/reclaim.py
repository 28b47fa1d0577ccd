"""Reclaim on a realistic mixed inactive list: pages/s of shrink_page_list (cython_ext.reclaim's Reclaim,
the one place that decides each page's fate) compiled, against the same source run as Python
(BALLAST_PURE=1) in the same run.

A booted guest (512 MiB, `hello` run to completion) gets its free memory filled with pages added directly
(no I/O), in these proportions of the pages scanned:

    60%  clean, unmapped page cache             -> freed (never leaves native code)
    10%  clean, unmapped, PG_referenced          -> freed (PAGEREF_RECLAIM_CLEAN)
    10%  dirty, unmapped page cache              -> pageout(): written asynchronously, kept under writeback
    10%  mapped page cache (mapcount 1)          -> page_referenced() and try_to_unmap() through the
                                                    reverse map; no process maps them, so they stay
    10%  anonymous, inactive anon list, no swap  -> activated (add_to_swap fails)

mixed in that order page by page (so each batch of 32 holds every kind). Then shrink_inactive_list(32)
runs over the file list and the anon list in proportion until every page was scanned once. The disk
under the dirty pages completes nothing during the run (its writes are recorded, not performed), so what
is timed is reclaim's own work, not I/O; it is timed in CPU seconds of the process (time.process_time),
which other jobs on a shared machine disturb far less than wall time.

A second list, "mapped through page tables", is the same mix with the mapped pages really mapped: a live
process (a file VMA among eight) has a PTE for each, half of them young (accessed bit set). Reclaim's
reverse map then walks the process's VMAs and page tables for every mapped page: the young half is kept
(pte-referenced; its accessed bits cleared), the other half is unmapped (try_to_unmap: PTE cleared, TLB
flushed, page_remove_rmap) and freed.

    python3 bench/reclaim.py [--runs N] [--mem MiB]
"""
import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cython_ext                                                   # noqa: E402
from guestos.mm import vmscan                                      # noqa: E402
from guestos.mm.filemap import AddressSpace                        # noqa: E402
from guestos.mm.lru import LRU_INACTIVE_ANON, LRU_INACTIVE_FILE    # noqa: E402
from guestos.mm.mm_types import PG_referenced, PG_swapbacked, PG_uptodate   # noqa: E402
from guestos.mm.mmap import MM, VMA, VM_EXEC, VM_READ, VM_WRITE    # noqa: E402
from guestos.mm.pgtable import _PAGE_ACCESSED, mk_pte               # noqa: E402
from vmm.firmware import read_program                              # noqa: E402
from vmm.machine import Machine, MachineConfig                     # noqa: E402

MiB = 1 << 20
MIX = ("clean",) * 6 + ("referenced", "dirty", "mapped", "anon")
TARGET = 2_000_000


class Aops:
    def i_size(self):
        return 1 << 40

    def map_page_for_write(self, mapping, index):
        return [(index << 12, 4096)]


class QuietDisk:
    """A disk whose asynchronous writes are recorded and never complete during the run."""

    def __init__(self):
        self.writes = 0

    def transfer_runs(self, write, runs):
        return 0

    def transfer_runs_async(self, write, runs, end_io):
        self.writes += 1


MAPPED_AT = 0x7f0000000000                  # where the process maps the file, in the variant with page tables


def live_process(k, mapping_id: int):
    """A live address space as a small program has it: text, data, heap, the mapped file among other
    mappings, stack; the reverse map walks all of them."""
    mm = MM(pgd=k.mm.alloc_zeroed_page())
    other = type("File", (), {"mapping_id": mapping_id + 2})()
    mm.vmas = [VMA(0x400000, 0x480000, VM_READ | VM_EXEC, other), VMA(0x680000, 0x690000, VM_READ | VM_WRITE, other, 0x80),
               VMA(0x690000, 0x6b0000, VM_READ | VM_WRITE, anon_id=3), VMA(0x1000000, 0x1100000, VM_READ | VM_WRITE, anon_id=5),
               VMA(MAPPED_AT, MAPPED_AT + (1 << 32), VM_READ, type("File", (), {"mapping_id": mapping_id})()),
               VMA(0x7f0100000000, 0x7f0100100000, VM_READ | VM_EXEC, other, 0x200),
               VMA(0x7ffffffde000, 0x7ffffffff000, VM_READ | VM_WRITE, anon_id=7),
               VMA(0x7ffffffff000, 0x7ffffffff000 + 0x1000, VM_READ | VM_EXEC, anon_id=9)]
    k.live_mms.append(mm)
    return mm


def map_page(k, mm, pfn: int, index: int, young: bool) -> None:
    """A PTE for the page at its place in the file's VMA, as a read fault would leave it."""
    drained = len(k.pagevec)
    slot = k.mm.pte_alloc(mm, MAPPED_AT + (index << 12))
    del k.pagevec[drained:]                   # page-table pages: not on the LRU lists
    k.mm.q[slot] = mk_pte(pfn, False, False) | (_PAGE_ACCESSED if young else 0)
    k.mem_map.set_mapcount(pfn, 1)
    k.mem_map.set_refcount(pfn, 2)            # the page cache's reference and the mapping's
    mm.rss_file += 1
    k.vmstat["nr_mapped"] += 1


def add_page_of_kind(k, mapping, kind: str, n: int, mm=None, young: bool = False) -> int:
    """One page of a mixed list: an anonymous page (on no list yet) of the mapping's anon_vma at index n, or
    the mapping's page-cache page n, clean, referenced, dirty or mapped (through mm's page tables when
    given, else by its mapcount alone)."""
    mem_map = k.mem_map
    if kind == "anon":
        pfn = k.page_alloc.alloc_pages()
        mem_map.set_flags(pfn, 1 << PG_swapbacked)
        mem_map.set_mapping(pfn, mapping.mapping_id | 1, n)
        return pfn
    pfn = mapping.add_to_page_cache(n)
    mem_map.set(pfn, PG_uptodate)
    if kind == "referenced":
        mem_map.set(pfn, PG_referenced)
    elif kind == "dirty":
        mapping.set_page_dirty(n)
    elif kind == "mapped" and mm is not None:
        map_page(k, mm, pfn, n, young=young)
    elif kind == "mapped":
        mem_map.set_mapcount(pfn, 1)
    return pfn


def booted(pure: bool, config: MachineConfig) -> Machine:
    """A machine that ran hello, its reclaim hot path compiled or the same source as Python (`pure`)."""
    saved, cython_ext.PURE = cython_ext.PURE, pure       # the kernel loads the hot path at boot
    try:
        m = Machine(config)
        m.load(read_program("hello"), "/bin/hello", [])
        m.boot()
    finally:
        cython_ext.PURE = saved
    if m.kernel.mem_map.hotpath.__file__.endswith(".py") != pure:
        raise RuntimeError(f"wanted pure={pure}, the kernel loaded {m.kernel.mem_map.hotpath.__file__}")
    return m


def mixed_rate(pure: bool, mem_mib: int, mix=None, ptes: bool = False) -> dict:
    m = booted(pure, MachineConfig(mem=mem_mib * MiB))
    k = m.kernel
    disk = QuietDisk()
    mapping = AddressSpace(k, 0x5A5A << 1, Aops(), disk)
    alloc = k.page_alloc
    kinds = dict.fromkeys(MIX, 0)
    anon = []
    mm = live_process(k, 0x5A5A << 1) if ptes else None
    n = 0
    while alloc.nr_free_pages > alloc.zone.watermark[2] + 64:
        kind = (mix or MIX)[n % len(mix or MIX)]
        pfn = add_page_of_kind(k, mapping, kind, n, mm, young=kinds["mapped"] % 2 == 0)
        if kind == "anon":
            anon.append(pfn)
        kinds[kind] += 1
        n += 1
    k.lru.add_batch(anon, LRU_INACTIVE_ANON, 0)
    nr_file, nr_anon = n - len(anon), len(anon)
    sc = vmscan.ScanControl(nr_to_reclaim=n, current_is_kswapd=True)
    hot = vmscan._hot(k, sc)
    gc.collect()
    gc.disable()
    start = time.process_time()           # CPU time: the machine is shared, wall time is not ours
    done_file = done_anon = 0
    reclaimed = 0
    while done_file < nr_file or done_anon < nr_anon:
        if done_file < nr_file:
            step = min(32, nr_file - done_file)
            reclaimed += hot.shrink_inactive_list(step, LRU_INACTIVE_FILE)
            done_file += step
        if done_anon < nr_anon and done_anon * nr_file <= done_file * nr_anon:
            step = min(32, nr_anon - done_anon)
            reclaimed += hot.shrink_inactive_list(step, LRU_INACTIVE_ANON)
            done_anon += step
    seconds = time.process_time() - start
    gc.enable()
    scanned = k.vmstat["pgscan_kswapd"]
    expected_freed = kinds.get("clean", 0) + kinds.get("referenced", 0) + (kinds.get("mapped", 0) // 2 if ptes else 0)
    if scanned != n or reclaimed != expected_freed or disk.writes != kinds.get("dirty", 0):
        raise SystemExit(f"mixed reclaim: scanned {scanned} of {n}, freed {reclaimed} (expected {expected_freed}), "
                         f"{disk.writes} writes for {kinds.get('dirty', 0)} dirty pages")
    m.close()
    return dict(rate=scanned / seconds, scanned=scanned, seconds=seconds, kinds=kinds, freed=reclaimed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mem", type=int, default=512, help="guest MiB (default 512)")
    opts = ap.parse_args()
    mixed_rate(False, 64)                        # warm-up, untimed
    fast, slow, clean, fast_ptes, slow_ptes = [], [], [], [], []
    for _ in range(opts.runs):                   # interleaved: drift in host speed hits all alike
        fast.append(mixed_rate(False, opts.mem))
        slow.append(mixed_rate(True, opts.mem))
        clean.append(mixed_rate(False, opts.mem, ("clean",)))
        fast_ptes.append(mixed_rate(False, opts.mem, ptes=True))
        slow_ptes.append(mixed_rate(True, opts.mem, ptes=True))
    clean_rate = statistics.median(r["rate"] for r in clean)
    for title, compiled, uncompiled in (("mixed inactive list", fast, slow),
                                        ("mixed inactive list, mapped through page tables", fast_ptes, slow_ptes)):
        rate = statistics.median(r["rate"] for r in compiled)
        pure_rate = statistics.median(r["rate"] for r in uncompiled)
        first = compiled[0]
        mix = ", ".join(f"{v:,} {k}" for k, v in first["kinds"].items())
        print(f"{title} ({first['scanned']:,} pages: {mix}; {first['freed']:,} freed)")
        print(f"  compiled:   {rate:,.0f} pages/s  (median of {opts.runs}; {first['seconds'] * 1e3:.1f} ms per pass)"
              f"  target >= {TARGET:,}/s: {'met' if rate >= TARGET else 'MISSED'}")
        print(f"  uncompiled: {pure_rate:,.0f} pages/s  (the same source as Python, BALLAST_PURE=1; baseline)")
        print(f"  ratio:      {rate / pure_rate:.1f}x")
        print(f"  context:    clean pages only, compiled: {clean_rate:,.0f} pages/s; the mix runs at "
              f"{rate / clean_rate:.2f}x of it")


if __name__ == "__main__":
    main()
