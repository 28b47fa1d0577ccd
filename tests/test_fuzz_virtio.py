"""A hostile driver against virtio-blk and virtio-balloon, through the virtio-mmio transport only.

Hypothesis plays a driver that does anything: register reads and writes of 1, 2, 4 and 8 bytes at any
offset (aligned or not), status writes in any order, queue addresses anywhere (at and past the end of RAM,
wrapping 2^64), scribbled descriptor tables, avail indices far ahead, chains that loop, indirect tables
(nested, with NEXT, of length zero, pointing past RAM), and sometimes a well-formed request so that the
devices do real work (blk reads and writes on a real disk image through the host cache, so its native
fast path runs; balloon inflates, deflates, stats, hints and reports). After every step that lets the
device run, guest RAM is compared with a snapshot taken before: every changed byte must lie in a buffer the
driver marked device-writable (in a chain reachable from the avail ring at some point), in a used ring,
or, for the balloon, in a page the driver handed to it (an inflate/deflate PFN). No host exception may
come out of the transport, and every step ends (a host-time alarm guards it).

Each test runs with the compiled virtqueue walk and with its uncompiled source (what BALLAST_PURE=1
selects). BALLAST_FUZZ_EXAMPLES=N runs N examples per case (tests/README.md)."""
import os
import signal
import struct

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import cython_ext
import devices.virtio_blk as virtio_blk_module
import devices.virtqueue as virtqueue_module
from devices.host import Host
from devices.virtio_balloon import (ALL_FEATURES as BALLOON_FEATURES, DEFLATE, INFLATE, STATS, VirtioBalloon,
                                    queue_roles)
from devices.virtio_blk import OUTHDR, VirtioBlk
from devices.virtio_device import (STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK)
from devices.virtio_mmio import (CONFIG, DEVICE_FEATURES, DEVICE_FEATURES_SEL, DRIVER_FEATURES,
                                 DRIVER_FEATURES_SEL, QUEUE_DESC_HIGH, QUEUE_DESC_LOW, QUEUE_DEVICE_HIGH,
                                 QUEUE_DEVICE_LOW, QUEUE_DRIVER_HIGH, QUEUE_DRIVER_LOW, QUEUE_NOTIFY, QUEUE_NUM,
                                 QUEUE_READY, QUEUE_SEL, STATUS, VirtioMmioTransport)
from devices.virtqueue import avail_ring_size, used_ring_size
from vmm.clock import VirtualClock
from vmm.memory import GuestRAM

EXAMPLES = int(os.environ.get("BALLAST_FUZZ_EXAMPLES", "0")) or 60
WALL_LIMIT_S = 60
RAM_SIZE = 512 << 10
PAGE = 4096
DISK_SIZE = 1 << 20
NEXT, WRITE, INDIRECT = 1, 2, 4
RING_BASE = 0x1000                     # queue i: descriptors, avail and used rings in [RING_BASE + 0x3000 i, +0x3000)
DATA_BASE = 0x20000                    # buffers and indirect tables
BLK_QUEUE_SIZE = 16                    # what our driver writes to QueueNum (the devices allow more)

compiled = cython_ext.load("virtq", pure=False)
pure = cython_ext.load("virtq", pure=True)


def ring_layout(index: int) -> tuple[int, int, int]:
    base = RING_BASE + 0x3000 * index
    return base, base + 0x1000, base + 0x2000


# --- what the hostile driver does ---

ADDRESSES = st.one_of(
    st.integers(DATA_BASE, RAM_SIZE - 1).map(lambda a: a & ~7),            # a plausible buffer
    st.sampled_from([0, RING_BASE, RING_BASE + 0x1000, RING_BASE + 0x2000, RAM_SIZE - 1, RAM_SIZE - 16,
                     RAM_SIZE, RAM_SIZE + 1, (1 << 64) - 1, (1 << 64) - 16, (1 << 64) - PAGE, 1 << 63,
                     (1 << 32) - 1, 1 << 32]),
    st.integers(0, (1 << 64) - 1))
LENGTHS = st.one_of(st.sampled_from([0, 1, 15, 16, 17, 32, 512, PAGE, 2 * PAGE, 0xFFFFFFFF, 0x80000000,
                                     RAM_SIZE, RAM_SIZE - DATA_BASE]),
                    st.integers(0, 0xFFFFFFFF))
FLAGS = st.one_of(st.sampled_from([0, NEXT, WRITE, NEXT | WRITE, INDIRECT, INDIRECT | NEXT, INDIRECT | WRITE]),
                  st.integers(0, 0xFFFF))
U16 = st.one_of(st.integers(0, 20), st.sampled_from([0xFFFF, 0x8000, 0x7FFF, 128, 129, 256]),
                st.integers(0, 0xFFFF))
REG_OFFSETS = st.one_of(st.sampled_from([0x000, 0x004, 0x008, 0x00C, 0x010, 0x014, 0x020, 0x024, 0x030, 0x034,
                                         0x038, 0x044, 0x050, 0x060, 0x064, 0x070, 0x080, 0x084, 0x090, 0x094,
                                         0x0A0, 0x0A4, 0x0AC, 0x0B0, 0x0B8, 0x0C0, 0x0FC, 0x100, 0x104, 0x108,
                                         0x10C, 0x110, 0x114, 0x120, 0x13C, 0x1FF]),
                        st.integers(0, 0x1FF))
VALUES = st.one_of(st.integers(0, 16), st.sampled_from([0xFF, 0xFFFF, 0xFFFFFFFF, 0x80000000, 1 << 32,
                                                         (1 << 64) - 1]),
                   st.integers(0, (1 << 64) - 1))


@st.composite
def chains(draw, n_queues: int):
    """A chain of 1-4 buffers laid out in a queue's descriptor table (sometimes behind an indirect
    descriptor), made available and notified. `payload` is what the first buffer holds when it is in RAM:
    a virtio-blk header or a list of PFNs."""
    segments = draw(st.lists(st.tuples(ADDRESSES, LENGTHS, st.booleans()), min_size=1, max_size=4))
    return ("chain", draw(st.integers(0, n_queues - 1)), draw(st.integers(0, BLK_QUEUE_SIZE - 1)), segments,
            draw(st.sampled_from([None, "indirect", "indirect+next", "nested", "empty table"])),
            draw(st.one_of(st.binary(max_size=64),
                           st.builds(OUTHDR.pack, st.sampled_from([0, 1, 4, 8, 11, 13, 0xFFFFFFFF]),
                                     st.integers(0, 0xFFFFFFFF), st.sampled_from([0, 8, 2040, 2048, 1 << 40])),
                           st.lists(st.integers(0, (RAM_SIZE >> 12) + 2), max_size=16).map(
                               lambda pfns: b"".join(struct.pack("<I", p) for p in pfns)))))


@st.composite
def good_requests(draw, n_queues: int):
    """A well-formed request, so that the devices do real work."""
    q = draw(st.sampled_from([0, 0, min(1, n_queues - 1), *range(n_queues)]))
    kind = draw(st.sampled_from(["in", "out", "flush", "get_id", "pfns"]))
    return ("good", q, draw(st.integers(0, BLK_QUEUE_SIZE - 4)), kind, draw(st.integers(0, DISK_SIZE // 512 - 8)),
            draw(st.integers(1, 4)), draw(st.lists(st.integers(DATA_BASE >> 12, (RAM_SIZE >> 12) - 1),
                                                   min_size=1, max_size=8)))


def actions(n_queues: int):
    """A script: half are hostile throughout (most begin with a proper bring-up, so that the device is
    live); half are a driver doing real work (good requests, the clock, host actions) with one hostile
    step somewhere, so that the devices' data paths run under fire too."""
    bring_up = st.tuples(st.just("bring_up"), st.integers(0, (1 << 64) - 1), st.just(True))
    hostile = st.tuples(st.sampled_from([True, True, True, True, False]), bring_up, steps(n_queues)).map(
        lambda t: [t[1]] * t[0] + t[2])
    work = st.lists(st.one_of(good_requests(n_queues), st.tuples(st.just("clock"),),
                              st.tuples(st.just("host"), st.integers(0, 3), st.integers(0, RAM_SIZE >> 12))),
                    min_size=1, max_size=20)
    gentle = st.tuples(bring_up, work, steps(n_queues).map(lambda s: s[:1]), st.integers(0, 20)).map(
        lambda t: [t[0]] + t[1][:t[3]] + t[2] + t[1][t[3]:])
    return st.one_of(hostile, gentle)


def steps(n_queues: int):
    return st.lists(st.one_of(
        st.tuples(st.just("bring_up"), st.integers(0, (1 << 64) - 1), st.booleans()),
        st.tuples(st.just("bring_up"), st.integers(0, (1 << 64) - 1), st.booleans(),
                  st.tuples(st.integers(0, n_queues - 1), U16, ADDRESSES, ADDRESSES, ADDRESSES)),
        st.tuples(st.just("read"), REG_OFFSETS, st.sampled_from([1, 2, 4, 8])),
        st.tuples(st.just("write"), REG_OFFSETS, st.sampled_from([1, 2, 4, 8]), VALUES),
        st.tuples(st.just("status"), st.sampled_from([0, 1, 2, 3, 4, 7, 8, 11, 15, 0x40, 0x80, 0x8F, 0xFF])),
        st.tuples(st.just("queue_addr"), st.integers(0, n_queues), st.sampled_from(["desc", "avail", "used"]),
                  ADDRESSES),
        st.tuples(st.just("desc"), st.integers(0, n_queues - 1), st.integers(0, 255), ADDRESSES, LENGTHS, FLAGS,
                  U16),
        st.tuples(st.just("avail"), st.integers(0, n_queues - 1), st.integers(0, 255), U16),
        st.tuples(st.just("avail_idx"), st.integers(0, n_queues - 1), U16),
        st.tuples(st.just("notify"), st.integers(0, n_queues + 1)),
        st.tuples(st.just("clock"),),
        st.tuples(st.just("host"), st.integers(0, 3), st.integers(0, RAM_SIZE >> 12)),
        chains(n_queues), chains(n_queues), st.tuples(st.just("clock"),),
        *[good_requests(n_queues)] * 6,
    ), min_size=1, max_size=40)


# --- what the device may write: a walk of every chain the driver has made available ---

class Allowed:
    """Byte ranges the device may write, gathered from every snapshot of RAM the device saw."""

    def __init__(self, ram_size: int):
        self.ram_size = ram_size
        self.ranges = set()

    def add(self, addr: int, length: int) -> None:
        end = min(addr + length, self.ram_size)
        if addr < self.ram_size and end > addr:
            self.ranges.add((addr, end))

    def add_page(self, pfn: int) -> None:
        self.add(pfn * PAGE, PAGE)

    def covers(self, offset: int) -> bool:
        return any(a <= offset < b for a, b in self.ranges)


def walk_buffers(ram: bytes, desc_table: int, size: int, head: int):
    """(addr, length, is_write) of the chain from head, as far as it goes: the device checks more and may
    take less, never more. Bounded like the device's walk."""
    out = []
    index, table, count, nested = head, desc_table, size, False
    for _ in range(2 * size + 2):
        off = table + 16 * index
        if off < 0 or off + 16 > len(ram) or index >= count:
            return out
        addr, length, flags, nxt = struct.unpack_from("<QIHH", ram, off)
        if flags & INDIRECT:
            if nested or length < 16 or addr + length > len(ram):
                return out
            table, count, index, nested = addr, length // 16, 0, True
            continue
        out.append((addr, length, bool(flags & WRITE)))
        if not flags & NEXT:
            return out
        index = nxt
    return out


def gather(allowed: Allowed, ram: bytes, transport, roles) -> None:
    for qi, q in enumerate(transport.queues):
        size = q.size
        if not 0 < size <= q.max_size:
            continue
        allowed.add(q.used_ring, used_ring_size(size))
        if q.avail_ring + avail_ring_size(size) > len(ram):
            continue
        heads = set(struct.unpack_from(f"<{size}H", ram, q.avail_ring + 4))
        role = roles[qi] if qi < len(roles) else None
        for head in heads:
            for addr, length, is_write in walk_buffers(ram, q.desc_table, size, head):
                if is_write:
                    allowed.add(addr, length)
                elif role in (INFLATE, DEFLATE) and addr + length <= len(ram):
                    n = length // 4
                    for (pfn,) in struct.iter_unpack("<I", ram[addr:addr + 4 * min(n, 4096)]):
                        allowed.add_page(pfn)


def changed_offsets(before: bytes, after: bytes):
    for page in range(0, len(before), PAGE):
        if before[page:page + PAGE] != after[page:page + PAGE]:
            for i in range(page, page + PAGE):
                if before[i] != after[i]:
                    yield i


# --- the bed ---

class HostileDriver:
    def __init__(self, kind: str, mem, tmp_path):
        self.kind, self.mem = kind, mem
        self.clock = VirtualClock()
        self.host = None
        if kind == "blk":
            self.host = Host(cache_capacity=64)
            image = tmp_path / "disk.img"
            image.write_bytes(bytes(range(256)) * (DISK_SIZE // 256))
            self.backend = self.host.block_backend(str(image), "writeback", 1, False, "nvme", serial=b"fuzz",
                                                   snapshot=False)
            self.device = VirtioBlk(self.backend, self.clock)
            self.roles = ["request"]
        else:
            self.device = VirtioBalloon(mem, self.clock, features=BALLOON_FEATURES, stats_interval_s=0.001,
                                        service_delay_ns=1000)
            self.roles = queue_roles(BALLOON_FEATURES)
        self.transport = VirtioMmioTransport(self.device, mem, lambda: None)
        self.avail_idx = [0] * len(self.roles)

    def close(self):
        if self.host is not None:
            self.backend.close()
            self.host.close()

    # the transport, as the bus calls it
    def read(self, offset, size):
        value = self.transport.mmio_read(offset, size)
        assert 0 <= value < 1 << (8 * size)

    def write(self, offset, size, value):
        self.transport.mmio_write(offset, size, value & ((1 << (8 * size)) - 1))

    def bring_up(self, features: int, all_queues: bool, hostile_queue=None) -> None:
        """The initialisation sequence; hostile_queue (index, size, desc, avail, used) sets up one queue
        with any size and addresses (past RAM, misaligned, wrapping 2^64) instead of ours."""
        w = lambda off, v: self.write(off, 4, v)        # noqa: E731
        w(STATUS, 0)
        w(STATUS, STATUS_ACKNOWLEDGE)
        w(STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER)
        offered = 0
        for sel in (0, 1):
            w(DEVICE_FEATURES_SEL, sel)
            offered |= self.transport.mmio_read(DEVICE_FEATURES, 4) << (32 * sel)
        features = (features | 1 << 32) & offered       # VERSION_1 always: else FEATURES_OK is refused
        for sel in (0, 1):
            w(DRIVER_FEATURES_SEL, sel)
            w(DRIVER_FEATURES, features >> (32 * sel) & 0xFFFFFFFF)
        w(STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK)
        for i in range(len(self.roles) if all_queues else 1):
            desc, avail, used = ring_layout(i)
            size = BLK_QUEUE_SIZE
            if hostile_queue is not None and hostile_queue[0] == i:
                _, size, desc, avail, used = hostile_queue
            w(QUEUE_SEL, i)
            w(QUEUE_NUM, size)
            for low, high, addr in ((QUEUE_DESC_LOW, QUEUE_DESC_HIGH, desc), (QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH,
                                    avail), (QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH, used)):
                w(low, addr & 0xFFFFFFFF)
                w(high, addr >> 32)
            w(QUEUE_READY, 1)
        w(STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK)

    def put_desc(self, q, index, addr, length, flags, nxt):
        desc, _, _ = ring_layout(q)
        struct.pack_into("<QIHH", self.mem.view, desc + 16 * (index % 256), addr & (1 << 64) - 1,
                         length & 0xFFFFFFFF, flags & 0xFFFF, nxt & 0xFFFF)

    def make_available(self, q, head):
        _, avail, _ = ring_layout(q)
        slot = self.avail_idx[q] % BLK_QUEUE_SIZE
        struct.pack_into("<H", self.mem.view, avail + 4 + 2 * slot, head)
        self.avail_idx[q] = (self.avail_idx[q] + 1) & 0xFFFF
        struct.pack_into("<H", self.mem.view, avail + 2, self.avail_idx[q])

    def poke(self, addr, data):
        if addr + len(data) <= self.mem.size:
            self.mem.view[addr:addr + len(data)] = data

    def chain(self, q, first, segments, indirect, payload):
        self.poke(segments[0][0], payload)
        descs = [(addr, length, (WRITE if w else 0) | (NEXT if i < len(segments) - 1 else 0),
                  (first + i + 1) % BLK_QUEUE_SIZE if not indirect else i + 1)
                 for i, (addr, length, w) in enumerate(segments)]
        if indirect is None:
            for i, d in enumerate(descs):
                self.put_desc(q, first + i, *d)
        else:
            table = DATA_BASE + 0x100 * (first % 16)
            for i, (addr, length, flags, nxt) in enumerate(descs):
                if indirect == "nested" and i == 0:
                    flags |= INDIRECT
                self.poke(table + 16 * i, struct.pack("<QIHH", addr & (1 << 64) - 1, length, flags, nxt))
            flags = INDIRECT | (NEXT if indirect == "indirect+next" else 0)
            length = 0 if indirect == "empty table" else 16 * len(descs)
            self.put_desc(q, first, table, length, flags, (first + 1) % BLK_QUEUE_SIZE)
        self.make_available(q, first % BLK_QUEUE_SIZE)
        return lambda: self.write(QUEUE_NOTIFY, 4, q)

    def good(self, q, first, kind, sector, pages, pfns):
        base = DATA_BASE + 0x8000 + 0x2000 * (first % 8)
        header, status = base, base + 0x100
        data = [(DATA_BASE + 0x20000 + PAGE * ((first + i) % 24), PAGE) for i in range(pages)]
        if self.kind == "balloon":
            role = self.roles[q]
            if role in (INFLATE, DEFLATE):
                self.poke(base, b"".join(struct.pack("<I", p) for p in pfns))
                segments = [(base, 4 * len(pfns), False)]
            elif role == STATS:
                self.poke(base, b"".join(struct.pack("<HQ", tag, 1000 * tag) for tag in range(10)))
                segments = [(base, 100, False)]
            elif kind == "flush":                          # free page hinting: the command id first
                self.poke(base, struct.pack("<I", self.device.cmd_id))
                segments = [(base, 4, False)]
            else:                                           # hinted or reported free pages
                segments = [(p << 12, PAGE * pages, True) for p in pfns[:4]]
        elif kind in ("in", "get_id"):
            self.poke(header, OUTHDR.pack(0 if kind == "in" else 8, 0, sector & ~7))
            segments = [(header, 16, False)] + [(a, n, True) for a, n in data] + [(status, 1, True)]
        elif kind == "out":
            self.poke(header, OUTHDR.pack(1, 0, sector))
            segments = [(header, 16, False)] + [(a, n, False) for a, n in data] + [(status, 1, True)]
        else:
            self.poke(header, OUTHDR.pack(4, 0, 0))
            segments = [(header, 16, False), (status, 1, True)]
        for i, (addr, length, w) in enumerate(segments):
            last = i == len(segments) - 1
            self.put_desc(q, (first + i) % BLK_QUEUE_SIZE, addr, length, (WRITE if w else 0) | (0 if last else NEXT),
                          (first + i + 1) % BLK_QUEUE_SIZE)
        self.make_available(q, first)
        return lambda: self.write(QUEUE_NOTIFY, 4, q)

    def run_clock(self):
        for _ in range(50):                                 # the stats timer re-arms itself: bounded
            if not self.clock.idle_until_next_event():
                break

    def host_action(self, what, n):
        if self.kind == "balloon":
            if what == 0:
                self.device.set_target_pages(n)
            elif what == 1:
                self.device.start_hinting()
            elif what == 2:
                self.device.stop_hinting()
            else:
                self.device.request_stats()
        elif what == 0:
            self.device.capacity_changed()

    def do(self, action):
        """One step: the driver's own writes to RAM happen here; what lets the device run comes back as a
        callable (None when nothing does), so that RAM can be compared around it alone."""
        name, *args = action
        if name == "bring_up":
            return lambda: self.bring_up(*args)
        elif name == "read":
            return lambda: self.read(*args)
        elif name == "write":
            return lambda: self.write(*args)
        elif name == "status":
            return lambda: self.write(STATUS, 4, args[0])
        elif name == "queue_addr":
            q, which, addr = args
            low = {"desc": QUEUE_DESC_LOW, "avail": QUEUE_DRIVER_LOW, "used": QUEUE_DEVICE_LOW}[which]
            self.write(QUEUE_SEL, 4, q)
            self.write(low, 4, addr & 0xFFFFFFFF)
            self.write(low + 4, 4, addr >> 32)
        elif name == "desc":
            self.put_desc(*args)
        elif name == "avail":
            q, slot, head = args
            _, avail, _ = ring_layout(q)
            struct.pack_into("<H", self.mem.view, avail + 4 + 2 * (slot % BLK_QUEUE_SIZE), head)
        elif name == "avail_idx":
            q, idx = args
            self.avail_idx[q] = idx
            _, avail, _ = ring_layout(q)
            struct.pack_into("<H", self.mem.view, avail + 2, idx)
        elif name == "notify":
            return lambda: self.write(QUEUE_NOTIFY, 4, args[0])
        elif name == "clock":
            return self.run_clock
        elif name == "host":
            return lambda: self.host_action(*args)
        elif name == "chain":
            return self.chain(*args)
        elif name == "good":
            return self.good(*args)
        return None


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"a step took more than {WALL_LIMIT_S} s of host time")


@pytest.fixture(params=["compiled", "pure"])
def virtq_path(request, monkeypatch):
    module = compiled if request.param == "compiled" else pure
    monkeypatch.setattr(virtqueue_module, "_virtq", module)
    monkeypatch.setattr(virtio_blk_module, "_virtq", module)
    return module


@pytest.fixture(scope="module")
def ram():
    r = GuestRAM(RAM_SIZE)
    yield r
    r.close()


def fill(ram) -> None:
    pattern = bytes((i * 131 + 7) & 0xFF for i in range(PAGE))
    ram.view[:] = pattern * (RAM_SIZE // PAGE)


def run_hostile(kind, ram, tmp_path, script):
    fill(ram)
    bed = HostileDriver(kind, ram, tmp_path)
    allowed = Allowed(RAM_SIZE)
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for step, action in enumerate(script + [("clock",)]):     # completions due at the end land too
            device_step = bed.do(action)
            if device_step is None:
                continue
            before = bytes(ram.view)
            gather(allowed, before, bed.transport, bed.roles)
            signal.alarm(WALL_LIMIT_S)
            try:
                device_step()
            finally:
                signal.alarm(0)
            after = bytes(ram.view)
            gather(allowed, after, bed.transport, bed.roles)
            for offset in changed_offsets(before, after):
                assert allowed.covers(offset), \
                    f"step {step} {action[0]}: the device wrote guest RAM at {offset:#x}, not device-writable"
        return bed
    finally:
        signal.signal(signal.SIGALRM, old)
        bed.close()


FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@FUZZ
@given(script=actions(1))
def test_hostile_driver_against_virtio_blk(virtq_path, ram, tmp_path_factory, script):
    bed = run_hostile("blk", ram, tmp_path_factory.mktemp("blk"), script)
    c = bed.device.counters
    event("completed requests" if c.completed else "no request completed")
    event("malformed ring seen" if c.malformed else "no malformed ring")


@FUZZ
@given(script=actions(len(queue_roles(BALLOON_FEATURES))))
def test_hostile_driver_against_virtio_balloon(virtq_path, ram, tmp_path_factory, script):
    bed = run_hostile("balloon", ram, tmp_path_factory.mktemp("balloon"), script)
    c = bed.device.counters
    event("pages inflated" if c.inflated_pages else "nothing inflated")
    event("pages reported or hinted" if c.reported_pages or c.hinted_pages else "nothing reported")
    event("broken ring seen" if c.broken else "no broken ring")


def test_the_ram_check_catches_a_stray_write(ram, tmp_path):
    """The checker itself: a device writing into a device-readable buffer is reported."""
    fill(ram)
    bed = HostileDriver("blk", ram, tmp_path)
    try:
        bed.bring_up(0, True)
        allowed = Allowed(RAM_SIZE)
        notify = bed.good(0, 0, "out", 8, 1, [])
        before = bytes(ram.view)
        notify()
        bed.run_clock()
        gather(allowed, before, bed.transport, bed.roles)
        readable_data = DATA_BASE + 0x20000
        ram.view[readable_data] ^= 0xFF                     # what a broken device might do
        after = bytes(ram.view)
        gather(allowed, after, bed.transport, bed.roles)
        stray = [o for o in changed_offsets(before, after) if not allowed.covers(o)]
        assert stray == [readable_data]
    finally:
        bed.close()
