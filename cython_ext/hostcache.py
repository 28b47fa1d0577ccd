"""The host page cache's reads of whole pages: the common one, a run of pages all cached, with each page's
access noted (devices.host_cache.HostPageCache._read_hits), and the cold one, misses given fresh slots, loaded
and installed (read_fill, when nothing must be evicted).

A miss is loaded from the image straight into the destination (`reader`), with no copy through the arena;
a page that straddles two destination buffers goes through a bounce page. A slot's bytes are in the arena
only when its flags carry `in_arena`: every dirty page, and a clean page once it is read again (`materialize`
re-reads a run of them from the image into their slots, one call per run); until then its bytes are the
image's own, held by the real host's page cache under the image file.

One source in Cython's pure-Python mode: compiled, the arena copies are a memcpy per page; uncompiled
(BALLAST_PURE=1) it is plain Python for pdb."""
import cython

if cython.compiled:
    from cython.cimports.libc.string import memcpy

PAGE_SHIFT = cython.declare(cython.Py_ssize_t, 12)       # C constants: no Python ints in the loops
PAGE_SIZE = cython.declare(cython.Py_ssize_t, 4096)


@cython.cfunc
def _room(dests: list, ram) -> cython.Py_ssize_t:
    """The bytes the destinations hold: buffers, or runs (addr, length) of `ram`, each checked to lie in it."""
    room: cython.Py_ssize_t = 0
    run_addr: cython.Py_ssize_t
    run_len: cython.Py_ssize_t
    size: cython.Py_ssize_t
    if ram is None:
        for d in dests:
            room += len(d)
        return room
    size = len(ram)
    for d in dests:
        run_addr, run_len = d
        if run_addr < 0 or run_len < 0 or run_addr + run_len > size:
            raise ValueError(f"run {run_addr:#x}+{run_len:#x} lies outside RAM")
        room += run_len
    return room


@cython.cfunc
def _next_piece(dests: list, ram, cursor: list) -> cython.void:
    """Move the cursor [next destination, position in the current one, bytes left in it] to the next one;
    the caller checked the room, so it exists."""
    di: cython.Py_ssize_t = cursor[0]
    if ram is None:
        cursor[1] = 0
        cursor[2] = len(dests[di])
    else:
        cursor[1], cursor[2] = dests[di]
    cursor[0] = di + 1


@cython.cfunc
def _piece(dests: list, ram, cursor: list):
    """The buffer the cursor is in."""
    return ram if ram is not None else dests[cursor[0] - 1]


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cfunc
def _copy_out(chunk: cython.uchar[::1], base: cython.Py_ssize_t, length: cython.Py_ssize_t, dests: list, ram,
              cursor: list) -> cython.void:
    """length bytes (whole pages) of the arena from base to the next bytes of the destinations, a page or
    less per copy."""
    d_pos: cython.Py_ssize_t = cursor[1]
    d_left: cython.Py_ssize_t = cursor[2]
    done: cython.Py_ssize_t = 0
    n: cython.Py_ssize_t
    dest: cython.uchar[::1] = None
    if base < 0 or base + length > chunk.shape[0]:
        raise IndexError("arena span outside its chunk")
    if d_left:
        dest = _piece(dests, ram, cursor)
    while done < length:
        if d_left == 0:
            _next_piece(dests, ram, cursor)
            d_pos = cursor[1]
            d_left = cursor[2]
            if d_left == 0:
                continue
            dest = _piece(dests, ram, cursor)
        n = length - done if length - done < d_left else d_left
        if n > PAGE_SIZE:
            n = PAGE_SIZE       # glibc copies more than 8 KiB with rep movsb: a third slower on this AMD host
        if cython.compiled:
            memcpy(cython.address(dest[d_pos]), cython.address(chunk[base + done]), n)
        else:
            dest[d_pos:d_pos + n] = chunk[base + done:base + done + n]
        done += n
        d_pos += n
        d_left -= n
    cursor[1] = d_pos
    cursor[2] = d_left


@cython.cfunc
def _take_pages(dests: list, ram, cursor: list, n: cython.Py_ssize_t, buffers: list, bounces: list) -> cython.void:
    """Append to `buffers` one page-sized view per page of the next n pages of the destinations (a bounce
    page, listed in `bounces` with the pieces it covers, for a page that straddles two of them)."""
    k: cython.Py_ssize_t
    d_pos: cython.Py_ssize_t = cursor[1]
    d_left: cython.Py_ssize_t = cursor[2]
    m: cython.Py_ssize_t
    got: cython.Py_ssize_t
    view = None
    if d_left:
        view = memoryview(_piece(dests, ram, cursor))
    for k in range(n):
        while d_left == 0:
            _next_piece(dests, ram, cursor)
            d_pos = cursor[1]
            d_left = cursor[2]
            view = memoryview(_piece(dests, ram, cursor))
        if d_left >= PAGE_SIZE:
            buffers.append(view[d_pos:d_pos + PAGE_SIZE])
            d_pos += PAGE_SIZE
            d_left -= PAGE_SIZE
            continue
        bounce = memoryview(bytearray(PAGE_SIZE))
        parts = []
        got = 0
        while got < PAGE_SIZE:
            while d_left == 0:
                _next_piece(dests, ram, cursor)
                d_pos = cursor[1]
                d_left = cursor[2]
                view = memoryview(_piece(dests, ram, cursor))
            m = PAGE_SIZE - got if PAGE_SIZE - got < d_left else d_left
            parts.append((view[d_pos:d_pos + m], got))
            got += m
            d_pos += m
            d_left -= m
        buffers.append(bounce)
        bounces.append((bounce, parts))
    cursor[1] = d_pos
    cursor[2] = d_left


@cython.cfunc
def _unbounce(bounces: list) -> cython.void:
    for bounce, parts in bounces:
        for part, at in parts:
            part[:] = bounce[at:at + len(part)]


@cython.cfunc
def _read_run(read, first: cython.Py_ssize_t, n: cython.Py_ssize_t, dests: list, ram, cursor: list,
              read_span=None) -> cython.void:
    """read(first, buffers) of pages first..first+n-1 straight into the next n pages of the destinations;
    read_span(first, buffer) instead when given and they lie in one piece."""
    d_left: cython.Py_ssize_t = cursor[2]
    d_pos: cython.Py_ssize_t
    length: cython.Py_ssize_t = n * PAGE_SIZE
    if read_span is not None:
        while d_left == 0:
            _next_piece(dests, ram, cursor)
            d_left = cursor[2]
        if d_left >= length:
            d_pos = cursor[1]
            read_span(first, memoryview(_piece(dests, ram, cursor))[d_pos:d_pos + length])
            cursor[1] = d_pos + length
            cursor[2] = d_left - length
            return
    buffers = []
    bounces = []
    _take_pages(dests, ram, cursor, n, buffers, bounces)
    read(first, buffers)
    if bounces:
        _unbounce(bounces)


@cython.ccall
def materialize(reread, pages: dict, first: cython.Py_ssize_t, last: cython.Py_ssize_t, chunk_views: list,
                 chunk_shift: cython.int, flags: cython.uchar[::1], in_arena: cython.uchar,
                 run_limit: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """The clean cached pages from `first` on (up to `last`, at most run_limit, none missing or already
    in the arena) get their bytes in the arena: one reread(first, buffers) into their slots, a buffer per
    stretch of slots that follow each other in a chunk. Returns how many."""
    mask: cython.Py_ssize_t = (1 << chunk_shift) - 1
    buffers = []
    n: cython.Py_ssize_t = 0
    s: cython.Py_ssize_t
    base: cython.Py_ssize_t
    stretch_chunk: cython.Py_ssize_t = -1
    stretch_base: cython.Py_ssize_t = 0
    stretch_len: cython.Py_ssize_t = 0
    taken = []
    while first + n <= last and n < run_limit:
        slot = pages.get(first + n)
        if slot is None:
            break
        s = slot
        if s < 0 or s >= len(flags):
            raise IndexError(f"slot {s} outside the arena")
        if flags[s] & in_arena:
            break
        base = (s & mask) << PAGE_SHIFT
        if stretch_len and s >> chunk_shift == stretch_chunk and base == stretch_base + stretch_len:
            stretch_len += PAGE_SIZE
        else:
            if stretch_len:
                buffers.append(chunk_views[stretch_chunk][stretch_base:stretch_base + stretch_len])
            stretch_chunk = s >> chunk_shift
            stretch_base = base
            stretch_len = PAGE_SIZE
        taken.append(s)
        n += 1
    if n == 0:
        return 0
    buffers.append(chunk_views[stretch_chunk][stretch_base:stretch_base + stretch_len])
    reread(first, buffers)
    for slot in taken:
        s = slot
        flags[s] = flags[s] | in_arena
    return n


@cython.boundscheck(False)
@cython.wraparound(False)
def read_hits(pages: dict, first: cython.Py_ssize_t, count: cython.Py_ssize_t, chunk_views: list,
              chunk_shift: cython.int, flags: cython.uchar[::1], pg_referenced: cython.uchar,
              pg_active: cython.uchar, in_arena: cython.uchar, reread, run_limit: cython.Py_ssize_t, dests: list,
              ram=None):
    """Copy pages first..first+count-1 of `pages` {index: slot}, in order, into the buffers `dests`
    (scattered: a page may straddle two of them); with `ram` (guest RAM), dests are runs (addr, length) in it
    instead, as a descriptor chain gives them: no view per buffer. A slot's bytes are at ((slot & mask) <<
    PAGE_SHIFT) of chunk_views[slot >> chunk_shift]; a clean page whose flags lack `in_arena` gets them
    first from the image, with one reread(first, buffers) per run of such pages (at most run_limit).

    mark_page_accessed's flag-only cases happen here (active: set referenced; inactive unreferenced: set
    referenced); the slots that must move to the active list (inactive and already referenced) are returned
    in order, untouched, for the caller's LRU lists. None, with nothing copied or changed, if a page is
    missing."""
    if count < 0 or count * PAGE_SIZE > _room(dests, ram):
        raise ValueError(f"{count} pages do not fit in destinations of {_room(dests, ram)} bytes")
    slots = []
    i: cython.Py_ssize_t
    s: cython.Py_ssize_t
    nflags: cython.Py_ssize_t = len(flags)
    outside: cython.bint = False            # a page whose bytes are not in the arena yet
    for i in range(first, first + count):
        slot = pages.get(i)
        if slot is None:
            return None
        s = slot
        if s < 0 or s >= nflags:
            raise IndexError(f"slot {s} outside the arena")
        if not flags[s] & in_arena:
            outside = True
        slots.append(slot)
    promote = []
    mask: cython.Py_ssize_t = (1 << chunk_shift) - 1
    f: cython.uchar
    i = 0
    while outside and i < count:            # the clean pages' bytes into the arena, a run at a time
        s = slots[i]
        if flags[s] & in_arena:
            i += 1
        else:
            i += materialize(reread, pages, first + i, first + count - 1, chunk_views, chunk_shift, flags,
                             in_arena, run_limit)
    cursor = [0, 0, 0]
    base: cython.Py_ssize_t
    stretch_chunk: cython.Py_ssize_t = -1     # slots that follow each other in a chunk: one copy
    stretch_base: cython.Py_ssize_t = 0
    stretch_len: cython.Py_ssize_t = 0
    for i in range(count):
        s = slots[i]
        base = (s & mask) << PAGE_SHIFT
        if stretch_len and s >> chunk_shift == stretch_chunk and base == stretch_base + stretch_len:
            stretch_len += PAGE_SIZE
        else:
            if stretch_len:
                _copy_out(chunk_views[stretch_chunk], stretch_base, stretch_len, dests, ram, cursor)
            stretch_chunk = s >> chunk_shift
            stretch_base = base
            stretch_len = PAGE_SIZE
        f = flags[s]
        if f & pg_active or not f & pg_referenced:
            flags[s] = f | pg_referenced
        else:
            promote.append(slots[i])
    if stretch_len:
        _copy_out(chunk_views[stretch_chunk], stretch_base, stretch_len, dests, ram, cursor)
    return promote


def read_fill(cache, key, pages: dict, first: cython.Py_ssize_t, count: cython.Py_ssize_t, ram,
              runs: list, vm_id, io, run_limit: cython.Py_ssize_t, chunk_shift: cython.int,
              pg_referenced: cython.uchar, in_arena: cython.uchar):
    """HostPageCache.read_into of whole pages first..first+count-1 into runs (addr, length) of guest RAM, when
    the cache has room for every one of them (nothing is evicted on the way): misses are loaded straight into
    RAM with one read per run of consecutive missing pages (at most run_limit each) through the image's
    reader, given slots (the free list first, then fresh ones), installed on the inactive list and charged
    to vm_id; hits are copied from the arena (a run of clean ones read into it first) and marked accessed;
    all in index order, as read_into does, with the same counters in io."""
    if count < 0 or count * PAGE_SIZE > _room(runs, ram):
        raise ValueError(f"{count} pages do not fit in destinations of {_room(runs, ram)} bytes")
    mask: cython.Py_ssize_t = (1 << chunk_shift) - 1
    cursor = [0, 0, 0]                  # runs: next run, position in the current one, bytes left in it
    index: cython.Py_ssize_t = first
    last: cython.Py_ssize_t = first + count - 1
    run_first: cython.Py_ssize_t = 0
    run_n: cython.Py_ssize_t = 0
    hits: cython.Py_ssize_t = 0
    misses: cython.Py_ssize_t = 0
    s: cython.Py_ssize_t
    while index <= last:
        slot = pages.get(index)
        if slot is None:
            if run_n == 0:
                run_first = index
            run_n += 1
            misses += 1
            index += 1
            if run_n == run_limit:
                _fill(cache, key, pages, run_first, run_n, ram, runs, cursor, vm_id, io, chunk_shift, pg_referenced)
                run_n = 0
            continue
        if run_n:
            _fill(cache, key, pages, run_first, run_n, ram, runs, cursor, vm_id, io, chunk_shift, pg_referenced)
            run_n = 0
        hits += 1
        s = slot
        if not cache._flags[s] & in_arena:  # (a typed view of the flags would stop a fill from growing them)
            materialize(cache._rereader(key), pages, index, last, cache._chunk_views, chunk_shift, cache._flags,
                         in_arena, run_limit)
        _copy_out(cache._chunk_views[s >> chunk_shift], (s & mask) << PAGE_SHIFT, PAGE_SIZE, runs, ram, cursor)
        cache._mark_page_accessed(slot)
        index += 1
    if run_n:
        _fill(cache, key, pages, run_first, run_n, ram, runs, cursor, vm_id, io, chunk_shift, pg_referenced)
    io.hits += hits
    io.misses += misses
    cache.hits += hits
    cache.misses += misses


@cython.cfunc
def _fill(cache, key, pages: dict, first: cython.Py_ssize_t, n: cython.Py_ssize_t, ram, runs: list, cursor: list,
          vm_id, io, chunk_shift: cython.int, pg_referenced: cython.uchar) -> cython.void:
    """HostPageCache._fill_run into runs of RAM: n fresh slots, one read straight into RAM, installed in order
    (their bytes stay the image's until a page is read again)."""
    free: list = cache._free
    nviews: cython.Py_ssize_t = len(cache._chunk_views)
    slots = []
    fresh: cython.Py_ssize_t = cache._fresh
    j: cython.Py_ssize_t
    s: cython.Py_ssize_t
    if not free and (fresh + n - 1) >> chunk_shift < nviews:
        slots = list(range(fresh, fresh + n))   # the common case: fresh slots in chunks already mapped
        cache._used += n
        cache._fresh = fresh + n
    try:
        for j in range(n - len(slots)):
            fresh = cache._fresh
            if free or fresh >> chunk_shift == nviews:    # the rare cases: let _alloc_slot do them
                slots.append(cache._alloc_slot(io))
                nviews = len(cache._chunk_views)
            else:
                cache._used += 1
                cache._fresh = fresh + 1
                slots.append(fresh)
        _read_run(cache._reader(key), first, n, runs, ram, cursor, cache._span_reader(key))
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
    for j in range(n):
        slot = slots[j]
        s = slot
        index = first + j
        slot_key[s] = key                   # _install
        slot_index[s] = index
        slot_owner[s] = vm_id
        flags[s] = pg_referenced            # the access that brought it in; its bytes are the image's
        pages[index] = slot
        inactive[slot] = None
    charge[0] += n                      # _CHARGE_PAGES
