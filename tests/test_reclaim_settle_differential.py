"""A reclaim batch gives the reverse map's charges to the clock, and counts the pages it freed "at once",
only when other kernel code is about to run (Reclaim.settle), not per call and per page. This holds the
batch to the per-call, per-page order: on bench/reclaim.py's list mapped through page tables (small),
everything that can read the clock or the counters in the middle of a batch -- the disk's submission
inside pageout, swap_out, a policy's keep_page, the trace -- sees the same values, and the batch ends in
the same state, as when every service call charges at its end and every unmapped page is counted at once.

The per-call order is had without the mechanism: with page_referenced and try_to_unmap replaced by
equivalent wrappers, the hot path calls them through ops (no deferred charges), and with a reporting order
set (nobody listens: no report hook) each page is counted at once. pageout, likewise replaced, runs through
its Python front: the hot path's direct call of the native pageout handles a failed write as the front does."""
import hashlib
import os
import sys
from pathlib import Path

import pytest

from guestos.kernel import tracepoint
from guestos.kernel.errno import ENOSPC, SyscallError
from guestos.mm import reclaim_policy, vmscan
from guestos.mm.filemap import AddressSpace
from guestos.mm.lru import LRU_INACTIVE_ANON, LRU_INACTIVE_FILE
from guestos.mm.pgtable import _PAGE_ACCESSED, mk_pte
from vmm.machine import DiskConfig, MachineConfig
from vmm.swapdisk import make_swap_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import reclaim as bench                                                  # noqa: E402

MIX = ("clean", "mapped", "referenced", "mapped", "dirty", "anon", "mapped", "clean", "clean", "mapped")
WATCHED = ("pgfree", "nr_file_pages", "nr_mapped", "nr_dirty", "nr_writeback", "pgactivate")


def look(k, where: str, log: list) -> None:
    """What kernel code running here could read: the clock and the counters."""
    log.append((where, k.hw.clock.charged_ns) + tuple(k.vmstat[name] for name in WATCHED))


class FullDisk(bench.Aops):
    """A file system that finds no block for some pages (the write fails at once: handle_write_error)."""

    def map_page_for_write(self, mapping, index):
        if index % 7 == 4:
            raise SyscallError(ENOSPC)
        return super().map_page_for_write(mapping, index)


class WatchedDisk(bench.QuietDisk):
    def __init__(self, k, log):
        super().__init__()
        self.k, self.log = k, log

    def transfer_runs_async(self, write, runs, end_io):
        look(self.k, "submit", self.log)            # a real disk schedules its completion on the clock
        super().transfer_runs_async(write, runs, end_io)


class CountingBias(reclaim_policy.ReclaimPolicy):
    """A keep_page hook whose answer depends on the counters (a stale count would change decisions)."""
    name = "test_counting_bias"

    def keep_page(self, k, sc, pfn: int) -> bool:
        look(k, "keep_page", k.settle_log)
        return (k.vmstat["nr_file_pages"] + k.hw.clock.charged_ns // 1000) % 5 == 0


def watched_ops(log: list, per_call: bool):
    class Ops(vmscan.ReclaimOps):
        calls = dict(policy=0)

        @staticmethod
        def swap_out(k, pfn):
            look(k, "swap_out", log)
            return vmscan.swap_out(k, pfn)

        @staticmethod
        def policy_keeps_page(k, sc, pfn):
            Ops.calls["policy"] += 1
            return vmscan.ReclaimOps.policy_keeps_page(k, sc, pfn)

        @staticmethod
        def trace(*args):
            look(args[0], "trace", log)
            vmscan.trace(*args)

    if per_call:             # not the native services themselves: called through ops' fronts, charged per call
        Ops.page_referenced = staticmethod(lambda k, pfn: vmscan.page_referenced_vm_exec(k, pfn))
        Ops.try_to_unmap = staticmethod(lambda k, pfn: vmscan.try_to_unmap(k, pfn))
        Ops.pageout = staticmethod(lambda k, mapping, pfn: vmscan.pageout(k, mapping, pfn))
    return Ops


HEAP = 0x1000000                                # bench.live_process's heap VMA (1 MiB)


def map_anon(k, mm, pfn: int, vaddr: int, young: bool) -> None:
    """A PTE for an anonymous page in the heap, as a write fault would leave it."""
    drained = len(k.pagevec)
    slot = k.mm.pte_alloc(mm, vaddr)
    del k.pagevec[drained:]                   # page-table pages: not on the LRU lists
    k.mm.q[slot] = mk_pte(pfn, True, True) | (_PAGE_ACCESSED if young else 0)
    k.mem_map.set_mapcount(pfn, 1)
    mm.rss_anon += 1
    k.vmstat["nr_anon_pages"] += 1


def reclaim_list(pure: bool, per_call: bool, policy: bool, tracing: bool, swap) -> dict:
    m = bench.booted(pure, MachineConfig(mem=32 << 20, cmdline="swap=/dev/vda" if swap else "",
                                         disks=[DiskConfig(swap)] if swap else []))
    k = m.kernel
    log = k.settle_log = []
    if policy:
        k.policies = reclaim_policy.PolicySet(k, ["test_counting_bias"])
    events = []
    if tracing:
        tracepoint.enable(k).subscribe(events.append)
    if swap:
        assert k.swap is not None
        write = k.swap.swap_writepage_async

        def watched_write(*args):                 # the swap disk's submission reads the clock
            look(k, "swap_write", log)
            return write(*args)
        k.swap.swap_writepage_async = watched_write
    core = k.page_alloc.zone.core
    assert core.reporting_order == 11 and k.page_alloc.report_hook is None
    if per_call:
        core.reporting_order = 10            # each freed page counted at once; nobody is notified
    disk = WatchedDisk(k, log)
    mapping_id = 0x5A5A << 1
    mapping = AddressSpace(k, mapping_id, FullDisk(), disk)
    mm = bench.live_process(k, mapping_id)
    anon = []
    for n in range(2400):
        kind = MIX[n % len(MIX)]
        if kind == "anon":
            in_heap = len(anon) % 2             # in the process's heap, its PTE young or old
            index = (HEAP >> 12) + len(anon) // 2 if in_heap else n
            pfn = bench.add_page_of_kind(k, mapping, kind, index)
            if in_heap:
                map_anon(k, mm, pfn, index << 12, young=len(anon) % 3 == 0)
            anon.append(pfn)
            continue
        bench.add_page_of_kind(k, mapping, kind, n, mm, young=n % 3 == 0)
    k.lru.add_batch(anon, LRU_INACTIVE_ANON, 0)
    ops = watched_ops(log, per_call)
    sc = vmscan.ScanControl(nr_to_reclaim=4000, current_is_kswapd=True)
    hot = k.mem_map.hotpath.Reclaim(k.lru.core, core, k.address_spaces, k.vmstat, k.page_alloc.account_freed, k, sc,
                                    ops, k.lru.reclaim_stat, tracing)
    reclaimed = []
    for step in range(2600 // 32):
        reclaimed.append(hot.shrink_inactive_list(32, LRU_INACTIVE_FILE))
        look(k, "batch", log)
        if step % 8 == 0:
            reclaimed.append(hot.shrink_inactive_list(32, LRU_INACTIVE_ANON))
            look(k, "batch", log)
    state = dict(reclaimed=reclaimed, log=log, policy_calls=ops.calls["policy"], vmstat=k.vmstat_snapshot(),
                 clock=k.hw.clock.charged_ns, pages=sorted(mapping.pages.items()), rss=(mm.rss_file, mm.rss_anon),
                 struct_pages=hashlib.sha256(k.mem_map.raw).hexdigest(), page_tables=hashlib.sha256(k.mm.q).hexdigest(),
                 trace=events)
    m.close()
    return state


@pytest.fixture
def counting_bias():
    reclaim_policy.register(CountingBias)
    yield
    reclaim_policy.unregister(CountingBias.name)


@pytest.fixture(scope="module")
def swap_image():
    path = make_swap_image(16 << 20)
    yield path
    os.unlink(path)


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure"])
@pytest.mark.parametrize("policy,tracing,swap", [(False, False, False), (True, False, False), (False, True, False),
                                                 (False, False, True)])
def test_a_batch_settles_as_per_call_charges_and_counts(counting_bias, swap_image, pure, policy, tracing, swap):
    swap = swap_image if swap else None
    batched, per_call = (reclaim_list(pure, per_call, policy, tracing, swap) for per_call in (False, True))
    assert batched["log"] == per_call["log"]
    assert batched == per_call
    # not vacuous: pages were unmapped and freed, written, kept, and the clock moved between looks
    log = batched["log"]
    assert sum(batched["reclaimed"]) > 1000 and batched["rss"][0] > 0
    assert {"submit", "swap_out", "batch"} <= {where for where, *_ in log}
    assert batched["vmstat"]["nr_dirty"] > 20                 # failed writes left their pages dirty
    assert len({clock for _, clock, *_ in log}) > 100
    if policy:
        assert batched["policy_calls"] > 100 and any(where == "keep_page" for where, *_ in log)
    else:
        assert batched["policy_calls"] == 0          # no keep_page hook selected: never asked
    if tracing:
        assert sum(1 for where, *_ in log if where == "trace") > 2000 and len(batched["trace"]) > 2000
    if swap:
        assert sum(1 for where, *_ in log if where == "swap_write") > 50 and batched["rss"][1] < 60
