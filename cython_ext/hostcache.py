"""The host page cache's reads of whole pages into guest RAM: the common one, a run of pages all cached,
copied out of the arena in order with each page's access noted (devices.host_cache.HostPageCache._read_hits),
and the cold one, misses loaded into fresh slots and installed (read_fill, when nothing must be evicted). One source in Cython's pure-Python
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


@cython.boundscheck(False)
@cython.wraparound(False)
def read_fill(cache, key, pages: dict, first: cython.Py_ssize_t, count: cython.Py_ssize_t, ram: cython.uchar[::1],
              runs: list, vm_id, io, run_limit: cython.Py_ssize_t, chunk_shift: cython.int, pg_referenced: cython.uchar):
    """HostPageCache.read_into of whole pages first..first+count-1 into runs (addr, length) of guest RAM, when
    the cache has room for every one of them (nothing is evicted on the way): misses are loaded with one
    read per run of consecutive missing pages (at most run_limit each) through the image's reader, given
    slots (the free list first, then fresh ones), installed on the inactive list and charged to vm_id; hits
    are copied and marked accessed; all in index order, as read_into does, with the same counters in io."""
    room: cython.Py_ssize_t = 0
    run_addr: cython.Py_ssize_t
    run_len: cython.Py_ssize_t
    for d in runs:
        run_addr, run_len = d
        if run_addr < 0 or run_len < 0 or run_addr + run_len > len(ram):
            raise ValueError(f"run {run_addr:#x}+{run_len:#x} lies outside RAM")
        room += run_len
    if count < 0 or count * PAGE_SIZE > room:
        raise ValueError(f"{count} pages do not fit in destinations of {room} bytes")
    mask: cython.Py_ssize_t = (1 << chunk_shift) - 1
    cursor = [0, 0, 0]                  # runs: next run, position in the current one, bytes left in it
    index: cython.Py_ssize_t = first
    last: cython.Py_ssize_t = first + count - 1
    run_first: cython.Py_ssize_t = 0
    run_n: cython.Py_ssize_t = 0
    hits: cython.Py_ssize_t = 0
    misses: cython.Py_ssize_t = 0
    while index <= last:
        slot = pages.get(index)
        if slot is None:
            if run_n == 0:
                run_first = index
            run_n += 1
            misses += 1
            index += 1
            if run_n == run_limit:
                _fill(cache, key, pages, run_first, run_n, ram, runs, cursor, vm_id, io, chunk_shift, mask, pg_referenced)
                run_n = 0
            continue
        if run_n:
            _fill(cache, key, pages, run_first, run_n, ram, runs, cursor, vm_id, io, chunk_shift, mask, pg_referenced)
            run_n = 0
        hits += 1
        _copy_out(cache._chunk_views[slot >> chunk_shift], (slot & mask) << PAGE_SHIFT, PAGE_SIZE, ram, runs, cursor)
        cache._mark_page_accessed(slot)
        index += 1
    if run_n:
        _fill(cache, key, pages, run_first, run_n, ram, runs, cursor, vm_id, io, chunk_shift, mask, pg_referenced)
    io.hits += hits
    io.misses += misses
    cache.hits += hits
    cache.misses += misses


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
def _fill(cache, key, pages: dict, first: cython.Py_ssize_t, n: cython.Py_ssize_t, ram: cython.uchar[::1],
          runs: list, cursor: list, vm_id, io, chunk_shift: cython.int, mask: cython.Py_ssize_t,
          pg_referenced: cython.uchar) -> cython.void:
    """HostPageCache._fill_run into runs of RAM: n fresh slots, one read, installed in order, copied out."""
    reader = cache._reader(key)
    free: list = cache._free
    views: list = cache._chunk_views
    slots = []
    fresh: cython.Py_ssize_t
    j: cython.Py_ssize_t
    s: cython.Py_ssize_t
    base: cython.Py_ssize_t
    try:
        for j in range(n):
            fresh = cache._fresh
            if free or fresh >> chunk_shift == len(views):    # the rare cases: let _alloc_slot do them
                slots.append(cache._alloc_slot(io))
            else:
                cache._used += 1
                cache._fresh = fresh + 1
                slots.append(fresh)
        span_reader = cache._span_reader(key)
        s = slots[0]
        j = 1
        while j < n and slots[j] == s + j:
            j += 1
        if span_reader is not None and j == n and s >> chunk_shift == (s + n - 1) >> chunk_shift:
            base = (s & mask) << PAGE_SHIFT         # the slots follow each other in one chunk: one buffer
            span_reader(first, views[s >> chunk_shift][base:base + n * PAGE_SIZE])
        else:
            buffers = []
            chunk_index: cython.Py_ssize_t = -1
            chunk = None
            for slot in slots:
                s = slot
                if s >> chunk_shift != chunk_index:
                    chunk_index = s >> chunk_shift
                    chunk = views[chunk_index]
                base = (s & mask) << PAGE_SHIFT
                buffers.append(chunk[base:base + PAGE_SIZE])
            reader(first, buffers)
    except BaseException:
        cache._free_slots(slots)
        raise
    io.loaded += n
    io.load_runs += 1
    cache.disk_reads_pages += n
    slot_key: list = cache._slot_key
    slot_index: list = cache._slot_index
    slot_owner: list = cache._slot_owner
    flags: cython.uchar[::1] = cache._flags
    inactive = cache._inactive
    charge = cache._charge.get(vm_id)
    if charge is None:
        charge = cache._charge[vm_id] = [0, 0, 0]
    # the copy out: a span of slots that follow each other in one chunk goes as one stretch
    span_start: cython.Py_ssize_t = 0
    span_chunk: cython.Py_ssize_t = -1
    span_base: cython.Py_ssize_t = 0
    span_len: cython.Py_ssize_t = 0
    for j in range(n):
        slot = slots[j]
        s = slot
        index = first + j
        slot_key[s] = key                   # _install
        slot_index[s] = index
        slot_owner[s] = vm_id
        flags[s] = pg_referenced            # the access that brought it in
        pages[index] = slot
        inactive[slot] = None
        base = (s & mask) << PAGE_SHIFT
        if span_len and s >> chunk_shift == span_chunk and base == span_base + span_len:
            span_len += PAGE_SIZE
            continue
        if span_len:
            _copy_out(views[span_chunk], span_base, span_len, ram, runs, cursor)
        span_chunk = s >> chunk_shift
        span_base = base
        span_len = PAGE_SIZE
    if span_len:
        _copy_out(views[span_chunk], span_base, span_len, ram, runs, cursor)
    charge[0] += n                      # _CHARGE_PAGES


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
def _copy_out(chunk: cython.uchar[::1], base: cython.Py_ssize_t, length: cython.Py_ssize_t, ram: cython.uchar[::1],
              runs: list, cursor: list) -> cython.void:
    """length bytes (whole pages) of the arena from base to the next bytes of the runs (cursor: run,
    position, bytes left in it), in as few copies as the runs allow."""
    di: cython.Py_ssize_t = cursor[0]
    d_pos: cython.Py_ssize_t = cursor[1]
    d_left: cython.Py_ssize_t = cursor[2]
    done: cython.Py_ssize_t = 0
    n: cython.Py_ssize_t
    run_addr: cython.Py_ssize_t
    run_len: cython.Py_ssize_t
    if base < 0 or base + length > chunk.shape[0]:
        raise IndexError("arena span outside its chunk")
    while done < length:
        while d_left == 0:                  # the caller checked the room: the next run exists
            run_addr, run_len = runs[di]
            d_pos = run_addr
            d_left = run_len
            di += 1
        n = length - done if length - done < d_left else d_left
        if cython.compiled:
            memcpy(cython.address(ram[d_pos]), cython.address(chunk[base + done]), n)
        else:
            ram[d_pos:d_pos + n] = chunk[base + done:base + done + n]
        done += n
        d_pos += n
        d_left -= n
    cursor[0] = di
    cursor[1] = d_pos
    cursor[2] = d_left
