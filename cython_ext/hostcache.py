"""The host page cache's common read: a run of whole pages, all cached, copied out of the arena in order with
each page's access noted (devices.host_cache.HostPageCache._read_hits). One source in Cython's pure-Python
mode: compiled it is a memcpy per page; uncompiled (BALLAST_PURE=1) it is plain Python for pdb."""
import cython

if cython.compiled:
    from cython.cimports.libc.string import memcpy

PAGE_SHIFT = cython.declare(cython.Py_ssize_t, 12)       # C constants: no Python ints in the loops
PAGE_SIZE = cython.declare(cython.Py_ssize_t, 4096)


@cython.boundscheck(False)
@cython.wraparound(False)
def read_hits(pages: dict, first: cython.Py_ssize_t, count: cython.Py_ssize_t, chunk_views: list,
              chunk_shift: cython.int, flags: cython.uchar[::1], pg_referenced: cython.uchar,
              pg_active: cython.uchar, dests: list, ram: cython.uchar[::1] = None):
    """Copy pages first..first+count-1 of `pages` {index: slot}, in order, into the buffers `dests`
    (scattered: a page may straddle two of them); a slot's bytes are at ((slot & mask) << PAGE_SHIFT)
    of chunk_views[slot >> chunk_shift]. With `ram` (guest RAM), dests are runs (addr, length) in it
    instead, as a descriptor chain gives them: no view per buffer.

    mark_page_accessed's flag-only cases happen here (active: set referenced; inactive unreferenced: set
    referenced); the slots that must move to the active list (inactive and already referenced) are returned
    in order, untouched, for the caller's LRU lists. None, with nothing copied or changed, if a page is
    missing."""
    room: cython.Py_ssize_t = 0
    run_addr: cython.Py_ssize_t
    run_len: cython.Py_ssize_t
    use_ram: cython.bint = ram is not None
    for d in dests:
        if use_ram:
            run_addr, run_len = d
            if run_addr < 0 or run_len < 0 or run_addr + run_len > len(ram):
                raise ValueError(f"run {run_addr:#x}+{run_len:#x} lies outside RAM")
            room += run_len
        else:
            room += len(d)
    if count < 0 or count * PAGE_SIZE > room:
        raise ValueError(f"{count} pages do not fit in destinations of {room} bytes")
    slots = []
    i: cython.Py_ssize_t
    for i in range(first, first + count):
        slot = pages.get(i)
        if slot is None:
            return None
        slots.append(slot)
    promote = []
    mask: cython.Py_ssize_t = (1 << chunk_shift) - 1
    nflags: cython.Py_ssize_t = len(flags)
    s: cython.Py_ssize_t
    base: cython.Py_ssize_t
    chunk_index: cython.Py_ssize_t = -1
    c: cython.Py_ssize_t
    chunk: cython.uchar[::1] = None
    f: cython.uchar
    dest: cython.uchar[::1] = None
    di: cython.Py_ssize_t = 0
    d_pos: cython.Py_ssize_t = 0
    d_left: cython.Py_ssize_t = 0
    done: cython.Py_ssize_t
    n: cython.Py_ssize_t
    for slot in slots:
        s = slot
        if s < 0 or s >= nflags:
            raise IndexError(f"slot {s} outside the arena")
        c = s >> chunk_shift
        if c != chunk_index:
            chunk = chunk_views[c]
            chunk_index = c
        base = (s & mask) << PAGE_SHIFT
        if base + PAGE_SIZE > len(chunk):
            raise IndexError(f"slot {s} outside its chunk")
        done = 0
        while done < PAGE_SIZE:
            while d_left == 0:              # room was checked: the next buffer exists
                if use_ram:
                    dest = ram
                    run_addr, run_len = dests[di]
                    d_pos = run_addr
                    d_left = run_len
                else:
                    dest = dests[di]
                    d_pos = 0
                    d_left = len(dest)
                di += 1
            n = PAGE_SIZE - done if PAGE_SIZE - done < d_left else d_left
            if cython.compiled:
                memcpy(cython.address(dest[d_pos]), cython.address(chunk[base + done]), n)
            else:
                dest[d_pos:d_pos + n] = chunk[base + done:base + done + n]
            done += n
            d_pos += n
            d_left -= n
        f = flags[s]
        if f & pg_active or not f & pg_referenced:
            flags[s] = f | pg_referenced
        else:
            promote.append(slot)
    return promote
