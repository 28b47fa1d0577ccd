"""The driver's half of a split virtqueue (drivers/virtio/virtio_ring.c), in guest memory.

The descriptor table, avail ring and used ring live in pages the kernel
allocated; the device sees them only through guest-physical addresses."""
import struct

import cython_ext

_virtq = cython_ext.load("virtq")       # add and detach, native unless BALLAST_PURE=1

VRING_DESC_F_NEXT = 1
VRING_DESC_F_WRITE = 2
VRING_AVAIL_F_NO_INTERRUPT = 1
VRING_USED_F_NO_NOTIFY = 1

_DESC = struct.Struct("<QIHH")
_U16 = struct.Struct("<H")


def vring_need_event(event_idx: int, new_idx: int, old_idx: int) -> bool:
    """The spec's test: did the index pass event_idx in (old, new]?"""
    return (new_idx - event_idx - 1) & 0xFFFF < (new_idx - old_idx) & 0xFFFF


class VringVirtqueue:
    def __init__(self, k, index: int, num: int, event_idx: bool, notify):
        self.k = k
        self.index = index
        self.num = num
        self.event_idx = event_idx
        self.notify = notify                   # callable(): write QueueNotify
        ram = k.ram
        self.pages = [k.page_alloc.alloc_pages() for _ in range(3)]
        if any(p == 0xFFFFFFFF for p in self.pages):
            raise MemoryError("virtqueue: out of memory")
        for p in self.pages:
            ram[p << 12:(p + 1) << 12] = bytes(4096)
        self.desc_paddr, self.avail_paddr, self.used_paddr = (p << 12 for p in self.pages)
        self.used_event_paddr = self.avail_paddr + 4 + 2 * num     # avail->used_event (EVENT_IDX)
        self.avail_event_paddr = self.used_paddr + 4 + 8 * num     # used->avail_event (EVENT_IDX)
        assert 16 * num <= 4096 and 6 + 8 * num <= 4096
        self.ram = ram
        self.free_head = 0
        self.num_free = num
        # desc_next mirrors each descriptor's next field (Linux's desc_extra): only the driver writes them
        self.desc_next = [(i + 1) % num for i in range(num)]
        for i in range(num):
            _DESC.pack_into(ram, self.desc_paddr + 16 * i, 0, 0, 0, self.desc_next[i])
        self.avail_idx = 0                     # shadow of avail->idx
        self.last_used_idx = 0
        self.num_added = 0
        self.tokens = [None] * num             # head -> the caller's token
        self.chain_len = [0] * num
        self.kicks = 0

    def add_sgs(self, sgs, token) -> bool:
        """sgs: [(paddr, length, device_writes)], readable ones first. False when full."""
        n = len(sgs)
        if n == 0 or n > self.num_free:
            return False
        head = self.free_head
        self.free_head = _virtq.add_chain(self.ram, self.desc_paddr, self.avail_paddr, self.num, self.desc_next,
                                          head, self.avail_idx, sgs)
        self._made_available(head, n, token)
        return True

    def add_request(self, header, segments, device_writes: bool, status, token) -> bool:
        """add_sgs([(*header, False), *((paddr, length, device_writes) for paddr, length in segments),
        (*status, True)]) without building that list (a block request). False when full."""
        n = len(segments) + 2
        if n > self.num_free:
            return False
        head = self.free_head
        self.free_head = _virtq.add_request_chain(self.ram, self.desc_paddr, self.avail_paddr, self.num,
                                                  self.desc_next, head, self.avail_idx, header, segments,
                                                  device_writes, status)
        self._made_available(head, n, token)
        return True

    def _made_available(self, head: int, n: int, token) -> None:
        """A chain of n descriptors at head is on the avail ring: account for it."""
        self.num_free -= n
        self.tokens[head] = token
        self.chain_len[head] = n
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.num_added += 1

    def kick(self) -> None:
        """Notify the device unless it asked us not to (virtqueue_kick_prepare)."""
        old = (self.avail_idx - self.num_added) & 0xFFFF
        new = self.avail_idx
        self.num_added = 0
        if self.event_idx:
            avail_event = _U16.unpack_from(self.ram, self.avail_event_paddr)[0]
            needed = (new - avail_event - 1) & 0xFFFF < (new - old) & 0xFFFF     # vring_need_event
        else:
            needed = not _U16.unpack_from(self.ram, self.used_paddr)[0] & VRING_USED_F_NO_NOTIFY
        if needed:
            self.kicks += 1
            self.notify()

    def enable_cb_delayed(self, pending: int) -> None:
        """Ask for one interrupt when `pending` more buffers are used, not one per buffer
        (virtqueue_enable_cb_delayed; needs EVENT_IDX, else every completion interrupts)."""
        if self.event_idx:
            used_event = (self.last_used_idx + (pending if pending > 1 else 1) - 1) & 0xFFFF
            _U16.pack_into(self.ram, self.used_event_paddr, used_event)

    def get_buf(self):
        """(token, used length) of the next completed chain, or None."""
        if _U16.unpack_from(self.ram, self.used_paddr + 2)[0] == self.last_used_idx:      # !more_used()
            return None
        got = _virtq.detach_used(self.ram, self.desc_paddr, self.used_paddr, self.num, self.desc_next,
                                 self.chain_len, self.last_used_idx, self.free_head)
        if got is None:
            return None
        head, length, n = got
        self.last_used_idx = (self.last_used_idx + 1) & 0xFFFF
        token = self.tokens[head]
        self.tokens[head] = None
        self.free_head = head               # detach_buf(): the chain is back on the free list
        self.num_free += n
        return token, length
