"""Split virtqueues (virtio 1.2, 2.7) in guest RAM. The device's half: popping and walking one descriptor chain
(2.7.5, 2.7.5.3), the hot part of devices.virtqueue.SplitQueue.pop, and a look at virtio-blk's commonest
request without taking it (devices.virtio_blk's fast path). The driver's half: adding a chain and
detaching a used one (Linux's virtqueue_add_split and detach_buf_split), the hot part of
guestos.drivers.virtio_ring. One source in Cython's pure-Python mode: compiled it reads the descriptors
straight from guest RAM; uncompiled (BALLAST_PURE=1) it is plain Python that pdb can step through.

The queue owns no memory: RAM comes with every call. Every descriptor is checked against RAM, the walk is
bounded by the queue size (by the table size inside an indirect table), and a broken chain raises ValueError
with the message the queue turns into a QueueError."""
import cython

NEXT = cython.declare(cython.uint, 1)             # C constants: no Python ints in the walk
WRITE = cython.declare(cython.uint, 2)
INDIRECT = cython.declare(cython.uint, 4)
DESC_SIZE = cython.declare(cython.Py_ssize_t, 16)
LOW32 = cython.declare(cython.ulonglong, 0xFFFFFFFF)  # a literal above INT_MAX would make `&` a Python operation


@cython.cfunc
@cython.inline
@cython.boundscheck(False)
@cython.wraparound(False)
def _u16(ram: cython.uchar[::1], off: cython.Py_ssize_t) -> cython.uint:
    return ram[off] | (ram[off + 1] << 8)


@cython.cfunc
@cython.inline
@cython.boundscheck(False)
@cython.wraparound(False)
def _u32(ram: cython.uchar[::1], off: cython.Py_ssize_t) -> cython.uint:
    return ram[off] | (ram[off + 1] << 8) | (ram[off + 2] << 16) | (ram[off + 3] << 24)


@cython.cfunc
@cython.inline
@cython.boundscheck(False)
@cython.wraparound(False)
def _u64(ram: cython.uchar[::1], off: cython.Py_ssize_t) -> cython.ulonglong:
    lo: cython.ulonglong = _u32(ram, off)
    hi: cython.ulonglong = _u32(ram, off + 4)
    return lo | (hi << 32)


@cython.cfunc
def _outside(ram_size: cython.Py_ssize_t, addr: cython.ulonglong, length: cython.uint, what) -> str:
    """_check_buffer of devices.virtqueue: None when addr+length lies in RAM, else the complaint."""
    if addr > cython.cast(cython.ulonglong, ram_size) or length > ram_size - cython.cast(cython.Py_ssize_t, addr):
        if int(addr) + int(length) > 1 << 64:
            return f"descriptor {what}: addr {int(addr):#x} + len {int(length):#x} overflows 64 bits"
        return f"descriptor {what}: {int(addr):#x}+{int(length):#x} lies outside RAM"
    return None


@cython.ccall                           # pop_chain and peek_blk_in call it in C
@cython.boundscheck(False)
@cython.wraparound(False)
def walk_chain(ram: cython.uchar[::1], ram_size: cython.Py_ssize_t, desc_table: cython.Py_ssize_t,
               size: cython.Py_ssize_t, head: cython.Py_ssize_t, indirect_ok: cython.bint) -> tuple:
    """The chain from `head`: (descriptors [(addr, length, is_write)], readable bytes, writable bytes,
    ordered), ordered meaning no device-readable buffer follows a device-writable one. ram_size bounds
    every buffer; the descriptor table [desc_table, +16*size) must lie in it (the queue checked its layout)."""
    if ram_size > len(ram):
        ram_size = len(ram)
    if desc_table < 0 or size <= 0 or desc_table + DESC_SIZE * size > ram_size:
        raise ValueError(f"descriptor table {desc_table:#x} of {size} entries lies outside RAM")
    if head >= size:
        raise ValueError(f"head {head} is not below the queue size {size}")
    out = []
    readable: cython.Py_ssize_t = 0
    writable: cython.Py_ssize_t = 0
    ordered: cython.bint = True
    seen_write: cython.bint = False
    index: cython.Py_ssize_t = head
    n: cython.Py_ssize_t
    off: cython.Py_ssize_t
    addr: cython.ulonglong
    length: cython.uint
    flags: cython.uint
    nxt: cython.uint
    count: cython.Py_ssize_t
    table: cython.Py_ssize_t
    problem: str
    for n in range(size):           # a chain of more than size descriptors is a loop or a driver bug
        off = desc_table + DESC_SIZE * index
        addr = _u64(ram, off)
        length = _u32(ram, off + 8)
        flags = _u16(ram, off + 12)
        nxt = _u16(ram, off + 14)
        if flags & INDIRECT:
            if flags & NEXT:
                raise ValueError(f"descriptor {index} sets both NEXT and INDIRECT")
            if not indirect_ok:
                raise ValueError("an indirect descriptor without VIRTIO_F_INDIRECT_DESC")
            if length == 0 or length % DESC_SIZE:
                raise ValueError(f"indirect table length {length} is not a positive multiple of {DESC_SIZE}")
            count = length // DESC_SIZE
            if count > size:
                raise ValueError(f"indirect table of {count} descriptors is larger than the queue size {size}")
            problem = _outside(ram_size, addr, length, "indirect table")
            if problem is not None:
                raise ValueError(problem)
            table = cython.cast(cython.Py_ssize_t, addr)
            index = 0
            for n in range(count):
                off = table + DESC_SIZE * index
                addr = _u64(ram, off)
                length = _u32(ram, off + 8)
                flags = _u16(ram, off + 12)
                nxt = _u16(ram, off + 14)
                if flags & INDIRECT:
                    raise ValueError(f"indirect descriptor {index} points to another indirect table")
                problem = _outside(ram_size, addr, length, f"indirect {index}")
                if problem is not None:
                    raise ValueError(problem)
                if flags & WRITE:
                    writable += length
                    seen_write = True
                    out.append((addr, length, True))
                else:
                    readable += length
                    if seen_write:
                        ordered = False
                    out.append((addr, length, False))
                if not flags & NEXT:
                    return out, readable, writable, ordered
                if nxt >= count:
                    raise ValueError(f"indirect descriptor {index} chains to {nxt}, outside its table of {count}")
                index = nxt
            raise ValueError(f"indirect chain is longer than its table of {count} descriptors (a loop?)")
        problem = _outside(ram_size, addr, length, index)
        if problem is not None:
            raise ValueError(problem)
        if flags & WRITE:
            writable += length
            seen_write = True
            out.append((addr, length, True))
        else:
            readable += length
            if seen_write:
                ordered = False
            out.append((addr, length, False))
        if not flags & NEXT:
            return out, readable, writable, ordered
        if nxt >= size:
            raise ValueError(f"descriptor {index} chains to {nxt}, not below the queue size {size}")
        index = nxt
    raise ValueError(f"chain from head {head} is longer than the queue size {size} (a loop?)")


@cython.boundscheck(False)
@cython.wraparound(False)
def pop_chain(ram: cython.uchar[::1], ram_size: cython.Py_ssize_t, desc_table: cython.Py_ssize_t,
              avail_ring: cython.Py_ssize_t, size: cython.Py_ssize_t, next_avail: cython.Py_ssize_t,
              indirect_ok: cython.bint):
    """The chain the driver made available at next_avail: (head, descriptors, readable, writable, ordered)
    as walk_chain gives them, or None when the avail ring holds nothing new. IndexError when avail->idx
    runs more than `size` ahead (nothing is consumed); ValueError for a broken chain (its head is)."""
    if ram_size > len(ram):
        ram_size = len(ram)
    if avail_ring < 0 or size <= 0 or avail_ring + 4 + 2 * size > ram_size:
        raise IndexError(f"avail ring {avail_ring:#x} of {size} entries lies outside RAM")
    avail_idx: cython.Py_ssize_t = _u16(ram, avail_ring + 2)
    pending: cython.Py_ssize_t = (avail_idx - next_avail) & 0xFFFF
    if pending == 0:
        return None
    if pending > size:
        raise IndexError(f"avail idx {avail_idx} is {pending} ahead of the device, more than the queue size")
    head: cython.Py_ssize_t = _u16(ram, avail_ring + 4 + 2 * (next_avail % size))
    descriptors, readable, writable, ordered = walk_chain(ram, ram_size, desc_table, size, head, indirect_ok)
    return head, descriptors, readable, writable, ordered


# --- the driver's half ---

@cython.cfunc
@cython.inline
@cython.boundscheck(False)
@cython.wraparound(False)
def _put_u16(ram: cython.uchar[::1], off: cython.Py_ssize_t, v: cython.uint) -> cython.void:
    ram[off] = v & 0xFF
    ram[off + 1] = (v >> 8) & 0xFF


@cython.cfunc
@cython.inline
@cython.boundscheck(False)
@cython.wraparound(False)
def _put_u32(ram: cython.uchar[::1], off: cython.Py_ssize_t, v: cython.ulonglong) -> cython.void:
    ram[off] = v & 0xFF
    ram[off + 1] = (v >> 8) & 0xFF
    ram[off + 2] = (v >> 16) & 0xFF
    ram[off + 3] = (v >> 24) & 0xFF


@cython.boundscheck(False)
@cython.wraparound(False)
def peek_blk_in(next_avail: cython.Py_ssize_t, ram: cython.uchar[::1], ram_size: cython.Py_ssize_t,
                desc_table: cython.Py_ssize_t, avail_ring: cython.Py_ssize_t, size: cython.Py_ssize_t,
                indirect_ok: cython.bint, capacity: cython.Py_ssize_t, max_bytes: cython.Py_ssize_t,
                avail_event: cython.Py_ssize_t = -1):
    """virtio-blk's common request without consuming it: the chain at next_avail if it is a well-formed IN
    of whole 4 KiB pages (header alone in the first descriptor, no other readable bytes, the data before a
    status byte, the range inside capacity and max_bytes): (head, runs [(addr, len)] of the data, buffers
    that continue each other in RAM joined, data length, byte offset, status byte address). 0 when nothing is pending; None for anything else (the
    caller's full path pops and judges it). Every address comes from walk_chain, checked against RAM.
    With EVENT_IDX, avail_event is the used ring's avail_event field: when nothing is pending, next_avail
    is published there and the avail ring looked at again (as the device's set_avail_event, available)."""
    if ram_size > len(ram):
        ram_size = len(ram)
    if avail_ring < 0 or size <= 0 or avail_ring + 4 + 2 * size > ram_size:
        return None
    pending: cython.Py_ssize_t = (_u16(ram, avail_ring + 2) - next_avail) & 0xFFFF
    if pending == 0:
        if avail_event < 0:
            return 0
        if avail_event + 2 > ram_size:
            return None
        _put_u16(ram, avail_event, next_avail & 0xFFFF)
        pending = (_u16(ram, avail_ring + 2) - next_avail) & 0xFFFF
        if pending == 0:
            return 0
    if pending > size:
        return None
    head: cython.Py_ssize_t = _u16(ram, avail_ring + 4 + 2 * (next_avail % size))
    try:
        raw, readable, writable, ordered = walk_chain(ram, ram_size, desc_table, size, head, indirect_ok)
    except ValueError:
        return None
    if not ordered or readable != 16 or writable <= 1:
        return None
    first_addr, first_len, first_writes = raw[0]
    last_addr, last_len, last_writes = raw[len(raw) - 1]
    if first_writes or first_len < 16 or not last_writes or last_len == 0:
        return None
    hdr: cython.Py_ssize_t = first_addr
    if _u32(ram, hdr) != 0:                         # VIRTIO_BLK_T_IN
        return None
    sector: cython.ulonglong = _u64(ram, hdr + 8)
    length: cython.Py_ssize_t = writable - 1
    if length > max_bytes or length & 4095 or sector > cython.cast(cython.ulonglong, capacity) >> 9:
        return None
    offset: cython.Py_ssize_t = cython.cast(cython.Py_ssize_t, sector) << 9
    if offset & 4095 or offset + length > capacity:
        return None
    # the data's runs of RAM: the writable buffers before the status byte, a buffer that continues the
    # previous one in RAM joined to it (a driver's physically contiguous pages are one run), empty ones left out
    runs = []
    left: cython.Py_ssize_t = length
    n: cython.Py_ssize_t
    a: cython.Py_ssize_t
    run_addr: cython.Py_ssize_t = 0
    run_len: cython.Py_ssize_t = 0
    for addr, dlen, is_write in raw:
        if is_write and left > 0:
            n = dlen
            if n > left:
                n = left
            left -= n
            if n == 0:
                continue
            a = addr
            if run_len and run_addr + run_len == a:
                run_len += n
            else:
                if run_len:
                    runs.append((run_addr, run_len))
                run_addr = a
                run_len = n
    if run_len:
        runs.append((run_addr, run_len))
    return head, runs, length, offset, last_addr + last_len - 1


@cython.cfunc
def _check_rings(ram: cython.uchar[::1], desc_table: cython.Py_ssize_t, avail_ring: cython.Py_ssize_t,
                 num: cython.Py_ssize_t) -> cython.void:
    if num <= 0 or desc_table < 0 or avail_ring < 0 or desc_table + DESC_SIZE * num > len(ram) \
            or avail_ring + 4 + 2 * num > len(ram):
        raise ValueError("virtqueue rings outside RAM")


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
def _put_desc(ram: cython.uchar[::1], desc_table: cython.Py_ssize_t, num: cython.Py_ssize_t, desc_next: list,
              i: cython.Py_ssize_t, paddr, length, flags: cython.uint) -> cython.Py_ssize_t:
    """Descriptor i := (paddr, length, flags), its next field kept (desc_next[i]); returns that next one."""
    if i < 0 or i >= num:
        raise IndexError(f"free list reaches descriptor {i}, not below {num}")
    if not 0 <= length <= 0xFFFFFFFF:
        raise ValueError(f"buffer length {length} does not fit in le32")
    addr: cython.ulonglong = paddr
    nxt: cython.Py_ssize_t = desc_next[i]
    off: cython.Py_ssize_t = desc_table + DESC_SIZE * i
    _put_u32(ram, off, addr & LOW32)
    _put_u32(ram, off + 4, addr >> 32)
    _put_u32(ram, off + 8, cython.cast(cython.ulonglong, length) & LOW32)
    _put_u16(ram, off + 12, flags)
    _put_u16(ram, off + 14, nxt & 0xFFFF)
    return nxt


@cython.cfunc
def _publish(ram: cython.uchar[::1], avail_ring: cython.Py_ssize_t, num: cython.Py_ssize_t,
             avail_idx: cython.Py_ssize_t, head: cython.Py_ssize_t) -> cython.void:
    _put_u16(ram, avail_ring + 4 + 2 * (avail_idx % num), head)
    _put_u16(ram, avail_ring + 2, (avail_idx + 1) & 0xFFFF)     # after the entry, as a barrier would order it


@cython.boundscheck(False)
@cython.wraparound(False)
def add_chain(ram: cython.uchar[::1], desc_table: cython.Py_ssize_t, avail_ring: cython.Py_ssize_t,
              num: cython.Py_ssize_t, desc_next: list, free_head: cython.Py_ssize_t,
              avail_idx: cython.Py_ssize_t, sgs: list) -> cython.Py_ssize_t:
    """Write sgs [(paddr, length, device_writes)] into descriptors taken along the free list from free_head
    (desc_next holds each descriptor's next field, which is kept), chained with NEXT; put the head in the
    avail ring at avail_idx, then publish avail_idx + 1. Returns the new free head. The caller checked that
    enough descriptors are free."""
    n: cython.Py_ssize_t = len(sgs)
    _check_rings(ram, desc_table, avail_ring, num)
    i: cython.Py_ssize_t = free_head
    j: cython.Py_ssize_t
    for j in range(n):
        paddr, length, writes = sgs[j]
        i = _put_desc(ram, desc_table, num, desc_next, i, paddr, length,
                      (WRITE if writes else 0) | (NEXT if j < n - 1 else 0))
    _publish(ram, avail_ring, num, avail_idx, free_head)
    return i


@cython.boundscheck(False)
@cython.wraparound(False)
def add_request_chain(ram: cython.uchar[::1], desc_table: cython.Py_ssize_t, avail_ring: cython.Py_ssize_t,
                      num: cython.Py_ssize_t, desc_next: list, free_head: cython.Py_ssize_t,
                      avail_idx: cython.Py_ssize_t, header: tuple, segments, device_writes: cython.bint,
                      status: tuple) -> cython.Py_ssize_t:
    """add_chain() of [(*header, False), *((paddr, length, device_writes) for paddr, length in segments),
    (*status, True)] (a block request: its header, its data all one way, its status byte), without
    building that list."""
    n: cython.Py_ssize_t = len(segments)
    _check_rings(ram, desc_table, avail_ring, num)
    data_flags: cython.uint = (WRITE if device_writes else 0) | NEXT
    i: cython.Py_ssize_t = _put_desc(ram, desc_table, num, desc_next, free_head, header[0], header[1], NEXT)
    j: cython.Py_ssize_t
    for j in range(n):
        paddr, length = segments[j]
        i = _put_desc(ram, desc_table, num, desc_next, i, paddr, length, data_flags)
    i = _put_desc(ram, desc_table, num, desc_next, i, status[0], status[1], WRITE)
    _publish(ram, avail_ring, num, avail_idx, free_head)
    return i


@cython.boundscheck(False)
@cython.wraparound(False)
def request_bytes(segments, seg_max: cython.Py_ssize_t, seg_limit: cython.Py_ssize_t,
                  max_bytes: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """The bytes of segments [(paddr, length)] if they fit one request as they are (at most seg_max of
    them, each 1..seg_limit bytes, max_bytes in all), else -1."""
    n: cython.Py_ssize_t = len(segments)
    if n == 0 or n > seg_max:
        return -1
    total: cython.Py_ssize_t = 0
    length: cython.Py_ssize_t
    j: cython.Py_ssize_t
    for j in range(n):
        length = segments[j][1]
        if length <= 0 or length > seg_limit:
            return -1
        total += length
    return total if total <= max_bytes else -1


@cython.boundscheck(False)
@cython.wraparound(False)
def detach_used(ram: cython.uchar[::1], desc_table: cython.Py_ssize_t, used_ring: cython.Py_ssize_t,
                num: cython.Py_ssize_t, desc_next: list, chain_len: list, last_used: cython.Py_ssize_t,
                free_head: cython.Py_ssize_t):
    """The next used element after last_used as (head, length, descriptors freed), its chain put back at
    the front of the free list (desc_next and the last descriptor's next field point at free_head); None
    when the device has used nothing new."""
    if num <= 0 or desc_table < 0 or used_ring < 0 or desc_table + DESC_SIZE * num > len(ram) \
            or used_ring + 4 + 8 * num > len(ram):
        raise ValueError("virtqueue rings outside RAM")
    if _u16(ram, used_ring + 2) == last_used:
        return None
    off: cython.Py_ssize_t = used_ring + 4 + 8 * (last_used % num)
    head: cython.Py_ssize_t = _u32(ram, off)
    length: cython.uint = _u32(ram, off + 4)
    if head >= num:
        raise IndexError(f"used head {head} is not below {num}")
    n: cython.Py_ssize_t = chain_len[head]
    i: cython.Py_ssize_t = head
    k: cython.Py_ssize_t
    for k in range(n - 1):
        i = desc_next[i]
    desc_next[i] = free_head
    _put_u16(ram, desc_table + DESC_SIZE * i + 14, free_head & 0xFFFF)
    return head, length, n
