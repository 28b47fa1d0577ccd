"""The split virtqueue (devices.virtqueue), driven from the driver's side like Firecracker's VirtQueue helper.

MockDriver lives here and is imported by the transport and virtio-blk tests.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.virtqueue import (DESC, DESC_SIZE, MAX_QUEUE_SIZE, U16, USED_ELEM, VIRTQ_AVAIL_F_NO_INTERRUPT,
                               VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, Descriptor,
                               DescriptorChain, QueueError, SplitQueue, avail_ring_size, desc_table_size,
                               used_ring_size, vring_need_event)
from devices.layouts import VirtqAvailElem, VirtqDesc, VirtqUsedElem, virtq_avail, virtq_used
from vmm.memory import GuestRAM

MiB = 1 << 20


def align_up(value: int, align: int) -> int:
    return (value + align - 1) & ~(align - 1)


class MockDriver:
    """The driver's half of one split queue in guest RAM: descriptor table, rings and a bump heap for buffers.

    Buffers are (addr, length, is_write) with is_write meaning device-writable, as in Descriptor."""

    def __init__(self, mem, size: int = 16, base: int = 0x10000, heap: int = 0x100000):
        self.mem, self.size = mem, size
        self.desc_table = base
        self.avail_ring = base + desc_table_size(size)
        self.used_ring = align_up(self.avail_ring + avail_ring_size(size), 4096)
        self.heap = heap
        self.next_desc = 0
        self.avail_idx = 0
        self.last_used = 0
        end = self.used_ring + used_ring_size(size)
        mem.write(base, bytes(end - base))

    def configure(self, queue: SplitQueue, event_idx: bool = False, indirect: bool = True) -> SplitQueue:
        """Program a queue directly, as the transport would after the driver wrote the registers."""
        queue.size = self.size
        queue.desc_table, queue.avail_ring, queue.used_ring = self.desc_table, self.avail_ring, self.used_ring
        queue.event_idx, queue.indirect_desc = event_idx, indirect
        queue.ready = True
        return queue

    def alloc(self, data=b"", length: int = None) -> int:
        length = len(data) if length is None else length
        addr = self.heap
        self.heap = align_up(self.heap + max(length, 1), 16)
        if data:
            self.mem.write(addr, data)
        return addr

    def write_desc(self, index: int, addr: int, length: int, flags: int = 0, next_index: int = 0,
                   table: int = None) -> None:
        base = self.desc_table if table is None else table
        self.mem.write(base + DESC_SIZE * index, DESC.pack(addr, length, flags, next_index))

    def add_chain(self, buffers, indirect: bool = False) -> int:
        """Chain buffers [(addr, length, is_write)], make the head available; returns the head."""
        if indirect:
            table = self.alloc(length=DESC_SIZE * len(buffers))
            for i, (addr, length, is_write) in enumerate(buffers):
                flags = (VIRTQ_DESC_F_WRITE if is_write else 0) | (VIRTQ_DESC_F_NEXT if i + 1 < len(buffers) else 0)
                self.write_desc(i, addr, length, flags, i + 1, table=table)
            head = self._take_descs(1)[0]
            self.write_desc(head, table, DESC_SIZE * len(buffers), VIRTQ_DESC_F_INDIRECT)
        else:
            slots = self._take_descs(len(buffers))
            for i, (addr, length, is_write) in enumerate(buffers):
                last = i + 1 == len(buffers)
                flags = (VIRTQ_DESC_F_WRITE if is_write else 0) | (0 if last else VIRTQ_DESC_F_NEXT)
                self.write_desc(slots[i], addr, length, flags, 0 if last else slots[i + 1])
            head = slots[0]
        self.publish(head)
        return head

    def _take_descs(self, n: int) -> list:
        slots = [(self.next_desc + i) % self.size for i in range(n)]
        self.next_desc = (self.next_desc + n) % self.size
        return slots

    def publish(self, head: int) -> None:
        """Put a head in the avail ring and bump idx."""
        slot = self.avail_ring + 4 + 2 * (self.avail_idx % self.size)
        self.mem.write(slot, U16.pack(head))
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.set_avail_idx(self.avail_idx)

    def set_avail_idx(self, idx: int) -> None:
        self.mem.write(self.avail_ring + 2, U16.pack(idx))

    def set_avail_flags(self, flags: int) -> None:
        self.mem.write(self.avail_ring, U16.pack(flags))

    def set_used_event(self, idx: int) -> None:
        self.mem.write(self.avail_ring + 4 + 2 * self.size, U16.pack(idx))

    @property
    def used_idx(self) -> int:
        return U16.unpack(self.mem.read(self.used_ring + 2, 2))[0]

    @property
    def avail_event(self) -> int:
        return U16.unpack(self.mem.read(self.used_ring + 4 + 8 * self.size, 2))[0]

    def take_used(self) -> list:
        """New used elements [(id, len)] since the last call."""
        out = []
        while self.last_used != self.used_idx:
            slot = self.used_ring + 4 + 8 * (self.last_used % self.size)
            out.append(USED_ELEM.unpack(self.mem.read(slot, 8)))
            self.last_used = (self.last_used + 1) & 0xFFFF
        return out


@pytest.fixture
def mem():
    ram = GuestRAM(4 * MiB)
    yield ram
    ram.close()


@pytest.fixture
def drv(mem):
    return MockDriver(mem, size=16)


@pytest.fixture
def q(drv):
    return drv.configure(SplitQueue(16))


# --- layouts: the fast path against the construct declarations ---

@given(addr=st.integers(0, 2**64 - 1), length=st.integers(0, 2**32 - 1), flags=st.integers(0, 0xFFFF),
       nxt=st.integers(0, 0xFFFF))
def test_descriptor_fast_path_matches_declaration(addr, length, flags, nxt):
    raw = VirtqDesc.build(dict(addr=addr, len=length, flags=flags, next=nxt))
    assert raw == DESC.pack(addr, length, flags, nxt)
    assert DESC.unpack(raw) == (addr, length, flags, nxt)


@given(ident=st.integers(0, 2**32 - 1), length=st.integers(0, 2**32 - 1), head=st.integers(0, 0xFFFF))
def test_ring_elements_fast_path_match_declaration(ident, length, head):
    assert VirtqUsedElem.build(dict(id=ident, len=length)) == USED_ELEM.pack(ident, length)
    assert VirtqAvailElem.build(head) == U16.pack(head)


@pytest.mark.parametrize("size", [1, 2, 16, 256, MAX_QUEUE_SIZE])
def test_area_sizes_match_declaration(size):
    assert DESC_SIZE == VirtqDesc.sizeof() == 16
    assert desc_table_size(size) == 16 * size
    assert avail_ring_size(size) == virtq_avail(size).sizeof() == 6 + 2 * size
    assert used_ring_size(size) == virtq_used(size).sizeof() == 6 + 8 * size


def test_pop_reads_an_avail_ring_built_by_the_declaration(mem, drv, q):
    for i in range(4):
        drv.write_desc(i, 0x200000 + 0x100 * i, 0x10)
    ring = [3, 1, 2, 0] + [0] * 12
    mem.write(drv.avail_ring, virtq_avail(16).build(dict(flags=0, idx=4, ring=ring, used_event=0)))
    heads = [q.pop(mem).head for _ in range(4)]
    assert heads == [3, 1, 2, 0]
    assert q.pop(mem) is None


def test_used_ring_written_matches_declaration(mem, drv, q):
    q.event_idx = True
    for head, length in [(5, 100), (2, 0), (15, 2**32 - 1)]:
        q.add_used(mem, head, length)
    for _ in range(3):
        drv.publish(0)
    drv.write_desc(0, 0x200000, 1)
    for _ in range(3):
        q.pop(mem)
    q.set_avail_event(mem)
    used = virtq_used(16).parse(mem.read(drv.used_ring, used_ring_size(16)))
    assert used.idx == 3
    assert [(e.id, e.len) for e in used.ring[:3]] == [(5, 100), (2, 0), (15, 2**32 - 1)]
    assert used.avail_event == 3


# --- is_valid ---

def test_valid_layout(mem, q):
    assert q.is_valid(mem)


@pytest.mark.parametrize("size", [0, 3, 12, 32, 17])
def test_size_must_be_power_of_two_within_max(mem, q, size):
    q.size = size
    assert not q.is_valid(mem)


@pytest.mark.parametrize("area,addr", [("desc_table", 0x10008), ("avail_ring", 0x11001), ("used_ring", 0x12002)])
def test_areas_must_be_aligned(mem, q, area, addr):
    setattr(q, area, addr)
    assert not q.is_valid(mem)


@pytest.mark.parametrize("area", ["desc_table", "avail_ring", "used_ring"])
def test_areas_must_lie_inside_ram(mem, q, area):
    setattr(q, area, mem.size - 16)
    assert not q.is_valid(mem)
    setattr(q, area, 1 << 40)
    assert not q.is_valid(mem)


def test_max_size_must_be_a_power_of_two():
    for bad in (0, 3, 65536):
        with pytest.raises(ValueError):
            SplitQueue(bad)


# --- pop ---

def test_pop_empty_and_not_ready(mem, drv, q):
    assert q.pop(mem) is None
    drv.add_chain([(drv.alloc(b"x"), 1, False)])
    q.ready = False
    assert q.pop(mem) is None
    q.ready = True
    assert q.pop(mem) is not None


def test_pop_follows_a_chain_and_helpers_move_data(mem, drv, q):
    out1, out2 = drv.alloc(b"hello "), drv.alloc(b"world")
    in1, in2 = drv.alloc(length=4), drv.alloc(length=8)
    head = drv.add_chain([(out1, 6, False), (out2, 5, False), (in1, 4, True), (in2, 8, True)])
    chain = q.pop(mem)
    assert chain.head == head
    assert chain.descriptors == [Descriptor(out1, 6, False), Descriptor(out2, 5, False),
                                 Descriptor(in1, 4, True), Descriptor(in2, 8, True)]
    assert [d.addr for d in chain.readable()] == [out1, out2]
    assert [d.addr for d in chain.writable()] == [in1, in2]
    assert (chain.readable_len, chain.writable_len) == (11, 12)
    assert chain.read_all(mem) == b"hello world"
    chain.check_direction()
    assert chain.write_into(mem, b"ABCDEFGHIJKLMNOP", skip=2) == 10     # 12 bytes of room, 2 skipped
    assert mem.read(in1, 4) == b"\0\0AB" and mem.read(in2, 8) == b"CDEFGHIJ"
    assert chain.write_into(mem, b"xyz", skip=11) == 1
    assert mem.read(in2 + 7, 1) == b"x"


def test_read_a_slice_of_the_readable_part(mem, drv, q):
    a, b, w = drv.alloc(b"0123"), drv.alloc(b"456789"), drv.alloc(length=4)
    drv.add_chain([(a, 4, False), (b, 6, False), (w, 4, True)])
    chain = q.pop(mem)
    assert chain.read(mem, 0, 16) == b"0123456789"       # writable part is not readable
    assert chain.read(mem, 2, 5) == b"23456"
    assert chain.read(mem, 4, 6) == b"456789"
    assert chain.read(mem, 9, 100) == b"9"
    assert chain.read(mem, 10, 1) == b"" and chain.read(mem, 3, 0) == b""


def test_check_direction_rejects_readable_after_writable(mem, drv, q):
    drv.add_chain([(drv.alloc(length=4), 4, True), (drv.alloc(b"late"), 4, False)])
    chain = q.pop(mem)
    with pytest.raises(QueueError):
        chain.check_direction()


def test_indirect_chain(mem, drv, q):
    a, b = drv.alloc(b"abc"), drv.alloc(length=9)
    head = drv.add_chain([(a, 3, False), (b, 9, True)], indirect=True)
    chain = q.pop(mem)
    assert chain.head == head
    assert chain.descriptors == [Descriptor(a, 3, False), Descriptor(b, 9, True)]


def test_direct_descriptors_then_an_indirect_table(mem, drv, q):
    a, b, c = drv.alloc(b"hdr"), drv.alloc(b"data"), drv.alloc(length=1)
    table = drv.alloc(length=32)
    drv.write_desc(0, b, 4, VIRTQ_DESC_F_NEXT, 1, table=table)
    drv.write_desc(1, c, 1, VIRTQ_DESC_F_WRITE, 0, table=table)
    drv.write_desc(0, a, 3, VIRTQ_DESC_F_NEXT, 1)
    drv.write_desc(1, table, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE)   # WRITE here is ignored
    drv.publish(0)
    chain = q.pop(mem)
    assert chain.descriptors == [Descriptor(a, 3, False), Descriptor(b, 4, False), Descriptor(c, 1, True)]


def malformed(mem, q, match):
    with pytest.raises(QueueError, match=match):
        q.pop(mem)


def test_head_out_of_range(mem, drv, q):
    drv.publish(16)
    malformed(mem, q, "head 16")


def test_next_out_of_range(mem, drv, q):
    drv.write_desc(0, 0x200000, 1, VIRTQ_DESC_F_NEXT, 16)
    drv.publish(0)
    malformed(mem, q, "chains to 16")


def test_loop_is_bounded(mem, drv, q):
    drv.write_desc(0, 0x200000, 1, VIRTQ_DESC_F_NEXT, 1)
    drv.write_desc(1, 0x200000, 1, VIRTQ_DESC_F_NEXT, 0)
    drv.publish(0)
    malformed(mem, q, "longer than the queue size")


def test_self_loop_is_bounded(mem, drv, q):
    drv.write_desc(3, 0x200000, 1, VIRTQ_DESC_F_NEXT, 3)
    drv.publish(3)
    malformed(mem, q, "longer than the queue size")


def test_chain_of_exactly_queue_size_is_fine(mem, drv, q):
    for i in range(16):
        drv.write_desc(i, 0x200000 + i, 1, VIRTQ_DESC_F_NEXT if i < 15 else 0, i + 1)
    drv.publish(0)
    assert len(q.pop(mem).descriptors) == 16


@pytest.mark.parametrize("addr,length", [(4 * MiB - 1, 2), (4 * MiB + 1, 0), (2**64 - 1, 2), (2**63, 2**32 - 1)])
def test_buffer_outside_ram(mem, drv, q, addr, length):
    drv.write_desc(0, addr, length)
    drv.publish(0)
    malformed(mem, q, "outside RAM|overflows")


def test_buffer_ending_at_ram_end_is_fine(mem, drv, q):
    drv.write_desc(0, 4 * MiB - 8, 8)
    drv.publish(0)
    assert q.pop(mem).descriptors == [Descriptor(4 * MiB - 8, 8, False)]


def test_next_and_indirect_together(mem, drv, q):
    drv.write_desc(0, drv.alloc(length=16), 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1)
    drv.publish(0)
    malformed(mem, q, "NEXT and INDIRECT")


def test_nested_indirect(mem, drv, q):
    table = drv.alloc(length=16)
    drv.write_desc(0, table, 16, VIRTQ_DESC_F_INDIRECT, table=table)
    drv.write_desc(0, table, 16, VIRTQ_DESC_F_INDIRECT)
    drv.publish(0)
    malformed(mem, q, "another indirect")


@pytest.mark.parametrize("length", [0, 8, 24, 17 * 16])
def test_indirect_table_length(mem, drv, q, length):
    drv.write_desc(0, drv.alloc(length=17 * 16), length, VIRTQ_DESC_F_INDIRECT)
    drv.publish(0)
    malformed(mem, q, "indirect table")


def test_indirect_table_outside_ram(mem, drv, q):
    drv.write_desc(0, 4 * MiB - 16, 32, VIRTQ_DESC_F_INDIRECT)
    drv.publish(0)
    malformed(mem, q, "outside RAM")


def test_indirect_needs_the_feature(mem, drv, q):
    q.indirect_desc = False
    drv.add_chain([(drv.alloc(b"x"), 1, False)], indirect=True)
    malformed(mem, q, "INDIRECT_DESC")


def test_indirect_next_outside_table_and_loop(mem, drv, q):
    table = drv.alloc(length=32)
    drv.write_desc(0, 0x200000, 1, VIRTQ_DESC_F_NEXT, 2, table=table)
    drv.write_desc(0, table, 32, VIRTQ_DESC_F_INDIRECT)
    drv.publish(0)
    malformed(mem, q, "outside its table")
    drv.write_desc(0, 0x200000, 1, VIRTQ_DESC_F_NEXT, 1, table=table)
    drv.write_desc(1, 0x200000, 1, VIRTQ_DESC_F_NEXT, 0, table=table)
    drv.publish(0)
    malformed(mem, q, "longer than its table")


def test_avail_idx_too_far_ahead(mem, drv, q):
    drv.set_avail_idx(17)
    malformed(mem, q, "ahead")
    assert q.next_avail == 0          # nothing consumed


def test_malformed_chain_is_consumed(mem, drv, q):
    drv.publish(99)
    drv.add_chain([(drv.alloc(b"ok"), 2, False)])
    malformed(mem, q, "head 99")
    assert q.pop(mem).descriptors[0].length == 2


def test_undo_pop(mem, drv, q):
    head = drv.add_chain([(drv.alloc(b"x"), 1, False)])
    assert q.pop(mem).head == head
    q.undo_pop()
    assert q.pop(mem).head == head
    assert q.pop(mem) is None


def test_free_running_indices_wrap(mem, drv, q):
    q.next_avail = q.next_used = 0xFFFE
    drv.avail_idx = 0xFFFE
    drv.last_used = 0xFFFE
    buf = drv.alloc(b"x")
    heads = [drv.add_chain([(buf, 1, False)]) for _ in range(4)]
    popped = []
    while (chain := q.pop(mem)) is not None:
        popped.append(chain.head)
        q.add_used(mem, chain.head, 7)
    assert popped == heads
    assert q.next_avail == 2 and drv.used_idx == 2
    assert drv.take_used() == [(h, 7) for h in heads]


# --- used side and notifications ---

def test_add_used_checks_its_arguments(mem, q):
    with pytest.raises(ValueError):
        q.add_used(mem, 16, 0)
    with pytest.raises(ValueError):
        q.add_used(mem, 0, 2**32)


def test_needs_notification_without_event_idx(mem, drv, q):
    q.add_used(mem, 0, 1)
    assert q.needs_notification(mem)
    drv.set_avail_flags(VIRTQ_AVAIL_F_NO_INTERRUPT)
    assert not q.needs_notification(mem)


@pytest.mark.parametrize("event,new,old,expected", [
    (0, 1, 0, True), (0, 2, 1, False), (4, 5, 0, True), (4, 4, 0, False), (5, 5, 5, False),
    (0xFFFF, 0, 0xFFFE, True), (0xFFFF, 3, 1, False)])
def test_vring_need_event(event, new, old, expected):
    assert vring_need_event(event, new, old) is expected


def test_needs_notification_with_event_idx(mem, drv, q):
    q.event_idx = True
    drv.set_avail_flags(VIRTQ_AVAIL_F_NO_INTERRUPT)      # ignored with EVENT_IDX
    q.add_used(mem, 0, 1)
    assert q.needs_notification(mem)                     # first time: always
    drv.set_used_event(3)                                # "interrupt me when used idx passes 3"
    q.add_used(mem, 0, 1)
    assert not q.needs_notification(mem)                 # idx 2
    q.add_used(mem, 0, 1)
    assert not q.needs_notification(mem)                 # idx 3
    q.add_used(mem, 0, 1)
    assert q.needs_notification(mem)                     # idx 4 passed used_event 3
    assert not q.needs_notification(mem)                 # nothing new


def test_set_avail_event(mem, drv, q):
    q.set_avail_event(mem)
    assert drv.avail_event == 0                          # not written without EVENT_IDX
    q.event_idx = True
    buf = drv.alloc(b"x")
    drv.add_chain([(buf, 1, False)])
    drv.add_chain([(buf, 1, False)])
    q.pop(mem)
    q.pop(mem)
    q.set_avail_event(mem)
    assert drv.avail_event == 2


def test_reset(mem, drv, q):
    drv.add_chain([(drv.alloc(b"x"), 1, False)])
    q.pop(mem)
    q.add_used(mem, 0, 1)
    generation = q.generation
    q.reset()
    assert (q.size, q.ready, q.desc_table, q.avail_ring, q.used_ring) == (16, False, 0, 0, 0)
    assert (q.next_avail, q.next_used, q.event_idx, q.indirect_desc) == (0, 0, False, False)
    assert q.generation == generation + 1


def test_operations_on_an_invalid_layout_raise_queue_error(mem, q):
    q.used_ring = mem.size
    with pytest.raises(QueueError):
        q.add_used(mem, 0, 0)
    with pytest.raises(QueueError):
        q.needs_notification(mem)


def test_descriptor_chain_repr_and_empty_helpers(mem):
    chain = DescriptorChain(3, [])
    assert "head=3" in repr(chain)
    assert chain.read_all(mem) == b"" and chain.write_into(mem, b"abc") == 0


# --- property: whatever the driver writes, pop stays inside RAM, stops, and raises only QueueError ---

PROP_RAM = 64 * 1024
DESC_BASE, AVAIL_BASE, USED_BASE, TABLES_BASE = 0x0, 0x1000, 0x2000, 0x3000
_prop_ram = None


def prop_ram():
    global _prop_ram
    if _prop_ram is None:
        _prop_ram = GuestRAM(PROP_RAM)
    _prop_ram.view[:] = bytes(PROP_RAM)
    return _prop_ram


def mostly(common, rare):
    """Draw from `common` about nine times in ten, else from `rare` (keeps chains long enough to matter)."""
    return st.integers(0, 9).flatmap(lambda k: common if k else rare)


@st.composite
def hostile_queues(draw):
    size = draw(st.sampled_from([1, 2, 4, 8, 16]))
    tables = [TABLES_BASE + 0x400 * i for i in range(4)]
    addrs = mostly(st.one_of(st.integers(0x8000, 0x9000), st.sampled_from(tables)),
                   st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([PROP_RAM - 1, PROP_RAM, 2**64 - 16])))
    lengths = mostly(st.one_of(st.integers(0, 64), st.sampled_from([16, 32, 16 * size, 16 * size + 16])),
                     st.integers(0, 2**32 - 1))
    flags = mostly(st.sampled_from([0, 1, 1, 1, 2, 3, 3, 3, 4, 6]), st.integers(0, 0xFFFF))
    nexts = mostly(st.integers(0, size - 1), st.integers(0, 0xFFFF))
    desc = st.tuples(addrs, lengths, flags, nexts)
    next_avail = draw(mostly(st.just(0), st.integers(0, 0xFFFF)))
    return dict(
        size=size,
        descs=draw(st.lists(desc, min_size=size, max_size=size)),
        tables=[draw(st.lists(desc, min_size=0, max_size=2 * size)) for _ in tables],
        ring=draw(st.lists(mostly(st.integers(0, size - 1), st.integers(0, 0xFFFF)), min_size=size,
                           max_size=size)),
        avail_idx=(next_avail + draw(mostly(st.integers(0, size), st.integers(0, 0xFFFF)))) & 0xFFFF,
        next_avail=next_avail,
        indirect=draw(st.booleans()),
        tables_at=tables)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_queues())
def test_pop_never_misbehaves(setup):
    mem = prop_ram()
    size = setup["size"]
    for i, d in enumerate(setup["descs"]):
        mem.write(DESC_BASE + 16 * i, DESC.pack(*d))
    for base, table in zip(setup["tables_at"], setup["tables"]):
        for i, d in enumerate(table):
            mem.write(base + 16 * i, DESC.pack(*d))
    for i, head in enumerate(setup["ring"]):
        mem.write(AVAIL_BASE + 4 + 2 * i, U16.pack(head))
    mem.write(AVAIL_BASE + 2, U16.pack(setup["avail_idx"]))
    q = SplitQueue(size)
    q.desc_table, q.avail_ring, q.used_ring = DESC_BASE, AVAIL_BASE, USED_BASE
    q.indirect_desc, q.ready = setup["indirect"], True
    q.next_avail = setup["next_avail"]
    for _ in range(size + 2):           # more pops than heads: must run dry or keep raising
        try:
            chain = q.pop(mem)
        except QueueError:
            continue
        if chain is None:
            break
        assert 0 <= chain.head < size
        assert 1 <= len(chain.descriptors) <= 2 * size       # direct part + one indirect table, each <= size
        for d in chain.descriptors:
            assert 0 <= d.addr and d.addr + d.length <= PROP_RAM
        chain.read_all(mem)
        chain.write_into(mem, bytes(64))
