"""The buffer cache: file-system metadata blocks cached in the block device's own
page cache (fs/buffer.c, the bdev address_space). What /proc/meminfo calls Buffers."""
from ..mm.filemap import PAGE_SHIFT, PAGE_SIZE, AddressSpace
from ..mm.mm_types import PG_dirty

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

    def map_pages_cached(self, mapping, first: int, n: int):
        return [[(index << PAGE_SHIFT, PAGE_SIZE)] for index in range(first, first + n)]


class BufferCache:
    """The BlockIO a file system mounts on: bread() gives a block as a writable view of guest
    RAM. Dirty state is kept per block, as buffer heads do, so a page holding several blocks
    never writes back a block that was not changed (and perhaps now belongs to file data)."""

    def __init__(self, k, blk, bdev_index: int):
        self.k = k
        self.blk = blk
        self.mapping = AddressSpace(k, (BDEV_MAPPING_BASE + bdev_index) << 1, _BdevAops(blk), blk)
        self.block_size = 1024
        self.dirty_blocks = set()
        self.mapping.writeback = self.sync
        self.mapping.unevictable_metadata = True    # views of its pages are live inside ext2 calls

    @property
    def size_bytes(self) -> int:
        return self.blk.size_bytes

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

    def cached_blocks(self):
        """Where the blocks already in the cache are, for a walk that reads them without I/O and without
        side effects (cython_ext.pagecache.cached_block_at): this device's page cache, guest RAM, and the
        device's size in bytes."""
        return self.mapping.pages, self.k.ram, self.blk.size_bytes

    def mark_dirty(self, block: int) -> None:
        self.dirty_blocks.add(block)
        self.mapping.set_page_dirty((block * self.block_size) >> PAGE_SHIFT)

    def forget(self, block: int) -> None:
        """The block became file data: never write this (stale) copy back."""
        self.dirty_blocks.discard(block)

    def sync(self) -> None:
        """Write every dirty block back, adjacent blocks in one extent."""
        if not self.dirty_blocks:
            return
        bs = self.block_size
        runs = []
        for block in sorted(self.dirty_blocks):
            offset = block * bs
            pfn = self.mapping.pages[offset >> PAGE_SHIFT]
            paddr = (pfn << PAGE_SHIFT) + (offset & (PAGE_SIZE - 1))
            if runs and runs[-1][2] == offset:
                runs[-1][1].append((paddr, bs))
                runs[-1][2] += bs
            else:
                runs.append([offset, [(paddr, bs)], offset + bs])
        # clean before the write (clear_page_dirty_for_io): a block dirtied again while it is in flight
        # (other tasks run while this one waits) stays dirty for the next sync
        written = set(self.dirty_blocks)
        self.dirty_blocks.clear()
        mapping, mem_map = self.mapping, self.k.mem_map
        pages = list(mapping.dirty)
        for index in pages:
            mem_map.clear(mapping.pages[index], PG_dirty)
            mapping.dirty.discard(index)
            self.k.vmstat["nr_dirty"] -= 1
        self.k.dirty_mappings.pop(mapping, None)
        mapping.dirtied_when = None
        if self.blk.transfer_runs(True, [(off, segs) for off, segs, _ in runs]) != 0:
            for block in written:
                self.mark_dirty(block)               # still only here
            raise OSError("I/O error writing metadata")
        self.k.vmstat["pgpgout"] += sum(r[2] - r[0] for r in runs) >> 10

    @property
    def nrpages(self) -> int:
        return self.mapping.nrpages
