"""virtio-blk (device ID 2, virtio 1.2, 5.2), modelled on Firecracker's block device and QEMU's request checks.

One request queue. A request is a header {le32 type; le32 reserved; le64 sector} in the device-readable part,
data, and a status byte: the last byte of the device-writable part. Framing follows the spec (2.6.4, any
layout with VERSION_1): the header is the first 16 readable bytes, OUT/DISCARD/WRITE_ZEROES data are the
readable bytes after it, IN/GET_ID data are the writable bytes before the status byte.

What the device decides:
- no status byte to write (no device-writable part, last descriptor not writable or empty) or a readable
  buffer after a writable one: the chain is malformed (QueueError). The device sets DEVICE_NEEDS_RESET and
  serves nothing more until reset, as QEMU does for "missing headers".
- anything with a status byte but a bad body (header shorter than 16 bytes, data in the wrong direction, a
  length that is not whole sectors, a range past capacity, a write to a read-only disk, a backend OSError):
  status IOERR. Unknown types, unknown flags, discard with unmap, too many segments: UNSUPP.

Timing: the data moves when the driver notifies (against the backend, at once); the completion (status byte,
used ring, interrupt) is an event on the virtual clock at max(now, busy_until) + vm_exit_ns + backend cost,
so requests complete in submission order, serialised like a single disk.

The backend is duck-typed: capacity_bytes, read_only, serial, read(offset, length) -> (bytes, cost_ns),
write(offset, data) -> cost_ns, flush(), discard(offset, length), write_zeroes(offset, length) -> cost_ns and
set_write_cache(enabled); IN requests use readv_into(offset, views) -> cost_ns, or read_runs_into(offset, ram,
runs, length) -> cost_ns (runs of guest RAM, no view each) when the backend has it. Backend failures raise
OSError. A backend may also offer read_runs_hit (the same read, or None with nothing done unless every page is
in the host cache): the commonest request, such an IN, then never leaves native code but for the accounting.
"""
from collections import Counter
from functools import partial

from devices import layouts_struct
from devices.counters import Counters
from devices.devlog import get_logger
from devices.virtio_device import VIRTIO_ID_BLOCK, VirtioDevice
from devices.virtqueue import QueueError, _virtq

log = get_logger(__name__)

SECTOR_SIZE = 512
PAGE_SIZE = 4096
HOST_CACHE_QUERY_NS_PER_PAGE = 1        # the host looks up each page of the queried range
QUEUE_SIZE = 256
SERIAL_LEN = 20

# Feature bits.
VIRTIO_BLK_F_SIZE_MAX = 1
VIRTIO_BLK_F_SEG_MAX = 2
VIRTIO_BLK_F_GEOMETRY = 4
VIRTIO_BLK_F_RO = 5
VIRTIO_BLK_F_BLK_SIZE = 6
VIRTIO_BLK_F_FLUSH = 9
VIRTIO_BLK_F_TOPOLOGY = 10
VIRTIO_BLK_F_CONFIG_WCE = 11
VIRTIO_BLK_F_MQ = 12
VIRTIO_BLK_F_DISCARD = 13
VIRTIO_BLK_F_WRITE_ZEROES = 14
VIRTIO_BLK_F_HOST_CACHE_QUERY = 23      # ours: docs/host-cache-query.md

# Request types.
VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_T_FLUSH = 4
VIRTIO_BLK_T_GET_ID = 8
VIRTIO_BLK_T_GET_LIFETIME = 10
VIRTIO_BLK_T_DISCARD = 11
VIRTIO_BLK_T_WRITE_ZEROES = 13
VIRTIO_BLK_T_SECURE_ERASE = 14
VIRTIO_BLK_T_HOST_CACHE_QUERY = 0x4843  # ours: which of this disk's pages the host caches

REQUEST_NAMES = {VIRTIO_BLK_T_IN: "in", VIRTIO_BLK_T_OUT: "out", VIRTIO_BLK_T_FLUSH: "flush",
                 VIRTIO_BLK_T_GET_ID: "get_id", VIRTIO_BLK_T_DISCARD: "discard",
                 VIRTIO_BLK_T_WRITE_ZEROES: "write_zeroes", VIRTIO_BLK_T_HOST_CACHE_QUERY: "host_cache_query"}

# Status values.
VIRTIO_BLK_S_OK = 0
VIRTIO_BLK_S_IOERR = 1
VIRTIO_BLK_S_UNSUPP = 2

VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1

# Limits we advertise.
SEG_MAX = QUEUE_SIZE - 2            # header and status take two descriptors (QEMU's default)
SIZE_MAX = 1 << 20                  # bytes in one data segment
MAX_DISCARD_SECTORS = 1 << 22       # 2 GiB per segment
MAX_DISCARD_SEG = 32
MAX_WRITE_ZEROES_SECTORS = 1 << 22
MAX_WRITE_ZEROES_SEG = 32
MAX_REQUEST_BYTES = SEG_MAX * SIZE_MAX   # what a driver within seg_max and size_max can ask for at most

CONFIG_WRITEBACK_OFFSET = 32

# the request layouts (declared in devices/layouts.py)
OUTHDR = layouts_struct.VirtioBlkOuthdr
SEGMENT = layouts_struct.VirtioBlkDiscardWriteZeroes


class BlkCounters(Counters):
    """virtio-blk's requests by type, bytes moved and requests that failed."""
    requests: Counter = Counter()      # by type name ("in", "out", ..., "unknown")
    bytes_read: int = 0
    bytes_written: int = 0
    bytes_discarded: int = 0
    bytes_zeroed: int = 0
    ioerr: int = 0
    unsupp: int = 0
    backend_errors: int = 0
    malformed: int = 0              # chains that put the device into DEVICE_NEEDS_RESET
    dropped_completions: int = 0    # completions for a queue reset before they were due
    completed: int = 0


class _Status(Exception):
    """Stops a request early with a status byte (IOERR or UNSUPP)."""

    def __init__(self, status: int, why: str):
        super().__init__(why)
        self.status = status


class VirtioBlk(VirtioDevice):
    device_id = VIRTIO_ID_BLOCK
    queue_max_sizes = [QUEUE_SIZE]

    def __init__(self, backend, clock, vm_exit_ns=None, *, block_size: int = 4096, writeback: bool = None,
                 write_zeroes_may_unmap: bool = False):
        """`writeback` is the write cache the guest sees after reset; by default the backend's own
        (`backend.write_cache_enabled`, else on), so QEMU's writethrough and directsync modes show 0.
        `block_size` is blk_size, the guest's logical block (4096 by default: the host cache works in 4 KiB
        pages); the protocol stays in 512-byte sectors. `vm_exit_ns` is the device model's fixed cost per
        request (default: the clock's cost model)."""
        super().__init__()
        if block_size < SECTOR_SIZE or block_size & (block_size - 1):
            raise ValueError(f"block size {block_size} is not a power of two of at least {SECTOR_SIZE}")
        self.backend = backend
        self._read_runs = getattr(backend, "read_runs_into", None)     # DMA into guest RAM runs, if offered
        self._read_hit = getattr(backend, "read_runs_hit", None)       # the same, only when all pages are cached
        self.clock = clock
        if vm_exit_ns is None:
            vm_exit_ns = getattr(getattr(clock, "costs", None), "vm_exit_ns", 0)
        self.vm_exit_ns = int(vm_exit_ns)
        self.block_size = block_size
        if writeback is None:
            writeback = getattr(backend, "write_cache_enabled", True)
        self.initial_writeback = bool(writeback)
        self.write_zeroes_may_unmap = bool(write_zeroes_may_unmap)
        self.writeback = self.initial_writeback
        backend.set_write_cache(self.writeback)
        self.counters = BlkCounters()
        self.busy_until_ns = 0
        self.transport = None
        self.queue = None
        self.mem = None
        self._populate = None
        self.activated = False
        self.broken = False
        self.epoch = 0                  # bumped by reset(): completions from before are dropped
        self._config = None

    # --- what the transport asks ---
    def device_features(self) -> int:
        bits = (VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH,
                VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES)
        features = sum(1 << b for b in bits)
        if self.backend.read_only:
            features |= 1 << VIRTIO_BLK_F_RO
        mode = getattr(self.backend, "mode", None)
        if mode is not None and mode.host_cache and self.backend.cache is not None:
            features |= 1 << VIRTIO_BLK_F_HOST_CACHE_QUERY
        return features

    def capacity_sectors(self) -> int:
        return self.backend.capacity_bytes // SECTOR_SIZE

    def config_space(self) -> bytes:
        if self._config is None:
            sectors_per_block = self.block_size // SECTOR_SIZE
            fields = dict(
                capacity=self.capacity_sectors(), size_max=SIZE_MAX, seg_max=SEG_MAX, blk_size=self.block_size,
                writeback=int(self.writeback), num_queues=1,
                max_discard_sectors=MAX_DISCARD_SECTORS, max_discard_seg=MAX_DISCARD_SEG,
                discard_sector_alignment=sectors_per_block,
                max_write_zeroes_sectors=MAX_WRITE_ZEROES_SECTORS, max_write_zeroes_seg=MAX_WRITE_ZEROES_SEG,
                write_zeroes_may_unmap=int(self.write_zeroes_may_unmap))
            # geometry and topology stay 0: neither VIRTIO_BLK_F_GEOMETRY nor _TOPOLOGY is offered
            values = []
            for field in layouts_struct.VirtioBlkConfig_FIELDS:
                name = field[0]
                if name:                                    # padding takes no value
                    values.append(field[2] if len(field) > 2 else fields.get(name, 0))   # a Const: its value
            self._config = layouts_struct.VirtioBlkConfig.pack(*values)
        return self._config

    def write_config(self, offset: int, size: int, value: int) -> None:
        # Only writeback is driver-writable, and only with CONFIG_WCE negotiated.
        if offset != CONFIG_WRITEBACK_OFFSET or size != 1 or not self._acked(VIRTIO_BLK_F_CONFIG_WCE):
            log.debug("virtio-blk: ignored config write %d bytes at %d", size, offset)
            return
        self._set_write_cache(bool(value))

    def capacity_changed(self) -> None:
        """The backend was resized: publish the new capacity (a config change notification)."""
        self._config = None
        if self.transport is not None:
            self.transport.config_changed()

    def ack_features(self, features: int) -> None:
        super().ack_features(features)
        # Without FLUSH the driver cannot make writes stable, so every write must be (virtio 1.2, 5.2.6.2);
        # with CONFIG_WCE but no FLUSH, writeback must start at 0 (5.2.5.2).
        self._set_write_cache(self.initial_writeback if self._acked(VIRTIO_BLK_F_FLUSH) else False)

    def _acked(self, bit: int) -> bool:
        return bool(self.acked_features >> bit & 1)

    def _set_write_cache(self, enabled: bool) -> None:
        if enabled != self.writeback:
            self.writeback = enabled
            self._config = None
            self.backend.set_write_cache(enabled)

    def activate(self, transport, queues, mem) -> None:
        self.transport = transport
        self.queue = queues[0]
        self.mem = mem
        self._populate = getattr(mem, "populate", None)     # pre-fault a read's buffers, if RAM can
        self.activated = True
        self.broken = False

    def reset(self) -> None:
        super().reset()
        self.epoch += 1
        self.activated = False
        self.broken = False
        self.queue = None
        self._set_write_cache(self.initial_writeback)

    def notify(self, queue_index: int) -> None:
        if not self.activated or self.broken or queue_index != 0 or not self.queue.ready:
            return
        self._process_queue()

    # --- requests ---
    def _process_queue(self) -> None:
        q, mem = self.queue, self.mem
        clock, counters = self.clock, self.counters
        try:
            while True:
                fast = self._fast_in_args(q, mem)
                while True:
                    # The common request, a whole-page IN, is taken from what the native peek found: served
                    # from the host cache in native calls when it holds every page, else read as _execute
                    # would; anything else is left on the ring for pop and _submit, which judge it.
                    if fast is not None:
                        got = _virtq.peek_blk_in(q.next_avail, *fast)
                        if got is not None:
                            if not got:         # nothing pending (avail_event published, as below)
                                return
                            head, runs, length, offset, status_addr = got
                            if self._read_runs is not None:
                                # the request peek checked is what pop and _execute would take: take it as
                                # they do, from the runs peek found, in one backend call (hit or miss: the
                                # backend tries the all-cached copy first)
                                q.next_avail = (q.next_avail + 1) & 0xFFFF
                                counters.requests["in"] += 1
                                try:
                                    cost = self._read_in(offset, fast[0], runs, length)
                                    status, written = VIRTIO_BLK_S_OK, length
                                except _Status as stop:
                                    log.debug("virtio-blk: request %d: %s", head, stop)
                                    cost, status, written = 0, stop.status, 0
                                    counters.ioerr += 1
                                self._schedule(head, status_addr, status, written + 1, cost)
                                continue
                            cost = self._read_hit(offset, fast[0], runs, length)
                            if cost is not None:
                                q.next_avail = (q.next_avail + 1) & 0xFFFF
                                counters.requests["in"] += 1
                                counters.bytes_read += length
                                self._schedule(head, status_addr, VIRTIO_BLK_S_OK, length + 1, cost)
                                continue
                    chain = q.pop(mem)
                    if chain is None:
                        break
                    self._submit(chain)
                    if fast is None:            # pop has checked the layout by now
                        fast = self._fast_in_args(q, mem)
                if not q.event_idx:
                    return
                q.set_avail_event(mem)
                if q.available(mem) == 0:       # nothing slipped in before avail_event was published
                    return
        except QueueError as err:
            log.debug("virtio-blk: malformed request queue: %s", err)
            self.counters.malformed += 1
            self.broken = True
            self.transport.set_needs_reset()

    def _fast_in_args(self, q, mem):
        """peek_blk_in's arguments after next_avail, or None when the fast path cannot be taken: a backend
        without read_runs_hit, or a queue not ready or whose layout pop has not checked yet."""
        if self._read_hit is None or not q.ready or \
                (q.size, q.desc_table, q.avail_ring, q.used_ring, mem.size) != q._checked_layout:
            return None
        return (mem.view, mem.size, q.desc_table, q.avail_ring, q.size, q.indirect_desc,
                self.backend.capacity_bytes, MAX_REQUEST_BYTES, q.used_ring + 4 + 8 * q.size if q.event_idx else -1)

    def _submit(self, chain) -> None:
        if not chain.ordered:
            chain.check_direction()
        raw = chain.raw
        if not raw or not raw[-1][2] or raw[-1][1] == 0:
            raise QueueError(f"request {chain.head} has no device-writable status byte at its end")
        status_addr = raw[-1][0] + raw[-1][1] - 1
        try:
            written, cost_ns = self._execute(chain)
            status = VIRTIO_BLK_S_OK
        except _Status as stop:
            log.debug("virtio-blk: request %d: %s", chain.head, stop)
            written, cost_ns, status = 0, 0, stop.status
            if status == VIRTIO_BLK_S_IOERR:
                self.counters.ioerr += 1
            else:
                self.counters.unsupp += 1
        self._schedule(chain.head, status_addr, status, written + 1, cost_ns)

    def _schedule(self, head: int, status_addr: int, status: int, used_len: int, cost_ns) -> None:
        """The completion: at max(now, busy_until) + the exit cost + the request's own, in order."""
        clock = self.clock
        now = clock.now_ns()
        busy = self.busy_until_ns
        done = (now if now > busy else busy) + self.vm_exit_ns + (int(cost_ns) if cost_ns > 0 else 0)
        self.busy_until_ns = done
        clock.schedule_at(done, partial(self._complete, self.epoch, self.queue.generation, head,
                                        status_addr, status, used_len))

    def _complete(self, epoch, generation, head, status_addr, status, used_len) -> None:
        q = self.queue
        if epoch != self.epoch or q is None or q.generation != generation or not q.ready:
            self.counters.dropped_completions += 1
            return
        self.mem.view[status_addr] = status
        q.add_used(self.mem, head, used_len)
        self.counters.completed += 1
        self.transport.signal_used(0)

    def _execute(self, chain):
        """Do the request's data transfer now; returns (bytes written to the driver, cost_ns).

        Sizes are checked before anything is copied, so a chain pointing many times at all of RAM costs
        the host nothing."""
        mem = self.mem
        first_addr, first_len, first_writes = chain.raw[0]
        if not first_writes and first_len >= OUTHDR.size:      # the usual framing: the header on its own
            req_type, _, sector = OUTHDR.unpack_from(mem.view, first_addr)
        else:
            header = chain.read(mem, 0, OUTHDR.size)
            if len(header) < OUTHDR.size:
                self.counters.requests["bad_header"] += 1
                raise _Status(VIRTIO_BLK_S_IOERR, f"header of {len(header)} bytes, not {OUTHDR.size}")
            req_type, _, sector = OUTHDR.unpack(header)
        self.counters.requests[REQUEST_NAMES.get(req_type, "unknown")] += 1
        data_out_len = chain.readable_len - OUTHDR.size     # readable bytes after the header
        data_in_room = chain.writable_len - 1               # writable bytes before the status byte

        if req_type == VIRTIO_BLK_T_IN:
            if data_out_len:
                raise _Status(VIRTIO_BLK_S_IOERR, "read with device-readable data")
            offset = self._check_range(sector, data_in_room)
            if self._read_runs is not None:
                runs, left = [], data_in_room
                for addr, length, is_write in chain.raw:
                    if is_write and left > 0:
                        if length > left:
                            length = left
                        runs.append((addr, length))
                        left -= length
                return data_in_room, self._read_in(offset, mem.view, runs, data_in_room)
            try:
                cost = self.backend.readv_into(offset, chain.writable_views(mem, data_in_room))
            except (OSError, ValueError) as err:      # as _backend: I/O error or a short transfer
                self.counters.backend_errors += 1
                raise _Status(VIRTIO_BLK_S_IOERR, f"backend: {err}") from err
            self.counters.bytes_read += data_in_room
            return data_in_room, cost

        if req_type == VIRTIO_BLK_T_OUT:
            if data_in_room:
                raise _Status(VIRTIO_BLK_S_IOERR, "write with device-writable data")
            self._check_writable()
            offset = self._check_range(sector, data_out_len)
            cost = self._backend(self.backend.write, offset, chain.read(mem, OUTHDR.size, data_out_len))
            self.counters.bytes_written += data_out_len
            return 0, cost

        if req_type == VIRTIO_BLK_T_FLUSH:
            return 0, self._backend(self.backend.flush)

        if req_type == VIRTIO_BLK_T_GET_ID:
            serial = bytes(self.backend.serial)[:SERIAL_LEN].ljust(SERIAL_LEN, b"\0")
            return chain.write_into(mem, serial[:max(0, data_in_room)]), 0

        if req_type in (VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES):
            return 0, self._discard_or_write_zeroes(req_type, chain, data_out_len)

        if req_type == VIRTIO_BLK_T_HOST_CACHE_QUERY and self._acked(VIRTIO_BLK_F_HOST_CACHE_QUERY):
            return self._host_cache_query(chain, sector, data_out_len, data_in_room)

        raise _Status(VIRTIO_BLK_S_UNSUPP, f"request type {req_type}")

    def _read_in(self, offset: int, view, runs, length: int):
        """An IN's data, straight from the host cache into the driver's buffers (runs of RAM), as DMA
        would; its cost. A backend failure is the request's IOERR."""
        if self._populate is not None:
            self._populate(runs)
        try:
            cost = self._read_runs(offset, view, runs, length)
        except (OSError, ValueError) as err:      # as _backend: I/O error or a short transfer
            self.counters.backend_errors += 1
            raise _Status(VIRTIO_BLK_S_IOERR, f"backend: {err}") from err
        self.counters.bytes_read += length
        return cost

    def _host_cache_query(self, chain, sector: int, data_out_len: int, room: int):
        """A bitmap of the disk's pages the host caches, from the page holding `sector`."""
        nr_pages = self.backend.capacity_bytes // PAGE_SIZE
        if data_out_len or sector % (PAGE_SIZE // SECTOR_SIZE) or room <= 0:
            raise _Status(VIRTIO_BLK_S_IOERR, "host cache query: bad sector or buffers")
        first = sector * SECTOR_SIZE // PAGE_SIZE
        if first >= nr_pages or room > (nr_pages + 7) // 8:
            raise _Status(VIRTIO_BLK_S_IOERR, "host cache query past the end of the disk")
        bitmap = bytearray(room)
        last = min(nr_pages, first + 8 * room)
        for index in self.backend.cache.pages_of(self.backend.key):
            if first <= index < last:
                bit = index - first
                bitmap[bit >> 3] |= 1 << (bit & 7)
        return chain.write_into(self.mem, bytes(bitmap)), (last - first) * HOST_CACHE_QUERY_NS_PER_PAGE

    def _discard_or_write_zeroes(self, req_type: int, chain, payload_len: int) -> int:
        zeroes = req_type == VIRTIO_BLK_T_WRITE_ZEROES
        feature, max_seg, max_sectors = (
            (VIRTIO_BLK_F_WRITE_ZEROES, MAX_WRITE_ZEROES_SEG, MAX_WRITE_ZEROES_SECTORS) if zeroes
            else (VIRTIO_BLK_F_DISCARD, MAX_DISCARD_SEG, MAX_DISCARD_SECTORS))
        if not self._acked(feature):
            raise _Status(VIRTIO_BLK_S_UNSUPP, "discard/write-zeroes feature not negotiated")
        if not payload_len or payload_len % SEGMENT.size:
            raise _Status(VIRTIO_BLK_S_IOERR, f"{payload_len} bytes of segments")
        if payload_len // SEGMENT.size > max_seg:
            raise _Status(VIRTIO_BLK_S_UNSUPP, f"{payload_len // SEGMENT.size} segments, max {max_seg}")
        segments = list(SEGMENT.iter_unpack(chain.read(self.mem, OUTHDR.size, payload_len)))
        allowed_flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP if zeroes else 0
        for _, _, flags in segments:            # UNSUPP before IOERR: the spec demands it for these flags
            if flags & ~allowed_flags:
                raise _Status(VIRTIO_BLK_S_UNSUPP, f"segment flags {flags:#x}")
        self._check_writable()
        ranges = []
        for sector, num_sectors, _ in segments:
            if num_sectors > max_sectors:
                raise _Status(VIRTIO_BLK_S_IOERR, f"segment of {num_sectors} sectors, max {max_sectors}")
            ranges.append((self._check_range(sector, num_sectors * SECTOR_SIZE), num_sectors * SECTOR_SIZE))
        op = self.backend.write_zeroes if zeroes else self.backend.discard
        cost = 0
        for offset, length in ranges:
            cost += self._backend(op, offset, length)
            if zeroes:
                self.counters.bytes_zeroed += length
            else:
                self.counters.bytes_discarded += length
        return cost

    def _check_writable(self) -> None:
        if self.backend.read_only:
            raise _Status(VIRTIO_BLK_S_IOERR, "write to a read-only disk")

    def _check_range(self, sector: int, length: int) -> int:
        if length > MAX_REQUEST_BYTES:
            raise _Status(VIRTIO_BLK_S_IOERR, f"{length} bytes in one request, max {MAX_REQUEST_BYTES}")
        if length % SECTOR_SIZE:
            raise _Status(VIRTIO_BLK_S_IOERR, f"length {length} is not whole sectors")
        offset = sector * SECTOR_SIZE
        if offset + length > self.backend.capacity_bytes:
            raise _Status(VIRTIO_BLK_S_IOERR, f"sectors {sector}+{length // SECTOR_SIZE} past capacity")
        return offset

    def _backend(self, op, *args):
        try:
            return op(*args)
        except (OSError, ValueError) as err:      # I/O error, or a short transfer into the buffers
            self.counters.backend_errors += 1
            raise _Status(VIRTIO_BLK_S_IOERR, f"backend: {err}") from err
