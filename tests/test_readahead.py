"""Readahead windows grow as Linux's on-demand readahead grows them (mm/readahead.c)."""
from guestos.mm.filemap import FileRaState, get_init_ra_size, get_next_ra_size


def test_initial_window_scales_with_the_request():
    # read_ahead_kb = 128: 32 pages at most
    assert get_init_ra_size(1, 32) == 4          # small reads: 4x
    assert get_init_ra_size(4, 32) == 8          # medium: 2x
    assert get_init_ra_size(16, 32) == 32        # large: the maximum
    assert get_init_ra_size(3, 32) == 8          # rounded up to a power of two first


def test_window_grows_to_the_maximum_on_sequential_reads():
    ra = FileRaState()
    sizes = []
    ra.size = 4
    for _ in range(5):
        ra.size = get_next_ra_size(ra, ra.ra_pages)
        sizes.append(ra.size)
    assert sizes == [8, 16, 32, 32, 32]
