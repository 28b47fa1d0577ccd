"""ext2 on-disk constants and layouts (include/linux/ext2_fs.h).

The superblock, group descriptor, inode, directory entry and extended-attribute block header are
declared once, with construct, in guestos/layouts.py. The driver reads and writes them through
`StructView`s of the same declarations (tools/gen_layouts.py derives them; tests/test_layouts.py and
tests/test_ext2.py check that both agree byte for byte).
"""
from __future__ import annotations

from .. import layouts_struct
from ..structview import StructView

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


# --- struct views of the layouts (declared in guestos/layouts.py) --------------

SUPER = StructView(layouts_struct.ext2_super_block_FIELDS)
GROUP_DESC = StructView(layouts_struct.ext2_group_desc_FIELDS)
INODE = StructView(layouts_struct.ext2_inode_FIELDS)
INODE_EXTRA = StructView(layouts_struct.ext2_inode_large_extra_FIELDS)
DIRENT2_HDR = StructView(layouts_struct.ext2_dir_entry_2_FIELDS)      # inode, rec_len, name_len, file_type
DIRENT_HDR = StructView(layouts_struct.ext2_dir_entry_FIELDS)         # inode, rec_len, name_len
XATTR_HEADER = StructView(layouts_struct.ext2_xattr_header_FIELDS)

assert SUPER.size == SUPERBLOCK_SIZE and GROUP_DESC.size == 32 and INODE.size == EXT2_GOOD_OLD_INODE_SIZE
assert INODE_EXTRA.size == 32 and DIRENT2_HDR.size == DIRENT_HDR.size == 8
