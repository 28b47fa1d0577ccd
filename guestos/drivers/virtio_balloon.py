"""The virtio balloon driver (drivers/virtio/virtio_balloon.c), first part: inflate and deflate
toward the host's target in batches of at most 256 PFNs, telling the host before deflated pages
are reused when MUST_TELL_HOST is negotiated, `actual` updated after each step, inflated pages
leaving MemTotal unless DEFLATE_ON_OOM, and the statistics buffer answered on request."""
import struct

from ..kernel.printk import KERN_INFO
from ..mm.mm_types import NIL
from .virtio_mmio import VIRTIO_ID_BALLOON

VIRTIO_BALLOON_F_MUST_TELL_HOST = 0
VIRTIO_BALLOON_F_STATS_VQ = 1
VIRTIO_BALLOON_F_DEFLATE_ON_OOM = 2
VIRTIO_BALLOON_ARRAY_PFNS_MAX = 256
WANTED = (1 << VIRTIO_BALLOON_F_MUST_TELL_HOST) | (1 << VIRTIO_BALLOON_F_STATS_VQ) | \
         (1 << VIRTIO_BALLOON_F_DEFLATE_ON_OOM)
STAT_TAGS = 16


class VirtioBalloonDriver:
    def __init__(self, k, vdev):
        self.k, self.vdev = k, vdev
        self.inflate_vq = vdev.setup_vq(0, self._ack)
        self.deflate_vq = vdev.setup_vq(1, self._ack)
        self.stats_vq = vdev.setup_vq(2, self._stats_request) if vdev.has(VIRTIO_BALLOON_F_STATS_VQ) else None
        self.pages = []                      # pfns in the balloon (Linux's balloon page list)
        self.num_pages = 0
        self.acked = 0
        self.work_pending = True
        page = k.page_alloc.alloc_pages()
        self.buf_paddr = page << 12          # the PFN array / stats buffer page
        vdev.config_changed = self._config_changed

    def ready(self) -> None:
        """After DRIVER_OK: hand the device the stats buffer it will return when it wants stats."""
        if self.stats_vq is not None:
            self._send_stats()

    # --- interrupts ---
    def _ack(self, vq) -> None:
        while vq.get_buf() is not None:
            self.acked += 1

    def _config_changed(self) -> None:
        self.work_pending = True             # update_balloon_size_func() runs from the workqueue

    def _stats_request(self, vq) -> None:
        while vq.get_buf() is not None:
            self._send_stats()

    # --- the work ---
    def target(self) -> int:
        return self.vdev.read_config(0, 4)

    def tell_host(self, vq, pfns) -> None:
        struct.pack_into(f"<{len(pfns)}I", self.k.ram, self.buf_paddr, *pfns)
        before = self.acked
        vq.add_sgs([(self.buf_paddr, 4 * len(pfns), False)], "pfns")
        vq.kick()
        self.k.wait_event(lambda: self.acked > before)          # the buffer is reused next step

    def run(self) -> None:
        """balloon work: step toward the target, one batch at a time."""
        self.work_pending = False
        while True:
            diff = self.target() - self.num_pages
            if diff > 0:
                if not self.fill_balloon(min(diff, VIRTIO_BALLOON_ARRAY_PFNS_MAX)):
                    break                                       # no memory now: back off
            elif diff < 0:
                self.leak_balloon(min(-diff, VIRTIO_BALLOON_ARRAY_PFNS_MAX))
            else:
                break
            self.vdev.write_config(4, 4, self.num_pages)        # `actual` after each step

    def fill_balloon(self, n: int) -> int:
        k = self.k
        pfns = []
        for _ in range(n):
            # __GFP_NORETRY: never below the low watermark, no reclaim for the balloon's sake
            if not k.page_alloc.zone.watermark_ok(0, 1):
                break
            pfn = k.page_alloc.zone.rmqueue(0)
            if pfn == NIL:
                break
            k.mem_map.set_flags(pfn, 1 << 10)                   # PG_reserved: not the kernel's now
            k.mem_map.set_refcount(pfn, 1)
            pfns.append(pfn)
        if not pfns:
            return 0
        self.tell_host(self.inflate_vq, pfns)
        self.pages.extend(pfns)
        self.num_pages += len(pfns)
        if not self.vdev.has(VIRTIO_BALLOON_F_DEFLATE_ON_OOM):
            k.totalram_pages -= len(pfns)                       # adjust_managed_page_count()
        return len(pfns)

    def leak_balloon(self, n: int) -> int:
        k = self.k
        pfns = [self.pages.pop() for _ in range(min(n, len(self.pages)))]
        if not pfns:
            return 0
        # the host hears of them before the guest uses them again (MUST_TELL_HOST waits for the ack)
        self.tell_host(self.deflate_vq, pfns)
        for pfn in pfns:
            k.mem_map.set_flags(pfn, 0)
            k.mem_map.set_refcount(pfn, 0)
            k.page_alloc.zone.free_pages(pfn, 0)
        self.num_pages -= len(pfns)
        if not self.vdev.has(VIRTIO_BALLOON_F_DEFLATE_ON_OOM):
            k.totalram_pages += len(pfns)
        return len(pfns)

    def _send_stats(self) -> None:
        k = self.k
        vm, mi = k.vmstat_snapshot(), k.meminfo()
        values = [vm["pswpin"] * 4096, vm["pswpout"] * 4096, vm["pgmajfault"], vm["pgfault"] - vm["pgmajfault"],
                  mi["MemFree"] * 1024, mi["MemTotal"] * 1024, mi["MemAvailable"] * 1024,
                  (mi["Cached"] + mi["Buffers"]) * 1024, 0, 0, vm["oom_kill"], vm["allocstall"],
                  vm["pgscan_kswapd"], vm["pgscan_direct"], vm["pgsteal_kswapd"], vm["pgsteal_direct"]]
        raw = b"".join(struct.pack("<HQ", tag, value) for tag, value in enumerate(values))
        stats_paddr = self.buf_paddr + 2048
        k.ram[stats_paddr:stats_paddr + len(raw)] = raw
        self.stats_vq.add_sgs([(stats_paddr, len(raw), False)], "stats")
        self.stats_vq.kick()


def virtballoon_probe(k, vdev):
    if not vdev.negotiate(WANTED):
        return None
    driver = VirtioBalloonDriver(k, vdev)
    k.balloon = driver
    k.printk(KERN_INFO, "virtio_balloon: ready")
    return driver


DRIVERS = {VIRTIO_ID_BALLOON: virtballoon_probe}
