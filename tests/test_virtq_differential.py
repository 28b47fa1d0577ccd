"""cython_ext.virtq compiled equals its uncompiled source, and both equal the Python code they replaced (kept
here as references): the device's chain walk and pop on random, mostly hostile, descriptor tables and rings;
the driver's add and detach on random chains used in random order."""
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cython_ext
from devices.virtqueue import DESC, QueueError, SplitQueue, U16

compiled = cython_ext.load("virtq", pure=False)
pure = cython_ext.load("virtq", pure=True)

RAM = 64 * 1024
DESC_BASE, AVAIL_BASE, USED_BASE = 0x0, 0x1000, 0x2000
TABLES = [0x3000 + 0x400 * i for i in range(4)]
NEXT, WRITE, INDIRECT = 1, 2, 4


def test_the_compiled_module_is_native():
    assert compiled.__file__.endswith(".so") and pure.__file__.endswith(".py")


# --- the reference: SplitQueue._walk as it was before the walk moved to cython_ext ---

def _check_buffer(ram: int, addr: int, length: int, what) -> None:
    end = addr + length
    if end > 1 << 64:
        raise QueueError(f"descriptor {what}: addr {addr:#x} + len {length:#x} overflows 64 bits")
    if end > ram:
        raise QueueError(f"descriptor {what}: {addr:#x}+{length:#x} lies outside RAM")


def reference_walk(view, ram, desc_table, size, head, indirect_desc):
    if head >= size:
        raise QueueError(f"head {head} is not below the queue size {size}")
    out = []
    index = head
    for _ in range(size):
        addr, length, flags, nxt = DESC.unpack_from(view, desc_table + 16 * index)
        if flags & INDIRECT:
            if flags & NEXT:
                raise QueueError(f"descriptor {index} sets both NEXT and INDIRECT")
            reference_walk_indirect(view, ram, size, indirect_desc, addr, length, out)
            return out
        _check_buffer(ram, addr, length, index)
        out.append((addr, length, bool(flags & WRITE)))
        if not flags & NEXT:
            return out
        if nxt >= size:
            raise QueueError(f"descriptor {index} chains to {nxt}, not below the queue size {size}")
        index = nxt
    raise QueueError(f"chain from head {head} is longer than the queue size {size} (a loop?)")


def reference_walk_indirect(view, ram, size, indirect_desc, table, table_len, out):
    if not indirect_desc:
        raise QueueError("an indirect descriptor without VIRTIO_F_INDIRECT_DESC")
    if table_len == 0 or table_len % 16:
        raise QueueError(f"indirect table length {table_len} is not a positive multiple of 16")
    count = table_len // 16
    if count > size:
        raise QueueError(f"indirect table of {count} descriptors is larger than the queue size {size}")
    _check_buffer(ram, table, table_len, "indirect table")
    index = 0
    for _ in range(count):
        addr, length, flags, nxt = DESC.unpack_from(view, table + 16 * index)
        if flags & INDIRECT:
            raise QueueError(f"indirect descriptor {index} points to another indirect table")
        _check_buffer(ram, addr, length, f"indirect {index}")
        out.append((addr, length, bool(flags & WRITE)))
        if not flags & NEXT:
            return
        if nxt >= count:
            raise QueueError(f"indirect descriptor {index} chains to {nxt}, outside its table of {count}")
        index = nxt
    raise QueueError(f"indirect chain is longer than its table of {count} descriptors (a loop?)")


def reference_summary(raw):
    readable = sum(n for _, n, w in raw if not w)
    writable = sum(n for _, n, w in raw if w)
    ordered = all(w or not any(w2 for _, _, w2 in raw[:i]) for i, (_, _, w) in enumerate(raw))
    return raw, readable, writable, ordered


# --- random tables ---

def mostly(common, rare):
    return st.integers(0, 9).flatmap(lambda k: common if k else rare)


@st.composite
def tables(draw):
    size = draw(st.sampled_from([1, 2, 4, 8, 16, 32]))
    addrs = mostly(st.one_of(st.integers(0x8000, 0xF000), st.sampled_from(TABLES)),
                   st.one_of(st.integers(0, 2**64 - 1),
                             st.sampled_from([RAM - 1, RAM, RAM - 16, 2**64 - 16, 2**64 - 2**32 + 5])))
    lengths = mostly(st.one_of(st.integers(0, 4096), st.sampled_from([16, 32, 16 * size, 16 * size + 16])),
                     st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([2**32 - 1, RAM])))
    flags = mostly(st.sampled_from([0, 1, 1, 1, 2, 3, 3, 3, 4, 6]), st.integers(0, 0xFFFF))
    nexts = mostly(st.integers(0, size - 1), st.integers(0, 0xFFFF))
    desc = st.tuples(addrs, lengths, flags, nexts)
    return dict(size=size, descs=draw(st.lists(desc, min_size=size, max_size=size)),
                tables=[draw(st.lists(desc, min_size=0, max_size=2 * size)) for _ in TABLES],
                head=draw(mostly(st.integers(0, size - 1), st.integers(0, 0xFFFF))),
                indirect=draw(st.booleans()))


def fill(setup) -> bytearray:
    ram = bytearray(RAM)
    for i, d in enumerate(setup["descs"]):
        DESC.pack_into(ram, DESC_BASE + 16 * i, *d)
    for base, table in zip(TABLES, setup["tables"]):
        for i, d in enumerate(table):
            DESC.pack_into(ram, base + 16 * i, *d)
    return ram


def outcome(walk, view, setup, exc=ValueError):
    try:
        return ("ok", walk(view, RAM, DESC_BASE, setup["size"], setup["head"], setup["indirect"]))
    except exc as err:
        return ("error", str(err))


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_walk_compiled_equals_pure_equals_reference(setup):
    ram = fill(setup)
    view = memoryview(ram)
    native = outcome(compiled.walk_chain, view, setup)
    assert native == outcome(pure.walk_chain, view, setup)
    try:
        expected = ("ok", reference_summary(reference_walk(view, RAM, DESC_BASE, setup["size"], setup["head"],
                                                           setup["indirect"])))
    except QueueError as err:
        expected = ("error", str(err))
    assert native == expected
    if native[0] == "ok":
        for addr, length, _ in native[1][0]:
            assert addr + length <= RAM
    assert bytes(ram) == bytes(fill(setup))          # a walk never writes


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.integers(0, 0xFFFF), st.integers(0, 40))
def test_pop_through_the_queue_matches_the_reference(setup, next_avail, pending):
    """The queue's pop (ring handling in Python, walk native) against the reference walk, head by head."""
    from vmm.memory import GuestRAM
    mem = GuestRAM(RAM)
    try:
        mem.view[:] = fill(setup)
        size = setup["size"]
        for i in range(size):
            U16.pack_into(mem.view, AVAIL_BASE + 4 + 2 * i, (setup["head"] + i) % (size + 1))
        U16.pack_into(mem.view, AVAIL_BASE + 2, (next_avail + pending) & 0xFFFF)
        q = SplitQueue(size)
        q.desc_table, q.avail_ring, q.used_ring = DESC_BASE, AVAIL_BASE, USED_BASE
        q.indirect_desc, q.ready, q.next_avail = setup["indirect"], True, next_avail
        for _ in range(size + 2):
            before = q.next_avail
            try:
                chain = q.pop(mem)
            except QueueError as err:
                got = ("error", str(err))
            else:
                if chain is None:
                    break
                got = ("ok", chain.head, chain.raw, chain.readable_len, chain.writable_len, chain.ordered)
            if pending > size:
                assert got[0] == "error" and "ahead" in got[1] and q.next_avail == before
                break
            head = U16.unpack_from(mem.view, AVAIL_BASE + 4 + 2 * (before % size))[0]
            try:
                raw, readable, writable, ordered = reference_summary(
                    reference_walk(mem.view, RAM, DESC_BASE, size, head, setup["indirect"]))
                expected = ("ok", head, raw, readable, writable, ordered)
            except QueueError as err:
                expected = ("error", str(err))
            assert got == expected
            assert q.next_avail == (before + 1) & 0xFFFF            # a malformed chain is consumed too
    finally:
        mem.close()


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.lists(st.integers(0, 0xFFFF), max_size=32))
def test_pop_chain_compiled_equals_pure(setup, next_avail, avail_idx, ring):
    ram = fill(setup)
    size = setup["size"]
    for i, head in enumerate(ring[:size]):
        U16.pack_into(ram, AVAIL_BASE + 4 + 2 * i, head)
    U16.pack_into(ram, AVAIL_BASE + 2, avail_idx)
    results = []
    for module in (compiled, pure):
        try:
            results.append(("ok", module.pop_chain(memoryview(ram), RAM, DESC_BASE, AVAIL_BASE, size, next_avail,
                                                   setup["indirect"])))
        except (IndexError, ValueError) as err:
            results.append((type(err).__name__, str(err)))
    assert results[0] == results[1]


# --- the driver's half: add_chain and detach_used against the ring code they replaced ---

class ReferenceRing:
    """guestos.drivers.virtio_ring's add and detach as they were in Python (next fields read back from RAM)."""

    def __init__(self, ram, num, desc, avail, used):
        self.ram, self.num, self.desc, self.avail, self.used = ram, num, desc, avail, used
        self.free_head, self.avail_idx, self.last_used = 0, 0, 0
        self.chain_len = [0] * num
        for i in range(num):
            DESC.pack_into(ram, desc + 16 * i, 0, 0, 0, (i + 1) % num)

    def add(self, sgs):
        n = len(sgs)
        head = i = self.free_head
        for j, (paddr, length, writable) in enumerate(sgs):
            flags = (WRITE if writable else 0) | (NEXT if j < n - 1 else 0)
            nxt = U16.unpack_from(self.ram, self.desc + 16 * i + 14)[0]
            DESC.pack_into(self.ram, self.desc + 16 * i, paddr, length, flags, nxt)
            i = nxt
        self.free_head = i
        self.chain_len[head] = n
        U16.pack_into(self.ram, self.avail + 4 + 2 * (self.avail_idx % self.num), head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        U16.pack_into(self.ram, self.avail + 2, self.avail_idx)
        return head

    def detach(self):
        if U16.unpack_from(self.ram, self.used + 2)[0] == self.last_used:
            return None
        head, length = struct.unpack_from("<II", self.ram, self.used + 4 + 8 * (self.last_used % self.num))
        self.last_used = (self.last_used + 1) & 0xFFFF
        n = self.chain_len[head]
        i = head
        for _ in range(n - 1):
            i = U16.unpack_from(self.ram, self.desc + 16 * i + 14)[0]
        U16.pack_into(self.ram, self.desc + 16 * i + 14, self.free_head)
        self.free_head = head
        return head, length, n


class NativeRing:
    def __init__(self, module, ram, num, desc, avail, used):
        self.m, self.ram, self.num, self.desc, self.avail, self.used = module, ram, num, desc, avail, used
        self.free_head, self.avail_idx, self.last_used = 0, 0, 0
        self.chain_len = [0] * num
        self.desc_next = [(i + 1) % num for i in range(num)]
        for i in range(num):
            DESC.pack_into(ram, desc + 16 * i, 0, 0, 0, self.desc_next[i])

    def add(self, sgs):
        head = self.free_head
        self.free_head = self.m.add_chain(memoryview(self.ram), self.desc, self.avail, self.num, self.desc_next,
                                          head, self.avail_idx, sgs)
        self.chain_len[head] = len(sgs)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        return head

    def detach(self):
        got = self.m.detach_used(memoryview(self.ram), self.desc, self.used, self.num, self.desc_next,
                                 self.chain_len, self.last_used, self.free_head)
        if got is not None:
            self.last_used = (self.last_used + 1) & 0xFFFF
            self.free_head = got[0]
        return got


sg = st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.booleans())


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(num=st.sampled_from([1, 2, 4, 8, 16]), ops=st.lists(st.tuples(st.lists(sg, min_size=1, max_size=5),
                                                                      st.integers(0, 3), st.randoms()), max_size=40))
def test_driver_ring_native_equals_pure_equals_reference(num, ops):
    """Random chains added while room lasts; the device uses any in-flight heads in any order; then detach."""
    desc, avail, used = 0x0, 0x1000, 0x2000
    rams = [bytearray(0x3000) for _ in range(3)]
    rings = [ReferenceRing(rams[0], num, desc, avail, used), NativeRing(compiled, rams[1], num, desc, avail, used),
             NativeRing(pure, rams[2], num, desc, avail, used)]
    free, inflight, used_idx = num, [], 0
    for sgs, completions, rnd in ops:
        if len(sgs) <= free:
            heads = {ring.add(sgs) for ring in rings}
            assert len(heads) == 1
            inflight.append((heads.pop(), len(sgs)))
            free -= len(sgs)
        for _ in range(min(completions, len(inflight))):         # the device uses heads in any order
            head, n = inflight.pop(rnd.randrange(len(inflight)))
            for ram in rams:
                struct.pack_into("<II", ram, used + 4 + 8 * (used_idx % num), head, n * 7)
                U16.pack_into(ram, used + 2, (used_idx + 1) & 0xFFFF)
            used_idx = (used_idx + 1) & 0xFFFF
            got = {ring.detach() for ring in rings}
            assert got == {(head, n * 7, n)}
            free += n
        assert {ring.detach() for ring in rings} == {None}
        assert rams[0] == rams[1] == rams[2]
        assert rings[0].free_head == rings[1].free_head == rings[2].free_head


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(num=st.sampled_from([4, 8, 16]), free_head=st.integers(0, 15), avail_idx=st.integers(0, 0xFFFF),
       header=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)),
       segments=st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)), max_size=6),
       device_writes=st.booleans(), status=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)))
def test_add_request_chain_equals_add_chain(num, free_head, avail_idx, header, segments, device_writes, status):
    """A block request's chain (header, data one way, status byte) written without building its list: the
    same descriptors, ring entry and free head as add_chain of that list, compiled and uncompiled."""
    if len(segments) + 2 > num:
        return
    free_head %= num
    sgs = [(*header, False), *((a, n, device_writes) for a, n in segments), (*status, True)]
    results = []
    for module in (compiled, pure):
        for request in (False, True):
            ram = bytearray(0x3000)
            desc_next = [(i * 5 + 3) % num for i in range(num)]
            if request:
                head = module.add_request_chain(memoryview(ram), 0, 0x1000, num, desc_next, free_head, avail_idx,
                                                header, list(segments), device_writes, status)
            else:
                head = module.add_chain(memoryview(ram), 0, 0x1000, num, desc_next, free_head, avail_idx, sgs)
            results.append((bytes(ram), head, desc_next))
    assert all(r == results[0] for r in results)


@settings(max_examples=300, deadline=None, database=None)
@given(lengths=st.lists(st.integers(-1, 70), max_size=8), seg_max=st.integers(1, 8), limit=st.integers(1, 64),
       max_bytes=st.integers(1, 300))
def test_request_bytes_is_the_one_request_check(lengths, seg_max, limit, max_bytes):
    """The driver's test for an extent that fits one request as it is, compiled == uncompiled == as written
    in Python before (virtio_blk._submit_runs)."""
    segments = [(0x1000 * j, n) for j, n in enumerate(lengths)]
    fits = bool(segments) and len(segments) <= seg_max and min(lengths) > 0 and max(lengths) <= limit \
        and sum(lengths) <= max_bytes
    for module in (compiled, pure):
        assert module.request_bytes(segments, seg_max, limit, max_bytes) == (sum(lengths) if fits else -1)
