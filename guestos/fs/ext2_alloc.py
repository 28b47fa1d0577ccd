"""ext2 block and inode allocation (fs/ext2/balloc.c, fs/ext2/ialloc.c).

The bitmaps are the truth; the free counts in the group descriptors and the
superblock follow every change at once, so that syncing the device alone leaves
a consistent file system.  Each function takes the mounted `Ext2Fs`.

Simplifications against Linux 2.6.35: no reservation windows (a goal and the
"next block after the last one" rule keep files contiguous), no colour offset
from the pid (the guest must stay deterministic), and the caller is always
treated as privileged, so the root reserve (s_r_blocks_count) is usable;
statfs still reports it through f_bavail.
"""
from __future__ import annotations

from ..kernel.errno import ENOSPC


# --- bitmaps (lib/find_next_bit.c, ext2_set_bit/ext2_clear_bit: little-endian bit order) ---

def ext2_test_bit(bitmap, nr: int) -> bool:
    return bool(bitmap[nr >> 3] & (1 << (nr & 7)))


def ext2_set_bit(bitmap, nr: int) -> None:
    bitmap[nr >> 3] |= 1 << (nr & 7)


def ext2_clear_bit(bitmap, nr: int) -> None:
    bitmap[nr >> 3] &= ~(1 << (nr & 7)) & 0xFF


def find_next_zero_bit(bitmap, size: int, start: int) -> int:
    """The first clear bit in [start, size), or `size` if there is none."""
    if start >= size:
        return size
    if not ext2_test_bit(bitmap, start):
        return start
    first = start >> 3
    last = (size + 7) >> 3
    v = int.from_bytes(bitmap[first:last], "little") >> (start & 7)
    free = ~v & ((1 << (size - start)) - 1)
    if not free:
        return size
    return start + (free & -free).bit_length() - 1


def count_free_bits(bitmap, size: int) -> int:
    v = int.from_bytes(bitmap[:(size + 7) >> 3], "little") & ((1 << size) - 1)
    return size - v.bit_count()


# --- blocks ------------------------------------------------------------------

def ext2_new_block(fs, goal: int) -> int:
    """ext2_new_blocks() for one block: the first free block at or after `goal` in
    its group, then in the following groups, then the goal group from its start."""
    if fs.sb_get("s_free_blocks_count") == 0:
        raise fs.error(ENOSPC, "no free blocks")
    if not fs.first_data_block <= goal < fs.blocks_count:
        goal = fs.first_data_block
    ngroups = fs.groups_count
    goal_group = (goal - fs.first_data_block) // fs.blocks_per_group
    for i in range(ngroups + 1):
        g = (goal_group + i) % ngroups
        if fs.gd_get(g, "bg_free_blocks_count") == 0:
            continue
        start = goal - fs.group_first_block(g) if i == 0 else 0
        nbits = fs.group_nblocks(g)
        bitmap_block = fs.gd_get(g, "bg_block_bitmap")
        bitmap = fs.bread(bitmap_block)
        bit = find_next_zero_bit(bitmap, nbits, start)
        if bit < nbits:
            block = fs.group_first_block(g) + bit
            if fs.in_system_zone(block, 1):
                raise fs.corrupt(f"ext2_new_blocks: allocating block in system zone - block = {block}")
            ext2_set_bit(bitmap, bit)
            fs.bio.mark_dirty(bitmap_block)
            _add_free_blocks(fs, g, -1)
            return block
    raise fs.error(ENOSPC, "no free blocks")


def ext2_free_blocks(fs, block: int, count: int = 1) -> None:
    """Free `count` blocks from `block` (they may span groups)."""
    if count <= 0:
        return
    if block < fs.first_data_block or block + count > fs.blocks_count:
        raise fs.corrupt(f"ext2_free_blocks: freeing blocks not in datazone - block = {block}, count = {count}")
    if fs.in_system_zone(block, count):
        raise fs.corrupt(f"ext2_free_blocks: freeing blocks in system zones - block = {block}, count = {count}")
    while count:
        g = (block - fs.first_data_block) // fs.blocks_per_group
        bit = block - fs.group_first_block(g)
        n = min(count, fs.group_nblocks(g) - bit)
        bitmap_block = fs.gd_get(g, "bg_block_bitmap")
        bitmap = fs.bread(bitmap_block)
        for b in range(bit, bit + n):
            if not ext2_test_bit(bitmap, b):
                raise fs.corrupt(f"ext2_free_blocks: bit already cleared for block {fs.group_first_block(g) + b}")
            ext2_clear_bit(bitmap, b)
        fs.bio.mark_dirty(bitmap_block)
        _add_free_blocks(fs, g, n)
        block += n
        count -= n


def _add_free_blocks(fs, g: int, delta: int) -> None:
    free = fs.gd_get(g, "bg_free_blocks_count") + delta
    total = fs.sb_get("s_free_blocks_count") + delta
    if not 0 <= free <= fs.group_nblocks(g) or not 0 <= total <= fs.blocks_count:
        raise fs.corrupt(f"free blocks count corrupted in group {g}")
    fs.gd_set(g, "bg_free_blocks_count", free)
    fs.sb_set("s_free_blocks_count", total)


# --- inodes ------------------------------------------------------------------

def _find_group_dir(fs) -> int:
    """find_group_dir(): a group with at least the average of free inodes and
    the most free blocks, so directories spread over the disk."""
    ngroups = fs.groups_count
    avefreei = fs.sb_get("s_free_inodes_count") // ngroups
    best, best_blocks = -1, -1
    for g in range(ngroups):
        free_inodes = fs.gd_get(g, "bg_free_inodes_count")
        if not free_inodes or free_inodes < avefreei:
            continue
        free_blocks = fs.gd_get(g, "bg_free_blocks_count")
        if free_blocks > best_blocks:
            best, best_blocks = g, free_blocks
    return best


def _find_group_other(fs, parent_group: int, parent_ino: int) -> int:
    """find_group_other(): the parent's group, then a quadratic hash, then linear."""
    ngroups = fs.groups_count
    g = parent_group
    if fs.gd_get(g, "bg_free_inodes_count") and fs.gd_get(g, "bg_free_blocks_count"):
        return g
    g = (g + parent_ino) % ngroups
    i = 1
    while i < ngroups:
        g = (g + i) % ngroups
        if fs.gd_get(g, "bg_free_inodes_count") and fs.gd_get(g, "bg_free_blocks_count"):
            return g
        i <<= 1
    g = parent_group
    for _ in range(ngroups):
        g = (g + 1) % ngroups
        if fs.gd_get(g, "bg_free_inodes_count"):
            return g
    return -1


def ext2_new_inode_number(fs, parent_ino: int, is_dir: bool) -> int:
    """The bitmap half of ext2_new_inode(): claim a free inode number."""
    if fs.sb_get("s_free_inodes_count") == 0:
        raise fs.error(ENOSPC, "no free inodes")
    ngroups, ipg = fs.groups_count, fs.inodes_per_group
    parent_group = (parent_ino - 1) // ipg
    g = _find_group_dir(fs) if is_dir else _find_group_other(fs, parent_group, parent_ino)
    if g < 0:
        g = parent_group
    for _ in range(ngroups):
        if fs.gd_get(g, "bg_free_inodes_count"):
            bitmap_block = fs.gd_get(g, "bg_inode_bitmap")
            bitmap = fs.bread(bitmap_block)
            bit = find_next_zero_bit(bitmap, ipg, 0)
            while bit < ipg:
                ino = g * ipg + bit + 1
                if ino >= fs.first_ino:
                    ext2_set_bit(bitmap, bit)
                    fs.bio.mark_dirty(bitmap_block)
                    _add_free_inodes(fs, g, -1, is_dir)
                    return ino
                bit = find_next_zero_bit(bitmap, ipg, bit + 1)   # reserved inode shown free: skip it
        g = (g + 1) % ngroups
    raise fs.error(ENOSPC, "no free inodes")


def ext2_free_inode(fs, ino: int, is_dir: bool) -> None:
    if ino < fs.first_ino or ino > fs.inodes_count:
        raise fs.corrupt(f"ext2_free_inode: reserved or nonexistent inode {ino}")
    g, bit = divmod(ino - 1, fs.inodes_per_group)
    bitmap_block = fs.gd_get(g, "bg_inode_bitmap")
    bitmap = fs.bread(bitmap_block)
    if not ext2_test_bit(bitmap, bit):
        raise fs.corrupt(f"ext2_free_inode: bit already cleared for inode {ino}")
    ext2_clear_bit(bitmap, bit)
    fs.bio.mark_dirty(bitmap_block)
    _add_free_inodes(fs, g, 1, is_dir)


def _add_free_inodes(fs, g: int, delta: int, is_dir: bool) -> None:
    free = fs.gd_get(g, "bg_free_inodes_count") + delta
    total = fs.sb_get("s_free_inodes_count") + delta
    dirs = fs.gd_get(g, "bg_used_dirs_count") - delta if is_dir else 0
    if not 0 <= free <= fs.inodes_per_group or not 0 <= total <= fs.inodes_count or dirs < 0:
        raise fs.corrupt(f"free inodes count corrupted in group {g}")
    fs.gd_set(g, "bg_free_inodes_count", free)
    if is_dir:
        fs.gd_set(g, "bg_used_dirs_count", dirs)
    fs.sb_set("s_free_inodes_count", total)
