"""The buffer cache: file-system metadata blocks cached in the block device's own
page cache (fs/buffer.c, the bdev address_space). What /proc/meminfo calls Buffers."""
from ..mm.filemap import PAGE_SHIFT, PAGE_SIZE, AddressSpace

BDEV_MAPPING_BASE = 1 << 40           # page->mapping ids of block devices, apart from inodes'


class _BdevAops:
    def __init__(self, blk):
        self.blk = blk

    def i_size(self) -> int:
        return self.blk.size_bytes

    def set_i_size(self, size: int) -> None:
        raise OSError("a block device does not grow")

    def map_page(self, mapping, index: int):
        return [(index << PAGE_SHIFT, PAGE_SIZE)]

    map_page_for_write = map_page


class BufferCache:
    """The BlockIO a file system mounts on: bread() gives a block as a writable view of guest RAM."""

    def __init__(self, k, blk, bdev_index: int):
        self.k = k
        self.blk = blk
        self.mapping = AddressSpace(k, (BDEV_MAPPING_BASE + bdev_index) << 1, _BdevAops(blk), blk)
        self.block_size = 1024

    def set_block_size(self, size: int) -> None:
        if size not in (1024, 2048, 4096):
            raise ValueError(f"block size {size}")
        self.block_size = size

    def bread(self, block: int) -> memoryview:
        offset = block * self.block_size
        if offset + self.block_size > self.blk.size_bytes:
            raise OSError(f"block {block} beyond the end of {self.blk.name}")
        pfn = self.mapping.get_page(offset >> PAGE_SHIFT)
        start = (pfn << PAGE_SHIFT) + (offset & (PAGE_SIZE - 1))
        return self.k.ram[start:start + self.block_size]

    def mark_dirty(self, block: int) -> None:
        self.mapping.set_page_dirty((block * self.block_size) >> PAGE_SHIFT)

    def sync(self) -> None:
        self.mapping.writepages()

    @property
    def nrpages(self) -> int:
        return self.mapping.nrpages
