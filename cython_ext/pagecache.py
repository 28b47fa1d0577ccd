"""The page cache's cold read, assembled: the blocks of a run of file pages found through the indirect
blocks in the buffer cache and checked (ext2's bmap_cached), a batch of fresh pages that readahead adds, their
blocks turned into disk runs (guestos.mm.filemap.AddressSpace._add_read_batch). One
source in Cython's pure-Python mode: compiled it is a C loop per page; uncompiled (BALLAST_PURE=1) it is
plain Python that pdb can step through."""
import cython

if cython.compiled:
    from cython.cimports.libc.string import memset

PAGE_SHIFT = cython.declare(cython.Py_ssize_t, 12)
PAGE_SIZE = cython.declare(cython.Py_ssize_t, 4096)


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
def _in_system_zone(b: cython.Py_ssize_t, zone_starts: list, zone_ends: list) -> cython.bint:
    """ext2's in_system_zone(b, 1): b inside one of the sorted [start, end) metadata zones."""
    lo: cython.Py_ssize_t = 0           # bisect_right(zone_starts, b) - 1
    hi: cython.Py_ssize_t = len(zone_starts)
    mid: cython.Py_ssize_t
    start: cython.Py_ssize_t            # typed: compared as C integers, not as Python objects
    end: cython.Py_ssize_t
    while lo < hi:
        mid = (lo + hi) >> 1
        start = zone_starts[mid]
        if b < start:
            hi = mid
        else:
            lo = mid + 1
    if lo == 0:
        return False
    end = zone_ends[lo - 1]
    return end > b


@cython.boundscheck(False)
@cython.wraparound(False)
def valid_blocks(blocks, first_data: cython.Py_ssize_t, nr_blocks: cython.Py_ssize_t, zone_starts: list,
                 zone_ends: list) -> cython.Py_ssize_t:
    """How many of `blocks` (file blocks from an indirect block: 0 is a hole) pass ext2_data_block_valid():
    inside [first_data, nr_blocks) and in no system zone (metadata: sorted [start, end) pairs)."""
    n: cython.Py_ssize_t = len(blocks)
    j: cython.Py_ssize_t
    b: cython.Py_ssize_t
    for j in range(n):
        b = blocks[j]
        if b == 0:
            continue
        if b < first_data or b >= nr_blocks or _in_system_zone(b, zone_starts, zone_ends):
            return j
    return n


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
def _le32(buf: cython.uchar[::1], at: cython.Py_ssize_t) -> cython.Py_ssize_t:
    return buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16) | (cython.cast(cython.Py_ssize_t, buf[at + 3]) << 24)


@cython.ccall
def cached_block_at(pages: dict, block: cython.Py_ssize_t, block_size: cython.Py_ssize_t,
                    dev_bytes: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """Where block `block` of a block device (blocks of block_size bytes, dev_bytes in all) lies in guest RAM
    when the page holding it is in the device's page cache (`pages`: index -> pfn); -1 when it is not, or
    when the block is not inside the device (then bread() would have to read it, or fail)."""
    offset: cython.Py_ssize_t = block * block_size
    if block < 0 or offset + block_size > dev_bytes:
        return -1
    pfn = pages.get(offset >> PAGE_SHIFT)
    if pfn is None:
        return -1
    return (cython.cast(cython.Py_ssize_t, pfn) << PAGE_SHIFT) + (offset & (PAGE_SIZE - 1))


@cython.boundscheck(False)
@cython.wraparound(False)
def bmap_cached(i_block: list, lblk: cython.Py_ssize_t, n: cython.Py_ssize_t, apb: cython.Py_ssize_t,
                first_data: cython.Py_ssize_t, nr_blocks: cython.Py_ssize_t, zone_starts: list, zone_ends: list,
                block_size: cython.Py_ssize_t, bdev_pages: dict, ram: cython.uchar[::1],
                dev_bytes: cython.Py_ssize_t) -> list:
    """ext2's bmap_cached() walk (guestos.fs.ext2.Ext2Fs.bmap_cached): the disk blocks of file blocks lblk,
    lblk+1, ... (at most n; 0 for a hole) as far as every indirect block on the way is in the buffer cache
    (the block device's page cache bdev_pages, its bytes in ram: cached_block_at) and every block is
    valid; one walk per indirect block."""
    out = []
    at: cython.Py_ssize_t
    buf: cython.uchar[::1]
    got: cython.Py_ssize_t = 0
    depth: cython.Py_ssize_t
    o0: cython.Py_ssize_t
    o1: cython.Py_ssize_t = 0
    o2: cython.Py_ssize_t = 0
    o3: cython.Py_ssize_t = 0
    rest: cython.Py_ssize_t
    blk: cython.Py_ssize_t
    level: cython.Py_ssize_t
    off: cython.Py_ssize_t
    start: cython.Py_ssize_t
    m: cython.Py_ssize_t
    j: cython.Py_ssize_t
    b: cython.Py_ssize_t
    have_entries: cython.bint
    entries: cython.uchar[::1] = None
    while got < n:
        # _block_to_path(lblk): [o0, o1, o2, o3][:depth]; past the triple indirect block: stop
        if lblk < 0:
            break
        rest = lblk
        if rest < 12:
            depth, o0 = 1, rest
        else:
            rest -= 12
            if rest < apb:
                depth, o0, o1 = 2, 12, rest
            else:
                rest -= apb
                if rest < apb * apb:
                    depth, o0, o1, o2 = 3, 13, rest // apb, rest % apb
                else:
                    rest -= apb * apb
                    if rest < apb * apb * apb:
                        depth, o0, o1, o2, o3 = 4, 14, rest // (apb * apb), (rest // apb) % apb, rest % apb
                    else:
                        break
        blk = i_block[o0]
        level = 1
        have_entries = False
        while blk and level < depth:            # down to the last indirect block, all cached
            if blk < first_data or blk >= nr_blocks or _in_system_zone(blk, zone_starts, zone_ends):
                return out
            at = cached_block_at(bdev_pages, blk, block_size, dev_bytes)
            if at < 0 or at + block_size > len(ram):
                return out
            buf = ram[at:at + block_size]
            if level == depth - 1:
                entries = buf
                have_entries = True
            else:
                off = o1 if level == 1 else o2
                blk = _le32(buf, off * 4)
            level += 1
        if not have_entries:                    # a direct block, or a hole above the last level
            if blk and depth == 1 and (blk < first_data or blk >= nr_blocks or
                                       _in_system_zone(blk, zone_starts, zone_ends)):
                break
            out.append(blk if depth == 1 else 0)
            got += 1
            lblk += 1
            continue
        start = o1 if depth == 2 else (o2 if depth == 3 else o3)
        m = apb - start if apb - start < n - got else n - got
        for j in range(start, start + m):
            b = _le32(entries, j * 4)
            if b != 0 and (b < first_data or b >= nr_blocks or _in_system_zone(b, zone_starts, zone_ends)):
                return out
            out.append(b)
        got += m
        lblk += m
    return out


@cython.ccall                           # insert_read_blocks calls it in C
@cython.boundscheck(False)
@cython.wraparound(False)
def add_read_batch(ram: cython.uchar[::1], pages: dict, first: cython.Py_ssize_t, pfns: list, blocks: list,
                   runs: list) -> list:
    """Pages first, first+1, ... enter `pages` {index: pfn} in frames pfns, each holding one 4 KiB block
    (blocks[j], 0 for a hole: its frame is zeroed); their blocks extend `runs` ([disk offset, [(paddr, len)],
    end offset], a run growing while the disk offsets follow on). Returns each page's first sector (None for
    a hole), for its struct page."""
    n: cython.Py_ssize_t = len(pfns)
    if len(blocks) != n:
        raise ValueError("add_read_batch: pfns and blocks differ in length")
    nram: cython.Py_ssize_t = ram.shape[0]
    sectors = []
    j: cython.Py_ssize_t
    pfn: cython.Py_ssize_t
    block: cython.Py_ssize_t
    base: cython.Py_ssize_t
    offset: cython.Py_ssize_t
    page_size = PAGE_SIZE               # one int object for every (paddr, len)
    last: list = runs[len(runs) - 1] if runs else None
    last_segs: list = last[1] if last is not None else None
    last_end: cython.Py_ssize_t = last[2] if last is not None else -1      # last[2], kept here meanwhile
    try:
        for j in range(n):
            pfn = pfns[j]
            block = blocks[j]
            base = pfn << PAGE_SHIFT
            if pfn < 0 or base + PAGE_SIZE > nram:
                raise IndexError(f"pfn {pfn} outside guest RAM")
            pages[first + j] = pfns[j]
            if block == 0:
                if cython.compiled:
                    memset(cython.address(ram[base]), 0, PAGE_SIZE)
                else:
                    ram[base:base + PAGE_SIZE] = bytes(PAGE_SIZE)
                sectors.append(None)
                continue
            offset = block << PAGE_SHIFT
            sectors.append(offset >> 9)
            if last is not None and last_end == offset:
                last_segs.append((base, page_size))
                last_end = offset + PAGE_SIZE
            else:
                if last is not None:
                    last[2] = last_end
                last_segs = [(base, page_size)]
                last_end = offset + PAGE_SIZE
                last = [offset, last_segs, last_end]
                runs.append(last)
    finally:
        if last is not None:
            last[2] = last_end
    return sectors


@cython.boundscheck(False)
@cython.wraparound(False)
def missing_run_end(indices, at: cython.Py_ssize_t, limit: cython.Py_ssize_t, pages: dict,
                    isize: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """Where the batch starting at indices[at] (a missing page inside the file) ends: the longest run of
    indices[at:limit] that goes on page by page from it, none of them cached and all inside the file."""
    index: cython.Py_ssize_t = indices[at]
    end: cython.Py_ssize_t = at + 1
    nxt: cython.Py_ssize_t
    while end < limit:
        nxt = indices[end]
        if nxt != index + (end - at) or nxt in pages or (nxt << PAGE_SHIFT) >= isize:
            break
        end += 1
    return end


def insert_read_blocks(core, ram, pages: dict, first: cython.Py_ssize_t, pfns: list, blocks: list, runs: list,
                       mapping_id, flags, locked: list) -> None:
    """A batch of fresh pages (pfns) for file pages first, first+1, ..., one block each (blocks[j], 0 for
    a hole): add_read_batch(), then their struct pages written and put on the inactive file list
    (core.add_page_cache_batch) and the frames added to `locked`."""
    sectors = add_read_batch(ram, pages, first, pfns, blocks, runs)
    core.add_page_cache_batch(pfns, mapping_id, list(range(first, first + len(pfns))), sectors, flags)
    locked.extend(pfns)


def read_block_batches(mapping, indices, at: cython.Py_ssize_t, nr: cython.Py_ssize_t, isize: cython.Py_ssize_t,
                       pcp, page_blocks, core, ram, runs: list, locked: list, flags) -> cython.Py_ssize_t:
    """AddressSpace._read_pages' batches when a block is a page, from indices[at] on: skip the cached
    pages and those past the end of the file (isize); refill the per-cpu list when it is empty, as the
    first page's alloc() would; take the consecutive missing pages it can hold whose blocks
    page_blocks(mapping, first, n) finds without I/O, insert them (insert_read_blocks) and count them
    (mapping._read_batch_added). Returns where it stopped: nr, or the page that needs the slow path (no
    block found without I/O); -1 when the refill failed (ENOMEM)."""
    pages: dict = mapping.pages
    mapping_id = mapping.mapping_id
    index: cython.Py_ssize_t
    room: cython.Py_ssize_t
    end: cython.Py_ssize_t
    while at < nr:
        index = indices[at]
        if index in pages or (index << PAGE_SHIFT) >= isize:
            at += 1
            continue
        room = pcp.count
        if room == 0:
            if not pcp.rmqueue_bulk():
                return -1
            room = pcp.count
            if room <= 0:
                return at
        end = missing_run_end(indices, at, nr if nr < at + room else at + room, pages, isize)
        blocks = page_blocks(mapping, index, end - at)
        if not blocks:
            return at
        pfns = pcp.take(len(blocks))
        insert_read_blocks(core, ram, pages, index, pfns, blocks, runs, mapping_id, flags, locked)
        mapping._read_batch_added(index, pfns)
        at += len(blocks)
    return at
