"""virtio-blk's fast path for the common request (a whole-page IN whose pages the host cache holds): the
native peek (cython_ext.virtq.peek_blk_in) compiled equals its uncompiled source on hostile rings, both
take exactly the requests the Python path (pop, _submit, _execute) would serve as such an IN, and a device
with the fast path gives the guest and the host the same bytes, statuses, used ring, times and counters as
one without it."""
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cython_ext
from devices.host import Host
from devices.virtio_blk import MAX_REQUEST_BYTES, OUTHDR, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT
from devices.virtqueue import QueueError, SplitQueue, U16
from vmm.memory import GuestRAM

from test_virtio_blk import Bed
from test_virtq_differential import AVAIL_BASE, DESC_BASE, RAM, TABLES, USED_BASE, fill, mostly, tables

compiled = cython_ext.load("virtq", pure=False)
pure = cython_ext.load("virtq", pure=True)

PAGE = 4096
VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX = 28, 29


# --- the peek on hostile rings ---

def reference_peek(mem, q, capacity, max_bytes):
    """What the Python path makes of the chain at next_avail, as peek_blk_in reports it."""
    saved = q.next_avail
    try:
        chain = q.pop(mem)
    except QueueError:
        return None
    finally:
        q.next_avail = saved
    if chain is None:
        return 0
    raw = chain.raw
    if not chain.ordered or not raw[-1][2] or raw[-1][1] == 0:      # _submit: QueueError
        return None
    addr, n, writes = raw[0]
    if writes or n < OUTHDR.size:                                   # _execute: the unusual framing
        return None
    req_type, _, sector = OUTHDR.unpack_from(mem.view, addr)
    length, offset = chain.writable_len - 1, sector * 512
    if req_type != VIRTIO_BLK_T_IN or chain.readable_len != OUTHDR.size or length <= 0 or length > max_bytes \
            or (offset | length) % PAGE or offset + length > capacity:
        return None                 # not IN, IOERR, or not whole pages (the cache's slow read)
    runs, left = [], length
    for a, dlen, w in raw:
        if w and left > 0:
            n = min(dlen, left)
            left -= n
            if n and runs and runs[-1][0] + runs[-1][1] == a:    # continues the previous buffer in RAM
                runs[-1] = (runs[-1][0], runs[-1][1] + n)
            elif n:
                runs.append((a, n))
    return chain.head, runs, length, offset, raw[-1][0] + raw[-1][1] - 1


headers = st.tuples(mostly(st.just(VIRTIO_BLK_T_IN), st.integers(0, 2**32 - 1)),
                    st.integers(0, 2**32 - 1),
                    mostly(st.integers(0, 64).map(lambda k: 8 * k), st.integers(0, 2**64 - 1)))


def lay_out(setup, header, next_avail, pending):
    ram = fill(setup)
    size = setup["size"]
    for i in range(size):
        U16.pack_into(ram, AVAIL_BASE + 4 + 2 * i, (setup["head"] + i) % (size + 1))
    U16.pack_into(ram, AVAIL_BASE + 2, (next_avail + pending) & 0xFFFF)
    # a request header where the chain's first buffer (or an indirect table's) points
    for table in [setup["descs"]] + setup["tables"]:
        if table and table[0][0] + 16 <= RAM:
            OUTHDR.pack_into(ram, table[0][0], *header)
    return ram


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), headers, st.integers(0, 0xFFFF), mostly(st.integers(0, 3), st.integers(0, 0xFFFF)),
       st.sampled_from([RAM, 64 * PAGE, PAGE, 4 * PAGE + 512, 0]), st.sampled_from([MAX_REQUEST_BYTES, 8 * PAGE, PAGE]),
       st.sampled_from([-1, USED_BASE + 4 + 8 * 32, RAM - 1, RAM - 2]))
def test_peek_compiled_equals_pure_equals_the_python_path(setup, header, next_avail, pending, capacity, max_bytes,
                                                          avail_event):
    outcomes = []
    for module in (compiled, pure):
        ram = lay_out(setup, header, next_avail, pending)
        got = module.peek_blk_in(next_avail, memoryview(ram), RAM, DESC_BASE, AVAIL_BASE, setup["size"],
                                 setup["indirect"], capacity, max_bytes, avail_event)
        outcomes.append((got, bytes(ram)))
    assert outcomes[0] == outcomes[1]
    got, after = outcomes[0]
    before = lay_out(setup, header, next_avail, pending)
    if avail_event >= 0 and pending == 0:
        # nothing pending: next_avail published at avail_event (if it lies in RAM), nothing else written
        if avail_event + 2 > RAM:
            assert got is None and after == before
        else:
            expected = bytearray(before)
            U16.pack_into(expected, avail_event, next_avail)
            assert got == 0 and after == expected
        return
    assert after == before                          # a peek writes nothing else
    if got:
        for a, n in got[1]:
            assert 0 <= a and a + n <= RAM
        assert got[4] < RAM
    mem = GuestRAM(RAM)
    try:
        mem.view[:] = before
        q = SplitQueue(setup["size"])
        q.desc_table, q.avail_ring, q.used_ring = DESC_BASE, AVAIL_BASE, USED_BASE
        q.indirect_desc, q.ready, q.next_avail = setup["indirect"], True, next_avail
        assert got == reference_peek(mem, q, capacity, max_bytes)
    finally:
        mem.close()


def test_peek_joins_buffers_that_continue_each_other_in_ram():
    """A driver's physically contiguous pages come back as one run (one pre-fault, one copy cursor); a
    gap, or an empty buffer in between, starts a new run or is left out, and the bytes covered stay the same."""
    desc = struct.Struct("<QIHH")
    ram = bytearray(64 * PAGE)
    data = [(8 * PAGE, PAGE), (9 * PAGE, PAGE), (10 * PAGE, 0), (10 * PAGE, 2 * PAGE), (20 * PAGE, PAGE),
            (21 * PAGE, PAGE)]
    chain = [(PAGE, 16, 0)] + [(a, n, 2) for a, n in data] + [(30 * PAGE, 1, 2)]
    for i, (addr, length, flags) in enumerate(chain):
        last = i == len(chain) - 1
        desc.pack_into(ram, i * 16, addr, length, flags | (0 if last else 1), 0 if last else i + 1)
    avail = 2 * PAGE
    U16.pack_into(ram, avail + 2, 1)            # one chain, head 0
    OUTHDR.pack_into(ram, PAGE, VIRTIO_BLK_T_IN, 0, 16)
    for module in (compiled, pure):
        got = module.peek_blk_in(0, memoryview(ram), len(ram), 0, avail, 16, False, 64 * PAGE, MAX_REQUEST_BYTES)
        assert got == (0, [(8 * PAGE, 4 * PAGE), (20 * PAGE, 2 * PAGE)], 6 * PAGE, 16 * 512, 30 * PAGE)


def test_peek_refuses_rings_outside_ram():
    ram = bytearray(PAGE)
    for module in (compiled, pure):
        assert module.peek_blk_in(0, memoryview(ram), PAGE, 0, PAGE - 8, 16, False, PAGE, PAGE) is None
        assert module.peek_blk_in(0, memoryview(ram), 2 * PAGE, 0, PAGE - 40, 16, False, PAGE, PAGE, PAGE - 1) is None
        assert module.peek_blk_in(0, memoryview(ram), PAGE, 0, 0, 16, False, PAGE, PAGE, -1) == 0


def test_the_device_takes_the_fast_path():
    """Not a timing: the fast path must actually serve a hit, else the differential tests below test little."""
    mem = GuestRAM(16 << 20)
    host = Host(cache_capacity=64)
    try:
        import tempfile
        with tempfile.NamedTemporaryFile() as f:
            f.write(bytes(range(256)) * 1024)
            f.flush()
            disk = host.block_backend(f.name, "writeback", 1, False, "nvme", serial=b"x", snapshot=False)
            bed = Bed(mem, backend=disk)
            reads, submitted = [], []
            read_in, submit = bed.blk._read_in, bed.blk._submit
            bed.blk._read_in = lambda *a: reads.append(read_in(*a)) or reads[-1]
            bed.blk._submit = lambda chain: submitted.append(chain.head) or submit(chain)
            assert bed.do(VIRTIO_BLK_T_IN, sector=0, in_len=4 * PAGE)[0] == 0      # a miss: loaded
            assert bed.do(VIRTIO_BLK_T_IN, sector=64, in_len=4 * PAGE)[0] == 0     # a miss, on the fast path
            assert bed.do(VIRTIO_BLK_T_IN, sector=0, in_len=4 * PAGE)[0] == 0      # a hit, on the fast path
            assert len(submitted) == 1          # only the first went through pop (the layout unchecked yet)
            assert reads[2] == 4 * host.costs.host_cache_hit_ns_per_page and len(reads) == 3
            assert host.cache.hits == 4
    finally:
        host.close()
        mem.close()


# --- the device with and without the fast path ---

IMAGE_SIZE = 256 * 1024

requests = st.tuples(
    st.sampled_from(["in", "in", "in", "in", "out", "flush", "bad_status", "bad_header", "in_readable",
                     "no_status"]),
    mostly(st.integers(0, IMAGE_SIZE // PAGE).map(lambda p: 8 * p), st.integers(0, IMAGE_SIZE // 512 + 8)),
    mostly(st.integers(1, 8).map(lambda p: p * PAGE), st.integers(0, 9).map(lambda s: s * 512)),
    st.integers(1, 4),
    st.booleans())


IMAGE = random.Random(11).randbytes(IMAGE_SIZE)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fast_in")


def _device_run(image_dir, reqs, fast: bool, mode: str, capacity: int, features_off: int):
    image_path = image_dir / f"disk-{fast}.img"         # a fresh image each run: the writes change it
    image_path.write_bytes(IMAGE)
    host = Host(cache_capacity=capacity)
    mem = GuestRAM(8 << 20)
    try:
        disk = host.block_backend(str(image_path), mode, 1, False, "nvme", serial=b"x", snapshot=False)
        bed = Bed(mem, backend=disk, bring_up=False)
        bed.d.bring_up({0: bed.ring}, bed.t.offered_features() & ~features_off)
        if not fast:
            bed.blk._read_hit = None
        results = []
        for kind, sector, length, pieces, indirect in reqs:
            indirect = indirect and bed.blk._acked(VIRTIO_F_INDIRECT_DESC) and pieces + 2 <= 16
            if kind == "in":
                got = bed.do(VIRTIO_BLK_T_IN, sector=sector, in_len=length, pieces=pieces, indirect=indirect)
            elif kind == "out":
                got = bed.do(VIRTIO_BLK_T_OUT, sector=sector, out=bytes([sector & 0xFF]) * length, pieces=pieces)
            elif kind == "flush":
                got = bed.do(VIRTIO_BLK_T_FLUSH)
            elif kind == "bad_status":
                got = bed.do(VIRTIO_BLK_T_IN, sector=sector, in_len=length, pieces=pieces, status_len=2)
            elif kind == "no_status":
                got = bed.do(VIRTIO_BLK_T_IN, sector=sector, in_len=length, status_len=0)
            elif kind == "bad_header":
                got = bed.do(VIRTIO_BLK_T_IN, in_len=length, header=OUTHDR.pack(VIRTIO_BLK_T_IN, 0, sector)[:12])
            else:
                got = bed.do(VIRTIO_BLK_T_IN, sector=sector, in_len=length, out=b"x" * 512)
            status, req, used = got
            results.append((status, used, bed.data(req), bed.clock.now_ns(), list(bed.irqs)))
            if bed.blk.broken:
                break
        c = host.cache
        return (results, bed.blk.counters, bed.t.counters, bed.blk.broken, bed.blk.busy_until_ns, disk.stats.as_dict(),
                c.stats(), list(c._inactive), list(c._active), bytes(c._flags[:c._fresh]), dict(c._charge),
                bytes(mem.view))
    finally:
        host.close()
        mem.close()


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(requests, min_size=1, max_size=12), st.sampled_from(["writeback", "none", "unsafe"]),
       st.sampled_from([8, 24, 128]), st.sampled_from([0, 1 << VIRTIO_F_EVENT_IDX, 1 << VIRTIO_F_INDIRECT_DESC]))
def test_device_with_the_fast_path_equals_without(image_dir, reqs, mode, capacity, features_off):
    reqs = reqs + reqs                  # the second time round, more of them hit
    assert _device_run(image_dir, reqs, True, mode, capacity, features_off) == \
        _device_run(image_dir, reqs, False, mode, capacity, features_off)
