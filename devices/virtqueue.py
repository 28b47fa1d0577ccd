"""The device's side of a split virtqueue (virtio 1.2, section 2.7), modelled on rust-vmm's virtio-queue.

A queue owns no memory: every call that touches the rings takes `mem`, guest RAM with `.size` and `.view`
(a writable memoryview of all of guest-physical memory starting at 0). Every address and length the driver
supplies is checked against RAM and every walk is bounded, so a hostile driver earns a QueueError, never a
hang or an access outside RAM.

Layouts are declared once with construct in devices/layouts.py (`VirtqDesc`, `virtq_avail`, `virtq_used`); the
queue reads them with the `struct`s tools/gen_layouts.py derives from them, and tests/test_virtqueue.py holds
the two to each other.
"""
from typing import NamedTuple

import cython_ext

from . import layouts_struct

_virtq = cython_ext.load("virtq")       # the chain walk, native unless BALLAST_PURE=1

VIRTQ_DESC_F_NEXT = 1
VIRTQ_DESC_F_WRITE = 2          # device writes (otherwise device reads)
VIRTQ_DESC_F_INDIRECT = 4
VIRTQ_AVAIL_F_NO_INTERRUPT = 1
VIRTQ_USED_F_NO_NOTIFY = 1
MAX_QUEUE_SIZE = 32768

# Alignment of the three areas (virtio 1.2, 2.7: "Virtqueue Alignment").
DESC_TABLE_ALIGN = 16
AVAIL_RING_ALIGN = 2
USED_RING_ALIGN = 4

# --- the layouts (declared in devices/layouts.py) ---
DESC = layouts_struct.VirtqDesc
DESC_SIZE = DESC.size
U16 = layouts_struct.VirtqAvailElem     # flags, idx, avail ring element, used_event, avail_event
USED_ELEM = layouts_struct.VirtqUsedElem
RING_HEADER_SIZE = 4                 # flags + idx in front of both rings


def desc_table_size(size: int) -> int:
    return DESC_SIZE * size


def avail_ring_size(size: int) -> int:
    return RING_HEADER_SIZE + U16.size * size + U16.size


def used_ring_size(size: int) -> int:
    return RING_HEADER_SIZE + USED_ELEM.size * size + U16.size


def vring_need_event(event_idx: int, new_idx: int, old_idx: int) -> bool:
    """The spec's test (2.7.10): did the ring index pass event_idx while moving from old_idx to new_idx?"""
    return (new_idx - event_idx - 1) & 0xFFFF < (new_idx - old_idx) & 0xFFFF


class QueueError(Exception):
    """The driver broke the ring protocol (a malformed chain or ring); the device must not trust the queue."""


class Descriptor(NamedTuple):
    """One buffer of a descriptor chain, checked against guest RAM."""
    addr: int
    length: int
    is_write: bool      # device-writable


class DescriptorChain:
    """One popped request: its head index and its buffers, already checked to lie inside RAM.

    Buffers are kept as (addr, length, is_write) tuples, as the chain walk makes them; `descriptors`
    builds Descriptor objects only when asked."""
    __slots__ = ("head", "raw", "readable_len", "writable_len", "ordered", "_descriptors")

    def __init__(self, head: int, descriptors: list, raw: list = None, readable_len: int = None,
                 writable_len: int = None, ordered: bool = None):
        self.head = head
        if raw is None:
            raw = [(d.addr, d.length, d.is_write) for d in descriptors]
            self._descriptors = descriptors
        else:
            self._descriptors = None
        self.raw = raw
        if readable_len is None:
            readable_len = sum(length for _, length, w in raw if not w)
            writable_len = sum(length for _, length, w in raw if w)
            seen_write, ordered = False, True
            for _, _, w in raw:
                if w:
                    seen_write = True
                elif seen_write:
                    ordered = False
        self.readable_len, self.writable_len, self.ordered = readable_len, writable_len, ordered

    @property
    def descriptors(self) -> list:
        if self._descriptors is None:
            self._descriptors = [Descriptor(a, n, w) for a, n, w in self.raw]
        return self._descriptors

    def __repr__(self):
        return f"DescriptorChain(head={self.head}, descriptors={self.descriptors!r})"

    def readable(self) -> list:
        return [d for d in self.descriptors if not d.is_write]

    def writable(self) -> list:
        return [d for d in self.descriptors if d.is_write]

    def check_direction(self) -> None:
        """Device-readable buffers must all come before device-writable ones (2.7.4.2, a driver MUST)."""
        if not self.ordered:
            raise QueueError(f"chain {self.head}: a device-readable buffer follows a device-writable one")

    def read_all(self, mem) -> bytes:
        """The device-readable part, concatenated."""
        view = mem.view
        return b"".join(view[a:a + n] for a, n, w in self.raw if not w)

    def read(self, mem, offset: int, length: int) -> bytes:
        """Up to `length` bytes of the device-readable part, starting `offset` bytes in."""
        view = mem.view
        parts = []
        for addr, dlen, is_write in self.raw:
            if is_write:
                continue
            if offset >= dlen:
                offset -= dlen
                continue
            n = min(dlen - offset, length)
            if n <= 0:
                break
            start = addr + offset
            parts.append(view[start:start + n])
            length -= n
            offset = 0
        return b"".join(parts)

    def writable_views(self, mem, length: int) -> list:
        """The first `length` device-writable bytes as views of guest memory (zero-copy DMA)."""
        view, out = mem.view, []
        for addr, dlen, is_write in self.raw:
            if length <= 0:
                break
            if is_write:
                n = min(dlen, length)
                out.append(view[addr:addr + n])
                length -= n
        return out

    def write_into(self, mem, data, skip: int = 0) -> int:
        """Copy data into the device-writable buffers, starting `skip` bytes in; returns bytes written."""
        view = mem.view
        data = memoryview(data).cast("B")
        done = 0
        for addr, dlen, is_write in self.raw:
            if not is_write:
                continue
            if skip >= dlen:
                skip -= dlen
                continue
            n = min(dlen - skip, len(data) - done)
            if n <= 0:
                break
            start = addr + skip
            view[start:start + n] = data[done:done + n]
            done += n
            skip = 0
        return done


class SplitQueue:
    """One split virtqueue as the device sees it. The transport sets the fields; the device pops and adds used."""

    def __init__(self, max_size: int):
        if not 0 < max_size <= MAX_QUEUE_SIZE or max_size & (max_size - 1):
            raise ValueError(f"queue max size {max_size} is not a power of two in 1..{MAX_QUEUE_SIZE}")
        self.max_size = max_size
        self._checked_layout = None
        self.generation = 0     # bumped by reset(): lets a device drop completions meant for an older queue
        self.reset()

    def reset(self) -> None:
        self.size = self.max_size
        self.ready = False
        self.desc_table = 0
        self.avail_ring = 0
        self.used_ring = 0
        self.event_idx = False          # VIRTIO_F_EVENT_IDX negotiated
        self.indirect_desc = False      # VIRTIO_F_INDIRECT_DESC negotiated
        self.next_avail = 0
        self.next_used = 0
        self.signalled_used = None      # next_used when needs_notification last looked (EVENT_IDX)
        self.generation += 1

    # --- layout ---
    def is_valid(self, mem) -> bool:
        """Size a power of two within max_size; areas aligned as the spec requires and inside RAM.

        Readiness is the transport's business, not part of this check."""
        return self._layout_problem(mem) is None

    def _layout_problem(self, mem):
        n = self.size
        if not 0 < n <= self.max_size or n & (n - 1):
            return f"size {n} is not a power of two in 1..{self.max_size}"
        if self.desc_table % DESC_TABLE_ALIGN or self.avail_ring % AVAIL_RING_ALIGN \
                or self.used_ring % USED_RING_ALIGN:
            return "a ring area is misaligned"
        for name, addr, length in (("descriptor table", self.desc_table, desc_table_size(n)),
                                   ("avail ring", self.avail_ring, avail_ring_size(n)),
                                   ("used ring", self.used_ring, used_ring_size(n))):
            if addr < 0 or addr + length > mem.size:
                return f"{name} {addr:#x}+{length:#x} lies outside RAM"
        return None

    def _require_valid(self, mem) -> None:
        # the layout changes only when the transport writes registers: check each layout once (the
        # callers compare the layout inline first: several of them run per request)
        layout = (self.size, self.desc_table, self.avail_ring, self.used_ring, mem.size)
        if layout == self._checked_layout:
            return
        problem = self._layout_problem(mem)
        if problem is not None:
            raise QueueError(problem)
        self._checked_layout = layout

    # --- the available side ---
    def available(self, mem) -> int:
        """How many heads the driver has made available that the device has not popped."""
        if not self.ready:
            return 0
        if (self.size, self.desc_table, self.avail_ring, self.used_ring, mem.size) != self._checked_layout:
            self._require_valid(mem)
        avail_idx = U16.unpack_from(mem.view, self.avail_ring + 2)[0]
        pending = (avail_idx - self.next_avail) & 0xFFFF
        if pending > self.size:
            raise QueueError(f"avail idx {avail_idx} is {pending} ahead of the device, more than the queue size")
        return pending

    def pop(self, mem):
        """The next available chain, or None. A malformed chain is consumed and raises QueueError."""
        if not self.ready:
            return None
        if (self.size, self.desc_table, self.avail_ring, self.used_ring, mem.size) != self._checked_layout:
            self._require_valid(mem)
        try:
            got = _virtq.pop_chain(mem.view, mem.size, self.desc_table, self.avail_ring, self.size, self.next_avail,
                                   self.indirect_desc)
        except IndexError as err:           # avail idx too far ahead: nothing consumed
            raise QueueError(str(err)) from None
        except ValueError as err:           # a broken chain: consumed
            self.next_avail = (self.next_avail + 1) & 0xFFFF
            raise QueueError(str(err)) from None
        if got is None:
            return None
        self.next_avail = (self.next_avail + 1) & 0xFFFF
        head, raw, readable, writable, ordered = got
        return DescriptorChain(head, None, raw, readable, writable, ordered)

    def undo_pop(self) -> None:
        """Give the last popped head back (the device could not take it now)."""
        self.next_avail = (self.next_avail - 1) & 0xFFFF

    # --- the used side ---
    def add_used(self, mem, head: int, length: int) -> None:
        """Return a chain to the driver, `length` bytes written into its device-writable buffers."""
        if not 0 <= head < self.size:
            raise ValueError(f"head {head} is not below the queue size {self.size}")
        if not 0 <= length <= 0xFFFFFFFF:
            raise ValueError(f"used length {length} does not fit in le32")
        if (self.size, self.desc_table, self.avail_ring, self.used_ring, mem.size) != self._checked_layout:
            self._require_valid(mem)
        view = mem.view
        slot = self.used_ring + RING_HEADER_SIZE + USED_ELEM.size * (self.next_used % self.size)
        USED_ELEM.pack_into(view, slot, head, length)
        self.next_used = (self.next_used + 1) & 0xFFFF
        U16.pack_into(view, self.used_ring + 2, self.next_used)     # publish after the element

    def needs_notification(self, mem) -> bool:
        """Should the device interrupt the driver for what it added since it last asked?"""
        if (self.size, self.desc_table, self.avail_ring, self.used_ring, mem.size) != self._checked_layout:
            self._require_valid(mem)
        view = mem.view
        if self.event_idx:
            new, old = self.next_used, self.signalled_used
            self.signalled_used = new
            if old is None:
                return True
            used_event = U16.unpack_from(view, self.avail_ring + RING_HEADER_SIZE + U16.size * self.size)[0]
            return (new - used_event - 1) & 0xFFFF < (new - old) & 0xFFFF      # vring_need_event()
        return not U16.unpack_from(view, self.avail_ring)[0] & VIRTQ_AVAIL_F_NO_INTERRUPT

    def set_avail_event(self, mem) -> None:
        """With EVENT_IDX: ask the driver to notify when it makes the next head available."""
        if not self.event_idx:
            return
        if (self.size, self.desc_table, self.avail_ring, self.used_ring, mem.size) != self._checked_layout:
            self._require_valid(mem)
        U16.pack_into(mem.view, self.used_ring + RING_HEADER_SIZE + USED_ELEM.size * self.size,
                      self.next_avail)

