"""The driver's half of a split virtqueue (drivers/virtio/virtio_ring.c), in guest memory.

The descriptor table, avail ring and used ring live in pages the kernel
allocated; the device sees them only through guest-physical addresses."""
import struct

VRING_DESC_F_NEXT = 1
VRING_DESC_F_WRITE = 2
VRING_AVAIL_F_NO_INTERRUPT = 1
VRING_USED_F_NO_NOTIFY = 1

_DESC = struct.Struct("<QIHH")
_U16 = struct.Struct("<H")
_USED_ELEM = struct.Struct("<II")


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
        ram, base, desc_next, pack = self.ram, self.desc_paddr, self.desc_next, _DESC.pack_into
        head = i = self.free_head
        last = n - 1
        for j, (paddr, length, writable) in enumerate(sgs):
            flags = (VRING_DESC_F_WRITE if writable else 0) | (VRING_DESC_F_NEXT if j < last else 0)
            nxt = desc_next[i]
            pack(ram, base + 16 * i, paddr, length, flags, nxt)
            i = nxt
        self.free_head = i
        self.num_free -= n
        self.tokens[head] = token
        self.chain_len[head] = n
        avail_idx = self.avail_idx
        _U16.pack_into(ram, self.avail_paddr + 4 + 2 * (avail_idx % self.num), head)
        self.avail_idx = avail_idx = (avail_idx + 1) & 0xFFFF
        _U16.pack_into(ram, self.avail_paddr + 2, avail_idx)     # after the entry: a barrier
        self.num_added += 1
        return True

    def kick(self) -> None:
        """Notify the device unless it asked us not to (virtqueue_kick_prepare)."""
        old = (self.avail_idx - self.num_added) & 0xFFFF
        new = self.avail_idx
        self.num_added = 0
        if self.event_idx:
            avail_event = _U16.unpack_from(self.ram, self.used_paddr + 4 + 8 * self.num)[0]
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
            used_event = (self.last_used_idx + max(pending, 1) - 1) & 0xFFFF
            _U16.pack_into(self.ram, self.avail_paddr + 4 + 2 * self.num, used_event)

    def get_buf(self):
        """(token, used length) of the next completed chain, or None."""
        ram = self.ram
        last_used = self.last_used_idx
        if _U16.unpack_from(ram, self.used_paddr + 2)[0] == last_used:
            return None
        head, length = _USED_ELEM.unpack_from(ram, self.used_paddr + 4 + 8 * (last_used % self.num))
        self.last_used_idx = (last_used + 1) & 0xFFFF
        token = self.tokens[head]
        self.tokens[head] = None
        # detach_buf(): return the chain to the free list
        n = self.chain_len[head]
        desc_next = self.desc_next
        i = head
        for _ in range(n - 1):
            i = desc_next[i]
        desc_next[i] = self.free_head
        _U16.pack_into(ram, self.desc_paddr + 16 * i + 14, self.free_head)
        self.free_head = head
        self.num_free += n
        return token, length
