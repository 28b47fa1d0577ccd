"""virtio-balloon (device ID 5, virtio 1.2, 5.5), modelled on QEMU's virtio-balloon and Firecracker's balloon.

Queues, in this order, each present only if its feature is negotiated (later queues shift down):
inflateq, deflateq, statsq (STATS_VQ), free_page_vq (FREE_PAGE_HINT), reporting_vq (REPORTING). The transport
builds as many queues as the offered features allow; activate() maps indices with the negotiated features.

Host side: `set_target_pages(n)` (Firecracker: the balloon's size) or `set_guest_size(bytes)` (QEMU: the guest's
size, target = (RAM - size) / 4096) write num_pages and raise a config change; `actual_pages` is what the driver
reports. Inflated PFNs are discarded (MADV_DONTNEED through GuestRAM.discard, so RSS falls) and kept in
`inflated`; deflated PFNs are discarded once more (so they read as zero even if a guest broke the rules) and
backed again, then filled with poison_val if PAGE_POISON was negotiated. Free-page hints and reports are
discarded and backed again at once: the guest owns those pages and may reuse them without telling us.

What the device decides about bad input (never an exception out of notify):
- a broken ring (QueueError from the queue: loops, descriptors outside RAM, bad heads): DEVICE_NEEDS_RESET and
  nothing more is served until reset, as virtio-blk does.
- inflate/deflate buffers: only the device-readable part is read (as QEMU does); device-writable descriptors are
  ignored, and so are 1-3 trailing bytes of a PFN array whose length is not a multiple of 4. Such a chain is
  still processed (its whole PFNs) and used, and counted in `malformed`. PFNs outside RAM are ignored and counted
  in `ignored_pfns`; a deflate of a PFN that is not in the balloon is ignored (`ignored_pfns` too), so a driver
  cannot make the device zero a page it still uses.
- stats: trailing bytes that do not make a whole 10-byte entry are ignored (`malformed`); unknown tags too.
- free page hints outside a round, and reports/hints given as device-readable descriptors, are ignored
  (`malformed`); only the whole 4 KiB frames inside a range are discarded.
- with PAGE_POISON negotiated and a non-zero poison_val, reported pages are not discarded (QEMU skips them too:
  a discarded page would read as zero, not as poison); they are counted in `poison_kept_pages`.

Queues are served at once when the driver notifies, or `service_delay_ns` of virtual time later (a host
whose balloon thread is busy): a driver that reuses pages before its deflate is acknowledged is then caught.
"""
import struct

from devices import layouts_struct
from devices.counters import Counters
from devices.devlog import get_logger
from devices.virtio_device import VIRTIO_ID_BALLOON, VirtioDevice
from devices.virtqueue import QueueError

log = get_logger(__name__)

QUEUE_SIZE = 128                # QEMU's and Firecracker's balloon queue size
PFN_SHIFT = 12                  # balloon pages are 4 KiB whatever the guest's page size
BALLOON_PAGE_SIZE = 1 << PFN_SHIFT

# Feature bits.
VIRTIO_BALLOON_F_MUST_TELL_HOST = 0
VIRTIO_BALLOON_F_STATS_VQ = 1
VIRTIO_BALLOON_F_DEFLATE_ON_OOM = 2
VIRTIO_BALLOON_F_FREE_PAGE_HINT = 3
VIRTIO_BALLOON_F_PAGE_POISON = 4
VIRTIO_BALLOON_F_REPORTING = 5
ALL_FEATURES = sum(1 << b for b in range(6))
# Ours, experimental (a free device bit, as the series' v3 asked for one): the host hints, per
# target, that the guest should give unmapped page cache before free memory. Config field
# `reclaim_cache_first` (le32 @16, device-written): 1 = cache first for the current target.
VIRTIO_BALLOON_F_RECLAIM_CACHE_FIRST = 16
KNOWN_FEATURES = ALL_FEATURES | 1 << VIRTIO_BALLOON_F_RECLAIM_CACHE_FIRST
# The features by name, as the host side names them (scenario files, the pytest plugin): the one list.
FEATURES_BY_NAME = {
    "MUST_TELL_HOST": 1 << VIRTIO_BALLOON_F_MUST_TELL_HOST,
    "STATS_VQ": 1 << VIRTIO_BALLOON_F_STATS_VQ,
    "DEFLATE_ON_OOM": 1 << VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
    "FREE_PAGE_HINT": 1 << VIRTIO_BALLOON_F_FREE_PAGE_HINT,
    "PAGE_POISON": 1 << VIRTIO_BALLOON_F_PAGE_POISON,
    "REPORTING": 1 << VIRTIO_BALLOON_F_REPORTING,
    "RECLAIM_CACHE_FIRST": 1 << VIRTIO_BALLOON_F_RECLAIM_CACHE_FIRST,   # ours: the per-target "cache first" hint
}

# Free page hint command ids.
FREE_PAGE_HINT_CMD_ID_STOP = 0
FREE_PAGE_HINT_CMD_ID_DONE = 1
FREE_PAGE_HINT_CMD_ID_MIN = 2

# Stats tags and Linux's names for them (include/uapi/linux/virtio_balloon.h, VIRTIO_BALLOON_S_NAMES).
STAT_NAMES = ("swap-in", "swap-out", "major-faults", "minor-faults", "free-memory", "total-memory",
              "available-memory", "disk-caches", "hugetlb-allocations", "hugetlb-failures", "oom-kills",
              "alloc-stalls", "async-scans", "direct-scans", "async-reclaims", "direct-reclaims")
VIRTIO_BALLOON_S_SWAP_IN, VIRTIO_BALLOON_S_SWAP_OUT, VIRTIO_BALLOON_S_MAJFLT, VIRTIO_BALLOON_S_MINFLT, \
    VIRTIO_BALLOON_S_MEMFREE, VIRTIO_BALLOON_S_MEMTOT, VIRTIO_BALLOON_S_AVAIL, VIRTIO_BALLOON_S_CACHES, \
    VIRTIO_BALLOON_S_HTLB_PGALLOC, VIRTIO_BALLOON_S_HTLB_PGFAIL, VIRTIO_BALLOON_S_OOM_KILL, \
    VIRTIO_BALLOON_S_ALLOC_STALL, VIRTIO_BALLOON_S_ASYNC_SCAN, VIRTIO_BALLOON_S_DIRECT_SCAN, \
    VIRTIO_BALLOON_S_ASYNC_RECLAIM, VIRTIO_BALLOON_S_DIRECT_RECLAIM = range(16)

CONFIG_ACTUAL_OFFSET = 4
CONFIG_POISON_VAL_OFFSET = 12
CONFIG_RECLAIM_CACHE_FIRST_OFFSET = 16

# the layouts (declared in devices/layouts.py)
CONFIG = layouts_struct.VirtioBalloonConfig
STAT = layouts_struct.VirtioBalloonStat         # packed: 10 bytes
PFN = layouts_struct.VirtioBalloonPfn

INFLATE, DEFLATE, STATS, FREE_PAGE, REPORTING = "inflate", "deflate", "stats", "free_page", "reporting"
_OPTIONAL_QUEUES = ((VIRTIO_BALLOON_F_STATS_VQ, STATS), (VIRTIO_BALLOON_F_FREE_PAGE_HINT, FREE_PAGE),
                    (VIRTIO_BALLOON_F_REPORTING, REPORTING))


def queue_roles(features: int) -> list:
    """The queue at each index for these features: inflate, deflate, then the optional ones present."""
    return [INFLATE, DEFLATE] + [name for bit, name in _OPTIONAL_QUEUES if features >> bit & 1]


class BalloonCounters(Counters):
    """What the balloon device did with the pages the driver gave it, hinted or reported."""
    inflated_pages: int = 0         # PFNs that entered the balloon
    deflated_pages: int = 0         # PFNs that left it
    hinted_pages: int = 0           # 4 KiB frames discarded from free page hints
    reported_pages: int = 0         # 4 KiB frames discarded from free page reports
    poison_kept_pages: int = 0      # reported frames kept because a non-zero poison must survive
    ignored_pfns: int = 0           # outside RAM, or a deflate of a PFN not in the balloon
    repeated_pfns: int = 0          # inflate buffers naming a PFN already in the balloon
    stats_updates: int = 0          # stats buffers parsed
    malformed: int = 0              # chains with ignored parts (see the module docstring)
    broken: int = 0                 # broken rings that put the device into DEVICE_NEEDS_RESET


class VirtioBalloon(VirtioDevice):
    device_id = VIRTIO_ID_BALLOON

    def __init__(self, ram, clock, features: int = ALL_FEATURES, poison_val: int = 0,
                 stats_interval_s: float = 0, service_delay_ns: int = 0):
        """`ram` is GuestRAM (the frames to discard); `features` the balloon bits offered (MUST_TELL_HOST ...
        REPORTING); `poison_val` the poison reported before the driver writes its own; `stats_interval_s`
        > 0 makes the device ask for statistics that often on `clock` (Firecracker's stats_polling_interval_s,
        QEMU's guest-stats-polling-interval)."""
        super().__init__()
        if features & ~KNOWN_FEATURES:
            raise ValueError(f"unknown balloon features {features & ~KNOWN_FEATURES:#x}")
        self.ram = ram
        self.clock = clock
        self.features = features
        self.initial_poison_val = poison_val & 0xFFFFFFFF
        # the transport builds one queue per index the offered features can use
        self.queue_max_sizes = [QUEUE_SIZE] * len(queue_roles(features))
        self.counters = BalloonCounters()
        self.inflated = set()
        self._logged = set()            # kinds of bad input already logged
        self.latest_stats = {}
        self.num_pages = 0
        self.cache_first = False        # the experimental per-target hint
        self.actual = 0
        self.cmd_id = FREE_PAGE_HINT_CMD_ID_STOP
        self._next_cmd_id = FREE_PAGE_HINT_CMD_ID_MIN
        self.poison_val = self.initial_poison_val
        self._stats_interval_s = float(stats_interval_s)
        self.service_delay_ns = int(service_delay_ns)
        self.transport = None
        self.mem = None
        self.queues = {}                # role -> (index, queue)
        self.activated = False
        self.broken = False
        self.epoch = 0                  # bumped by reset(): timers from before are dropped
        self._stats_head = None         # the driver's stats buffer, held until we ask again
        self._hint_active = False       # the driver acknowledged the current cmd_id on free_page_vq

    # --- what the transport asks ---
    def device_features(self) -> int:
        return self.features

    def _acked(self, bit: int) -> bool:
        return bool(self.acked_features >> bit & 1)

    def config_space(self) -> bytes:
        config = CONFIG.pack(self.num_pages, self.actual, self.cmd_id, self.poison_val)
        if self.features >> VIRTIO_BALLOON_F_RECLAIM_CACHE_FIRST & 1:
            config += PFN.pack(1 if self.cache_first else 0)
        return config

    def write_config(self, offset: int, size: int, value: int) -> None:
        if offset == CONFIG_ACTUAL_OFFSET and size == 4:
            self.actual = value
        elif offset == CONFIG_POISON_VAL_OFFSET and size == 4 and self._acked(VIRTIO_BALLOON_F_PAGE_POISON):
            self.poison_val = value
        else:
            log.debug("virtio-balloon: ignored config write %d bytes at %d", size, offset)

    def activate(self, transport, queues, mem) -> None:
        self.transport = transport
        self.mem = mem
        self.queues = {role: (index, queues[index]) for index, role in enumerate(queue_roles(self.acked_features))}
        self.activated = True
        self.broken = False
        self._stats_head = None
        self._hint_active = False

    def reset(self) -> None:
        """A new driver knows nothing of the balloon: every inflated page is backed again (reading as zero)."""
        super().reset()
        self.epoch += 1
        self.activated = False
        self.broken = False
        self.queues = {}
        self._stats_head = None
        self._hint_active = False
        self._release(sorted(self.inflated))
        self.inflated.clear()
        self.actual = 0
        self.cmd_id = FREE_PAGE_HINT_CMD_ID_STOP
        self.poison_val = self.initial_poison_val

    def reset_queue(self, queue_index: int) -> None:
        index, _ = self.queues.get(STATS, (None, None))
        if queue_index == index:
            self._stats_head = None

    def notify(self, queue_index: int) -> None:
        if not self.activated or self.broken:
            return
        for role, (index, q) in self.queues.items():
            if index == queue_index:
                if q.ready and self.service_delay_ns and role in (INFLATE, DEFLATE):
                    epoch = self.epoch
                    self.clock.schedule(self.service_delay_ns, lambda: self._serve_later(epoch, role, index, q))
                elif q.ready:
                    self._process(role, index, q)
                return

    def _serve_later(self, epoch: int, role: str, index: int, q) -> None:
        if epoch == self.epoch and self.activated and not self.broken and q.ready:
            self._process(role, index, q)

    # --- host API ---
    @property
    def actual_pages(self) -> int:
        return self.actual

    @property
    def target_pages(self) -> int:
        return self.num_pages

    def set_target_pages(self, n: int, hint: str = None) -> None:
        """Firecracker's view: the balloon should hold n 4 KiB pages. hint="cache" (QEMU's
        `balloon <value> cache` of the 2010 series) asks the guest to give page cache first."""
        n = int(n)
        if not 0 <= n <= self.ram.size >> PFN_SHIFT:
            raise ValueError(f"balloon of {n} pages does not fit in {self.ram.size >> PFN_SHIFT} pages of RAM")
        if hint not in (None, "cache"):
            raise ValueError(f"unknown balloon hint {hint!r} (only 'cache')")
        if hint and not self.features >> VIRTIO_BALLOON_F_RECLAIM_CACHE_FIRST & 1:
            raise ValueError("hint='cache' needs the RECLAIM_CACHE_FIRST feature offered")
        self.num_pages = n
        self.cache_first = hint == "cache"
        self._config_changed()

    def set_guest_size(self, size_bytes: int, hint: str = None) -> None:
        """QEMU's view (`balloon <MB>`): the guest should keep size_bytes of RAM; more than RAM means no balloon."""
        size_bytes = int(size_bytes)
        if size_bytes <= 0:
            raise ValueError(f"guest size {size_bytes} must be positive")
        self.set_target_pages((self.ram.size - min(size_bytes, self.ram.size)) >> PFN_SHIFT, hint)

    def _config_changed(self) -> None:
        if self.activated and self.transport is not None:
            self.transport.config_changed()

    @property
    def stats_interval_s(self) -> float:
        return self._stats_interval_s

    @stats_interval_s.setter
    def stats_interval_s(self, seconds: float) -> None:
        self._stats_interval_s = float(seconds)
        if self._stats_head is not None:
            self._arm_stats_timer()

    def request_stats(self) -> bool:
        """Give the held stats buffer back so the driver refills it; False if we hold none."""
        if not self.activated or self.broken or self._stats_head is None or STATS not in self.queues:
            return False
        index, q = self.queues[STATS]
        head, self._stats_head = self._stats_head, None
        try:
            q.add_used(self.mem, head, 0)
        except QueueError as err:
            self._break(err)
            return False
        self.transport.signal_used(index)
        return True

    def _arm_stats_timer(self) -> None:
        if self._stats_interval_s <= 0:
            return
        epoch, head = self.epoch, self._stats_head

        def poll():
            if epoch == self.epoch and self._stats_head == head:
                self.request_stats()
        self.clock.schedule(int(self._stats_interval_s * 1e9), poll)

    def start_hinting(self) -> int:
        """Start a free page hint round with a new cmd_id (>= 2); returns it."""
        self.cmd_id = self._next_cmd_id
        self._next_cmd_id = self._next_cmd_id + 1 if self._next_cmd_id < 0xFFFFFFFF else FREE_PAGE_HINT_CMD_ID_MIN
        self._hint_active = False
        self._config_changed()
        return self.cmd_id

    def stop_hinting(self) -> None:
        """Ask the driver to stop sending hints (cmd_id STOP); it keeps the hinted pages until DONE."""
        self._set_cmd_id(FREE_PAGE_HINT_CMD_ID_STOP)

    def done_hinting(self) -> None:
        """The round is over (cmd_id DONE): the driver frees the hinted pages."""
        self._set_cmd_id(FREE_PAGE_HINT_CMD_ID_DONE)

    def _set_cmd_id(self, cmd_id: int) -> None:
        self.cmd_id = cmd_id
        self._hint_active = False
        self._config_changed()

    # --- queues ---
    def _process(self, role: str, index: int, q) -> None:
        mem = self.mem
        handler = getattr(self, "_on_" + role)
        try:
            while True:
                signal = False
                chain = q.pop(mem)
                while chain is not None:
                    if handler(chain):          # False: the device keeps the buffer (stats)
                        q.add_used(mem, chain.head, 0)
                        signal = True
                    chain = q.pop(mem)
                if signal:
                    self.transport.signal_used(index)
                if not q.event_idx:
                    return
                q.set_avail_event(mem)
                if q.available(mem) == 0:
                    return
        except QueueError as err:
            self._break(err)

    def _complain(self, counter: str, what: str) -> None:
        """Count a driver mistake; log each kind once (a buggy driver repeats itself)."""
        setattr(self.counters, counter, getattr(self.counters, counter) + 1)
        if what not in self._logged:
            self._logged.add(what)
            log.warning("virtio-balloon: ignored %s", what)

    def _break(self, err) -> None:
        log.debug("virtio-balloon: broken queue: %s", err)
        self.counters.broken += 1
        self.broken = True
        self.transport.set_needs_reset()

    def _pfns(self, chain) -> list:
        length = chain.readable_len
        if length % PFN.size or chain.writable_len:
            self._complain("malformed", "a PFN array with trailing bytes or device-writable parts")
        data = chain.read(self.mem, 0, length - length % PFN.size)
        nr_frames = self.ram.size >> PFN_SHIFT
        listed = list(struct.unpack(f"{PFN.format[0]}{len(data) // PFN.size}{PFN.format[1:]}", data))   # PFN, each
        if not listed or max(listed) < nr_frames:       # the usual array: every PFN in RAM
            return listed
        pfns = []
        for pfn in listed:
            if pfn < nr_frames:
                pfns.append(pfn)
            else:
                self._complain("ignored_pfns", "a PFN outside guest RAM")
        return pfns

    def _on_inflate(self, chain) -> bool:
        listed = self._pfns(chain)
        pfns = set(listed)
        fresh = pfns.isdisjoint(self.inflated)
        if len(pfns) < len(listed) or not fresh:
            self._complain("repeated_pfns", "an inflate of a PFN already in the balloon")
        self.counters.inflated_pages += len(pfns) if fresh else len(pfns - self.inflated)
        self.inflated |= pfns
        for start, count in _runs(sorted(pfns)):
            self.ram.discard(start, count)
        return True

    def _on_deflate(self, chain) -> bool:
        pfns = []
        for pfn in self._pfns(chain):
            if pfn in self.inflated:
                self.inflated.discard(pfn)
                pfns.append(pfn)
            else:
                self._complain("ignored_pfns", "a deflate of a PFN that is not in the balloon")
        self.counters.deflated_pages += len(pfns)
        self._release(sorted(pfns))
        if self._acked(VIRTIO_BALLOON_F_PAGE_POISON) and self.poison_val:
            page = PFN.pack(self.poison_val) * (BALLOON_PAGE_SIZE // PFN.size)
            view = self.ram.view
            for pfn in pfns:
                view[pfn << PFN_SHIFT:(pfn + 1) << PFN_SHIFT] = page
        return True

    def _release(self, pfns) -> None:
        """Back sorted PFNs again, reading as zero (discard first: a guest may have written them anyway)."""
        for start, count in _runs(pfns):
            self.ram.discard(start, count)
            self.ram.reback(start, count)

    def _on_stats(self, chain) -> bool:
        length = chain.readable_len
        if length % STAT.size or chain.writable_len:
            self._complain("malformed", "a stats buffer with a partial entry or device-writable parts")
        data = chain.read(self.mem, 0, length - length % STAT.size)
        stats = {}
        for tag, value in STAT.iter_unpack(data):
            if tag < len(STAT_NAMES):
                stats[STAT_NAMES[tag]] = value
        self.latest_stats = stats
        self.counters.stats_updates += 1
        if self._stats_head is not None:        # a second buffer: give the older one back
            _, q = self.queues[STATS]
            q.add_used(self.mem, self._stats_head, 0)
            self.transport.signal_used(self.queues[STATS][0])
        self._stats_head = chain.head
        self._arm_stats_timer()
        return False

    def _on_free_page(self, chain) -> bool:
        readable = chain.readable_len
        if readable:
            if readable < PFN.size:
                self._complain("malformed", "a free page hint command id shorter than 4 bytes")
                return True
            (cmd_id,) = PFN.unpack(chain.read(self.mem, 0, PFN.size))
            if cmd_id == self.cmd_id and cmd_id >= FREE_PAGE_HINT_CMD_ID_MIN:
                self._hint_active = True            # the driver started this round
            elif cmd_id == FREE_PAGE_HINT_CMD_ID_STOP:
                self._hint_active = False           # the driver finished (or gave up) its report
            if chain.writable_len:
                self._complain("malformed", "a free page hint command id and ranges in one chain")  # an id and ranges in one chain: only the id counts
            return True
        if not self._hint_active:
            self._complain("malformed", "free page hints outside a hinting round")  # hints outside a round (or for an old one)
            return True
        self.counters.hinted_pages += self._discard_ranges(chain.writable(), keep_poison=False)
        return True

    def _on_reporting(self, chain) -> bool:
        if chain.readable_len:
            self._complain("malformed", "a free page report with device-readable parts")
        keep = self._acked(VIRTIO_BALLOON_F_PAGE_POISON) and self.poison_val != 0
        self.counters.reported_pages += self._discard_ranges(chain.writable(), keep_poison=keep)
        return True

    def _discard_ranges(self, descriptors, keep_poison: bool) -> int:
        """Discard the whole 4 KiB frames inside each range and back them again; returns frames discarded."""
        done = 0
        for d in descriptors:
            start = -(-d.addr // BALLOON_PAGE_SIZE)
            end = (d.addr + d.length) >> PFN_SHIFT
            if end <= start:
                continue
            if keep_poison:
                self.counters.poison_kept_pages += end - start
                continue
            # a page the guest gave to the balloon stays there, unbacked
            frames = range(start, end) if not self.inflated else \
                (p for p in range(start, end) if p not in self.inflated)
            for run_start, count in _runs(frames):
                self.ram.discard(run_start, count)
                self.ram.reback(run_start, count)
                done += count
        return done


def _runs(pfns):
    """(start, count) for each run of consecutive PFNs in a strictly ascending sequence."""
    if isinstance(pfns, list) and pfns and pfns[-1] - pfns[0] == len(pfns) - 1:
        yield pfns[0], len(pfns)            # one run (the buddy allocator's usual batch): no loop
        return
    start = prev = None
    for pfn in pfns:
        if start is not None and pfn == prev + 1:
            prev = pfn
            continue
        if start is not None:
            yield start, prev - start + 1
        start = prev = pfn
    if start is not None:
        yield start, prev - start + 1
