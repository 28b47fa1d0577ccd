"""Copies between guest-physical runs: the core of copy_to_user/copy_from_user and of
page-cache reads. One source in Cython's pure-Python mode: compiled it is a memmove loop;
uncompiled (BALLAST_PURE=1) it is plain Python that pdb can step through. (memmove: runs may overlap.)"""
import cython

if cython.compiled:
    from cython.cimports.libc.string import memmove


@cython.boundscheck(False)
@cython.wraparound(False)
def copy_runs(ram: cython.uchar[::1], src_runs: list, dst_runs: list) -> cython.Py_ssize_t:
    """Copy the bytes of src_runs [(paddr, len)] into dst_runs [(paddr, len)], in order,
    until either list ends; returns the bytes copied. Both lie in guest RAM."""
    si: cython.Py_ssize_t = 0
    di: cython.Py_ssize_t = 0
    s_addr: cython.Py_ssize_t = 0
    s_left: cython.Py_ssize_t = 0
    d_addr: cython.Py_ssize_t = 0
    d_left: cython.Py_ssize_t = 0
    n: cython.Py_ssize_t
    total: cython.Py_ssize_t = 0
    size: cython.Py_ssize_t = ram.shape[0]
    while True:
        if s_left == 0:
            if si == len(src_runs):
                break
            s_addr, s_left = src_runs[si]
            si += 1
            if s_addr < 0 or s_left < 0 or s_addr + s_left > size:
                raise IndexError("source run outside guest RAM")
            continue
        if d_left == 0:
            if di == len(dst_runs):
                break
            d_addr, d_left = dst_runs[di]
            di += 1
            if d_addr < 0 or d_left < 0 or d_addr + d_left > size:
                raise IndexError("destination run outside guest RAM")
            continue
        n = s_left if s_left < d_left else d_left
        if cython.compiled:
            memmove(cython.address(ram[d_addr]), cython.address(ram[s_addr]), n)
        else:
            ram[d_addr:d_addr + n] = ram[s_addr:s_addr + n]
        s_addr += n
        s_left -= n
        d_addr += n
        d_left -= n
        total += n
    return total


@cython.boundscheck(False)
@cython.wraparound(False)
def lookup_pages(pages: dict, first: cython.Py_ssize_t, last: cython.Py_ssize_t) -> list:
    """The page-cache pfns of indices first..last (None where a page is missing)."""
    out = []
    i: cython.Py_ssize_t
    for i in range(first, last + 1):
        out.append(pages.get(i))
    return out
