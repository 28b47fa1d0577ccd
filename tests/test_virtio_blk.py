"""virtio-blk (devices.virtio_blk) driven end to end: registers, rings in guest RAM, the virtual clock."""
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.virtio_blk import (CONFIG_WRITEBACK_OFFSET, MAX_DISCARD_SEG, MAX_WRITE_ZEROES_SECTORS, OUTHDR,
                                SEG_MAX, SEGMENT, SIZE_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_CONFIG_WCE,
                                VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
                                VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_S_IOERR,
                                VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH,
                                VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_GET_LIFETIME, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
                                VIRTIO_BLK_T_SECURE_ERASE, VIRTIO_BLK_T_WRITE_ZEROES,
                                VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, VirtioBlk)
from devices.layouts import VirtioBlkConfig, VirtioBlkDiscardWriteZeroes, VirtioBlkOuthdr
from devices.virtio_device import (STATUS_DEVICE_NEEDS_RESET, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC,
                                   VIRTIO_F_RING_RESET, VIRTIO_F_VERSION_1)
from devices.virtio_mmio import (CONFIG, CONFIG_GENERATION, INTERRUPT_STATUS, QUEUE_RESET, QUEUE_SEL, STATUS,
                                 TRANSPORT_FEATURES, VirtioMmioTransport)
from test_virtio_mmio import MmioDriver
from test_virtqueue import MockDriver
from vmm.clock import VirtualClock
from vmm.memory import GuestRAM

MiB = 1 << 20
DISK = 4 * MiB
READ_NS, WRITE_NS, FLUSH_NS, DISCARD_NS, ZEROES_NS = 80_000, 20_000, 1_000_000, 5_000, 7_000
UNSET = 0xEE            # status buffers start with this, to see whether the device wrote them


class FakeBackend:
    """A disk in a bytearray with fixed costs; records every call and can be told to fail."""

    def __init__(self, capacity: int = DISK, read_only: bool = False, serial: bytes = b"ballast-test-disk",
                 claimed_capacity: int = None):
        self.data = bytearray(capacity)
        self.claimed_capacity = claimed_capacity        # a size to report without holding the bytes
        self.read_only = read_only
        self.serial = serial
        self.calls = []
        self.write_cache = []           # every set_write_cache(enabled)
        self.fail = False

    @property
    def capacity_bytes(self) -> int:
        return self.claimed_capacity or len(self.data)

    def _call(self, *call):
        self.calls.append(call)
        if self.fail:
            raise OSError(5, "injected I/O error")

    def read(self, offset, length):
        self._call("read", offset, length)
        return bytes(self.data[offset:offset + length]), READ_NS

    def readv_into(self, offset, dests):
        """BlockBackend's scatter read: one request into several buffers."""
        length = sum(len(d) for d in dests)
        data, cost = self.read(offset, length)
        pos = 0
        for d in dests:
            d[:] = data[pos:pos + len(d)]
            pos += len(d)
        return cost

    def write(self, offset, data):
        self._call("write", offset, len(data))
        self.data[offset:offset + len(data)] = data
        return WRITE_NS

    def flush(self):
        self._call("flush")
        return FLUSH_NS

    def discard(self, offset, length):
        self._call("discard", offset, length)
        return DISCARD_NS

    def write_zeroes(self, offset, length):
        self._call("write_zeroes", offset, length)
        self.data[offset:offset + length] = bytes(length)
        return ZEROES_NS

    def set_write_cache(self, enabled):
        self.write_cache.append(enabled)


ALL_FEATURES = VirtioBlk(FakeBackend(), VirtualClock()).device_features() | TRANSPORT_FEATURES
NO_EVENT_IDX = ALL_FEATURES & ~(1 << VIRTIO_F_EVENT_IDX)


@dataclass
class Request:
    head: int
    status_addr: int
    in_bufs: list = field(default_factory=list)     # (addr, length)


class Bed:
    """A VirtioBlk behind a transport, a driver that brought it up, and a clock."""

    def __init__(self, mem, backend=None, features=None, queue_size=256, bring_up=True, **kwargs):
        self.mem = mem
        self.clock = VirtualClock()
        self.backend = backend or FakeBackend()
        self.blk = VirtioBlk(self.backend, self.clock, **kwargs)
        self.irqs = []
        self.t = VirtioMmioTransport(self.blk, mem, lambda: self.irqs.append(self.clock.now_ns()))
        self.d = MmioDriver(self.t)
        self.ring = MockDriver(mem, size=queue_size)
        if bring_up:
            self.d.bring_up({0: self.ring}, features)

    def build(self, req_type, sector=0, out=b"", in_len=0, status_len=1, pieces=1, indirect=False,
              header=None, extra=()) -> Request:
        """Lay out header, data (split into `pieces` buffers) and status, and make the chain available."""
        alloc = self.ring.alloc
        header = OUTHDR.pack(req_type, 0, sector) if header is None else header
        bufs = [(alloc(header), len(header), False)] if header else []
        for part in split(out, pieces):
            bufs.append((alloc(part), len(part), False))
        in_bufs = []
        for part in split(bytes(in_len), pieces):
            addr = alloc(length=len(part))
            in_bufs.append((addr, len(part)))
            bufs.append((addr, len(part), True))
        bufs.extend(extra)
        status_addr = alloc(bytes([UNSET]) * max(status_len, 1), length=status_len)
        if status_len:
            bufs.append((status_addr, status_len, True))
        head = self.ring.add_chain(bufs, indirect=indirect)
        return Request(head, status_addr + max(status_len, 1) - 1, in_bufs)

    def submit(self, *args, **kwargs) -> Request:
        req = self.build(*args, **kwargs)
        self.d.notify(0)
        return req

    def run(self) -> None:
        while self.clock.idle_until_next_event():
            pass

    def do(self, *args, **kwargs):
        """Submit, run to completion; returns (status, request, used elements)."""
        req = self.submit(*args, **kwargs)
        self.run()
        used = self.ring.take_used()
        self.ring.set_used_event(self.ring.last_used)      # re-arm, as Linux's virtqueue_enable_cb does
        return self.status(req), req, used

    def status(self, req: Request) -> int:
        return self.mem.read(req.status_addr, 1)[0]

    def data(self, req: Request) -> bytes:
        return b"".join(self.mem.read(a, n) for a, n in req.in_bufs)


def split(data: bytes, pieces: int) -> list:
    if not data:
        return []
    step = -(-len(data) // pieces)
    return [data[i:i + step] for i in range(0, len(data), step)]


def pattern(n: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def segments(*segs) -> bytes:
    return b"".join(SEGMENT.pack(*s) for s in segs)


@pytest.fixture(scope="module")
def ram():
    r = GuestRAM(16 * MiB)
    yield r
    r.close()


@pytest.fixture
def mem(ram):
    ram.view[:] = bytes(ram.size)
    return ram


@pytest.fixture
def bed(mem):
    return Bed(mem)


# --- layouts and configuration ---

def test_request_layouts_match_declarations():
    assert VirtioBlkOuthdr.build(dict(type=1, reserved=2, sector=3)) == OUTHDR.pack(1, 2, 3)
    assert VirtioBlkDiscardWriteZeroes.build(dict(sector=9, num_sectors=8, flags=1)) == SEGMENT.pack(9, 8, 1)
    assert VirtioBlkConfig.sizeof() == 60


def test_features_offered(mem):
    b = Bed(mem, bring_up=False)
    features = b.d.device_features()
    for bit in (VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH,
                VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_F_VERSION_1,
                VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX):
        assert features >> bit & 1, bit
    assert not features >> VIRTIO_BLK_F_RO & 1
    ro = Bed(mem, backend=FakeBackend(read_only=True), bring_up=False)
    assert ro.d.device_features() >> VIRTIO_BLK_F_RO & 1
    assert b.d.read(0x008) == 2 and b.t.queues[0].max_size == 256


def test_config_space_fields(bed):
    t = bed.t
    cfg = lambda off, size: t.mmio_read(CONFIG + off, size)     # noqa: E731
    assert cfg(0, 4) | cfg(4, 4) << 32 == DISK // 512
    assert cfg(8, 4) == SIZE_MAX and cfg(12, 4) == SEG_MAX == 254
    assert cfg(16, 4) == 0                                       # no geometry
    assert cfg(20, 4) == 4096
    assert cfg(32, 1) == 1                                       # writeback
    assert cfg(33, 1) == 0 and cfg(34, 2) == 1
    assert cfg(36, 4) == 1 << 22 and cfg(40, 4) == MAX_DISCARD_SEG and cfg(44, 4) == 8
    assert cfg(48, 4) == MAX_WRITE_ZEROES_SECTORS and cfg(52, 4) == 32 and cfg(56, 1) == 0
    assert cfg(57, 4) == 0 and cfg(60, 4) == 0
    parsed = VirtioBlkConfig.parse(bed.blk.config_space())
    assert parsed.capacity == DISK // 512 and parsed.blk_size == 4096


def test_block_size_option(mem):
    b = Bed(mem, block_size=512)
    assert b.t.mmio_read(CONFIG + 20, 4) == 512 and b.t.mmio_read(CONFIG + 44, 4) == 1
    with pytest.raises(ValueError):
        VirtioBlk(FakeBackend(), VirtualClock(), block_size=1000)


def test_capacity_change_is_announced(bed):
    bed.backend.data.extend(bytes(MiB))
    bed.blk.capacity_changed()
    assert bed.t.mmio_read(CONFIG, 4) == (DISK + MiB) // 512
    assert bed.d.read(CONFIG_GENERATION) == 1 and bed.d.read(INTERRUPT_STATUS) & 2


# --- write cache (CONFIG_WCE) ---

def test_writeback_toggled_by_the_driver(bed):
    assert bed.backend.write_cache == [True]                     # synced at construction
    bed.t.mmio_write(CONFIG + CONFIG_WRITEBACK_OFFSET, 1, 0)
    assert bed.backend.write_cache == [True, False] and bed.t.mmio_read(CONFIG + 32, 1) == 0
    bed.t.mmio_write(CONFIG + CONFIG_WRITEBACK_OFFSET, 1, 1)
    assert bed.backend.write_cache[-1] is True and bed.t.mmio_read(CONFIG + 32, 1) == 1
    bed.t.mmio_write(CONFIG + 32, 4, 0)                          # not a byte write: ignored
    bed.t.mmio_write(CONFIG + 0, 1, 0)                           # capacity is read-only
    assert bed.t.mmio_read(CONFIG + 32, 1) == 1 and bed.t.mmio_read(CONFIG, 4) == DISK // 512


def test_writeback_read_only_without_config_wce(mem):
    b = Bed(mem, features=ALL_FEATURES & ~(1 << VIRTIO_BLK_F_CONFIG_WCE))
    b.t.mmio_write(CONFIG + 32, 1, 0)
    assert b.t.mmio_read(CONFIG + 32, 1) == 1 and b.backend.write_cache == [True]


def test_without_flush_writes_are_made_stable(mem):
    b = Bed(mem, features=ALL_FEATURES & ~(1 << VIRTIO_BLK_F_FLUSH))
    assert b.backend.write_cache == [True, False] and b.t.mmio_read(CONFIG + 32, 1) == 0
    b.d.write(STATUS, 0)                                         # reset restores the device default
    assert b.backend.write_cache == [True, False, True] and b.t.mmio_read(CONFIG + 32, 1) == 1


def test_writeback_follows_the_backend_by_default(mem):
    backend = FakeBackend()
    backend.write_cache_enabled = False          # as BlockBackend in cache=writethrough or directsync
    b = Bed(mem, backend=backend)
    assert b.backend.write_cache == [False] and b.t.mmio_read(CONFIG + 32, 1) == 0


def test_writethrough_device(mem):
    b = Bed(mem, writeback=False)
    assert b.backend.write_cache == [False] and b.t.mmio_read(CONFIG + 32, 1) == 0


# --- requests ---

def test_read(bed):
    bed.backend.data[4096:8192] = pattern(4096)
    status, req, used = bed.do(VIRTIO_BLK_T_IN, sector=8, in_len=4096)
    assert status == VIRTIO_BLK_S_OK and bed.data(req) == pattern(4096)
    assert used == [(req.head, 4097)]
    assert bed.backend.calls == [("read", 4096, 4096)]
    assert bed.blk.counters.bytes_read == 4096 and bed.blk.counters.requests["in"] == 1


def test_write(bed):
    status, req, used = bed.do(VIRTIO_BLK_T_OUT, sector=3, out=pattern(1024))
    assert status == VIRTIO_BLK_S_OK and used == [(req.head, 1)]
    assert bytes(bed.backend.data[1536:2560]) == pattern(1024)
    assert bed.blk.counters.bytes_written == 1024


@pytest.mark.parametrize("indirect", [False, True])
def test_data_in_many_buffers(bed, indirect):
    bed.backend.data[0:8192] = pattern(8192, seed=5)
    status, req, used = bed.do(VIRTIO_BLK_T_IN, sector=0, in_len=8192, pieces=4, indirect=indirect)
    assert status == VIRTIO_BLK_S_OK and len(req.in_bufs) == 4 and bed.data(req) == pattern(8192, seed=5)
    status, req, used = bed.do(VIRTIO_BLK_T_OUT, sector=16, out=pattern(2048, seed=9), pieces=3, indirect=indirect)
    assert status == VIRTIO_BLK_S_OK and bytes(bed.backend.data[8192:10240]) == pattern(2048, seed=9)


def test_header_and_status_may_share_buffers_with_data(bed):
    """VERSION_1 framing: the device must not assume a buffer per field (virtio 1.2, 2.6.4)."""
    bed.backend.data[512:1024] = pattern(512)
    hdr = OUTHDR.pack(VIRTIO_BLK_T_IN, 0, 1)
    buf = bed.ring.alloc(length=513)
    bed.ring.add_chain([(bed.ring.alloc(hdr[:5]), 5, False), (bed.ring.alloc(hdr[5:]), 11, False),
                        (buf, 513, True)])
    bed.d.notify(0)
    bed.run()
    assert bed.mem.read(buf, 512) == pattern(512) and bed.mem.read(buf + 512, 1)[0] == VIRTIO_BLK_S_OK
    out = OUTHDR.pack(VIRTIO_BLK_T_OUT, 0, 4) + pattern(512, seed=3)
    status = bed.ring.alloc(length=1)
    bed.ring.add_chain([(bed.ring.alloc(out), len(out), False), (status, 1, True)])
    bed.d.notify(0)
    bed.run()
    assert bytes(bed.backend.data[2048:2560]) == pattern(512, seed=3)


def test_flush(bed):
    status, req, used = bed.do(VIRTIO_BLK_T_FLUSH)
    assert status == VIRTIO_BLK_S_OK and bed.backend.calls == [("flush",)] and used == [(req.head, 1)]


@pytest.mark.parametrize("serial,expected", [(b"disk-7", b"disk-7" + bytes(14)),
                                             (b"X" * 20, b"X" * 20), (b"Y" * 25, b"Y" * 20)])
def test_get_id(mem, serial, expected):
    b = Bed(mem, backend=FakeBackend(serial=serial))
    status, req, used = b.do(VIRTIO_BLK_T_GET_ID, in_len=20)
    assert status == VIRTIO_BLK_S_OK and b.data(req) == expected and used == [(req.head, 21)]


def test_discard_and_write_zeroes(bed):
    bed.backend.data[:] = b"\xAA" * DISK
    status, _, _ = bed.do(VIRTIO_BLK_T_DISCARD, out=segments((8, 8, 0), (64, 16, 0)))
    assert status == VIRTIO_BLK_S_OK
    assert bed.backend.calls == [("discard", 4096, 4096), ("discard", 32768, 8192)]
    status, _, _ = bed.do(VIRTIO_BLK_T_WRITE_ZEROES,
                          out=segments((1, 2, 0), (100, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)))
    assert status == VIRTIO_BLK_S_OK
    assert bytes(bed.backend.data[512:1536]) == bytes(1024) and bed.backend.data[1536] == 0xAA
    assert bytes(bed.backend.data[51200:51712]) == bytes(512)
    c = bed.blk.counters
    assert (c.bytes_discarded, c.bytes_zeroed) == (12288, 1536)


@pytest.mark.parametrize("req_type,segs,expected", [
    (VIRTIO_BLK_T_DISCARD, [(0, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)], VIRTIO_BLK_S_UNSUPP),  # unmap on discard
    (VIRTIO_BLK_T_DISCARD, [(0, 1, 4)], VIRTIO_BLK_S_UNSUPP),                                 # unknown flag
    (VIRTIO_BLK_T_WRITE_ZEROES, [(0, 1, 2)], VIRTIO_BLK_S_UNSUPP),
    (VIRTIO_BLK_T_DISCARD, [(0, 1, 0)] * (MAX_DISCARD_SEG + 1), VIRTIO_BLK_S_UNSUPP),        # too many segments
    (VIRTIO_BLK_T_DISCARD, [(DISK // 512 - 1, 2, 0)], VIRTIO_BLK_S_IOERR),                    # past capacity
    (VIRTIO_BLK_T_WRITE_ZEROES, [(0, MAX_WRITE_ZEROES_SECTORS + 1, 0)], VIRTIO_BLK_S_IOERR),  # too long
    (VIRTIO_BLK_T_WRITE_ZEROES, [], VIRTIO_BLK_S_IOERR),                                      # no segment
])
def test_discard_and_write_zeroes_errors(bed, req_type, segs, expected):
    status, _, used = bed.do(req_type, out=segments(*segs))
    assert status == expected and used[0][1] == 1
    assert not [c for c in bed.backend.calls if c[0] in ("discard", "write_zeroes")]


def test_discard_segments_must_be_whole(bed):
    status, _, _ = bed.do(VIRTIO_BLK_T_DISCARD, out=segments((0, 1, 0))[:12])
    assert status == VIRTIO_BLK_S_IOERR


def test_discard_and_write_zeroes_need_their_features(mem):
    b = Bed(mem, features=ALL_FEATURES & ~(1 << VIRTIO_BLK_F_DISCARD) & ~(1 << VIRTIO_BLK_F_WRITE_ZEROES))
    assert b.do(VIRTIO_BLK_T_DISCARD, out=segments((0, 1, 0)))[0] == VIRTIO_BLK_S_UNSUPP
    assert b.do(VIRTIO_BLK_T_WRITE_ZEROES, out=segments((0, 1, 0)))[0] == VIRTIO_BLK_S_UNSUPP


@pytest.mark.parametrize("req_type", [2, 3, 5, VIRTIO_BLK_T_GET_LIFETIME, VIRTIO_BLK_T_SECURE_ERASE, 99, 2**32 - 1])
def test_unknown_types_are_unsupported(bed, req_type):
    status, req, used = bed.do(req_type, in_len=512)
    assert status == VIRTIO_BLK_S_UNSUPP and used == [(req.head, 1)] and bed.backend.calls == []
    assert bed.blk.counters.unsupp == 1


@pytest.mark.parametrize("req_type,kwargs", [
    (VIRTIO_BLK_T_IN, dict(sector=DISK // 512, in_len=512)),           # starts at the end
    (VIRTIO_BLK_T_IN, dict(sector=DISK // 512 - 1, in_len=1024)),      # runs past the end
    (VIRTIO_BLK_T_IN, dict(sector=2**64 - 1, in_len=512)),
    (VIRTIO_BLK_T_OUT, dict(sector=DISK // 512 - 1, out=bytes(1024))),
    (VIRTIO_BLK_T_IN, dict(sector=0, in_len=100)),                     # not whole sectors
    (VIRTIO_BLK_T_OUT, dict(sector=0, out=bytes(513))),
    (VIRTIO_BLK_T_IN, dict(sector=0, in_len=512, out=bytes(512))),     # read with readable data
    (VIRTIO_BLK_T_OUT, dict(sector=0, in_len=512, out=bytes(512))),    # write with writable data
])
def test_bad_ranges_and_directions_are_io_errors(bed, req_type, kwargs):
    status, req, used = bed.do(req_type, **kwargs)
    assert status == VIRTIO_BLK_S_IOERR and used == [(req.head, 1)]
    assert bed.backend.calls == [] and bed.blk.counters.ioerr == 1
    assert not bed.t.status & STATUS_DEVICE_NEEDS_RESET


def test_oversized_request_is_refused_before_any_copy(mem):
    b = Bed(mem, backend=FakeBackend(capacity=0, claimed_capacity=1 << 40))
    whole_ram = (0, mem.size, False)              # a driver pointing every buffer at all of RAM
    req = b.build(VIRTIO_BLK_T_OUT, extra=[whole_ram] * 20)
    b.d.notify(0)
    b.run()
    assert b.status(req) == VIRTIO_BLK_S_IOERR and b.backend.calls == []


def test_last_sector_is_readable(bed):
    assert bed.do(VIRTIO_BLK_T_IN, sector=DISK // 512 - 1, in_len=512)[0] == VIRTIO_BLK_S_OK


@pytest.mark.parametrize("req_type,kwargs", [
    (VIRTIO_BLK_T_OUT, dict(out=bytes(512))),
    (VIRTIO_BLK_T_DISCARD, dict(out=segments((0, 1, 0)))),
    (VIRTIO_BLK_T_WRITE_ZEROES, dict(out=segments((0, 1, 0)))),
])
def test_read_only_disk_refuses_writes(mem, req_type, kwargs):
    b = Bed(mem, backend=FakeBackend(read_only=True))
    b.backend.data[:512] = b"\x55" * 512
    assert b.do(req_type, **kwargs)[0] == VIRTIO_BLK_S_IOERR
    assert b.backend.calls == [] and b.backend.data[:512] == b"\x55" * 512
    assert b.do(VIRTIO_BLK_T_IN, in_len=512)[0] == VIRTIO_BLK_S_OK
    assert b.do(VIRTIO_BLK_T_FLUSH)[0] == VIRTIO_BLK_S_OK


@pytest.mark.parametrize("header", [OUTHDR.pack(VIRTIO_BLK_T_IN, 0, 0)[:8], b""])
def test_short_header_is_an_io_error(bed, header):
    status, req, used = bed.do(None, header=header, in_len=512)
    assert status == VIRTIO_BLK_S_IOERR and used == [(req.head, 1)]
    assert bed.blk.counters.requests["bad_header"] == 1


def test_backend_errors_are_io_errors(bed):
    bed.backend.fail = True
    assert bed.do(VIRTIO_BLK_T_IN, in_len=512)[0] == VIRTIO_BLK_S_IOERR
    assert bed.do(VIRTIO_BLK_T_OUT, out=bytes(512))[0] == VIRTIO_BLK_S_IOERR
    assert bed.do(VIRTIO_BLK_T_FLUSH)[0] == VIRTIO_BLK_S_IOERR
    assert bed.blk.counters.backend_errors == 3
    bed.backend.fail = False
    assert bed.do(VIRTIO_BLK_T_FLUSH)[0] == VIRTIO_BLK_S_OK


def test_short_backend_read_is_an_io_error(bed):
    bed.backend.read = lambda offset, length: (b"short", 0)
    assert bed.do(VIRTIO_BLK_T_IN, in_len=512)[0] == VIRTIO_BLK_S_IOERR


# --- malformed chains: DEVICE_NEEDS_RESET ---

def assert_needs_reset(b, req):
    b.run()
    assert b.t.status & STATUS_DEVICE_NEEDS_RESET
    assert b.d.read(INTERRUPT_STATUS) & 2 and b.irqs
    assert b.ring.take_used() == [] and b.status(req) == UNSET
    assert b.blk.counters.malformed == 1


def test_status_buffer_missing(bed):
    assert_needs_reset(bed, bed.submit(VIRTIO_BLK_T_FLUSH, status_len=0))


def test_status_buffer_device_readable(bed):
    status = bed.ring.alloc(bytes([UNSET]))
    bed.ring.add_chain([(bed.ring.alloc(OUTHDR.pack(VIRTIO_BLK_T_FLUSH, 0, 0)), 16, False), (status, 1, False)])
    bed.d.notify(0)
    assert_needs_reset(bed, Request(0, status))


def test_empty_status_buffer(bed):
    req = bed.build(VIRTIO_BLK_T_IN, in_len=512, status_len=0, extra=[(bed.ring.alloc(length=0), 0, True)])
    bed.d.notify(0)
    assert_needs_reset(bed, req)


def test_readable_after_writable(bed):
    status = bed.ring.alloc(bytes([UNSET]))
    bed.build(VIRTIO_BLK_T_IN, in_len=512, status_len=0,
              extra=[(bed.ring.alloc(b"x"), 1, False), (status, 1, True)])
    bed.d.notify(0)
    assert_needs_reset(bed, Request(0, status))
    assert bed.backend.calls == []


def test_broken_ring_stops_the_queue_until_reset(bed):
    bed.ring.publish(300)                                        # head past the queue size
    good = bed.build(VIRTIO_BLK_T_FLUSH)
    bed.d.notify(0)
    bed.run()
    assert bed.t.status & STATUS_DEVICE_NEEDS_RESET and bed.status(good) == UNSET
    bed.d.notify(0)
    bed.run()
    assert bed.status(good) == UNSET and bed.backend.calls == []
    bed.ring = MockDriver(bed.mem, size=256)                     # the driver resets and starts over
    bed.d.bring_up({0: bed.ring})
    assert bed.do(VIRTIO_BLK_T_FLUSH)[0] == VIRTIO_BLK_S_OK


# --- timing, ordering, interrupts ---

def test_data_moves_at_submission_and_completes_later(bed):
    bed.backend.data[:512] = pattern(512)
    req = bed.submit(VIRTIO_BLK_T_IN, in_len=512)
    start = bed.clock.now_ns()
    assert bed.backend.calls == [("read", 0, 512)] and bed.data(req) == pattern(512)
    assert bed.status(req) == UNSET and bed.ring.used_idx == 0
    assert bed.clock.next_event_ns() == start + bed.blk.vm_exit_ns + READ_NS
    bed.run()
    assert bed.status(req) == VIRTIO_BLK_S_OK and bed.irqs == [start + bed.blk.vm_exit_ns + READ_NS]


def test_vm_exit_cost_defaults_to_the_cost_model(mem):
    clock = VirtualClock()
    assert VirtioBlk(FakeBackend(), clock).vm_exit_ns == clock.costs.vm_exit_ns
    assert VirtioBlk(FakeBackend(), clock, vm_exit_ns=0).vm_exit_ns == 0


def test_requests_are_serialised_and_complete_in_order(mem):
    b = Bed(mem, features=NO_EVENT_IDX, vm_exit_ns=1_000)
    reqs = [b.build(VIRTIO_BLK_T_IN, in_len=512), b.build(VIRTIO_BLK_T_FLUSH),
            b.build(VIRTIO_BLK_T_OUT, out=bytes(512)), b.build(99)]
    b.d.notify(0)
    start = b.clock.now_ns()
    b.run()
    ends = [start + 1_000 + READ_NS]
    ends.append(ends[-1] + 1_000 + FLUSH_NS)
    ends.append(ends[-1] + 1_000 + WRITE_NS)
    ends.append(ends[-1] + 1_000)
    assert [h for h, _ in b.ring.take_used()] == [r.head for r in reqs]
    assert b.irqs == ends
    assert b.blk.busy_until_ns == ends[-1]


def test_a_later_request_waits_for_the_disk(mem):
    b = Bed(mem, features=NO_EVENT_IDX, vm_exit_ns=0)
    b.submit(VIRTIO_BLK_T_FLUSH)
    b.clock.charge(100_000)                                      # the guest runs on meanwhile
    b.submit(VIRTIO_BLK_T_IN, in_len=512)
    b.run()
    assert b.irqs == [FLUSH_NS, FLUSH_NS + READ_NS]
    b.clock.charge(10 * FLUSH_NS)                                # idle disk: starts at once
    now = b.clock.now_ns()
    b.do(VIRTIO_BLK_T_IN, in_len=512)
    assert b.irqs[-1] == now + READ_NS


def test_interrupts_suppressed_by_no_interrupt_flag(mem):
    b = Bed(mem, features=ALL_FEATURES & ~(1 << VIRTIO_F_EVENT_IDX))
    b.ring.set_avail_flags(1)
    for _ in range(3):
        b.build(VIRTIO_BLK_T_FLUSH)
    b.d.notify(0)
    b.run()
    assert b.irqs == [] and len(b.ring.take_used()) == 3
    assert b.t.counters.suppressed_interrupts == 3


def test_event_idx_suppresses_interrupts_and_publishes_avail_event(bed):
    bed.ring.set_used_event(3)                                   # interrupt once used idx passes 3
    for _ in range(5):
        bed.build(VIRTIO_BLK_T_FLUSH)
    bed.d.notify(0)
    assert bed.ring.avail_event == 5                             # notify me at the next new head
    bed.run()
    assert len(bed.ring.take_used()) == 5
    assert len(bed.irqs) == 2                                    # the first completion, then idx 4 passing 3
    assert bed.t.counters.suppressed_interrupts == 3


def test_indirect_descriptors_negotiated_off_are_malformed(mem):
    b = Bed(mem, features=ALL_FEATURES & ~(1 << VIRTIO_F_INDIRECT_DESC))
    b.submit(VIRTIO_BLK_T_FLUSH, indirect=True)
    b.run()
    assert b.t.status & STATUS_DEVICE_NEEDS_RESET


# --- reset with requests in flight ---

def test_reset_drops_completions_in_flight(bed):
    req = bed.submit(VIRTIO_BLK_T_FLUSH)
    bed.d.write(STATUS, 0)
    bed.run()
    assert bed.status(req) == UNSET and bed.ring.used_idx == 0 and bed.irqs == []
    assert bed.blk.counters.dropped_completions == 1


def test_queue_reset_drops_completions_in_flight(bed):
    req = bed.submit(VIRTIO_BLK_T_FLUSH)
    bed.d.write(QUEUE_SEL, 0)
    bed.d.write(QUEUE_RESET, 1)
    bed.run()
    assert bed.status(req) == UNSET and bed.blk.counters.dropped_completions == 1
    bed.ring = MockDriver(bed.mem, size=64, base=0x40000, heap=0x400000)
    bed.d.setup_queue(0, bed.ring)                                # re-enable on new rings
    assert bed.do(VIRTIO_BLK_T_FLUSH)[0] == VIRTIO_BLK_S_OK


def test_ring_reset_is_offered(bed):
    assert bed.t.driver_features >> VIRTIO_F_RING_RESET & 1


def test_notify_for_another_queue_is_ignored(bed):
    bed.build(VIRTIO_BLK_T_FLUSH)
    bed.d.notify(1)
    bed.run()
    assert bed.backend.calls == [] and bed.t.counters.ignored_notifications == 1


def test_counters(bed):
    bed.do(VIRTIO_BLK_T_IN, in_len=1024)
    bed.do(VIRTIO_BLK_T_OUT, out=bytes(2048))
    bed.do(VIRTIO_BLK_T_FLUSH)
    bed.do(VIRTIO_BLK_T_GET_ID, in_len=20)
    bed.do(42)
    c = bed.blk.counters
    assert dict(c.requests) == {"in": 1, "out": 1, "flush": 1, "get_id": 1, "unknown": 1}
    assert (c.bytes_read, c.bytes_written, c.unsupp, c.ioerr, c.completed) == (1024, 2048, 1, 0, 5)
    assert bed.t.counters.notifications == 5 and bed.t.counters.interrupts == 5


# --- property: random reads and writes agree with a model disk ---

ops = st.lists(st.tuples(st.booleans(), st.integers(0, 63), st.integers(1, 8), st.integers(0, 255),
                         st.integers(1, 3), st.booleans()), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_reads_and_writes_match_a_model(mem, script):
    mem.view[:] = bytes(mem.size)
    b = Bed(mem, backend=FakeBackend(capacity=64 * 512 + 7 * 512))
    model = bytearray(b.backend.capacity_bytes)
    expected = []
    for is_write, sector, count, seed, pieces, indirect in script:
        n = count * 512
        if is_write:
            data = pattern(n, seed)
            req = b.build(VIRTIO_BLK_T_OUT, sector=sector, out=data, pieces=pieces, indirect=indirect)
            model[sector * 512:sector * 512 + n] = data
            expected.append((req, None))
        else:
            req = b.build(VIRTIO_BLK_T_IN, sector=sector, in_len=n, pieces=pieces, indirect=indirect)
            expected.append((req, bytes(model[sector * 512:sector * 512 + n])))
    b.d.notify(0)
    b.run()
    for req, data in expected:
        assert b.status(req) == VIRTIO_BLK_S_OK
        if data is not None:
            assert b.data(req) == data
    assert b.backend.data == model
