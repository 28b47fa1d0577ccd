"""What a virtio-blk disk does on the host: a raw image behind the host page cache.

One BlockBackend per VM disk. It applies QEMU's `cache=` mode, moves the data
(for real: a flushed write is in the image file even if the process dies next)
and returns what each request costs in virtual nanoseconds.

Modes, as QEMU defines them (host page cache / write cache seen by the guest /
flush honoured): writeback (yes/yes/yes), none (O_DIRECT/yes/yes),
writethrough (yes/no/-), directsync (O_DIRECT/no/-), unsafe (yes/yes/ignored).
The guest may toggle the write cache (virtio-blk CONFIG_WCE): with it off,
writeback behaves as writethrough and none as directsync, as in QEMU.

Direct modes keep the shared host cache coherent as Linux does for O_DIRECT:
dirty cached pages in the range are written back first, and pages a direct
write touched are invalidated afterwards.
"""
import errno
from typing import NamedTuple

from .counters import Counters
from .disk import PAGE_SHIFT, PAGE_SIZE, SECTOR_SIZE, DiskImage, DiskProfile, HostCosts
from .host_cache import CacheIO, HostPageCache, byte_view

SERIAL_MAX = 20          # virtio-blk GET_ID answers 20 bytes


class CacheMode(NamedTuple):
    """One of QEMU's cache modes (writeback, none, writethrough, directsync, unsafe) as three switches."""
    name: str
    host_cache: bool      # data goes through the host page cache (else O_DIRECT)
    write_cache: bool     # the guest sees a volatile write cache at start (virtio-blk `writeback`)
    no_flush: bool        # flush requests are ignored


CACHE_MODES = {
    "writeback": CacheMode("writeback", host_cache=True, write_cache=True, no_flush=False),
    "none": CacheMode("none", host_cache=False, write_cache=True, no_flush=False),
    "writethrough": CacheMode("writethrough", host_cache=True, write_cache=False, no_flush=False),
    "directsync": CacheMode("directsync", host_cache=False, write_cache=False, no_flush=False),
    "unsafe": CacheMode("unsafe", host_cache=True, write_cache=True, no_flush=True),
}


class BackendStats(Counters):
    """A disk backend's I/O counts and bytes, host cache hits and misses, and busy time."""
    reads: int = 0
    writes: int = 0
    flushes: int = 0
    discards: int = 0
    write_zeroes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    host_hits: int = 0        # pages found in the host page cache
    host_misses: int = 0      # pages not found there
    busy_ns: int = 0          # virtual time charged for all requests


class BlockBackend:
    def __init__(self, image: DiskImage, cache_mode: str = "writeback", host_cache: HostPageCache | None = None,
                 vm_id=None, profile: DiskProfile | None = None, host_costs: HostCosts | None = None,
                 serial: bytes = b"ballast", read_only: bool | None = None):
        try:
            self.mode = CACHE_MODES[cache_mode]
        except KeyError:
            raise ValueError(f"unknown cache mode {cache_mode!r} (known: {', '.join(CACHE_MODES)})") from None
        if self.mode.host_cache and host_cache is None:
            raise ValueError(f"cache={cache_mode} needs a host page cache")
        if read_only is None:
            read_only = image.read_only
        elif not read_only and image.read_only:
            raise ValueError(f"disk image {image.path!r} is open read-only; cannot attach it read-write")
        if isinstance(serial, str):
            serial = serial.encode()
        if len(serial) > SERIAL_MAX:
            raise ValueError(f"disk serial {serial!r} is longer than {SERIAL_MAX} bytes")
        self.image = image
        self.key = image.key
        self.cache = host_cache
        self.vm_id = vm_id
        self.profile = profile or DiskProfile()
        self.host_costs = host_costs or HostCosts()
        self.serial = bytes(serial)
        self.read_only = bool(read_only)
        self.write_cache_enabled = self.mode.write_cache
        self.stats = BackendStats()
        self._next_offset = -1          # where a sequential request would start
        if host_cache is not None:
            host_cache.register_backing(image.key, image.read_pages, image.write_pages, image.read_span,
                                        reread_pages=image.read_pages)      # any buffers: one preadv

    # --- what the device shows the guest ---

    @property
    def cache_mode(self) -> str:
        return self.mode.name

    @property
    def capacity_bytes(self) -> int:
        return self.image.size

    @property
    def capacity_sectors(self) -> int:
        return self.image.size // SECTOR_SIZE

    def set_write_cache(self, enabled: bool) -> None:
        """The guest switched the write cache (virtio-blk config `writeback`, CONFIG_WCE)."""
        self.write_cache_enabled = bool(enabled)

    @property
    def _sync_writes(self) -> bool:
        # every write durable before it completes (QEMU: FUA emulated by a flush)
        return not self.write_cache_enabled and not self.mode.no_flush

    # --- requests: each returns its cost in virtual nanoseconds ---

    def read(self, offset: int, length: int):
        """-> (bytes, cost_ns)"""
        buf = bytearray(length)
        cost = self.read_into(offset, length, memoryview(buf))
        return bytes(buf), cost

    def read_into(self, offset: int, length: int, dest) -> int:
        """Read straight into dest (e.g. a view of guest RAM)."""
        self._check(offset, length)
        dest = byte_view(dest)
        if len(dest) != length:
            if len(dest) < length:
                raise ValueError(f"destination of {len(dest)} bytes is smaller than the {length}-byte read")
            dest = dest[:length]
        return self._read(offset, length, [dest])

    def readv_into(self, offset: int, dests) -> int:
        """One request scattered over several buffers (a descriptor chain)."""
        dests = [byte_view(d) for d in dests]
        length = 0
        for d in dests:
            length += len(d)
        self._check(offset, length)
        return self._read(offset, length, dests)

    def read_runs_into(self, offset: int, ram, runs, length: int) -> int:
        """readv_into with the buffers given as runs [(addr, len)] of `ram` (guest RAM), `length` bytes
        in all: what a device's DMA does, without a view per buffer."""
        self._check(offset, length)
        return self._read(offset, length, None, ram, runs)

    def read_runs_hit(self, offset: int, ram, runs, length: int):
        """read_runs_into when every page is in the host cache (whole pages, host-cache mode, caching not
        exclusive): the same copy, counters and cost; None, with nothing done, in every other case."""
        if not self.mode.host_cache or self.cache.exclusive:
            return None
        if offset % SECTOR_SIZE or offset < 0 or length < 0 or offset + length > self.image.size:
            return None
        hits = self.cache.read_runs_hit(self.key, offset, ram, runs, length)
        if hits is None:
            return None
        # as _read: an all-hit read loads and writes back nothing, so it costs the lookups alone
        cost = hits * self.host_costs.host_cache_hit_ns_per_page
        stats = self.stats
        stats.host_hits += hits
        self._next_offset = offset + length
        stats.reads += 1
        stats.bytes_read += length
        stats.busy_ns += cost
        return cost

    def _read(self, offset: int, length: int, dests, ram=None, runs=None) -> int:
        sequential = offset == self._next_offset
        if self.mode.host_cache:
            if runs is not None:
                io = self.cache.read_runs_into(self.key, offset, ram, runs, self.vm_id, length)
            else:
                io = self.cache.readv_into(self.key, offset, dests, self.vm_id, length)
            cost = (io.hits + io.misses) * self.host_costs.host_cache_hit_ns_per_page
            if io.loaded or io.written_back:        # nothing else to charge on a hit
                cost += self._load_cost(io, sequential) + self._eviction_cost(io)
            self.stats.host_hits += io.hits
            self.stats.host_misses += io.misses
            if self.cache.exclusive:
                first = offset // PAGE_SIZE
                self.cache.demote(self.key, first, (offset + length - 1) // PAGE_SIZE - first + 1, self.vm_id)
        else:
            cost = self._write_back_range(offset, length)
            if runs is not None:
                ram = byte_view(ram)
                dests = [ram[a:a + n] for a, n in runs]
            if len(dests) == 1:
                self.image.pread_into(offset, dests[0])
            else:
                buf = memoryview(bytearray(length))
                self.image.pread_into(offset, buf)
                pos = 0
                for d in dests:
                    d[:] = buf[pos:pos + len(d)]
                    pos += len(d)
            cost += self.profile.read_cost_ns(length, sequential)
        self._next_offset = offset + length
        self.stats.reads += 1
        self.stats.bytes_read += length
        self.stats.busy_ns += cost
        return cost

    def write(self, offset: int, data) -> int:
        self._check_writable()
        data = byte_view(data)
        length = len(data)
        self._check(offset, length)
        sequential = offset == self._next_offset
        if self.mode.host_cache:
            cost = self._cached_write(offset, data)
            if self._sync_writes:
                cost += self._write_back_range(offset, length, sequential) + self._fsync()
        else:
            cost = self._write_back_range(offset, length)
            self.image.pwrite(offset, data)
            self._invalidate_range(offset, length)
            cost += self.profile.write_cost_ns(length, sequential)
            if self._sync_writes:
                cost += self._fsync()
        self._next_offset = offset + length
        self.stats.writes += 1
        self.stats.bytes_written += length
        self.stats.busy_ns += cost
        return cost

    def writev(self, offset: int, buffers) -> int:
        """One request gathered from several buffers (a descriptor chain)."""
        if len(buffers) == 1:
            return self.write(offset, buffers[0])
        return self.write(offset, b"".join(buffers))

    def flush(self) -> int:
        """Make every completed write durable (cache=unsafe: do nothing)."""
        self.stats.flushes += 1
        if self.mode.no_flush:
            return 0
        cost = 0
        if self.cache is not None:      # fsync writes back the file's dirty pages, whoever wrote them
            cost += self._runs_cost(self.cache.writeback(self.key), sequential=False)
        cost += self._fsync()
        self.stats.busy_ns += cost
        return cost

    def discard(self, offset: int, length: int) -> int:
        """Deallocate: the range reads as zeros afterwards (QEMU discard=unmap punches a hole)."""
        self.stats.discards += 1
        return self._zero(offset, length, durable=False)

    def write_zeroes(self, offset: int, length: int) -> int:
        self.stats.write_zeroes += 1
        return self._zero(offset, length, durable=self._sync_writes)

    def close(self) -> None:
        """Clean shutdown: QEMU flushes everything it holds (unsafe too, short of the fsync)."""
        if self.cache is not None and not self.read_only:
            self.cache.writeback(self.key)
        if not self.mode.no_flush:
            self.image.fsync()

    # --- helpers ---

    def _cached_write(self, offset: int, data) -> int:
        io = self.cache.write_from(self.key, offset, data, self.vm_id)
        self.stats.host_hits += io.hits
        self.stats.host_misses += io.misses
        return ((io.hits + io.misses) * self.host_costs.host_cache_fill_ns_per_page
                + self._load_cost(io, sequential=False) + self._eviction_cost(io))

    def _zero(self, offset: int, length: int, durable: bool) -> int:
        self._check_writable()
        self._check(offset, length)
        if length == 0:
            return 0
        end = offset + length
        first_full = -(-offset // PAGE_SIZE)      # whole pages in the range: [first_full, end_full)
        end_full = end // PAGE_SIZE
        cost = self.host_costs.punch_hole_ns
        if first_full < end_full and self.cache is not None:
            # their old contents, dirty or not, are overwritten: no writeback
            self.cache.drop(self.key, first_full, end_full - first_full)
        if self.mode.host_cache:
            if first_full < end_full:
                self.image.zero_range(first_full * PAGE_SIZE, (end_full - first_full) * PAGE_SIZE)
                edges = [(offset, first_full * PAGE_SIZE), (end_full * PAGE_SIZE, end)]
            else:
                edges = [(offset, end)]
            for lo, hi in edges:       # partial pages: zeros written through the cache
                if hi > lo:
                    cost += self._cached_write(lo, bytes(hi - lo))
            if durable:
                cost += self._write_back_range(offset, length) + self._fsync()
        else:
            cost += self._write_back_range(offset, length)
            self.image.zero_range(offset, length)
            self._invalidate_range(offset, length)
            if durable:
                cost += self._fsync()
        self._next_offset = end
        self.stats.busy_ns += cost
        return cost

    def _write_back_range(self, offset: int, length: int, sequential: bool = False) -> int:
        """Write back dirty cached pages overlapping the range (filemap_write_and_wait_range)."""
        if self.cache is None or length == 0:
            return 0
        first = offset >> PAGE_SHIFT
        runs = self.cache.writeback(self.key, first, ((offset + length - 1) >> PAGE_SHIFT) - first + 1)
        return self._runs_cost(runs, sequential)

    def _invalidate_range(self, offset: int, length: int) -> None:
        """After a direct write, cached copies of the pages it touched are stale."""
        if self.cache is not None and length:
            first = offset >> PAGE_SHIFT
            self.cache.drop(self.key, first, ((offset + length - 1) >> PAGE_SHIFT) - first + 1)

    def _fsync(self) -> int:
        self.image.fsync()
        return self.profile.flush_cost_ns()

    def _runs_cost(self, runs, sequential: bool) -> int:
        """Writes of page runs: the first may continue the previous request, the others seek."""
        cost = 0
        for i, run in enumerate(runs):
            cost += self.profile.write_cost_ns(run * PAGE_SIZE, sequential and i == 0)
        return cost

    def _load_cost(self, io: CacheIO, sequential: bool) -> int:
        if not io.loaded:
            return 0
        extra_requests = io.load_runs - 1
        return (self.profile.read_cost_ns(io.loaded * PAGE_SIZE, sequential)
                + extra_requests * (self.profile.read_latency_ns + self.profile.seek_ns))

    def _eviction_cost(self, io: CacheIO) -> int:
        # dirty pages written back to make room: charged to whoever needed the room, one
        # random write each at this disk's rates (direct reclaim)
        return io.written_back * self.profile.write_cost_ns(PAGE_SIZE, sequential=False)

    def _check(self, offset: int, length: int) -> None:
        if offset % SECTOR_SIZE or length % SECTOR_SIZE:
            raise ValueError(f"request {offset:#x}+{length:#x} is not aligned to {SECTOR_SIZE}-byte sectors")
        if offset < 0 or length < 0 or offset + length > self.image.size:
            raise ValueError(f"request {offset:#x}+{length:#x} is beyond the disk's {self.image.size} bytes")

    def _check_writable(self) -> None:
        if self.read_only:
            raise OSError(errno.EROFS, "disk is read-only", self.image.path)

    def __repr__(self):
        return f"BlockBackend({self.image.path!r}, cache={self.mode.name}, vm={self.vm_id})"
