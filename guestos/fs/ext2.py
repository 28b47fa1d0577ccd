"""The second extended file system (fs/ext2/ of Linux 2.6.35), for images as
`mke2fs -t ext2 -d DIR` writes them.

Supported: revision 0 and 1, 1, 2 and 4 KiB blocks, 128-byte and larger
inodes, sparse_super (and sparse_super2), large_file, filetype (and its
absence), flex_bg (the bitmaps and inode tables are found through the group
descriptors wherever they are), the compatible features mke2fs sets (ext_attr:
EA blocks are released with their inode; resize_inode: its reserve is left
alone; dir_index: a directory we modify loses EXT2_INDEX_FL, as kernels without
htree support did, and its htree blocks read as empty entries), and images with
a journal that needs no recovery.  Directories are linear, as in ext2.  Rejected at mount with EINVAL: any other incompatible
feature (extents, 64bit, meta_bg, inline_data, a journal needing recovery, ...);
an unknown read-only-compatible feature (metadata_csum, huge_file, ...) allows a
read-only mount only.

Block I/O goes through a small `BlockIO` device (bread / mark_dirty / sync), so
the kernel can put its page cache under it; `FileBlockIO` serves an image held in
a bytearray or a file.  Every metadata change is made in the device's buffers at
once (bitmaps, group descriptors, superblock counters, inodes), so `bio.sync()`
alone leaves a consistent file system at any point between calls.

Like Linux, a read-write mount clears EXT2_VALID_FS on disk and `put_super()`
(umount) restores the state found at mount.  atime is never updated after an
inode is created (as with `noatime`): reads never dirty metadata.  Timestamps
come from the `now` callable given to `mount` (the guest's virtual clock).  The
caller is treated as privileged: permission checks belong to the VFS, and the
root block reserve is usable.  Inodes reach their end when the last link goes
and nobody holds them (`igrab` / `iput`, for open files), as in ext2_delete_inode.

Everything the image controls is checked before use: block numbers must lie in
the data zone (not on bitmaps, inode tables, superblocks or descriptors),
inode numbers in range, directory entries as ext2_check_page() checks them,
symlink chains and ".." chains are bounded.  Violations raise
`Ext2Error(EUCLEAN, ...)` (EINVAL when the superblock or group descriptors
fail at mount, as ext2_fill_super); every loop is bounded by the geometry.
`Ext2Error` is a `SyscallError`: its errno is what a system call returns.
"""
from __future__ import annotations

import bisect
import struct
import time
import weakref
from typing import Callable, NamedTuple, Protocol

import cython_ext

from ..kernel import errno as _errno
from ..kernel.errno import (EBUSY, EEXIST, EFBIG, EINVAL, EIO, EISDIR, ELOOP, EMLINK, ENAMETOOLONG, ENOENT,
                            ENOSPC, ENOTDIR, ENOTEMPTY, EPERM, EROFS, SyscallError)
from . import ext2_alloc as alloc
from .ext2_layout import (DIRENT2_HDR, DIRENT_HDR, EXT2_DFL_MAX_MNT_COUNT, EXT2_DIND_BLOCK, EXT2_DIR_REC_LEN,
                          EXT2_DYNAMIC_REV, EXT2_FEATURE_COMPAT_RESIZE_INO, EXT2_FEATURE_INCOMPAT_FILETYPE,
                          EXT2_FEATURE_INCOMPAT_SUPP, EXT2_FEATURE_RO_COMPAT_LARGE_FILE,
                          EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER, EXT2_FEATURE_RO_COMPAT_SUPP, EXT2_FL_INHERITED,
                          EXT2_FT_DIR, EXT2_GOOD_OLD_FIRST_INO, EXT2_GOOD_OLD_INODE_SIZE, EXT2_GOOD_OLD_REV,
                          EXT2_IND_BLOCK, EXT2_INDEX_FL, EXT2_LINK_MAX, EXT2_MAX_BLOCK_SIZE,
                          EXT2_MIN_BLOCK_SIZE, EXT2_N_BLOCKS, EXT2_NAME_LEN, EXT2_NDIR_BLOCKS, EXT2_REG_FLMASK,
                          EXT2_ROOT_INO, EXT2_SUPER_MAGIC, EXT2_TIND_BLOCK, EXT2_VALID_FS, EXT2_XATTR_MAGIC,
                          EXT3_FEATURE_INCOMPAT_RECOVER, EXT4_FEATURE_COMPAT_SPARSE_SUPER2,
                          EXT4_FEATURE_INCOMPAT_FLEX_BG, GROUP_DESC, INODE,
                          INODE_EXTRA, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFMT_TO_FT,
                          S_IFREG, S_IFSOCK, S_ISGID, SUPER, SUPERBLOCK_OFFSET, XATTR_HEADER)

EUCLEAN = 117           # "Structure needs cleaning" (ext4's EFSCORRUPTED); not in kernel/errno.py yet
ESTALE = 116
MAXSYMLINKS = 40        # symlinks followed in one path walk (Linux: 40 in total)
PATH_MAX = 4096

_U32 = struct.Struct("<I")
_pagecache = cython_ext.load("pagecache")      # block checks of a whole indirect block, native unless BALLAST_PURE=1
_ERRNO_NAMES = {v: k for k, v in vars(_errno).items() if k.startswith("E") and isinstance(v, int)}
_ERRNO_NAMES.update({EUCLEAN: "EUCLEAN", ESTALE: "ESTALE"})


class Ext2Error(SyscallError):
    """A failed ext2 operation: `errno` is the Linux errno a system call returns."""

    def __init__(self, errno: int, message: str):
        Exception.__init__(self, errno, message)
        self.errno = errno
        self.message = message

    def __str__(self) -> str:
        return f"EXT2-fs: {self.message} ({_ERRNO_NAMES.get(self.errno, self.errno)})"


# --- the block device under the file system ----------------------------------

class BlockIO(Protocol):
    """What ext2 needs from a block device (the buffer cache's sb_bread/mark_buffer_dirty).

    bread(block) gives a writable buffer of block_size bytes.  The fs keeps no
    buffer across its own calls; within one call, two breads of a block must give
    the same memory.  An optional `size_bytes` attribute lets mount check the
    geometry against the device."""
    block_size: int

    def set_block_size(self, size: int) -> None: ...

    def bread(self, block: int) -> memoryview: ...

    def mark_dirty(self, block: int) -> None: ...

    def sync(self) -> None: ...


class FileBlockIO:
    """BlockIO over an image in a bytearray (buffers are views of it) or in a
    binary file object (buffers cached in memory, dirty ones written by sync)."""

    def __init__(self, backing, block_size: int = EXT2_MIN_BLOCK_SIZE):
        if isinstance(backing, (bytearray, memoryview)):
            self._mem = memoryview(backing)
            if self._mem.readonly:
                raise ValueError("FileBlockIO needs a writable buffer")
            self._file = None
            self.size_bytes = len(self._mem)
        else:
            self._mem = None
            self._file = backing
            backing.seek(0, 2)
            self.size_bytes = backing.tell()
        self._cache: dict[int, bytearray] = {}
        self._dirty: set[int] = set()
        self.block_size = block_size

    def set_block_size(self, size: int) -> None:
        if size < 512 or size & (size - 1):
            raise ValueError(f"bad block size {size}")
        self.sync()
        self._cache.clear()
        self.block_size = size

    def bread(self, block: int) -> memoryview:
        bs = self.block_size
        if not 0 <= block < self.size_bytes // bs:
            raise Ext2Error(EIO, f"attempt to access beyond end of device: block {block}")
        if self._mem is not None:
            return self._mem[block * bs:(block + 1) * bs]
        buf = self._cache.get(block)
        if buf is None:
            self._file.seek(block * bs)
            buf = bytearray(self._file.read(bs).ljust(bs, b"\0"))
            self._cache[block] = buf
        return memoryview(buf)

    def mark_dirty(self, block: int) -> None:
        self._dirty.add(block)

    def sync(self) -> None:
        if self._file is not None:
            bs = self.block_size
            for block in sorted(self._dirty):
                self._file.seek(block * bs)
                self._file.write(self._cache[block])
            self._file.flush()
        self._dirty.clear()


# --- in-core inode -------------------------------------------------------------

class Ext2Inode:
    """struct ext2_inode_info with its VFS inode: the decoded on-disk inode.

    `i_block` is the block map: 12 direct pointers, then single, double and
    triple indirect (for fast symlinks the target, for devices the number)."""
    __slots__ = ("ino", "mode", "uid", "gid", "size", "atime", "ctime", "mtime", "dtime", "links_count",
                 "blocks", "flags", "i_block", "generation", "file_acl", "raw", "extra", "i_count",
                 "next_alloc_block", "next_alloc_goal", "__weakref__")

    def __init__(self, ino: int, raw: dict, extra: dict | None):
        self.ino = ino
        self.raw, self.extra = raw, extra
        self.mode = raw["i_mode"]
        self.uid = raw["i_uid"] | raw["l_i_uid_high"] << 16
        self.gid = raw["i_gid"] | raw["l_i_gid_high"] << 16
        self.size = raw["i_size"]
        if self.mode & S_IFMT == S_IFREG:
            self.size |= raw["i_dir_acl"] << 32
        self.atime, self.ctime, self.mtime = raw["i_atime"], raw["i_ctime"], raw["i_mtime"]
        self.dtime = raw["i_dtime"]
        self.links_count = raw["i_links_count"]
        self.blocks = raw["i_blocks"]          # 512-byte sectors, data + indirect + xattr block
        self.flags = raw["i_flags"]
        self.i_block = list(raw["i_block"])
        self.generation = raw["i_generation"]
        self.file_acl = raw["i_file_acl"]
        self.i_count = 0                       # holders (open files): the inode outlives its last link
        self.next_alloc_block = 0              # last allocated logical block + 1 (ext2_block_alloc_info)
        self.next_alloc_goal = 0               # physical block after it

    @property
    def file_type(self) -> int:
        return self.mode & S_IFMT

    @property
    def is_dir(self) -> bool:
        return self.mode & S_IFMT == S_IFDIR

    @property
    def is_reg(self) -> bool:
        return self.mode & S_IFMT == S_IFREG

    @property
    def is_lnk(self) -> bool:
        return self.mode & S_IFMT == S_IFLNK

    @property
    def rdev(self) -> int:
        """The device number of a character or block device (glibc's dev_t encoding)."""
        if self.mode & S_IFMT not in (S_IFCHR, S_IFBLK):
            return 0
        if self.i_block[0]:
            old = self.i_block[0]
            major, minor = (old >> 8) & 0xFF, old & 0xFF
        else:
            new = self.i_block[1]
            major, minor = (new & 0xFFF00) >> 8, (new & 0xFF) | ((new >> 12) & 0xFFF00)
        return _makedev(major, minor)

    def __repr__(self) -> str:
        return f"Ext2Inode(ino={self.ino}, mode={self.mode:#o}, size={self.size}, links={self.links_count})"


def _makedev(major: int, minor: int) -> int:
    return ((major & 0xFFFFF000) << 32) | ((major & 0xFFF) << 8) | ((minor & 0xFFFFFF00) << 12) | (minor & 0xFF)


def _major_minor(dev: int) -> tuple[int, int]:
    major = ((dev >> 8) & 0xFFF) | ((dev >> 32) & 0xFFFFF000)
    minor = (dev & 0xFF) | ((dev >> 12) & 0xFFFFFF00)
    return major, minor


class DirEntry(NamedTuple):
    """One validated ext2_dir_entry_2 in a directory block."""
    pblk: int           # the block holding it
    off: int            # its offset in the block
    prev_off: int       # offset of the previous entry in the block, -1 for the first
    ino: int
    rec_len: int
    name_len: int
    file_type: int
    name: bytes


class DirBlock(NamedTuple):
    """A directory block's entries, validated once per content as ext2_check_page() does once per page."""
    entries: tuple[DirEntry, ...]
    live: dict[bytes, DirEntry]     # name -> its first live entry in the block
    max_slack: int                  # the largest gap an entry leaves, what ext2_add_link() looks for


DIR_BLOCK_CACHE = 1024      # parsed directory blocks kept per mount, keyed by their bytes


class Ext2StatFs(NamedTuple):
    f_type: int
    f_bsize: int
    f_blocks: int
    f_bfree: int
    f_bavail: int
    f_files: int
    f_ffree: int
    f_namelen: int


def _ext2_max_size(bits: int) -> int:
    """ext2_max_size(): the largest file whose i_blocks (512-byte sectors) fits 32 bits."""
    upper_limit = ((1 << 32) - 1) >> (bits - 9)
    meta_blocks = 1
    meta_blocks += 1 + (1 << (bits - 2))
    meta_blocks += 1 + (1 << (bits - 2)) + (1 << (2 * (bits - 2)))
    upper_limit = (upper_limit - meta_blocks) << bits
    res = EXT2_NDIR_BLOCKS + (1 << (bits - 2)) + (1 << (2 * (bits - 2))) + (1 << (3 * (bits - 2)))
    return min(res << bits, upper_limit, (1 << 63) - 1)


def _bg_has_super(group: int, sparse: bool, backup_bgs: tuple[int, int] | None = None) -> bool:
    """ext2_bg_has_super(): with sparse_super, groups 0, 1 and powers of 3, 5 and 7;
    with sparse_super2, group 0 and the two named in the superblock."""
    if group == 0:
        return True
    if backup_bgs is not None:
        return group in backup_bgs
    if group == 1 or not sparse:
        return True
    for base in (3, 5, 7):
        n = base
        while n < group:
            n *= base
        if n == group:
            return True
    return False


# --- the file system -------------------------------------------------------------

class Ext2Fs:
    """A mounted ext2 file system (struct ext2_sb_info and the inode and
    directory operations of fs/ext2/).  Arguments naming an inode accept an
    inode number or an `Ext2Inode`; names are str (UTF-8, surrogateescape) or bytes."""

    # ---- mount / umount (super.c) ----

    @classmethod
    def mount(cls, bio: BlockIO, read_only: bool = False, now: Callable[[], float] | None = None) -> "Ext2Fs":
        """ext2_fill_super(): check the superblock and group descriptors, then mount."""
        fs = cls.__new__(cls)
        fs.bio = bio
        fs.read_only = read_only
        fs.now = (lambda: int(time.time())) if now is None else (lambda: int(now()))
        fs._icache = weakref.WeakValueDictionary()
        fs._held = {}
        fs._dir_block_cache = {}
        fs._fill_super()
        return fs

    def _fill_super(self) -> None:
        bio = self.bio
        try:
            bio.set_block_size(EXT2_MIN_BLOCK_SIZE)
        except (ValueError, OSError) as e:
            raise Ext2Error(EINVAL, f"unable to set blocksize: {e}") from None
        self.block_size = EXT2_MIN_BLOCK_SIZE
        sb = SUPER.unpack(self._bread_raw(SUPERBLOCK_OFFSET // EXT2_MIN_BLOCK_SIZE), 0)
        if sb["s_magic"] != EXT2_SUPER_MAGIC:
            raise Ext2Error(EINVAL, "can't find an ext2 filesystem on the device (bad magic)")
        rev = sb["s_rev_level"]
        if rev > EXT2_DYNAMIC_REV:
            raise Ext2Error(EINVAL, f"revision level too high: {rev}")
        if rev == EXT2_GOOD_OLD_REV:
            self.first_ino, self.inode_size = EXT2_GOOD_OLD_FIRST_INO, EXT2_GOOD_OLD_INODE_SIZE
            compat = incompat = ro_compat = 0
        else:
            self.first_ino, self.inode_size = sb["s_first_ino"], sb["s_inode_size"]
            compat, incompat, ro_compat = (sb["s_feature_compat"], sb["s_feature_incompat"],
                                           sb["s_feature_ro_compat"])
        if incompat & EXT3_FEATURE_INCOMPAT_RECOVER:
            raise Ext2Error(EINVAL, "couldn't mount: the journal needs recovery (run e2fsck)")
        unsupported = incompat & ~EXT2_FEATURE_INCOMPAT_SUPP
        if unsupported:
            raise Ext2Error(EINVAL, f"couldn't mount because of unsupported optional features ({unsupported:x})")
        unsupported = ro_compat & ~EXT2_FEATURE_RO_COMPAT_SUPP
        if unsupported and not self.read_only:
            raise Ext2Error(EINVAL, "couldn't mount RDWR because of unsupported optional features "
                                    f"({unsupported:x}); mount read-only")
        self.compat, self.incompat, self.ro_compat = compat, incompat, ro_compat
        self.has_filetype = bool(incompat & EXT2_FEATURE_INCOMPAT_FILETYPE)
        self.flex_bg = bool(incompat & EXT4_FEATURE_INCOMPAT_FLEX_BG)
        self.sparse_super = bool(ro_compat & EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER)
        # groups holding a superblock backup: all, sparse (0, 1, powers of 3, 5, 7) or sparse_super2's two
        self.backup_bgs = tuple(sb["s_backup_bgs"]) if compat & EXT4_FEATURE_COMPAT_SPARSE_SUPER2 else None

        if sb["s_log_block_size"] > 2:
            raise Ext2Error(EINVAL, f"unsupported blocksize {EXT2_MIN_BLOCK_SIZE << min(sb['s_log_block_size'], 20)}")
        bs = EXT2_MIN_BLOCK_SIZE << sb["s_log_block_size"]
        assert bs <= EXT2_MAX_BLOCK_SIZE
        self.block_size = bs
        self.block_bits = bs.bit_length() - 1
        self.addr_per_block = bs // 4
        self.max_size = _ext2_max_size(self.block_bits)
        self._zero_block = bytes(bs)

        # geometry (ext2_fill_super and ext4's sanity checks)
        blocks_count, inodes_count = sb["s_blocks_count"], sb["s_inodes_count"]
        bpg, ipg, fdb = sb["s_blocks_per_group"], sb["s_inodes_per_group"], sb["s_first_data_block"]
        isz = self.inode_size
        if isz < EXT2_GOOD_OLD_INODE_SIZE or isz > bs or isz & (isz - 1):
            raise Ext2Error(EINVAL, f"unsupported inode size: {isz}")
        if fdb != (1 if bs == 1024 else 0):
            raise Ext2Error(EINVAL, f"bad s_first_data_block {fdb} for {bs}-byte blocks")
        if not 0 < bpg <= 8 * bs or bpg % 8:
            raise Ext2Error(EINVAL, f"#blocks per group invalid: {bpg}")
        if not 0 < ipg <= 8 * bs or (ipg * isz) % bs:
            raise Ext2Error(EINVAL, f"#inodes per group invalid: {ipg}")
        if blocks_count <= fdb + 1:
            raise Ext2Error(EINVAL, f"block count {blocks_count} too small")
        dev_size = getattr(bio, "size_bytes", None)
        if dev_size is not None and blocks_count * bs > dev_size:
            raise Ext2Error(EINVAL, f"bad geometry: block count {blocks_count} exceeds size of device "
                                    f"({dev_size // bs} blocks)")
        groups = (blocks_count - fdb + bpg - 1) // bpg
        if inodes_count != groups * ipg:
            raise Ext2Error(EINVAL, f"inodes count {inodes_count} != {groups} groups * {ipg} inodes per group")
        if rev != EXT2_GOOD_OLD_REV and not EXT2_GOOD_OLD_FIRST_INO <= self.first_ino < inodes_count:
            raise Ext2Error(EINVAL, f"invalid first ino: {self.first_ino}")
        self.blocks_count, self.inodes_count = blocks_count, inodes_count
        self.blocks_per_group, self.inodes_per_group, self.first_data_block = bpg, ipg, fdb
        self.groups_count = groups
        self.itb_per_group = ipg * isz // bs
        self.desc_per_block = bs // GROUP_DESC.size
        self.gdb_count = (groups + self.desc_per_block - 1) // self.desc_per_block
        self.reserved_gdt = sb["s_reserved_gdt_blocks"] if compat & EXT2_FEATURE_COMPAT_RESIZE_INO else 0
        if self.reserved_gdt > bs // 4:
            raise Ext2Error(EINVAL, f"number of reserved GDT blocks insanely large: {self.reserved_gdt}")
        self.sb_block, self.sb_off = (1, 0) if bs == 1024 else (0, SUPERBLOCK_OFFSET)
        if self.sb_block + 1 + self.gdb_count > blocks_count:
            raise Ext2Error(EINVAL, "group descriptors beyond the end of the file system")

        try:
            bio.set_block_size(bs)
        except (ValueError, OSError) as e:
            raise Ext2Error(EINVAL, f"unable to set blocksize {bs}: {e}") from None
        self._check_descriptors()
        self._setup_system_zone()
        self.s_next_generation = int.from_bytes(sb["s_uuid"][:4], "little")
        root = self.iget(EXT2_ROOT_INO)
        if not root.is_dir or not root.blocks or not root.size:
            raise Ext2Error(EINVAL, "corrupt root inode, run e2fsck")
        if not self.read_only:
            self._setup_super()

    def _check_descriptors(self) -> None:
        """ext2_check_descriptors()."""
        itb = self.itb_per_group
        free_blocks = free_inodes = 0
        for g in range(self.groups_count):
            if self.flex_bg:
                lo, hi = self.first_data_block, self.blocks_count
            else:
                lo = self.group_first_block(g)
                hi = lo + self.group_nblocks(g)
            d = GROUP_DESC.unpack(*self._gd_loc(g))
            for what, block, n in (("Block bitmap", d["bg_block_bitmap"], 1),
                                   ("Inode bitmap", d["bg_inode_bitmap"], 1),
                                   ("Inode table", d["bg_inode_table"], itb)):
                if not (lo <= block and block + n <= hi):
                    raise Ext2Error(EINVAL, f"ext2_check_descriptors: {what} for group {g} not in group "
                                            f"(block {block})")
            if (d["bg_free_blocks_count"] > self.group_nblocks(g) or d["bg_free_inodes_count"] > self.inodes_per_group
                    or d["bg_used_dirs_count"] > self.inodes_per_group):
                raise Ext2Error(EINVAL, f"ext2_check_descriptors: bad counts in group {g}")
            free_blocks += d["bg_free_blocks_count"]
            free_inodes += d["bg_free_inodes_count"]
        self._gd_free_blocks, self._gd_free_inodes = free_blocks, free_inodes

    def _setup_system_zone(self) -> None:
        """The blocks no file may own: superblocks and descriptor tables (with
        resize_inode's reserve), bitmaps and inode tables, as sorted runs.  No two
        of them may overlap (corrupt descriptors would have us write inodes over
        a bitmap)."""
        zones = []
        for g in range(self.groups_count):
            first = self.group_first_block(g)
            if self.has_super(g):
                zones.append((first, first + 1 + self.gdb_count + self.reserved_gdt))
            for name, n in (("bg_block_bitmap", 1), ("bg_inode_bitmap", 1), ("bg_inode_table", self.itb_per_group)):
                b = self.gd_get(g, name)
                zones.append((b, b + n))
        zones.sort()
        starts, ends = [], []
        for s, e in zones:
            if starts and s < ends[-1]:
                raise Ext2Error(EINVAL, f"group descriptors corrupted: metadata overlaps at block {s}")
            if starts and s == ends[-1]:
                ends[-1] = e
            else:
                starts.append(s)
                ends.append(e)
        self._zone_starts, self._zone_ends = starts, ends

    def _setup_super(self) -> None:
        """ext2_setup_super(): count the mount, mark the fs not clean while mounted,
        and take the free counts from the group descriptors (as the percpu counters do)."""
        self.mount_state = self.sb_get("s_state")
        if self.sb_get("s_max_mnt_count") == 0:
            self.sb_set("s_max_mnt_count", EXT2_DFL_MAX_MNT_COUNT)
        self.sb_set("s_mnt_count", (self.sb_get("s_mnt_count") + 1) & 0xFFFF)
        now = self.now() & 0xFFFFFFFF
        self.sb_set("s_mtime", now)
        self.sb_set("s_wtime", now)
        self.sb_set("s_state", self.mount_state & ~EXT2_VALID_FS)
        self.sb_set("s_free_blocks_count", self._gd_free_blocks)
        self.sb_set("s_free_inodes_count", self._gd_free_inodes)

    def sync_fs(self) -> None:
        """ext2_sync_fs(): stamp the superblock and write every dirty buffer."""
        if not self.read_only:
            self.sb_set("s_wtime", self.now() & 0xFFFFFFFF)
        self.bio.sync()

    def put_super(self) -> None:
        """umount: restore the state found at mount (clean if it was) and sync."""
        if not self.read_only:
            self.sb_set("s_state", self.mount_state)
        self.sync_fs()
        self.read_only = True

    def statfs(self) -> Ext2StatFs:
        """ext2_statfs() (bsddf): f_blocks excludes the metadata overhead."""
        overhead = self.first_data_block
        for g in range(self.groups_count):
            if self.has_super(g):
                overhead += 1 + self.gdb_count
        overhead += self.groups_count * (2 + self.itb_per_group)
        # the group descriptors' sums, as Linux's percpu counters (a read-only
        # mount does not rewrite the superblock's own counts)
        bfree = sum(self.gd_get(g, "bg_free_blocks_count") for g in range(self.groups_count))
        ffree = sum(self.gd_get(g, "bg_free_inodes_count") for g in range(self.groups_count))
        return Ext2StatFs(f_type=EXT2_SUPER_MAGIC, f_bsize=self.block_size,
                          f_blocks=self.blocks_count - overhead, f_bfree=bfree,
                          f_bavail=max(0, bfree - self.sb_get("s_r_blocks_count")),
                          f_files=self.inodes_count, f_ffree=ffree, f_namelen=EXT2_NAME_LEN)

    # ---- low-level accessors used here and by ext2_alloc ----

    def error(self, errno: int, message: str) -> Ext2Error:
        return Ext2Error(errno, message)

    def corrupt(self, message: str) -> Ext2Error:
        return Ext2Error(EUCLEAN, message)

    def _bread_raw(self, block: int) -> memoryview:
        try:
            buf = self.bio.bread(block)
        except Ext2Error:
            raise
        except Exception as e:      # a device error of any kind is an I/O error to the fs
            raise Ext2Error(EIO, f"reading block {block}: {e}") from None
        if len(buf) != self.block_size:
            raise Ext2Error(EIO, f"reading block {block}: short buffer")
        return buf

    def bread(self, block: int) -> memoryview:
        if not 0 <= block < self.blocks_count:
            raise self.corrupt(f"block {block} beyond the end of the file system ({self.blocks_count} blocks)")
        return self._bread_raw(block)

    def sb_get(self, name: str):
        return SUPER.get(self._bread_raw(self.sb_block), self.sb_off, name)

    def sb_set(self, name: str, value) -> None:
        SUPER.set(self._bread_raw(self.sb_block), self.sb_off, name, value)
        self.bio.mark_dirty(self.sb_block)

    def _gd_loc(self, g: int):
        block = self.sb_block + 1 + g // self.desc_per_block
        return self._bread_raw(block), (g % self.desc_per_block) * GROUP_DESC.size

    def gd_get(self, g: int, name: str) -> int:
        return GROUP_DESC.get(*self._gd_loc(g), name)

    def gd_set(self, g: int, name: str, value: int) -> None:
        buf, off = self._gd_loc(g)
        GROUP_DESC.set(buf, off, name, value)
        self.bio.mark_dirty(self.sb_block + 1 + g // self.desc_per_block)

    def has_super(self, g: int) -> bool:
        return _bg_has_super(g, self.sparse_super, self.backup_bgs)

    def group_first_block(self, g: int) -> int:
        return self.first_data_block + g * self.blocks_per_group

    def group_nblocks(self, g: int) -> int:
        return min(self.blocks_per_group, self.blocks_count - self.group_first_block(g))

    def in_system_zone(self, block: int, count: int) -> bool:
        i = bisect.bisect_right(self._zone_starts, block + count - 1) - 1
        return i >= 0 and self._zone_ends[i] > block

    def _check_block(self, block: int, inode: Ext2Inode) -> None:
        """ext2_data_block_valid()."""
        if not self.first_data_block <= block < self.blocks_count or self.in_system_zone(block, 1):
            raise self.corrupt(f"inode {inode.ino}: illegal block {block}")

    def _check_rw(self) -> None:
        if self.read_only:
            raise Ext2Error(EROFS, "file system is mounted read-only")

    # ---- inodes (inode.c) ----

    def _inode_loc(self, ino: int) -> tuple[int, int]:
        g, index = divmod(ino - 1, self.inodes_per_group)
        off = index * self.inode_size
        return self.gd_get(g, "bg_inode_table") + off // self.block_size, off % self.block_size

    def iget(self, ino: int) -> Ext2Inode:
        """ext2_iget(): the in-core inode (one object per inode number while in use)."""
        if not isinstance(ino, int) or not 1 <= ino <= self.inodes_count:
            raise Ext2Error(EUCLEAN, f"bad inode number: {ino}")
        inode = self._icache.get(ino)
        if inode is not None:
            return inode
        block, off = self._inode_loc(ino)
        buf = self.bread(block)
        raw = INODE.unpack(buf, off)
        extra = INODE_EXTRA.unpack(buf, off + EXT2_GOOD_OLD_INODE_SIZE) if self.inode_size > 128 else None
        inode = Ext2Inode(ino, raw, extra)
        if inode.links_count == 0 and (inode.mode == 0 or inode.dtime):
            raise Ext2Error(ESTALE, f"deleted inode {ino} referenced")
        if inode.is_lnk and self._is_fast_symlink(inode) and inode.size >= 4 * EXT2_N_BLOCKS:
            raise self.corrupt(f"inode {ino}: fast symlink of size {inode.size}")
        self._icache[ino] = inode
        return inode

    def _inode(self, x) -> Ext2Inode:
        return x if isinstance(x, Ext2Inode) else self.iget(x)

    def write_inode(self, inode: Ext2Inode) -> None:
        """ext2_write_inode() / ext2_update_inode()."""
        self._check_rw()
        if inode.size > 0x7FFFFFFF and inode.is_reg and not self.ro_compat & EXT2_FEATURE_RO_COMPAT_LARGE_FILE:
            self._set_large_file()
        raw = dict(inode.raw)
        raw["i_mode"] = inode.mode
        raw["i_uid"], raw["l_i_uid_high"] = inode.uid & 0xFFFF, (inode.uid >> 16) & 0xFFFF
        raw["i_gid"], raw["l_i_gid_high"] = inode.gid & 0xFFFF, (inode.gid >> 16) & 0xFFFF
        raw["i_size"] = inode.size & 0xFFFFFFFF
        if inode.is_reg:
            raw["i_dir_acl"] = inode.size >> 32
        raw["i_atime"], raw["i_ctime"] = inode.atime & 0xFFFFFFFF, inode.ctime & 0xFFFFFFFF
        raw["i_mtime"], raw["i_dtime"] = inode.mtime & 0xFFFFFFFF, inode.dtime & 0xFFFFFFFF
        raw["i_links_count"] = inode.links_count
        raw["i_blocks"] = inode.blocks
        raw["i_flags"] = inode.flags
        raw["i_block"] = list(inode.i_block)
        raw["i_generation"] = inode.generation
        raw["i_file_acl"] = inode.file_acl
        block, off = self._inode_loc(inode.ino)
        buf = self.bread(block)
        INODE.pack_into(buf, off, raw)
        extra = inode.extra
        if extra is not None and extra["i_extra_isize"] >= 16:
            # ext2 keeps seconds only: a changed time loses the nanoseconds mke2fs stored
            for t in ("i_ctime", "i_mtime", "i_atime"):
                if raw[t] != inode.raw[t]:
                    extra[t + "_extra"] = 0
            INODE_EXTRA.pack_into(buf, off + EXT2_GOOD_OLD_INODE_SIZE, extra)
        inode.raw = raw
        self.bio.mark_dirty(block)

    def _set_large_file(self) -> None:
        """A file passed 2 GiB: the superblock says so (ext2_update_inode)."""
        if self.sb_get("s_rev_level") == EXT2_GOOD_OLD_REV:
            self.sb_set("s_rev_level", EXT2_DYNAMIC_REV)
            self.sb_set("s_first_ino", EXT2_GOOD_OLD_FIRST_INO)
            self.sb_set("s_inode_size", EXT2_GOOD_OLD_INODE_SIZE)
        self.ro_compat |= EXT2_FEATURE_RO_COMPAT_LARGE_FILE
        self.sb_set("s_feature_ro_compat", self.sb_get("s_feature_ro_compat") | EXT2_FEATURE_RO_COMPAT_LARGE_FILE)

    def _is_fast_symlink(self, inode: Ext2Inode) -> bool:
        """ext2_inode_is_fast_symlink(): no data blocks besides an xattr block."""
        ea_blocks = self.block_size >> 9 if inode.file_acl else 0
        return inode.is_lnk and inode.blocks - ea_blocks == 0

    def _has_block_map(self, inode: Ext2Inode) -> bool:
        t = inode.mode & S_IFMT
        return t in (S_IFREG, S_IFDIR) or (t == S_IFLNK and not self._is_fast_symlink(inode))

    def igrab(self, inode) -> Ext2Inode:
        """Hold an inode (an open file): it survives its last unlink until iput."""
        inode = self._inode(inode)
        inode.i_count += 1
        self._held[inode.ino] = inode
        return inode

    def iput(self, inode) -> None:
        """Drop a hold; the last one frees an unlinked inode (ext2_delete_inode)."""
        inode = self._inode(inode)
        if inode.i_count <= 0:
            raise Ext2Error(EINVAL, f"iput of inode {inode.ino} that is not held")
        inode.i_count -= 1
        if inode.i_count == 0:
            self._held.pop(inode.ino, None)
            if inode.links_count == 0 and not self.read_only:
                self._delete_inode(inode)

    def _drop_link(self, inode: Ext2Inode, n: int = 1) -> None:
        inode.links_count = max(0, inode.links_count - n)
        if inode.links_count == 0 and inode.i_count == 0:
            self._delete_inode(inode)
        else:
            self.write_inode(inode)

    def _delete_inode(self, inode: Ext2Inode) -> None:
        """ext2_delete_inode() + ext2_free_inode()."""
        inode.dtime = self.now()
        if self._has_block_map(inode):
            self._truncate_blocks(inode, 0)
        inode.size = 0
        if inode.file_acl:
            self._xattr_delete_inode(inode)
        self.write_inode(inode)
        alloc.ext2_free_inode(self, inode.ino, inode.is_dir)
        if self._icache.get(inode.ino) is inode:
            del self._icache[inode.ino]

    def _xattr_delete_inode(self, inode: Ext2Inode) -> None:
        """ext2_xattr_delete_inode(): drop this inode's reference to its xattr block."""
        block = inode.file_acl
        self._check_block(block, inode)
        buf = self.bread(block)
        hdr = XATTR_HEADER.unpack(buf, 0)
        if hdr["h_magic"] != EXT2_XATTR_MAGIC or hdr["h_blocks"] != 1 or hdr["h_refcount"] == 0:
            raise self.corrupt(f"inode {inode.ino}: bad EA block {block}")
        if hdr["h_refcount"] == 1:
            alloc.ext2_free_blocks(self, block, 1)
        else:
            XATTR_HEADER.set(buf, 0, "h_refcount", hdr["h_refcount"] - 1)
            self.bio.mark_dirty(block)
        inode.blocks = max(0, inode.blocks - (self.block_size >> 9))
        inode.file_acl = 0

    def _new_inode(self, dir: Ext2Inode, mode: int, uid: int, gid: int) -> Ext2Inode:
        """ext2_new_inode(): a zeroed on-disk inode in a well-chosen group."""
        is_dir = mode & S_IFMT == S_IFDIR
        ino = alloc.ext2_new_inode_number(self, dir.ino, is_dir)
        block, off = self._inode_loc(ino)
        buf = self.bread(block)
        buf[off:off + self.inode_size] = bytes(self.inode_size)   # as EXT2_STATE_NEW does
        self.bio.mark_dirty(block)
        raw = INODE.unpack(buf, off)
        extra = INODE_EXTRA.unpack(buf, off + EXT2_GOOD_OLD_INODE_SIZE) if self.inode_size > 128 else None
        inode = Ext2Inode(ino, raw, extra)
        if dir.mode & S_ISGID:
            gid = dir.gid
            if is_dir:
                mode |= S_ISGID
        inode.mode, inode.uid, inode.gid = mode, uid, gid
        inode.atime = inode.ctime = inode.mtime = self.now()
        inode.links_count = 1
        flags = dir.flags & EXT2_FL_INHERITED
        inode.flags = flags if is_dir else flags & EXT2_REG_FLMASK
        self.s_next_generation = (self.s_next_generation + 1) & 0xFFFFFFFF
        inode.generation = self.s_next_generation
        self._icache[ino] = inode
        self.write_inode(inode)
        return inode

    def setattr(self, inode, *, mode: int | None = None, uid: int | None = None, gid: int | None = None,
                atime: int | None = None, mtime: int | None = None) -> None:
        """ext2_setattr() for everything but the size (see truncate)."""
        self._check_rw()
        inode = self._inode(inode)
        if mode is not None:
            inode.mode = (inode.mode & S_IFMT) | (mode & 0o7777)
        if uid is not None:
            inode.uid = uid & 0xFFFFFFFF
        if gid is not None:
            inode.gid = gid & 0xFFFFFFFF
        if atime is not None:
            inode.atime = atime
        if mtime is not None:
            inode.mtime = mtime
        inode.ctime = self.now()
        self.write_inode(inode)

    # ---- block map (inode.c: ext2_block_to_path, ext2_get_block) ----

    def _block_to_path(self, lblk: int) -> list[int]:
        apb = self.addr_per_block
        if lblk < 0:
            raise Ext2Error(EINVAL, f"negative block {lblk}")
        if lblk < EXT2_NDIR_BLOCKS:
            return [lblk]
        lblk -= EXT2_NDIR_BLOCKS
        if lblk < apb:
            return [EXT2_IND_BLOCK, lblk]
        lblk -= apb
        if lblk < apb * apb:
            return [EXT2_DIND_BLOCK, lblk // apb, lblk % apb]
        lblk -= apb * apb
        if lblk < apb * apb * apb:
            return [EXT2_TIND_BLOCK, lblk // (apb * apb), (lblk // apb) % apb, lblk % apb]
        raise Ext2Error(EFBIG, "block beyond the triple indirect block")

    def bmap_cached(self, inode, lblk: int, n: int) -> list[int]:
        """bmap() of file blocks lblk, lblk+1, ... (at most n), without create: the longest prefix that
        bmap would map from indirect blocks already in the buffer cache, so with no I/O and no error (the
        block where it stops is left to bmap, which reads or complains). One walk per indirect block."""
        cached_blocks = getattr(self.bio, "cached_blocks", None)     # a buffer cache says where they are
        inode = self._inode(inode)
        if cached_blocks is None or not self._has_block_map(inode):
            return []
        bdev_pages, ram, dev_bytes = cached_blocks()
        # the walk, natively (the same source runs as Python under BALLAST_PURE=1)
        return _pagecache.bmap_cached(inode.i_block, lblk, n, self.addr_per_block, self.first_data_block,
                                      self.blocks_count, self._zone_starts, self._zone_ends, self.block_size,
                                      bdev_pages, ram, dev_bytes)

    def bmap(self, inode, lblk: int, create: bool = False, zero_data: bool = True) -> int:
        """ext2_get_block(): the disk block behind file block `lblk`, 0 for a hole.
        With create, allocate it (and the indirect blocks on the way) near the
        previous block of the file, or near the inode; new blocks read as zeros.
        A page cache that fills the data block itself passes zero_data=False: the
        data block then never enters the buffer cache (no stale alias of it there)."""
        inode = self._inode(inode)
        if not self._has_block_map(inode):
            raise Ext2Error(EINVAL, f"inode {inode.ino} has no block map")
        path = self._block_to_path(lblk)
        blk = inode.i_block[path[0]]
        parent = 0
        level = 0
        while blk:
            self._check_block(blk, inode)
            level += 1
            if level == len(path):
                return blk
            parent = blk
            blk = _U32.unpack_from(self.bread(blk), path[level] * 4)[0]
        if not create:
            return 0
        self._check_rw()
        goal = self._find_goal(inode, lblk, path, level, parent)
        n = len(path) - level
        if inode.blocks + n * (self.block_size >> 9) > 0xFFFFFFFF:
            raise self.corrupt(f"inode {inode.ino}: i_blocks would overflow")
        new = []
        try:
            for _ in range(n):
                b = alloc.ext2_new_block(self, goal)
                new.append(b)
                goal = b + 1
        except Ext2Error:
            for b in new:
                alloc.ext2_free_blocks(self, b, 1)
            raise
        for j, b in enumerate(new):         # ext2_alloc_branch: zeroed, chained
            if j == n - 1 and not zero_data:
                forget = getattr(self.bio, "forget", None)
                if forget is not None:
                    forget(b)               # unmap_underlying_metadata()
                break
            buf = self.bread(b)
            buf[:] = self._zero_block
            if j < n - 1:
                _U32.pack_into(buf, path[level + 1 + j] * 4, new[j + 1])
            self.bio.mark_dirty(b)
        if level == 0:                      # ext2_splice_branch
            inode.i_block[path[0]] = new[0]
        else:
            _U32.pack_into(self.bread(parent), path[level] * 4, new[0])
            self.bio.mark_dirty(parent)
        inode.blocks += n * (self.block_size >> 9)
        inode.next_alloc_block, inode.next_alloc_goal = lblk + 1, new[-1] + 1
        self.write_inode(inode)
        return new[-1]

    def _find_goal(self, inode: Ext2Inode, lblk: int, path: list[int], level: int, parent: int) -> int:
        """ext2_find_goal() / ext2_find_near()."""
        if lblk == inode.next_alloc_block and inode.next_alloc_goal:
            return inode.next_alloc_goal
        if level == 0:
            for p in reversed(inode.i_block[:path[0]]):
                if p:
                    return p
        else:
            idx = path[level]
            if idx:
                for p in reversed(struct.unpack_from(f"<{idx}I", self.bread(parent), 0)):
                    if p:
                        return p
            return parent
        return self.group_first_block((inode.ino - 1) // self.inodes_per_group)

    def _truncate_blocks(self, inode: Ext2Inode, keep: int) -> None:
        """ext2_truncate(): free every block from file block `keep` on, with the
        indirect blocks left empty.  Bounded by i_blocks against corrupt maps."""
        per_block = self.block_size >> 9
        budget = inode.blocks // per_block + 1
        to_free: list[int] = []

        def queue(b: int) -> None:
            self._check_block(b, inode)
            to_free.append(b)
            if len(to_free) > budget:
                raise self.corrupt(f"inode {inode.ino}: block map larger than i_blocks")

        for i in range(max(keep, 0), EXT2_NDIR_BLOCKS):
            if inode.i_block[i]:
                queue(inode.i_block[i])
                inode.i_block[i] = 0
        apb = self.addr_per_block
        base = EXT2_NDIR_BLOCKS
        for depth, slot in ((1, EXT2_IND_BLOCK), (2, EXT2_DIND_BLOCK), (3, EXT2_TIND_BLOCK)):
            b = inode.i_block[slot]
            if b and keep < base + apb ** depth and self._free_branch(inode, b, depth, base, keep, queue):
                inode.i_block[slot] = 0
            base += apb ** depth
        for start, count in _runs(sorted(to_free)):
            alloc.ext2_free_blocks(self, start, count)
        inode.blocks = max(0, inode.blocks - len(to_free) * per_block)
        inode.next_alloc_block = inode.next_alloc_goal = 0

    def _free_branch(self, inode: Ext2Inode, block: int, depth: int, base: int, keep: int, queue) -> bool:
        """Free what lies at or after file block `keep` under an indirect block of
        `depth` covering file blocks from `base`; True if the block itself went."""
        self._check_block(block, inode)     # before we read it, let alone clear pointers in it
        apb = self.addr_per_block
        span = apb ** (depth - 1)
        buf = self.bread(block)
        ptrs = struct.unpack_from(f"<{apb}I", buf, 0)
        first = 0 if keep <= base else min(apb, (keep - base) // span)
        changed = False
        for i in range(first, apb):
            p = ptrs[i]
            if not p:
                continue
            cbase = base + i * span
            if depth == 1:
                if cbase >= keep:
                    queue(p)
                    _U32.pack_into(buf, i * 4, 0)
                    changed = True
            elif self._free_branch(inode, p, depth - 1, cbase, keep, queue):
                _U32.pack_into(buf, i * 4, 0)
                changed = True
        if changed:
            self.bio.mark_dirty(block)
        if keep <= base or not any(struct.unpack_from(f"<{apb}I", buf, 0)):
            queue(block)
            return True
        return False

    # ---- data (file.c, generic read/write) ----

    def read(self, inode, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (short at end of file); holes read as zeros."""
        inode = self._inode(inode)
        if inode.is_dir:
            raise Ext2Error(EISDIR, f"inode {inode.ino} is a directory")
        if not inode.is_reg and not (inode.is_lnk and self._has_block_map(inode)):
            raise Ext2Error(EINVAL, f"inode {inode.ino} has no data to read")
        return self._read(inode, offset, length)

    def _read(self, inode: Ext2Inode, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise Ext2Error(EINVAL, "negative offset or length")
        end = min(inode.size, offset + length)
        bs = self.block_size
        out = bytearray()
        pos = offset
        while pos < end:
            lblk, boff = divmod(pos, bs)
            n = min(end - pos, bs - boff)
            pb = self.bmap(inode, lblk)
            if pb:
                out += self.bread(pb)[boff:boff + n]
            else:
                out += bytes(n)
            pos += n
        return bytes(out)

    def write(self, inode, offset: int, data) -> int:
        """Write `data` at `offset`, allocating blocks and extending the size.
        Returns the bytes written: short if the disk fills after some were written."""
        self._check_rw()
        inode = self._inode(inode)
        if inode.is_dir:
            raise Ext2Error(EISDIR, f"inode {inode.ino} is a directory")
        if not inode.is_reg:
            raise Ext2Error(EINVAL, f"inode {inode.ino} is not a regular file")
        if offset < 0:
            raise Ext2Error(EINVAL, "negative offset")
        data = memoryview(data).cast("B")
        if not len(data):
            return 0
        if offset >= self.max_size:
            raise Ext2Error(EFBIG, f"offset {offset} beyond the maximum file size {self.max_size}")
        data = data[:self.max_size - offset]
        if offset > inode.size:
            self._zero_tail(inode, offset)
        bs = self.block_size
        done = 0
        while done < len(data):
            pos = offset + done
            lblk, boff = divmod(pos, bs)
            n = min(len(data) - done, bs - boff)
            try:
                pb = self.bmap(inode, lblk, create=True)
            except Ext2Error as e:
                if e.errno != ENOSPC or not done:
                    raise
                break
            buf = self.bread(pb)
            buf[boff:boff + n] = data[done:done + n]
            self.bio.mark_dirty(pb)
            done += n
        inode.size = max(inode.size, offset + done)
        inode.mtime = inode.ctime = self.now()
        self.write_inode(inode)
        return done

    def _zero_tail(self, inode: Ext2Inode, new_size: int) -> None:
        """Bytes past the old end of file in its last block must read as zeros
        once the file grows over them."""
        bs = self.block_size
        old = inode.size
        if old % bs and new_size > old:
            pb = self.bmap(inode, old // bs)
            if pb:
                buf = self.bread(pb)
                end = min(bs, new_size - (old - old % bs))
                buf[old % bs:end] = bytes(end - old % bs)
                self.bio.mark_dirty(pb)

    def truncate(self, inode, size: int) -> None:
        """ext2_setsize(): shrink (freeing blocks, zeroing the new last block's
        tail) or grow (a hole) to `size`."""
        self._check_rw()
        inode = self._inode(inode)
        if inode.is_dir:
            raise Ext2Error(EISDIR, f"inode {inode.ino} is a directory")
        if not inode.is_reg:
            raise Ext2Error(EINVAL, f"inode {inode.ino} is not a regular file")
        if size < 0:
            raise Ext2Error(EINVAL, "negative size")
        if size > self.max_size:
            raise Ext2Error(EFBIG, f"size {size} beyond the maximum file size {self.max_size}")
        bs = self.block_size
        if size < inode.size:
            if size % bs:
                pb = self.bmap(inode, size // bs)
                if pb:
                    buf = self.bread(pb)
                    buf[size % bs:] = bytes(bs - size % bs)
                    self.bio.mark_dirty(pb)
            self._truncate_blocks(inode, (size + bs - 1) // bs)
        else:
            self._zero_tail(inode, size)
        inode.size = size
        inode.mtime = inode.ctime = self.now()
        self.write_inode(inode)

    # ---- directories (dir.c) ----

    def _dir(self, x) -> Ext2Inode:
        inode = self._inode(x)
        if not inode.is_dir:
            raise Ext2Error(ENOTDIR, f"inode {inode.ino} is not a directory")
        return inode

    def _dir_blocks(self, dir: Ext2Inode):
        """(file block, disk block) of each directory block; no holes allowed."""
        bs = self.block_size
        if dir.size % bs:
            raise self.corrupt(f"size of directory #{dir.ino} is not a multiple of the block size")
        n = dir.size // bs
        if n > self.blocks_count:
            raise self.corrupt(f"directory #{dir.ino} larger than the file system")
        for lblk in range(n):
            pb = self.bmap(dir, lblk)
            if not pb:
                raise self.corrupt(f"directory #{dir.ino} contains a hole at offset {lblk * bs}")
            yield lblk, pb

    def _dir_block(self, pblk: int, dir_ino: int) -> DirBlock:
        """One directory block's entries. A block is parsed and checked once per content: the key is its
        bytes, so any change to the block, by this fs or a write to the device, parses it afresh."""
        key = (pblk, bytes(self.bread(pblk)))
        cache = self._dir_block_cache
        block = cache.get(key)
        if block is None:
            block = self._parse_dir_block(key[1], pblk, dir_ino)
            if cache and len(cache) >= DIR_BLOCK_CACHE:
                del cache[next(iter(cache))]
            if DIR_BLOCK_CACHE:
                cache[key] = block
        return block

    def _parse_dir_block(self, buf: bytes, pblk: int, dir_ino: int) -> DirBlock:
        """The entries of one directory block, checked as ext2_check_page() does."""
        bs = self.block_size
        filetype = self.has_filetype
        hdr = DIRENT2_HDR.struct if filetype else DIRENT_HDR.struct
        entries, live, max_slack = [], {}, 0
        off, prev = 0, -1
        while off < bs:
            if off + 8 > bs:
                raise self.corrupt(f"bad entry in directory #{dir_ino}: directory entry across blocks")
            if filetype:
                ino, rec_len, name_len, ftype = hdr.unpack_from(buf, off)
            else:
                (ino, rec_len, name_len), ftype = hdr.unpack_from(buf, off), 0
            if rec_len < EXT2_DIR_REC_LEN(1):
                problem = "rec_len is smaller than minimal"
            elif rec_len % 4:
                problem = "unaligned directory entry"
            elif rec_len < EXT2_DIR_REC_LEN(name_len):
                problem = "rec_len is too small for name_len"
            elif off + rec_len > bs:
                problem = "directory entry across blocks"
            elif ino > self.inodes_count:
                problem = "inode out of bounds"
            else:
                problem = None
            if problem:
                raise self.corrupt(f"bad entry in directory #{dir_ino}: {problem} - block={pblk}, offset={off}, "
                                   f"inode={ino}, rec_len={rec_len}, name_len={name_len}")
            e = DirEntry(pblk, off, prev, ino, rec_len, name_len, ftype, buf[off + 8:off + 8 + name_len])
            entries.append(e)
            if ino:
                live.setdefault(e.name, e)
                max_slack = max(max_slack, rec_len - EXT2_DIR_REC_LEN(name_len))
            else:
                max_slack = max(max_slack, rec_len)
            prev = off
            off += rec_len
        return DirBlock(tuple(entries), live, max_slack)

    def _entries(self, dir: Ext2Inode):
        for _, pb in self._dir_blocks(dir):
            yield from self._dir_block(pb, dir.ino).entries

    def _find_entry(self, dir: Ext2Inode, name: bytes) -> DirEntry | None:
        """ext2_find_entry()."""
        for _, pb in self._dir_blocks(dir):
            e = self._dir_block(pb, dir.ino).live.get(name)
            if e is not None:
                return e
        return None

    def _dotdot(self, dir: Ext2Inode) -> DirEntry:
        """ext2_dotdot(): the ".." entry, second in the first block."""
        if dir.size < self.block_size:
            raise self.corrupt(f"directory #{dir.ino} is empty")
        pb = self.bmap(dir, 0)
        if not pb:
            raise self.corrupt(f"directory #{dir.ino} has no first block")
        entries = self._dir_block(pb, dir.ino).entries
        if len(entries) < 2 or entries[0].name != b"." or entries[1].name != b".." or not entries[1].ino:
            raise self.corrupt(f"directory #{dir.ino}: missing '.' or '..'")
        return entries[1]

    def _empty_dir(self, inode: Ext2Inode) -> bool:
        """ext2_empty_dir()."""
        for e in self._entries(inode):
            if not e.ino:
                continue
            if e.name == b"." and e.ino == inode.ino or e.name == b"..":
                continue
            return False
        return True

    def _write_entry(self, buf, off: int, ino: int, rec_len: int, name: bytes, ftype: int) -> None:
        if self.has_filetype:
            DIRENT2_HDR.struct.pack_into(buf, off, ino, rec_len, len(name), ftype)
        else:
            DIRENT_HDR.struct.pack_into(buf, off, ino, rec_len, len(name))
        buf[off + 8:off + 8 + len(name)] = name

    def _ftype(self, inode: Ext2Inode) -> int:
        return S_IFMT_TO_FT.get(inode.mode & S_IFMT, 0) if self.has_filetype else 0

    def _dir_changed(self, dir: Ext2Inode) -> None:
        dir.mtime = dir.ctime = self.now()
        dir.flags &= ~EXT2_INDEX_FL         # our linear changes would leave a stale htree
        self.write_inode(dir)

    def _add_link(self, dir: Ext2Inode, name: bytes, inode: Ext2Inode) -> None:
        """ext2_add_link(): use the first gap that fits, else a new block."""
        reclen = EXT2_DIR_REC_LEN(len(name))
        bs = self.block_size
        slot = None
        for _, pb in self._dir_blocks(dir):
            block = self._dir_block(pb, dir.ino)
            if block.max_slack < reclen:        # no room here: only the name check, by the block's index
                if name in block.live:
                    raise Ext2Error(EEXIST, "file exists")
                continue
            for e in block.entries:
                if e.ino and e.name == name:
                    raise Ext2Error(EEXIST, "file exists")
                used = EXT2_DIR_REC_LEN(e.name_len) if e.ino else 0
                if e.rec_len - used >= reclen:
                    slot = (e, used)
                    break
            if slot is not None:
                break
        if slot is None:
            lblk = dir.size // bs
            pb = self.bmap(dir, lblk, create=True)
            dir.size += bs
            buf = self.bread(pb)
            self._write_entry(buf, 0, 0, bs, b"", 0)
            slot = (DirEntry(pb, 0, -1, 0, bs, 0, 0, b""), 0)
        e, used = slot
        buf = self.bread(e.pblk)
        off, rec_len = e.off, e.rec_len
        if used:                            # split the live entry's slack
            self._write_entry(buf, off, e.ino, used, e.name, e.file_type)
            off, rec_len = off + used, rec_len - used
        self._write_entry(buf, off, inode.ino, rec_len, name, self._ftype(inode))
        self.bio.mark_dirty(e.pblk)
        self._dir_changed(dir)

    def _delete_entry(self, dir: Ext2Inode, e: DirEntry) -> None:
        """ext2_delete_entry(): merge into the previous entry of the block."""
        buf = self.bread(e.pblk)
        if e.prev_off >= 0:
            DIRENT_HDR.set(buf, e.prev_off, "rec_len", e.off + e.rec_len - e.prev_off)
        DIRENT_HDR.set(buf, e.off, "inode", 0)
        self.bio.mark_dirty(e.pblk)
        self._dir_changed(dir)

    def _set_link(self, dir: Ext2Inode, e: DirEntry, inode: Ext2Inode, update_times: bool = True) -> None:
        """ext2_set_link(): point an existing entry at another inode."""
        buf = self.bread(e.pblk)
        DIRENT_HDR.set(buf, e.off, "inode", inode.ino)
        if self.has_filetype:
            DIRENT2_HDR.set(buf, e.off, "file_type", self._ftype(inode))
        self.bio.mark_dirty(e.pblk)
        if update_times:
            self._dir_changed(dir)

    def readdir(self, dir) -> list[tuple[str, int, int]]:
        """ext2_readdir(): (name, inode number, EXT2_FT_* type) of every entry,
        "." and ".." included; the type is 0 without the filetype feature."""
        dir = self._dir(dir)
        return [(_decode(e.name), e.ino, e.file_type) for e in self._entries(dir) if e.ino]

    # ---- names (namei.c) ----

    @staticmethod
    def _name(name) -> bytes:
        b = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else bytes(name)
        if not b:
            raise Ext2Error(ENOENT, "empty name")
        if len(b) > EXT2_NAME_LEN:
            raise Ext2Error(ENAMETOOLONG, f"name longer than {EXT2_NAME_LEN} bytes")
        if b"/" in b or b"\0" in b:
            raise Ext2Error(EINVAL, f"invalid name {b!r}")
        return b

    def lookup(self, dir, name) -> int | None:
        """ext2_lookup() / ext2_inode_by_name(): the inode number or None."""
        dir = self._dir(dir)
        e = self._find_entry(dir, self._name(name))
        return e.ino if e else None

    def namei(self, path, cwd_ino: int = EXT2_ROOT_INO, follow: bool = True) -> int:
        """Resolve a path (absolute from the root of this fs, or relative to
        `cwd_ino`); intermediate symlinks are always followed, the last one if
        `follow`.  At most MAXSYMLINKS symlinks per walk (ELOOP)."""
        p = path.encode("utf-8", "surrogateescape") if isinstance(path, str) else bytes(path)
        if not p:
            raise Ext2Error(ENOENT, "empty path")
        if len(p) >= PATH_MAX:
            raise Ext2Error(ENAMETOOLONG, "path too long")
        return self._walk(p, cwd_ino, follow, [0])

    def _walk(self, p: bytes, start: int, follow: bool, links: list[int]) -> int:
        ino = EXT2_ROOT_INO if p.startswith(b"/") else start
        comps = [c for c in p.split(b"/") if c]
        must_dir = p.endswith(b"/")
        for i, c in enumerate(comps):
            last = i == len(comps) - 1
            dir = self._dir(ino)
            if len(c) > EXT2_NAME_LEN:
                raise Ext2Error(ENAMETOOLONG, "path component too long")
            e = self._find_entry(dir, c)
            if e is None:
                raise Ext2Error(ENOENT, f"no such file or directory: {_decode(p)}")
            child = e.ino
            inode = self.iget(child)
            if inode.is_lnk and (not last or follow or must_dir):
                links[0] += 1
                if links[0] > MAXSYMLINKS:
                    raise Ext2Error(ELOOP, "too many levels of symbolic links")
                target = self._readlink(inode)
                if not target:
                    raise Ext2Error(ENOENT, "empty symlink")
                child = self._walk(target, ino, True, links)
            ino = child
        if must_dir and comps:
            self._dir(ino)
        return ino

    def readlink(self, inode) -> str:
        """ext2 readlink: a fast symlink's target lives in i_block, a slow one's in its block."""
        inode = self._inode(inode)
        if not inode.is_lnk:
            raise Ext2Error(EINVAL, f"inode {inode.ino} is not a symlink")
        return _decode(self._readlink(inode))

    def _readlink(self, inode: Ext2Inode) -> bytes:
        if self._is_fast_symlink(inode):
            return struct.pack(f"<{EXT2_N_BLOCKS}I", *inode.i_block)[:inode.size]
        if not 0 < inode.size < self.block_size:
            raise self.corrupt(f"symlink inode {inode.ino} has bad size {inode.size}")
        return self._read(inode, 0, inode.size)

    # ---- namespace operations (namei.c) ----

    def _prepare_new(self, dir, name) -> tuple[Ext2Inode, bytes]:
        self._check_rw()
        dir = self._dir(dir)
        b = self._name(name)
        if b in (b".", b".."):
            raise Ext2Error(EEXIST, "file exists")
        if dir.links_count == 0:
            raise Ext2Error(ENOENT, f"directory {dir.ino} was removed")
        if self._find_entry(dir, b) is not None:
            raise Ext2Error(EEXIST, f"file exists: {_decode(b)}")
        return dir, b

    def _add_nondir(self, dir: Ext2Inode, name: bytes, inode: Ext2Inode) -> int:
        """ext2_add_nondir(): link the new inode in, or free it."""
        try:
            self._add_link(dir, name, inode)
        except Ext2Error:
            self._drop_link(inode)
            raise
        return inode.ino

    def create(self, dir, name, mode: int = 0o644, uid: int = 0, gid: int = 0) -> int:
        """ext2_create(): a new empty regular file."""
        dir, b = self._prepare_new(dir, name)
        inode = self._new_inode(dir, S_IFREG | (mode & 0o7777), uid, gid)
        return self._add_nondir(dir, b, inode)

    def mknod(self, dir, name, mode: int, rdev: int = 0, uid: int = 0, gid: int = 0) -> int:
        """ext2_mknod(): a device, FIFO or socket (or a regular file)."""
        t = mode & S_IFMT
        if t in (0, S_IFREG):
            return self.create(dir, name, mode, uid, gid)
        if t not in (S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK):
            raise Ext2Error(EINVAL, f"bad mode {mode:#o} for mknod")
        dir, b = self._prepare_new(dir, name)
        inode = self._new_inode(dir, t | (mode & 0o7777), uid, gid)
        if t in (S_IFCHR, S_IFBLK):
            major, minor = _major_minor(rdev)
            if major < 256 and minor < 256:
                inode.i_block[0] = (major << 8) | minor
            else:
                inode.i_block[1] = (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)
            self.write_inode(inode)
        return self._add_nondir(dir, b, inode)

    def symlink(self, dir, name, target, uid: int = 0, gid: int = 0) -> int:
        """ext2_symlink(): fast (in i_block) when the target and its NUL fit in 60 bytes."""
        t = target.encode("utf-8", "surrogateescape") if isinstance(target, str) else bytes(target)
        if not t:
            raise Ext2Error(ENOENT, "empty symlink target")
        if len(t) + 1 > self.block_size:
            raise Ext2Error(ENAMETOOLONG, "symlink target too long")
        dir, b = self._prepare_new(dir, name)
        inode = self._new_inode(dir, S_IFLNK | 0o777, uid, gid)
        try:
            if len(t) + 1 <= 4 * EXT2_N_BLOCKS:
                inode.i_block = list(struct.unpack(f"<{EXT2_N_BLOCKS}I", t.ljust(4 * EXT2_N_BLOCKS, b"\0")))
            else:
                block = alloc.ext2_new_block(self, self.group_first_block((inode.ino - 1) // self.inodes_per_group))
                buf = self.bread(block)
                buf[:] = self._zero_block
                buf[:len(t)] = t
                self.bio.mark_dirty(block)
                inode.i_block[0] = block
                inode.blocks = self.block_size >> 9
            inode.size = len(t)
            self.write_inode(inode)
        except Ext2Error:
            self._drop_link(inode)
            raise
        return self._add_nondir(dir, b, inode)

    def link(self, inode, dir, name) -> None:
        """ext2_link(): another name for a non-directory."""
        self._check_rw()
        inode = self._inode(inode)
        if inode.is_dir:
            raise Ext2Error(EPERM, "hard link to a directory")
        if inode.links_count == 0:
            raise Ext2Error(ENOENT, f"inode {inode.ino} was removed")
        if inode.links_count >= EXT2_LINK_MAX:
            raise Ext2Error(EMLINK, "too many links")
        dir, b = self._prepare_new(dir, name)
        inode.ctime = self.now()
        inode.links_count += 1
        self.write_inode(inode)
        try:
            self._add_link(dir, b, inode)
        except Ext2Error:
            self._drop_link(inode)
            raise

    def mkdir(self, dir, name, mode: int = 0o755, uid: int = 0, gid: int = 0) -> int:
        """ext2_mkdir(): a directory with "." and ".." in its first block."""
        dir, b = self._prepare_new(dir, name)
        if dir.links_count >= EXT2_LINK_MAX:
            raise Ext2Error(EMLINK, "too many links")
        inode = self._new_inode(dir, S_IFDIR | (mode & 0o7777), uid, gid)
        try:
            pb = self.bmap(inode, 0, create=True)       # ext2_make_empty()
            buf = self.bread(pb)
            ft = EXT2_FT_DIR if self.has_filetype else 0
            self._write_entry(buf, 0, inode.ino, EXT2_DIR_REC_LEN(1), b".", ft)
            self._write_entry(buf, EXT2_DIR_REC_LEN(1), dir.ino, self.block_size - EXT2_DIR_REC_LEN(1), b"..", ft)
            self.bio.mark_dirty(pb)
            inode.size = self.block_size
            inode.links_count = 2
            self.write_inode(inode)
            self._add_link(dir, b, inode)
        except Ext2Error:
            self._drop_link(inode, inode.links_count)
            raise
        dir.links_count += 1
        self.write_inode(dir)
        return inode.ino

    def unlink(self, dir, name) -> None:
        """ext2_unlink(): remove a name; the inode goes with its last link."""
        self._check_rw()
        dir = self._dir(dir)
        b = self._name(name)
        e = self._find_entry(dir, b)
        if e is None:
            raise Ext2Error(ENOENT, f"no such file: {_decode(b)}")
        inode = self.iget(e.ino)
        if inode.is_dir:
            raise Ext2Error(EISDIR, f"{_decode(b)} is a directory")
        self._delete_entry(dir, e)
        inode.ctime = dir.ctime
        self._drop_link(inode)

    def rmdir(self, dir, name) -> None:
        """ext2_rmdir(): remove an empty directory."""
        self._check_rw()
        dir = self._dir(dir)
        b = self._name(name)
        if b == b".":
            raise Ext2Error(EINVAL, "cannot remove '.'")
        if b == b"..":
            raise Ext2Error(ENOTEMPTY, "cannot remove '..'")
        e = self._find_entry(dir, b)
        if e is None:
            raise Ext2Error(ENOENT, f"no such directory: {_decode(b)}")
        inode = self.iget(e.ino)
        if not inode.is_dir:
            raise Ext2Error(ENOTDIR, f"{_decode(b)} is not a directory")
        if inode.ino == EXT2_ROOT_INO:
            raise Ext2Error(EBUSY, "cannot remove the root")
        if not self._empty_dir(inode):
            raise Ext2Error(ENOTEMPTY, f"directory not empty: {_decode(b)}")
        self._delete_entry(dir, e)
        inode.ctime = dir.ctime
        inode.size = 0
        self._drop_link(inode, 2)
        dir.links_count = max(1, dir.links_count - 1)
        self.write_inode(dir)

    def _is_ancestor(self, ino: int, dir: Ext2Inode) -> bool:
        """Is directory `ino` on the ".." path from `dir` to the root?  (the
        check VFS rename makes).  Bounded: a loop of ".." is corruption."""
        cur = dir
        seen = set()
        while True:
            if cur.ino == ino:
                return True
            if cur.ino == EXT2_ROOT_INO:
                return False
            if cur.ino in seen or len(seen) > self.inodes_count:
                raise self.corrupt(f"loop in the '..' chain at directory {cur.ino}")
            seen.add(cur.ino)
            cur = self._dir(self._dotdot(cur).ino)

    def rename(self, old_dir, old_name, new_dir, new_name) -> None:
        """ext2_rename(), with the checks of vfs_rename: replaces an existing
        target of the same kind (an empty directory for a directory); a moved
        directory gets its ".." and both parents their link counts updated."""
        self._check_rw()
        odir, ndir = self._dir(old_dir), self._dir(new_dir)
        ob, nb = self._name(old_name), self._name(new_name)
        if ob in (b".", b"..") or nb in (b".", b".."):
            raise Ext2Error(EBUSY, "cannot rename '.' or '..'")
        old = self._find_entry(odir, ob)
        if old is None:
            raise Ext2Error(ENOENT, f"no such file: {_decode(ob)}")
        inode = self.iget(old.ino)
        new = self._find_entry(ndir, nb)
        if new is not None and new.ino == inode.ino:
            return                          # the same file: nothing to do (POSIX)
        target = self.iget(new.ino) if new is not None else None
        if inode.is_dir:
            if target is not None and not target.is_dir:
                raise Ext2Error(ENOTDIR, f"{_decode(nb)} is not a directory")
            if ndir.ino != odir.ino and self._is_ancestor(inode.ino, ndir):
                raise Ext2Error(EINVAL, "cannot move a directory into itself")
            if target is not None and not self._empty_dir(target):
                raise Ext2Error(ENOTEMPTY, f"directory not empty: {_decode(nb)}")
            if target is None and ndir.ino != odir.ino and ndir.links_count >= EXT2_LINK_MAX:
                raise Ext2Error(EMLINK, "too many links")
            self._dotdot(inode)             # check it before changing anything
        elif target is not None and target.is_dir:
            raise Ext2Error(EISDIR, f"{_decode(nb)} is a directory")
        now = self.now()
        if target is not None:
            self._set_link(ndir, new, inode)
            target.ctime = now
            self._drop_link(target, 2 if inode.is_dir else 1)
        else:
            self._add_link(ndir, nb, inode)
            if inode.is_dir:
                ndir.links_count += 1
                self.write_inode(ndir)
        inode.ctime = now
        self.write_inode(inode)
        old = self._find_entry(odir, ob)    # adding may have split the old entry's block
        if old is None or old.ino != inode.ino:
            raise self.corrupt(f"rename: entry {_decode(ob)} changed under us")
        self._delete_entry(odir, old)
        if inode.is_dir:
            if odir.ino != ndir.ino:
                self._set_link(inode, self._dotdot(inode), ndir, update_times=False)
            odir.links_count = max(1, odir.links_count - 1)
            self.write_inode(odir)


def _runs(blocks: list[int]):
    """Sorted block numbers as (start, count) runs of consecutive blocks."""
    start = count = 0
    for b in blocks:
        if count and b == start + count:
            count += 1
            continue
        if count:
            yield start, count
        start, count = b, 1
    if count:
        yield start, count


def _decode(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")
