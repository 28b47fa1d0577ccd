"""The device's walk of one split-virtqueue descriptor chain (virtio 1.2, 2.7.5 and 2.7.5.3), the hot part of
devices.virtqueue.SplitQueue.pop. One source in Cython's pure-Python mode: compiled it reads the descriptors
straight from guest RAM; uncompiled (BALLAST_PURE=1) it is plain Python that pdb can step through.

The queue owns no memory: RAM comes with every call. Every descriptor is checked against RAM, the walk is
bounded by the queue size (by the table size inside an indirect table), and a broken chain raises ValueError
with the message the queue turns into a QueueError."""
import cython

NEXT = cython.declare(cython.uint, 1)             # C constants: no Python ints in the walk
WRITE = cython.declare(cython.uint, 2)
INDIRECT = cython.declare(cython.uint, 4)
DESC_SIZE = cython.declare(cython.Py_ssize_t, 16)


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
