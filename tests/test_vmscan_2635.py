"""Reclaim's decisions as 2.6.35's mm/vmscan.c takes them, on a small kernel (no CPU), compiled and
uncompiled: deactivation clears only PG_active, referenced executable file pages stay active,
get_scan_count() weighs anon and file by swappiness and recent rotations, and a dirty page is written
by an asynchronous pageout and freed by the scan after its write completes."""
from types import SimpleNamespace

import pytest

from guestos.kernel.tracepoint import enable
from guestos.mm import vmscan
from guestos.mm.filemap import mark_page_accessed
from guestos.mm.lru import LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE
from guestos.mm.mm_types import (PG_active, PG_dirty, PG_lru, PG_reclaim, PG_referenced, PG_swapbacked, PG_uptodate,
                                 PG_writeback)
from guestos.mm.page_alloc import GFP_KERNEL
from test_reclaim_differential import MAPPINGS, SmallKernel


@pytest.fixture(params=[False, True], ids=["compiled", "pure"])
def k(request):
    k = SmallKernel(pure_reclaim=request.param)
    k.events = []
    enable(k).subscribe(k.events.append)
    k.scheduler = None
    return k


def file_pages(k, n: int, mapping_id: int = MAPPINGS[0]) -> list:
    mapping = k.address_spaces[mapping_id]
    pfns = []
    for index in range(n):
        pfn = mapping.add_to_page_cache(index)
        k.mem_map.set(pfn, PG_uptodate)
        pfns.append(pfn)
    return pfns


def lru_of(k, lru: int) -> list:
    return list(k.lru.from_tail(lru))[::-1]          # head first


def sc(kswapd: bool = True, **kw):
    return vmscan.ScanControl(nr_to_reclaim=32, current_is_kswapd=kswapd, **kw)


def test_deactivation_clears_only_pg_active(k):
    """shrink_active_list(): ClearPageActive only. A page that was referenced on the active list keeps
    PG_referenced on the inactive one, so its next access activates it again at once."""
    pfns = file_pages(k, 4)
    for pfn in pfns:
        mark_page_accessed(k, pfn)
        mark_page_accessed(k, pfn)                   # inactive -> referenced -> active
        mark_page_accessed(k, pfn)                   # active and referenced
    assert lru_of(k, LRU_ACTIVE_FILE) and all(k.mem_map.test(p, PG_referenced) for p in pfns)
    vmscan.shrink_active_list(k, 4, sc(), LRU_ACTIVE_FILE)
    assert sorted(lru_of(k, LRU_INACTIVE_FILE)) == sorted(pfns)
    assert all(not k.mem_map.test(p, PG_active) and k.mem_map.test(p, PG_referenced) for p in pfns)
    assert k.vmstat["pgdeactivate"] == 4 and k.vmstat["pgrefill"] == 4
    mark_page_accessed(k, pfns[0])                   # one more access: straight back to the active list
    assert k.mem_map.test(pfns[0], PG_active) and pfns[0] in lru_of(k, LRU_ACTIVE_FILE)
    event = [e for e in k.events if e["name"] == "mm_vmscan_lru_shrink_active"][-1]
    assert (event["nr_taken"], event["nr_deactivated"], event["nr_referenced"], event["file"]) == (4, 4, 0, 1)


def test_referenced_executable_file_pages_stay_active(k, monkeypatch):
    """A mapped active page the reverse map finds referenced: kept active when a mapping of it is
    executable and it is a file page (running code), deactivated otherwise; every referenced one counts
    as rotated for get_scan_count."""
    pfns = file_pages(k, 3)
    for pfn in pfns:
        k.lru.activate_page(pfn)
        k.mem_map.set_mapcount(pfn, 1)
    answers = {pfns[0]: (1, True), pfns[1]: (1, False), pfns[2]: (0, False)}
    monkeypatch.setattr(vmscan.ReclaimOps, "page_referenced", staticmethod(lambda k, pfn: answers[pfn]))
    vmscan.shrink_active_list(k, 3, sc(), LRU_ACTIVE_FILE)
    assert lru_of(k, LRU_ACTIVE_FILE) == [pfns[0]]
    assert sorted(lru_of(k, LRU_INACTIVE_FILE)) == sorted(pfns[1:])
    assert list(k.lru.reclaim_stat) == [0, 3, 0, 2]            # scanned anon, file; rotated anon, file


def test_get_scan_count_balances_anon_and_file_by_recent_rotations(k):
    """ap = (swappiness + 1) * (recent_scanned_anon + 1) / (recent_rotated_anon + 1), fp likewise with
    200 - swappiness; each list's share is (size >> priority) * ap or fp / (ap + fp + 1)."""
    nr = k.lru.nr
    n = 40000
    nr[LRU_INACTIVE_ANON], nr[LRU_ACTIVE_ANON], nr[LRU_INACTIVE_FILE], nr[LRU_ACTIVE_FILE] = n, n, n, n
    k.swap = SimpleNamespace(nr_free=1000)
    stat = k.lru.reclaim_stat
    stat[0], stat[1], stat[2], stat[3] = 1000, 1000, 900, 10          # anon pages keep coming back
    control = sc(priority=2)
    scan = vmscan.get_scan_count(k, control)
    ap = (60 + 1) * (1000 + 1) // (900 + 1)
    fp = (140 + 1) * (1000 + 1) // (10 + 1)
    assert scan[LRU_INACTIVE_ANON] == (n >> 2) * ap // (ap + fp + 1) == 51
    assert scan[LRU_INACTIVE_FILE] == (n >> 2) * fp // (ap + fp + 1) == 9947
    # recent_scanned over a quarter of the lists: both counts halve before they are used
    stat[0], stat[1], stat[2], stat[3] = 30000, 30000, 10, 20000      # now file pages come back
    k.lru.nr_saved_scan[:] = [0] * 5
    scan = vmscan.get_scan_count(k, control)
    assert list(stat) == [15000, 15000, 5, 10000]
    ap, fp = 61 * 15001 // 6, 141 * 15001 // 10001
    assert scan[LRU_INACTIVE_ANON] == (n >> 2) * ap // (ap + fp + 1) == 9986
    assert scan[LRU_INACTIVE_FILE] == 0 and k.lru.nr_saved_scan[LRU_INACTIVE_FILE] == 13      # saved for later
    # no swap: file only
    k.swap = None
    k.lru.nr_saved_scan[:] = [0] * 5
    scan = vmscan.get_scan_count(k, control)
    assert scan[LRU_INACTIVE_ANON] == scan[LRU_ACTIVE_ANON] == 0 and scan[LRU_INACTIVE_FILE] == n >> 2


def test_small_scan_counts_are_saved_up_to_a_cluster(k):
    k.lru.nr[LRU_INACTIVE_FILE] = 10 << 12                           # 10 pages at priority 12
    counts = [vmscan.get_scan_count(k, sc())[LRU_INACTIVE_FILE] for _ in range(4)]
    assert counts == [0, 0, 0, 40]                                    # nr_scan_try_batch


class AsyncBlk:
    """A disk whose writes complete when the test says so (as virtio-blk's, at an interrupt)."""

    def __init__(self):
        self.pending = []

    def transfer_runs(self, write, runs):
        return 0

    def transfer_runs_async(self, write, runs, end_io):
        self.pending.append(end_io)

    def complete(self):
        pending, self.pending = self.pending, []
        for end_io in pending:
            end_io(0)


def test_dirty_pages_are_written_by_async_pageout_and_freed_after(k):
    """pageout(): the page is cleaned for I/O, gets PG_reclaim and PG_writeback, and stays on the
    inactive list (at its head) while written; a scan meanwhile keeps it. end_page_writeback()
    moves it to the inactive tail (rotate_reclaimable_page, pgrotated), and the next scan frees it."""
    mapping = k.address_spaces[MAPPINGS[0]]
    mapping.blk = AsyncBlk()
    pfns = file_pages(k, 8)
    for index in range(4):
        mapping.set_page_dirty(index)
    dirty = pfns[:4]
    assert vmscan.shrink_inactive_list(k, 8, sc(), LRU_INACTIVE_FILE) == 4        # the clean ones
    assert len(mapping.blk.pending) == 4 and k.vmstat["nr_vmscan_write"] == 4
    for pfn in dirty:
        flags = k.mem_map.flags(pfn)
        assert flags & (1 << PG_writeback) and flags & (1 << PG_reclaim) and not flags & (1 << PG_dirty)
        assert flags & (1 << PG_lru) and not flags & (1 << PG_active)
    assert k.vmstat["nr_writeback"] == 4 and k.vmstat["nr_dirty"] == 0 and not mapping.dirty
    assert sorted(lru_of(k, LRU_INACTIVE_FILE)) == sorted(dirty)
    assert vmscan.shrink_inactive_list(k, 8, sc(), LRU_INACTIVE_FILE) == 0         # under writeback: kept
    fresh = file_pages(k, 2, MAPPINGS[1])                                          # newer pages, at the head
    mapping.blk.complete()
    assert k.vmstat["pgrotated"] == 4 and k.vmstat["nr_writeback"] == 0
    assert lru_of(k, LRU_INACTIVE_FILE) == fresh[::-1] + dirty                       # each to the tail, in order
    assert not any(k.mem_map.flags(p) & ((1 << PG_writeback) | (1 << PG_reclaim)) for p in dirty)
    assert vmscan.shrink_inactive_list(k, 4, sc(), LRU_INACTIVE_FILE) == 4         # the next scan frees them
    assert mapping.pages == {} and lru_of(k, LRU_INACTIVE_FILE) == fresh[::-1]
    reasons = [(e["decision"], e["reason"]) for e in k.events
               if e["name"] == "mm_vmscan_page_decision" and e["pfn"] in dirty]
    assert reasons == [("rotated", "pageout")] * 4 + [("rotated", "writeback")] * 4 + [("reclaimed", "clean")] * 4
    writes = [e for e in k.events if e["name"] == "mm_vmscan_writepage"]
    assert sorted(e["pfn"] for e in writes) == sorted(dirty)


def test_a_referenced_dirty_page_is_not_written(k):
    """PAGEREF_RECLAIM_CLEAN: an unmapped page with PG_referenced is freed when clean, but when dirty it is
    left for the flusher, not written by reclaim."""
    mapping = k.address_spaces[MAPPINGS[0]]
    mapping.blk = AsyncBlk()
    pfn = file_pages(k, 1)[0]
    mapping.set_page_dirty(0)
    mark_page_accessed(k, pfn)
    assert vmscan.shrink_inactive_list(k, 1, sc(), LRU_INACTIVE_FILE) == 0
    assert not mapping.blk.pending and k.mem_map.test(pfn, PG_dirty)
    assert not k.mem_map.test(pfn, PG_referenced)                   # tested and cleared
    assert vmscan.shrink_inactive_list(k, 1, sc(), LRU_INACTIVE_FILE) == 0 and len(mapping.blk.pending) == 1


def test_shrink_inactive_emits_linux_s_tracepoints(k):
    file_pages(k, 10)
    assert vmscan.shrink_inactive_list(k, 8, sc(priority=9), LRU_INACTIVE_FILE) == 8
    isolate, shrink = [e for e in k.events
                       if e["name"] in ("mm_vmscan_lru_isolate", "mm_vmscan_lru_shrink_inactive")]
    assert isolate["name"] == "mm_vmscan_lru_isolate" and (isolate["nr_requested"], isolate["nr_taken"]) == (8, 8)
    assert shrink["name"] == "mm_vmscan_lru_shrink_inactive"
    assert (shrink["nr_scanned"], shrink["nr_reclaimed"], shrink["priority"], shrink["file"]) == (8, 8, 9, 1)


def test_swapped_anon_pages_count_as_scanned_anon(k):
    """Anonymous pages scanned without swap: activated (add_to_swap fails), a rotation on the anon side."""
    pfns = [k.page_alloc.alloc_pages(GFP_KERNEL, 0) for _ in range(4)]
    for pfn in pfns:
        k.mem_map.set_flags(pfn, 1 << PG_swapbacked)
        k.mem_map.set_mapping(pfn, 1, pfn)
    k.lru.add_batch(pfns, LRU_INACTIVE_ANON, 0)
    vmscan.shrink_inactive_list(k, 4, sc(), LRU_INACTIVE_ANON)
    assert sorted(lru_of(k, LRU_ACTIVE_ANON)) == sorted(pfns)
    assert list(k.lru.reclaim_stat) == [4, 0, 4, 0]


def test_a_guest_writing_more_than_its_memory_has_reclaim_write_asynchronously():
    """A 32 MiB guest writes a 48 MiB file with the dirty limits raised, so reclaim meets dirty pages:
    it starts their writes (nr_vmscan_write), each comes back to the inactive tail when written
    (pgrotated) and is freed by a later scan; nothing is left under writeback and the file reads back
    exactly as written."""
    import collections
    from vmm.machine import DiskConfig, Machine, MachineConfig
    from vmm.rootfs import builtin_root
    m = Machine(MachineConfig(mem=32 << 20, cmdline="vm.dirty_ratio=80 vm.dirty_background_ratio=70",
                              disks=[DiskConfig(builtin_root(), snapshot=True)]))
    events = []
    m.add_trace_sink(events.append)
    try:
        m.load(None, "/bin/writer", ["/tmp/out.bin", "48M"], root_device="/dev/vda")
        assert m.boot() == 0
        assert "50331648 bytes written, verified" in m.console_output.decode()
        k = m.kernel
        vmstat = dict(k.vmstat)
        trace = [(e["pfn"], e["decision"], e["reason"]) for e in events if e["name"] == "mm_vmscan_page_decision"]
    finally:
        m.close()
    assert vmstat["nr_vmscan_write"] > 1000 and vmstat["pgrotated"] == vmstat["nr_vmscan_write"]
    assert vmstat["nr_writeback"] == 0
    after = collections.Counter()
    written = set()
    for pfn, decision, reason in trace:
        if reason == "pageout":
            written.add(pfn)
        elif pfn in written:
            after[decision, reason] += 1
            written.discard(pfn)
    assert after[("reclaimed", "clean")] > 0.9 * vmstat["nr_vmscan_write"]


@pytest.mark.parametrize("mib, ratio", [(512, 1), (1024, 3), (2048, 4), (10240, 10)])
def test_the_anon_inactive_ratio_grows_with_the_zone(mib, ratio):
    """calculate_zone_inactive_ratio(): int_sqrt(10 x GiB), 1 below 1 GiB; anon aging starts when
    inactive x ratio < active."""
    k = SimpleNamespace(page_alloc=SimpleNamespace(zone=SimpleNamespace(present_pages=mib << 8)),
                        lru=SimpleNamespace(nr=[100, 100 * ratio, 0, 0, 0]))
    assert vmscan.inactive_ratio(k) == ratio
    assert not vmscan.inactive_anon_is_low(k)
    k.lru.nr[LRU_ACTIVE_ANON] += 1
    assert vmscan.inactive_anon_is_low(k)


def test_a_mapped_file_page_is_looked_at_twice(k, monkeypatch):
    """page_check_references(): every mapped page starts with a PTE reference from its fault, so a
    referenced mapped file page is kept once with PG_referenced set, and activated only if the reverse
    map finds it referenced again at the next scan; unreferenced, it is unmapped and freed."""
    pfns = file_pages(k, 2)
    for pfn in pfns:
        k.mem_map.set_mapcount(pfn, 1)
    referenced = {pfns[0]: 1, pfns[1]: 0}
    monkeypatch.setattr(vmscan.ReclaimOps, "page_referenced",
                        staticmethod(lambda k, pfn: (referenced[pfn], False)))

    def unmap(k, pfn):
        k.mem_map.set_mapcount(pfn, 0)
        return True
    monkeypatch.setattr(vmscan.ReclaimOps, "try_to_unmap", staticmethod(unmap))
    assert vmscan.shrink_inactive_list(k, 2, sc(), LRU_INACTIVE_FILE) == 1        # the unreferenced one
    assert lru_of(k, LRU_INACTIVE_FILE) == [pfns[0]] and k.mem_map.test(pfns[0], PG_referenced)
    assert vmscan.shrink_inactive_list(k, 1, sc(), LRU_INACTIVE_FILE) == 0
    assert lru_of(k, LRU_ACTIVE_FILE) == [pfns[0]] and k.vmstat["pgactivate"] == 1
    assert list(k.lru.reclaim_stat) == [0, 3, 0, 1]


def test_direct_reclaim_naps_until_pageout_writes_complete(k):
    """Every inactive page dirty: the first priorities only start writes; congestion_wait(HZ/10) then
    naps (do_try_to_free_pages) until a write completes, and the next priority frees the written pages
    from the inactive tail. Without the nap direct reclaim would give up with nothing freed (and the
    allocator would go to the OOM killer)."""
    mapping = k.address_spaces[MAPPINGS[0]]
    mapping.blk = AsyncBlk()
    naps = []

    def congestion_wait(timeout_ns):
        naps.append((len(mapping.blk.pending), timeout_ns))
        mapping.blk.complete()                  # virtual time runs to the completions, which end the nap
    k.congestion_wait = congestion_wait
    pfns = file_pages(k, 120)
    for index in range(len(pfns)):
        mapping.set_page_dirty(index)
    freed = vmscan.try_to_free_pages(k, 32)
    assert freed >= 32 and naps and all(timeout == vmscan.HZ_NS // 10 for _, timeout in naps)
    assert naps[0][0] > 0
    assert k.vmstat["pgrotated"] >= 32 and k.vmstat["nr_vmscan_write"] >= freed


def test_anonymous_pages_go_to_swap_by_asynchronous_pageout():
    """memhog touching more than a 24 MiB guest with swap: each page reclaim evicts is added to the swap
    cache, unmapped into swap entries and written without waiting (nr_vmscan_write); its completion
    rotates it to the inactive tail (pgrotated) and a later scan frees it from the swap cache. Every page
    reads back as written, nothing is left under writeback."""
    import os
    from vmm.firmware import read_program
    from vmm.machine import DiskConfig, Machine, MachineConfig
    from vmm.swapdisk import make_swap_image
    swap = make_swap_image(64 << 20)
    try:
        m = Machine(MachineConfig(mem=24 << 20, cmdline="swap=/dev/vda", disks=[DiskConfig(swap)]))
        m.load(read_program("memhog"), "/bin/memhog", ["32M", "2"])
        assert m.boot() == 0
        assert "8192 pages verified" in m.console_output.decode()
        vmstat = dict(m.kernel.vmstat)
        in_cache = len(m.kernel.swap.cache)
        m.close()
    finally:
        os.unlink(swap)
    assert vmstat["pswpout"] > 4096 and vmstat["nr_vmscan_write"] == vmstat["pswpout"]
    assert vmstat["pgrotated"] == vmstat["nr_vmscan_write"] and vmstat["nr_writeback"] == 0
    assert vmstat["oom_kill"] == 0 and in_cache == 0


def test_every_batch_goes_through_vmscan_shrink_page_list(k, monkeypatch):
    """shrink_inactive_list hands each batch it isolates to vmscan.shrink_page_list (Linux's name in Linux's
    file, where pdb's `b guestos.mm.vmscan.shrink_page_list` stops), compiled and uncompiled; it decides
    through the one decision place and returns what that freed."""
    batches = []
    real = vmscan.shrink_page_list

    def logged(k, hot, nr_taken):
        pfns = hot.isolated_pfns(nr_taken)
        freed = real(k, hot, nr_taken)
        batches.append((pfns, freed))
        return freed
    monkeypatch.setattr(vmscan, "shrink_page_list", logged)
    tail = file_pages(k, 100)
    vmscan.try_to_free_pages(k, 70)
    shrinks = [e for e in k.events if e["name"] == "mm_vmscan_lru_shrink_inactive"]
    assert len(batches) == len(shrinks) >= 3
    assert [freed for _, freed in batches] == [e["nr_reclaimed"] for e in shrinks]
    assert [pfn for pfns, _ in batches for pfn in pfns] == tail[:sum(len(p) for p, _ in batches)]
