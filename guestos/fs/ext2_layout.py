"""ext2 on-disk layouts (include/linux/ext2_fs.h), declared once with construct.

The superblock, group descriptor, inode, directory entry and extended-attribute
block header are declared here and nowhere else.  Hot paths (every inode read,
every directory entry, every counter update) use `StructView`, a `struct`
format derived mechanically from the same declaration; tests/test_ext2.py checks
that both agree byte for byte.
"""
from __future__ import annotations

import struct

from construct import Array, Bytes, FormatField, Int8ul, Int16sl, Int16ul, Int32ul, Struct, this

# --- constants ---------------------------------------------------------------

EXT2_SUPER_MAGIC = 0xEF53
SUPERBLOCK_OFFSET = 1024            # bytes from the start of the device, whatever the block size
SUPERBLOCK_SIZE = 1024
EXT2_MIN_BLOCK_SIZE = 1024
EXT2_MAX_BLOCK_SIZE = 4096          # ext2 on Linux: at most PAGE_SIZE

EXT2_GOOD_OLD_REV = 0
EXT2_DYNAMIC_REV = 1
EXT2_GOOD_OLD_FIRST_INO = 11
EXT2_GOOD_OLD_INODE_SIZE = 128

EXT2_BAD_INO = 1
EXT2_ROOT_INO = 2

EXT2_NDIR_BLOCKS = 12
EXT2_IND_BLOCK = 12
EXT2_DIND_BLOCK = 13
EXT2_TIND_BLOCK = 14
EXT2_N_BLOCKS = 15

EXT2_VALID_FS = 0x0001
EXT2_ERROR_FS = 0x0002
EXT2_DFL_MAX_MNT_COUNT = 20

EXT2_LINK_MAX = 32000
EXT2_NAME_LEN = 255

# s_feature_compat
EXT2_FEATURE_COMPAT_DIR_PREALLOC = 0x0001
EXT2_FEATURE_COMPAT_IMAGIC_INODES = 0x0002
EXT3_FEATURE_COMPAT_HAS_JOURNAL = 0x0004
EXT2_FEATURE_COMPAT_EXT_ATTR = 0x0008
EXT2_FEATURE_COMPAT_RESIZE_INO = 0x0010
EXT2_FEATURE_COMPAT_DIR_INDEX = 0x0020
EXT4_FEATURE_COMPAT_SPARSE_SUPER2 = 0x0200
# s_feature_ro_compat
EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER = 0x0001
EXT2_FEATURE_RO_COMPAT_LARGE_FILE = 0x0002
EXT2_FEATURE_RO_COMPAT_BTREE_DIR = 0x0004
# s_feature_incompat
EXT2_FEATURE_INCOMPAT_COMPRESSION = 0x0001
EXT2_FEATURE_INCOMPAT_FILETYPE = 0x0002
EXT3_FEATURE_INCOMPAT_RECOVER = 0x0004
EXT3_FEATURE_INCOMPAT_JOURNAL_DEV = 0x0008
EXT2_FEATURE_INCOMPAT_META_BG = 0x0010
EXT4_FEATURE_INCOMPAT_EXTENTS = 0x0040
EXT4_FEATURE_INCOMPAT_64BIT = 0x0080
EXT4_FEATURE_INCOMPAT_FLEX_BG = 0x0200

# What this driver understands.  Linux 2.6.35's ext2 lists FILETYPE and META_BG;
# we take FLEX_BG instead of META_BG: with flex_bg only the place of the bitmaps
# and inode tables changes, and they are read from the group descriptors anyway.
EXT2_FEATURE_INCOMPAT_SUPP = EXT2_FEATURE_INCOMPAT_FILETYPE | EXT4_FEATURE_INCOMPAT_FLEX_BG
EXT2_FEATURE_RO_COMPAT_SUPP = (EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER | EXT2_FEATURE_RO_COMPAT_LARGE_FILE
                               | EXT2_FEATURE_RO_COMPAT_BTREE_DIR)

# i_mode
S_IFMT = 0o170000
S_IFSOCK = 0o140000
S_IFLNK = 0o120000
S_IFREG = 0o100000
S_IFBLK = 0o060000
S_IFDIR = 0o040000
S_IFCHR = 0o020000
S_IFIFO = 0o010000
S_ISUID = 0o4000
S_ISGID = 0o2000

# directory entry file types (ext2_dir_entry_2.file_type)
EXT2_FT_UNKNOWN = 0
EXT2_FT_REG_FILE = 1
EXT2_FT_DIR = 2
EXT2_FT_CHRDEV = 3
EXT2_FT_BLKDEV = 4
EXT2_FT_FIFO = 5
EXT2_FT_SOCK = 6
EXT2_FT_SYMLINK = 7
EXT2_FT_MAX = 8

S_IFMT_TO_FT = {S_IFREG: EXT2_FT_REG_FILE, S_IFDIR: EXT2_FT_DIR, S_IFCHR: EXT2_FT_CHRDEV,
                S_IFBLK: EXT2_FT_BLKDEV, S_IFIFO: EXT2_FT_FIFO, S_IFSOCK: EXT2_FT_SOCK,
                S_IFLNK: EXT2_FT_SYMLINK}
# ext2_filetype_table: on-disk type -> DT_* for getdents
EXT2_FT_TO_DT = {EXT2_FT_UNKNOWN: 0, EXT2_FT_REG_FILE: 8, EXT2_FT_DIR: 4, EXT2_FT_CHRDEV: 2,
                 EXT2_FT_BLKDEV: 6, EXT2_FT_FIFO: 1, EXT2_FT_SOCK: 12, EXT2_FT_SYMLINK: 10}

# i_flags
EXT2_SECRM_FL = 0x00000001
EXT2_UNRM_FL = 0x00000002
EXT2_SYNC_FL = 0x00000008
EXT2_NODUMP_FL = 0x00000040
EXT2_NOATIME_FL = 0x00000080
EXT2_INDEX_FL = 0x00001000
EXT2_DIRSYNC_FL = 0x00010000
EXT4_EXTENTS_FL = 0x00080000
EXT2_FL_INHERITED = (EXT2_SECRM_FL | EXT2_UNRM_FL | EXT2_SYNC_FL | EXT2_NODUMP_FL | EXT2_NOATIME_FL
                     | EXT2_DIRSYNC_FL)
EXT2_REG_FLMASK = ~(EXT2_DIRSYNC_FL | EXT2_INDEX_FL)

EXT2_XATTR_MAGIC = 0xEA020000


def EXT2_DIR_REC_LEN(name_len: int) -> int:
    return (name_len + 8 + 3) & ~3


# --- layouts -----------------------------------------------------------------

ext2_super_block = Struct(
    "s_inodes_count" / Int32ul,
    "s_blocks_count" / Int32ul,
    "s_r_blocks_count" / Int32ul,
    "s_free_blocks_count" / Int32ul,
    "s_free_inodes_count" / Int32ul,
    "s_first_data_block" / Int32ul,
    "s_log_block_size" / Int32ul,
    "s_log_frag_size" / Int32ul,
    "s_blocks_per_group" / Int32ul,
    "s_frags_per_group" / Int32ul,
    "s_inodes_per_group" / Int32ul,
    "s_mtime" / Int32ul,
    "s_wtime" / Int32ul,
    "s_mnt_count" / Int16ul,
    "s_max_mnt_count" / Int16sl,
    "s_magic" / Int16ul,
    "s_state" / Int16ul,
    "s_errors" / Int16ul,
    "s_minor_rev_level" / Int16ul,
    "s_lastcheck" / Int32ul,
    "s_checkinterval" / Int32ul,
    "s_creator_os" / Int32ul,
    "s_rev_level" / Int32ul,
    "s_def_resuid" / Int16ul,
    "s_def_resgid" / Int16ul,
    # EXT2_DYNAMIC_REV only
    "s_first_ino" / Int32ul,
    "s_inode_size" / Int16ul,
    "s_block_group_nr" / Int16ul,
    "s_feature_compat" / Int32ul,
    "s_feature_incompat" / Int32ul,
    "s_feature_ro_compat" / Int32ul,
    "s_uuid" / Bytes(16),
    "s_volume_name" / Bytes(16),
    "s_last_mounted" / Bytes(64),
    "s_algorithm_usage_bitmap" / Int32ul,
    "s_prealloc_blocks" / Int8ul,
    "s_prealloc_dir_blocks" / Int8ul,
    "s_reserved_gdt_blocks" / Int16ul,      # s_padding1 in 2.6.35; resize_inode's reserve
    "s_journal_uuid" / Bytes(16),
    "s_journal_inum" / Int32ul,
    "s_journal_dev" / Int32ul,
    "s_last_orphan" / Int32ul,
    "s_hash_seed" / Array(4, Int32ul),
    "s_def_hash_version" / Int8ul,
    "s_jnl_backup_type" / Int8ul,
    "s_desc_size" / Int16ul,
    "s_default_mount_opts" / Int32ul,
    "s_first_meta_bg" / Int32ul,
    "s_mkfs_time" / Int32ul,
    "s_jnl_blocks" / Array(17, Int32ul),
    "s_blocks_count_hi" / Int32ul,
    "s_r_blocks_count_hi" / Int32ul,
    "s_free_blocks_count_hi" / Int32ul,
    "s_min_extra_isize" / Int16ul,
    "s_want_extra_isize" / Int16ul,
    "s_flags" / Int32ul,
    "s_ext4_fields" / Bytes(0x24C - 0x164),   # RAID, MMP, snapshot, error log, quota: unused here
    "s_backup_bgs" / Array(2, Int32ul),       # the only groups with backups under sparse_super2
    "s_reserved" / Bytes(SUPERBLOCK_SIZE - 0x254),
)

ext2_group_desc = Struct(
    "bg_block_bitmap" / Int32ul,
    "bg_inode_bitmap" / Int32ul,
    "bg_inode_table" / Int32ul,
    "bg_free_blocks_count" / Int16ul,
    "bg_free_inodes_count" / Int16ul,
    "bg_used_dirs_count" / Int16ul,
    "bg_pad" / Int16ul,
    "bg_reserved" / Array(3, Int32ul),
)

ext2_inode = Struct(
    "i_mode" / Int16ul,
    "i_uid" / Int16ul,
    "i_size" / Int32ul,
    "i_atime" / Int32ul,
    "i_ctime" / Int32ul,
    "i_mtime" / Int32ul,
    "i_dtime" / Int32ul,
    "i_gid" / Int16ul,
    "i_links_count" / Int16ul,
    "i_blocks" / Int32ul,
    "i_flags" / Int32ul,
    "l_i_reserved1" / Int32ul,              # osd1
    "i_block" / Array(EXT2_N_BLOCKS, Int32ul),
    "i_generation" / Int32ul,
    "i_file_acl" / Int32ul,
    "i_dir_acl" / Int32ul,                  # i_size_high for regular files
    "i_faddr" / Int32ul,
    "l_i_frag" / Int8ul,                    # osd2 (linux2)
    "l_i_fsize" / Int8ul,
    "i_pad1" / Int16ul,
    "l_i_uid_high" / Int16ul,
    "l_i_gid_high" / Int16ul,
    "l_i_reserved2" / Int32ul,
)

# the part of a large (256-byte) inode after the first 128 bytes, as mke2fs/ext4 write it
ext2_inode_large_extra = Struct(
    "i_extra_isize" / Int16ul,
    "i_checksum_hi" / Int16ul,
    "i_ctime_extra" / Int32ul,
    "i_mtime_extra" / Int32ul,
    "i_atime_extra" / Int32ul,
    "i_crtime" / Int32ul,
    "i_crtime_extra" / Int32ul,
    "i_version_hi" / Int32ul,
    "i_projid" / Int32ul,
)

# with the filetype feature
ext2_dir_entry_2 = Struct(
    "inode" / Int32ul,
    "rec_len" / Int16ul,
    "name_len" / Int8ul,
    "file_type" / Int8ul,
    "name" / Bytes(this.name_len),
)
# without it (name_len is 16 bits)
ext2_dir_entry = Struct(
    "inode" / Int32ul,
    "rec_len" / Int16ul,
    "name_len" / Int16ul,
    "name" / Bytes(this.name_len),
)

ext2_xattr_header = Struct(
    "h_magic" / Int32ul,
    "h_refcount" / Int32ul,
    "h_blocks" / Int32ul,
    "h_hash" / Int32ul,
    "h_reserved" / Array(4, Int32ul),
)


# --- struct views of the declarations ----------------------------------------

def _field_format(con) -> tuple[str, int, bool]:
    """(struct code, value count, is_array) of one fixed-size field."""
    if isinstance(con, FormatField):
        return con.fmtstr[1:], 1, False
    if isinstance(con, Array) and isinstance(con.subcon, FormatField) and isinstance(con.count, int):
        return f"{con.count}{con.subcon.fmtstr[1:]}", con.count, True
    if type(con).__name__ == "Bytes" and isinstance(getattr(con, "length", None), int):
        return f"{con.length}s", 1, False
    raise TypeError(f"no struct view for {con!r}")


class StructView:
    """A `struct` view of the fixed-size prefix of a construct Struct.

    `unpack(buf, off)` gives a dict with construct's field names (arrays as lists),
    `pack_into(buf, off, fields)` writes one back, `offset[name]` / `fmt[name]`
    address a single field for in-place updates."""

    def __init__(self, con: Struct, nfields: int | None = None):
        subcons = con.subcons if nfields is None else con.subcons[:nfields]
        codes, self.names, self.counts = ["<"], [], []
        self.offset, self.fmt = {}, {}
        off = 0
        for sc in subcons:
            code, count, is_array = _field_format(sc.subcon)
            codes.append(code)
            self.names.append(sc.name)
            self.counts.append(count if is_array else 0)
            self.offset[sc.name] = off
            self.fmt[sc.name] = struct.Struct("<" + code)
            off += self.fmt[sc.name].size
        self.struct = struct.Struct("".join(codes))
        self.size = self.struct.size

    def unpack(self, buf, off: int = 0) -> dict:
        values = self.struct.unpack_from(buf, off)
        out, i = {}, 0
        for name, count in zip(self.names, self.counts):
            if count:
                out[name] = list(values[i:i + count])
                i += count
            else:
                out[name] = values[i]
                i += 1
        return out

    def pack_into(self, buf, off: int, fields: dict) -> None:
        values = []
        for name, count in zip(self.names, self.counts):
            if count:
                values.extend(fields[name])
            else:
                values.append(fields[name])
        self.struct.pack_into(buf, off, *values)

    def get(self, buf, off: int, name: str):
        return self.fmt[name].unpack_from(buf, off + self.offset[name])[0]

    def set(self, buf, off: int, name: str, value) -> None:
        self.fmt[name].pack_into(buf, off + self.offset[name], value)


SUPER = StructView(ext2_super_block)
GROUP_DESC = StructView(ext2_group_desc)
INODE = StructView(ext2_inode)
INODE_EXTRA = StructView(ext2_inode_large_extra)
DIRENT2_HDR = StructView(ext2_dir_entry_2, 4)       # inode, rec_len, name_len, file_type
DIRENT_HDR = StructView(ext2_dir_entry, 3)          # inode, rec_len, name_len
XATTR_HEADER = StructView(ext2_xattr_header)

assert SUPER.size == SUPERBLOCK_SIZE and GROUP_DESC.size == 32 and INODE.size == EXT2_GOOD_OLD_INODE_SIZE
assert INODE_EXTRA.size == 32 and DIRENT2_HDR.size == DIRENT_HDR.size == 8
