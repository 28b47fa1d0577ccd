"""The page cache's cold read, assembled: a batch of fresh pages that readahead adds, their blocks checked
and turned into disk runs (guestos.mm.filemap.AddressSpace._add_read_batch and ext2's bmap_cached). One
source in Cython's pure-Python mode: compiled it is a C loop per page; uncompiled (BALLAST_PURE=1) it is
plain Python that pdb can step through."""
import cython

if cython.compiled:
    from cython.cimports.libc.string import memset

PAGE_SHIFT = cython.declare(cython.Py_ssize_t, 12)
PAGE_SIZE = cython.declare(cython.Py_ssize_t, 4096)


@cython.boundscheck(False)
@cython.wraparound(False)
def valid_blocks(blocks, first_data: cython.Py_ssize_t, nr_blocks: cython.Py_ssize_t, zone_starts: list,
                 zone_ends: list) -> cython.Py_ssize_t:
    """How many of `blocks` (file blocks from an indirect block: 0 is a hole) pass ext2_data_block_valid():
    inside [first_data, nr_blocks) and in no system zone (metadata: sorted [start, end) pairs)."""
    n: cython.Py_ssize_t = len(blocks)
    nz: cython.Py_ssize_t = len(zone_starts)
    j: cython.Py_ssize_t
    b: cython.Py_ssize_t
    lo: cython.Py_ssize_t
    hi: cython.Py_ssize_t
    mid: cython.Py_ssize_t
    for j in range(n):
        b = blocks[j]
        if b == 0:
            continue
        if b < first_data or b >= nr_blocks:
            return j
        lo = 0                          # bisect_right(zone_starts, b) - 1
        hi = nz
        while lo < hi:
            mid = (lo + hi) >> 1
            if b < zone_starts[mid]:
                hi = mid
            else:
                lo = mid + 1
        if lo > 0 and zone_ends[lo - 1] > b:
            return j
    return n


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
    last = runs[len(runs) - 1] if runs else None
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
        if last is not None and last[2] == offset:
            last[1].append((base, PAGE_SIZE))
            last[2] = offset + PAGE_SIZE
        else:
            last = [offset, [(base, PAGE_SIZE)], offset + PAGE_SIZE]
            runs.append(last)
    return sectors
