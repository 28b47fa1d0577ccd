"""Reclaim of pages a live process maps (bench/reclaim.py's list mapped through page tables, small): the
compiled hot path and its pure-Python source (BALLAST_PURE=1) leave the same struct pages, page tables,
counters, clock and trace, with tracing on and off. This covers what runs natively only when PTEs exist:
page_referenced and try_to_unmap through the page tables, page_remove_rmap, the batch's one TLB flush and
kept walks, and an unmapped clean page freed by the hot path itself."""
import hashlib
import sys
from pathlib import Path

import pytest

from guestos.kernel import tracepoint
from guestos.mm import vmscan
from guestos.mm.filemap import AddressSpace
from guestos.mm.lru import LRU_INACTIVE_ANON, LRU_INACTIVE_FILE
from vmm.machine import MachineConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import reclaim as bench                                                  # noqa: E402

MIX = ("clean", "mapped", "referenced", "mapped", "dirty", "anon", "mapped", "clean")


def reclaim_mapped_list(pure: bool, tracing: bool) -> dict:
    m = bench.booted(pure, MachineConfig(mem=32 << 20))
    k = m.kernel
    events = []
    if tracing:
        tracepoint.enable(k).subscribe(events.append)
    disk = bench.QuietDisk()
    mapping_id = 0x5A5A << 1
    mapping = AddressSpace(k, mapping_id, bench.Aops(), disk)
    mm = bench.live_process(k, mapping_id)
    anon = []
    nr_mapped_before = k.vmstat["nr_mapped"]
    for n in range(2000):
        kind = MIX[n % len(MIX)]
        pfn = bench.add_page_of_kind(k, mapping, kind, n, mm, young=n % 3 == 0)
        if kind == "anon":
            anon.append(pfn)
    k.lru.add_batch(anon, LRU_INACTIVE_ANON, 0)
    sc = vmscan.ScanControl(nr_to_reclaim=4000, current_is_kswapd=True)
    hot = vmscan._hot(k, sc)
    reclaimed = [hot.shrink_inactive_list(32, LRU_INACTIVE_FILE) for _ in range(2200 // 32)]
    reclaimed += [hot.shrink_inactive_list(32, LRU_INACTIVE_ANON) for _ in range(300 // 32)]
    state = dict(reclaimed=reclaimed, nr_mapped_before=nr_mapped_before, vmstat=k.vmstat_snapshot(), clock=k.hw.clock.charged_ns,
                 pages=sorted(mapping.pages.items()), rss=(mm.rss_file, mm.rss_anon), writes=disk.writes,
                 struct_pages=hashlib.sha256(k.mem_map.raw).hexdigest(),
                 page_tables=hashlib.sha256(k.mm.q).hexdigest(), trace=events)
    m.close()
    return state


@pytest.mark.parametrize("tracing", [False, True])
def test_reclaim_through_page_tables_compiled_equals_pure(tracing):
    compiled, pure = reclaim_mapped_list(False, tracing), reclaim_mapped_list(True, tracing)
    assert compiled == pure
    # not vacuous: young mapped pages were kept, old ones unmapped and freed, the dirty ones written
    # (750 clean or referenced unmapped pages, 750 mapped: more than 1,000 freed means mapped ones were)
    assert sum(compiled["reclaimed"]) > 1000 and compiled["writes"] == 250
    assert 0 < compiled["rss"][0] < 750
    # page_remove_rmap's accounting: the PTEs still there are exactly what nr_mapped gained
    assert compiled["vmstat"]["nr_mapped"] - compiled["nr_mapped_before"] == compiled["rss"][0]
    if tracing:
        reasons = {(e["decision"], e["reason"]) for e in compiled["trace"] if e["name"] == "mm_vmscan_page_decision"}
        assert {("reclaimed", "clean"), ("rotated", "pte-referenced"), ("rotated", "pageout")} <= reasons
