"""The virtio balloon driver (drivers/virtio/virtio_balloon.c, mm/page_reporting.c).

- Inflate and deflate toward the host's target in batches of at most 256 PFNs, one batch per work
  item, re-queued while the target is not reached (update_balloon_size_func), on the driver's
  kernel thread (2.6.35's "vballoon"), so user tasks run between batches; pages for the balloon
  come from the allocator without digging into reserves (__GFP_NORETRY|__GFP_NOMEMALLOC: one
  reclaim pass, never the OOM killer), and when none come the work backs off for 200 ms
  ("Out of puff!"). Each page costs balloon_inflate_ns or balloon_deflate_ns (kernel/costs.py).
- The host hears of deflated pages before they are freed, and the driver waits for each buffer's
  acknowledgement; `actual` is written after each step.
- Inflated pages leave MemTotal unless DEFLATE_ON_OOM; with it an OOM notifier gives back 256
  pages per call instead of letting the OOM killer run.
- The statistics buffer (16 tags) is answered whenever the device returns it.
- Free page hinting: a round started by the host (cmd_id >= 2) sends free max-order blocks,
  which the driver holds until the host says DONE or reclaim takes them back (a shrinker).
- Cache first (the 2010 series, patch 2/2): with `virtio_balloon.cache_first=1` (or
  `reclaim_policy=cache_first`), or when the host hints it for a target (our experimental feature
  bit 16), balloon pages are allocated with __GFP_FREE_CACHE: the allocator first reclaims as much
  clean unmapped page cache (the cache_first policy, guestos/mm/pagecache_control.py).
- Free page reporting: 2 s after a free merges into a block of pageblock order or more, free
  blocks of that order and above not reported yet are reported, up to 32 per request, and go
  back to the tail of their free list; a reported block that leaves its list (allocated or merged)
  is no longer reported.
PAGE_POISON is not negotiated: as in Linux, only a kernel that poisons or zeroes freed pages
offers it, and this one does neither.

`virtio_balloon.bug=` makes the driver break a rule on purpose, for testing a host's checks:
`reuse` frees inflated pages at once, `early-free` frees deflated pages before the host's
acknowledgement and does not wait for it."""
import struct

from ..kernel.printk import KERN_INFO
from ..kernel.sched import run_to_completion
from ..mm.mm_types import NIL, PG_buddy, PG_reported, PG_reserved
from ..mm.page_alloc import GFP_FREE_CACHE, GFP_NORECLAIM, GFP_NORETRY, MAX_ORDER
from ..mm.vmscan import Shrinker
from .virtio_mmio import VIRTIO_ID_BALLOON

VIRTIO_BALLOON_F_MUST_TELL_HOST = 0
VIRTIO_BALLOON_F_STATS_VQ = 1
VIRTIO_BALLOON_F_DEFLATE_ON_OOM = 2
VIRTIO_BALLOON_F_FREE_PAGE_HINT = 3
VIRTIO_BALLOON_F_PAGE_POISON = 4
VIRTIO_BALLOON_F_REPORTING = 5
VIRTIO_BALLOON_F_RECLAIM_CACHE_FIRST = 16        # ours, experimental: see devices/virtio_balloon.py
VIRTIO_BALLOON_ARRAY_PFNS_MAX = 256
VIRTIO_BALLOON_OOM_NR_PAGES = 256
VIRTIO_BALLOON_HINT_BLOCK_ORDER = MAX_ORDER - 1
VIRTIO_BALLOON_HINT_BLOCK_PAGES = 1 << VIRTIO_BALLOON_HINT_BLOCK_ORDER
FREE_PAGE_HINT_CMD_ID_STOP = 0
FREE_PAGE_HINT_CMD_ID_DONE = 1
BALLOON_BACKOFF_NS = 200_000_000         # msleep(200) after a failed inflate
PAGE_REPORTING_DELAY_NS = 2_000_000_000  # 2 * HZ
PAGE_REPORTING_CAPACITY = 32
PAGE_REPORTING_ORDER = 9                 # pageblock_order: 2 MiB blocks
WANTED = sum(1 << bit for bit in (VIRTIO_BALLOON_F_MUST_TELL_HOST, VIRTIO_BALLOON_F_STATS_VQ,
                                  VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_FREE_PAGE_HINT,
                                  VIRTIO_BALLOON_F_REPORTING, VIRTIO_BALLOON_F_RECLAIM_CACHE_FIRST))
CONFIG_NUM_PAGES, CONFIG_ACTUAL, CONFIG_FREE_PAGE_HINT_CMD_ID, CONFIG_RECLAIM_CACHE_FIRST = 0, 4, 8, 16

# offsets in the driver's buffer page
PFNS_OFFSET, STATS_OFFSET, CMD_ID_OFFSET, CMD_STOP_OFFSET, REPORT_OFFSET = 0, 1024, 1280, 1284, 1536


class VirtioBalloonDriver:
    def __init__(self, k, vdev):
        self.k, self.vdev = k, vdev
        queues = iter(range(5))
        self.inflate_vq = vdev.setup_vq(next(queues), self._ack)
        self.deflate_vq = vdev.setup_vq(next(queues), self._ack)
        self.stats_vq = vdev.setup_vq(next(queues), self._stats_request) \
            if vdev.has(VIRTIO_BALLOON_F_STATS_VQ) else None
        self.free_page_vq = vdev.setup_vq(next(queues), self._free_page_used) \
            if vdev.has(VIRTIO_BALLOON_F_FREE_PAGE_HINT) else None
        self.reporting_vq = vdev.setup_vq(next(queues), self._ack) \
            if vdev.has(VIRTIO_BALLOON_F_REPORTING) else None
        self.deflate_on_oom = vdev.has(VIRTIO_BALLOON_F_DEFLATE_ON_OOM)
        self.pages = []                      # pfns in the balloon (Linux's balloon page list)
        self.num_pages = 0
        self.acked = 0
        self.submitted = 0                   # PFN arrays sent (acked counts those returned)
        self.size_pending = True             # update_balloon_size_func queued
        self.backing_off = False
        self.bug = k.params.value("virtio_balloon.bug")
        # patch 2/2 of the series: balloon pages come from unmapped page cache first, always
        # (boot option) or when the host hints it for a target (the experimental feature)
        self.cache_first_always = k.params.value("virtio_balloon.cache_first") or \
            "cache_first" in k.params.value("reclaim_policy")
        self.cache_first_hint = vdev.has(VIRTIO_BALLOON_F_RECLAIM_CACHE_FIRST)
        self.counters = dict(out_of_puff=0, oom_deflated_pages=0, hinted_blocks=0, hint_rounds=0,
                             reported_blocks=0, reporting_passes=0, work_items=0)
        page = k.page_alloc.alloc_pages()
        self.buf_paddr = page << 12          # the PFN array, stats, hint ids and report list
        # free page hinting
        self.cmd_id_received = FREE_PAGE_HINT_CMD_ID_STOP
        self.cmd_id_active = FREE_PAGE_HINT_CMD_ID_STOP
        self.hint_pending = False
        self.hinted = []                     # max-order blocks held for the host until DONE
        # free page reporting
        self.reporting_requested = False
        self.reporting_scheduled = False
        self.reporting_due = False
        vdev.config_changed = self._config_changed

    def ready(self) -> None:
        """After DRIVER_OK: hand the device the stats buffer it will return when it wants stats."""
        if self.stats_vq is not None:
            self._send_stats()
        if self.reporting_vq is not None:
            # page_reporting_register(): frees that end in a pageblock-order block ask for a
            # report, and a first pass over the zone is requested at once
            self.k.page_alloc.zone.core.reporting_order = PAGE_REPORTING_ORDER
            self.k.page_alloc.report_hook = self.page_reporting_notify_free
            self.page_reporting_notify_free()

    # --- interrupts ---
    def _ack(self, vq) -> None:
        while vq.get_buf() is not None:
            self.acked += 1

    def _config_changed(self) -> None:
        """virtballoon_changed(): queue the size work, and the hinting work if a round began."""
        cmd_id = self.vdev.read_config(CONFIG_FREE_PAGE_HINT_CMD_ID, 4)
        if self.free_page_vq is not None and cmd_id != self.cmd_id_received:
            self.cmd_id_received = cmd_id
            if cmd_id == FREE_PAGE_HINT_CMD_ID_DONE:
                self.return_free_pages_to_mm()
            elif cmd_id >= 2:
                self.hint_pending = True
        if not self.backing_off:
            self.size_pending = True         # update_balloon_size_func() runs from the workqueue

    def _stats_request(self, vq) -> None:
        while vq.get_buf() is not None:
            self._send_stats()

    def _free_page_used(self, vq) -> None:
        while vq.get_buf() is not None:
            self.acked += 1

    # --- the size work ---
    def towards_target(self) -> int:
        return self.vdev.read_config(CONFIG_NUM_PAGES, 4) - self.num_pages

    def tell_host(self, vq, pfns, wait: bool = True):
        """Send one PFN array; yields until the host acknowledges it (Linux always waits), unless
        not `wait`. A generator: the balloon thread sleeps meanwhile (run_to_completion elsewhere)."""
        yield self._all_acked                   # the array's page is free again
        struct.pack_into(f"<{len(pfns)}I", self.k.ram, self.buf_paddr + PFNS_OFFSET, *pfns)
        vq.add_sgs([(self.buf_paddr + PFNS_OFFSET, 4 * len(pfns), False)], "pfns")
        self.submitted += 1
        vq.kick()
        if wait:
            yield self._all_acked

    def _all_acked(self) -> bool:
        return self.acked >= self.submitted

    def work_pending(self) -> bool:
        return self.size_pending or self.hint_pending or self.reporting_due or \
            (self.reporting_requested and not self.reporting_scheduled)

    def balloon_thread(self):
        """The driver's kernel thread: asleep until there is work, then one work item at a time."""
        while True:
            yield self.work_pending
            yield from self.run()

    def run(self):
        """One round of the driver's work items: free page hints if a round asks, page reporting
        when due, and one batch of the balloon's size."""
        if self.hint_pending:
            self.report_free_page_func()
        if self.reporting_requested and not self.reporting_scheduled:
            self.reporting_scheduled = True
            self.k.timers.add_timer(PAGE_REPORTING_DELAY_NS, self._page_reporting_due)
        if self.reporting_due:
            self.page_reporting_process()
        if self.size_pending:
            self.size_pending = False
            yield from self.update_balloon_size_func()

    def update_balloon_size_func(self):
        """One work item: one batch of at most VIRTIO_BALLOON_ARRAY_PFNS_MAX pages toward the target;
        queued again while the target is not reached (queue_work in Linux)."""
        self.counters["work_items"] += 1
        diff = self.towards_target()
        if diff > 0:
            want = min(diff, VIRTIO_BALLOON_ARRAY_PFNS_MAX)
            got = yield from self.fill_balloon(want)
            self.update_balloon_size()
            if got < want:
                self.back_off()
                return
        elif diff < 0:
            yield from self.leak_balloon(min(-diff, VIRTIO_BALLOON_ARRAY_PFNS_MAX))
            self.update_balloon_size()
        if self.towards_target() != 0:
            self.size_pending = True

    def update_balloon_size(self) -> None:
        self.vdev.write_config(CONFIG_ACTUAL, 4, self.num_pages)

    def back_off(self) -> None:
        """Out of puff: try again in 200 ms of guest time."""
        self.counters["out_of_puff"] += 1
        if self.counters["out_of_puff"] == 1:
            self.k.printk(KERN_INFO, f"virtio_balloon: Out of puff! Can't get {self.towards_target()} pages")
        self.backing_off = True

        def again():
            self.backing_off = False
            self.size_pending = True
        self.k.timers.add_timer(BALLOON_BACKOFF_NS, again)

    def cache_first(self) -> bool:
        return self.cache_first_always or \
            (self.cache_first_hint and self.vdev.read_config(CONFIG_RECLAIM_CACHE_FIRST, 4) == 1)

    def fill_balloon(self, n: int):
        """Up to n pages into the balloon (a generator: it waits for the host's acknowledgement);
        returns how many."""
        k = self.k
        cache_first = self.cache_first()
        pfns = k.page_alloc.alloc_pages_bulk(GFP_NORETRY | (GFP_FREE_CACHE if cache_first else 0), n)
        if k.tracepoints is not None:
            k.tracepoints.emit("virtio_balloon_fill", nr_requested=n, nr_pages=len(pfns),
                               first_pfn=pfns[0] if pfns else -1, cache_first=cache_first,
                               num_pages=self.num_pages + len(pfns))
        if not pfns:
            return 0
        k.charge(len(pfns) * k.costs.balloon_inflate_ns)
        k.mem_map.set_flags_many(pfns, 1 << PG_reserved)       # not the kernel's now (PageOffline)
        yield from self.tell_host(self.inflate_vq, pfns)
        if self.bug == "reuse":
            for pfn in pfns:                                    # the bug: the pages go back to use
                k.page_alloc.free_pages(pfn, 0)
        else:
            self.pages.extend(pfns)
        self.num_pages += len(pfns)
        if not self.deflate_on_oom:
            k.totalram_pages -= len(pfns)                       # adjust_managed_page_count()
        return len(pfns)

    def leak_balloon(self, n: int, reason: str = "target"):
        """Take up to n pages out of the balloon: the host hears of them (and acknowledges)
        before they are freed for the guest to use again. A generator; returns how many."""
        k = self.k
        if k.tracepoints is not None:
            nr_pages = min(n, self.num_pages if self.bug == "reuse" else len(self.pages))
            k.tracepoints.emit("virtio_balloon_leak", nr_requested=n, nr_pages=nr_pages, reason=reason,
                               num_pages=self.num_pages - nr_pages)
        if self.bug == "reuse":
            n = min(n, self.num_pages)          # the pages went back to use at inflate: only a count
        else:
            pfns = [self.pages.pop() for _ in range(min(n, len(self.pages)))]
            n = len(pfns)
            if not n:
                return 0
            early = self.bug == "early-free"
            if early:
                self.release_pages_balloon(pfns)    # the bug: freed before the host knows
            yield from self.tell_host(self.deflate_vq, pfns, wait=not early)
            if not early:
                self.release_pages_balloon(pfns)
        k.charge(n * k.costs.balloon_deflate_ns)
        self.num_pages -= n
        if not self.deflate_on_oom:
            k.totalram_pages += n
        return n

    def release_pages_balloon(self, pfns) -> None:
        for pfn in pfns:
            self.k.page_alloc.free_pages(pfn, 0)            # resets the struct page too

    # --- the OOM notifier (DEFLATE_ON_OOM) ---
    def oom_notify(self) -> int:
        """virtio_balloon_oom_notify(): give back up to 256 pages; how many were freed."""
        freed = run_to_completion(self.k, self.leak_balloon(VIRTIO_BALLOON_OOM_NR_PAGES, "oom"))
        self.update_balloon_size()
        self.counters["oom_deflated_pages"] += freed
        return freed

    # --- statistics ---
    def _send_stats(self) -> None:
        k = self.k
        vm, mi = k.vmstat_snapshot(), k.meminfo()
        values = [vm["pswpin"] * 4096, vm["pswpout"] * 4096, vm["pgmajfault"], vm["pgfault"],
                  mi["MemFree"] * 1024, mi["MemTotal"] * 1024, mi["MemAvailable"] * 1024,
                  (mi["Cached"] + mi["Buffers"]) * 1024, 0, 0, vm["oom_kill"], vm["allocstall"],
                  vm["pgscan_kswapd"], vm["pgscan_direct"], vm["pgsteal_kswapd"], vm["pgsteal_direct"]]
        raw = b"".join(struct.pack("<HQ", tag, value) for tag, value in enumerate(values))
        stats_paddr = self.buf_paddr + STATS_OFFSET
        k.ram[stats_paddr:stats_paddr + len(raw)] = raw
        self.stats_vq.add_sgs([(stats_paddr, len(raw), False)], "stats")
        self.stats_vq.kick()

    # --- free page hinting ---
    def report_free_page_func(self) -> None:
        """A hint round: say which round, send free max-order blocks while the round lasts and
        memory allows, then say STOP. The blocks stay ours until the host says DONE."""
        self.hint_pending = False
        k, vq = self.k, self.free_page_vq
        cmd_id = self.cmd_id_received
        if cmd_id < 2:
            return
        self.counters["hint_rounds"] += 1
        self.cmd_id_active = cmd_id
        self._send_cmd_id(CMD_ID_OFFSET, cmd_id)
        order = VIRTIO_BALLOON_HINT_BLOCK_ORDER
        while self.cmd_id_received == cmd_id:
            pfn = k.page_alloc.alloc_pages(GFP_NORECLAIM, order)
            if pfn == NIL:
                break
            self.hinted.append(pfn)
            if not vq.add_sgs([(pfn << 12, 4096 << order, True)], "hint"):
                k.wait_event(lambda: vq.num_free > 0)
                vq.add_sgs([(pfn << 12, 4096 << order, True)], "hint")
            vq.kick()
            self.counters["hinted_blocks"] += 1
        self._send_cmd_id(CMD_STOP_OFFSET, FREE_PAGE_HINT_CMD_ID_STOP)
        self.cmd_id_active = FREE_PAGE_HINT_CMD_ID_STOP

    def _send_cmd_id(self, offset: int, cmd_id: int) -> None:
        vq = self.free_page_vq
        struct.pack_into("<I", self.k.ram, self.buf_paddr + offset, cmd_id)
        if not vq.add_sgs([(self.buf_paddr + offset, 4, False)], "cmd_id"):
            self.k.wait_event(lambda: vq.num_free > 0)
            vq.add_sgs([(self.buf_paddr + offset, 4, False)], "cmd_id")
        vq.kick()

    def return_free_pages_to_mm(self, limit: int = None) -> int:
        """The round is over (DONE), or memory is short: the hinted blocks (all, or up to
        `limit` of them) are free again; returns how many blocks."""
        blocks = self.hinted if limit is None else self.hinted[len(self.hinted) - min(limit, len(self.hinted)):]
        for pfn in blocks:
            self.k.page_alloc.free_pages(pfn, VIRTIO_BALLOON_HINT_BLOCK_ORDER)
        freed = len(blocks)
        del self.hinted[len(self.hinted) - freed:]
        return freed

    # --- the shrinker (FREE_PAGE_HINT): reclaim takes hinted blocks back ---
    def shrinker_count(self) -> int:
        """virtio_balloon_shrinker_count(): the hinted pages reclaim could have back."""
        return len(self.hinted) * VIRTIO_BALLOON_HINT_BLOCK_PAGES

    def shrinker_scan(self, nr_to_scan: int) -> int:
        """virtio_balloon_shrinker_scan() -> shrink_free_pages(): whole blocks, rounded up."""
        blocks = -(-nr_to_scan // VIRTIO_BALLOON_HINT_BLOCK_PAGES)
        return self.return_free_pages_to_mm(limit=blocks) * VIRTIO_BALLOON_HINT_BLOCK_PAGES

    # --- free page reporting ---
    def page_reporting_notify_free(self) -> None:
        """A block of pageblock order or more was freed: report in 2 s (once)."""
        self.reporting_requested = True

    def _page_reporting_due(self) -> None:
        self.reporting_scheduled = False
        self.reporting_due = True

    def page_reporting_process(self) -> None:
        """page_reporting_process_zone(): free blocks of reporting order and above that are not
        reported yet are taken off the free lists, reported 32 at a time, and put back marked."""
        self.reporting_due = False
        self.reporting_requested = False
        k = self.k
        zone, mem_map = k.page_alloc.zone, k.mem_map
        self.counters["reporting_passes"] += 1
        for order in range(MAX_ORDER - 1, PAGE_REPORTING_ORDER - 1, -1):
            while True:
                # leave the zone room: reporting holds its blocks off the free lists for a while
                if not zone.watermark_ok(0, 1) or zone.nr_free_pages - (PAGE_REPORTING_CAPACITY << order) \
                        < zone.watermark[1]:
                    return
                batch = []
                pfn = zone.free_area[order].head
                while pfn != NIL and len(batch) < PAGE_REPORTING_CAPACITY:
                    if not mem_map.test(pfn, PG_reported):
                        batch.append(pfn)
                    pfn = mem_map.lru_next(pfn)
                if not batch:
                    break
                for pfn in batch:
                    zone.isolate_free_block(pfn, order)
                self._report(batch, order)
                for pfn in batch:
                    # page_reporting_drain(): back at the tail; marked only if it did not merge
                    zone.putback_isolated_block(pfn, order)
                    if mem_map.test(pfn, PG_buddy) and mem_map.private(pfn) == order:
                        mem_map.set(pfn, PG_reported)
                self.counters["reported_blocks"] += len(batch)

    def _report(self, pfns, order: int) -> None:
        vq = self.reporting_vq
        before = self.acked
        vq.add_sgs([(pfn << 12, 4096 << order, True) for pfn in pfns], "report")
        vq.kick()
        self.k.wait_event(lambda: self.acked > before)



def virtballoon_probe(k, vdev):
    if not vdev.negotiate(WANTED):
        return None
    driver = VirtioBalloonDriver(k, vdev)
    k.balloon = driver
    driver.thread = k.scheduler.kthread_run(driver.balloon_thread(), "vballoon")
    if driver.deflate_on_oom:
        k.oom_notifiers.append(driver.oom_notify)
    if driver.free_page_vq is not None:
        k.shrinkers.append(Shrinker(driver.shrinker_count, driver.shrinker_scan))
    k.printk(KERN_INFO, "virtio_balloon: ready")
    return driver


DRIVERS = {VIRTIO_ID_BALLOON: virtballoon_probe}
