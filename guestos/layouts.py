"""The guest kernel's binary layouts, each declared once, with construct, as the C headers they mirror.

A run never imports this module: tools/gen_layouts.py derives from each declaration the field list of a
`struct` view (guestos/layouts_struct.py, committed), and the kernel reads and writes records through those
views (guestos/structview.py). tests/test_layouts.py checks that the generated file is current and that both
read and write the same bytes. After changing a declaration: python tools/gen_layouts.py"""
from construct import Adapter, Array, Bytes, Const, Int8ul, Int16sl, Int16ul, Int32sl, Int32ul, Int64ul, Padding, \
    Struct, this

from .fs.binfmt_elf import EI_NIDENT
from .fs.cpio import MAGIC, format_hex8, parse_hex8
from .fs.ext2_layout import EXT2_N_BLOCKS, SUPERBLOCK_SIZE
from .mm.swapfile import PAGE_SIZE

# --- ELF64 (include/uapi/linux/elf.h) ------------------------------------------

Elf64_Ehdr = Struct(
    "e_ident" / Bytes(EI_NIDENT),
    "e_type" / Int16ul,
    "e_machine" / Int16ul,
    "e_version" / Int32ul,
    "e_entry" / Int64ul,
    "e_phoff" / Int64ul,
    "e_shoff" / Int64ul,
    "e_flags" / Int32ul,
    "e_ehsize" / Int16ul,
    "e_phentsize" / Int16ul,
    "e_phnum" / Int16ul,
    "e_shentsize" / Int16ul,
    "e_shnum" / Int16ul,
    "e_shstrndx" / Int16ul,
)

Elf64_Phdr = Struct(
    "p_type" / Int32ul,
    "p_flags" / Int32ul,
    "p_offset" / Int64ul,
    "p_vaddr" / Int64ul,
    "p_paddr" / Int64ul,
    "p_filesz" / Int64ul,
    "p_memsz" / Int64ul,
    "p_align" / Int64ul,
)

Elf64_Shdr = Struct(
    "sh_name" / Int32ul,
    "sh_type" / Int32ul,
    "sh_flags" / Int64ul,
    "sh_addr" / Int64ul,
    "sh_offset" / Int64ul,
    "sh_size" / Int64ul,
    "sh_link" / Int32ul,
    "sh_info" / Int32ul,
    "sh_addralign" / Int64ul,
    "sh_entsize" / Int64ul,
)

Elf64_Sym = Struct(
    "st_name" / Int32ul,
    "st_info" / Int8ul,
    "st_other" / Int8ul,
    "st_shndx" / Int16ul,
    "st_value" / Int64ul,
    "st_size" / Int64ul,
)


# --- initramfs: cpio "newc" headers (init/initramfs.c) ---------------------------

class Hex8(Adapter):
    """Eight ASCII hex digits."""

    def _decode(self, obj, context, path):
        return parse_hex8(obj)

    def _encode(self, obj, context, path):
        return format_hex8(obj)


NewcHeader = Struct(
    "magic" / Const(MAGIC),
    "ino" / Hex8(Bytes(8)), "mode" / Hex8(Bytes(8)), "uid" / Hex8(Bytes(8)),
    "gid" / Hex8(Bytes(8)), "nlink" / Hex8(Bytes(8)), "mtime" / Hex8(Bytes(8)),
    "filesize" / Hex8(Bytes(8)), "devmajor" / Hex8(Bytes(8)), "devminor" / Hex8(Bytes(8)),
    "rdevmajor" / Hex8(Bytes(8)), "rdevminor" / Hex8(Bytes(8)), "namesize" / Hex8(Bytes(8)),
    "check" / Hex8(Bytes(8)),
)


# --- the zero page between the loader and the kernel (boot_params) ---------------

E820Entry = Struct("addr" / Int64ul, "size" / Int64ul, "type" / Int32ul)

BootParams = Struct(
    "magic" / Const(b"BLST"),
    "cmdline_paddr" / Int64ul,
    "cmdline_size" / Int32ul,
    "initrd_paddr" / Int64ul,       # an initramfs (cpio newc) the loader placed in RAM
    "initrd_size" / Int64ul,
    "e820_nr" / Int32ul,
    "e820" / Array(this.e820_nr, E820Entry),
)


# --- struct page (include/linux/mm_types.h), one per frame in mem_map ------------

StructPage = Struct(
    "flags" / Int64ul,
    "_refcount" / Int32sl,
    "_mapcount" / Int32sl,     # -1 when not mapped, as Linux
    "private" / Int64ul,       # buddy order while free
    "mapping" / Int64ul,       # anon_vma id (low bit set) or address_space id
    "index" / Int64ul,         # page offset in the mapping
    "lru_next" / Int32ul,      # list links by pfn (free lists, later the LRU)
    "lru_prev" / Int32ul,
    "disk_sector" / Int64ul,   # ours: 1 + the first 512-byte sector the page holds (0: none)
    Padding(8),
)


# --- the first page of a swap area, as mkswap writes it (include/linux/swap.h: union swap_header)

SwapHeader = Struct(
    "bootbits" / Bytes(1024),
    "version" / Int32ul,
    "last_page" / Int32ul,
    "nr_badpages" / Int32ul,
    "sws_uuid" / Bytes(16),
    "sws_volume" / Bytes(16),
    Padding(PAGE_SIZE - 10 - 1024 - 4 * 3 - 32),
    "magic" / Const(b"SWAPSPACE2"),
)


# --- ext2 (include/linux/ext2_fs.h) -----------------------------------------------

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
