"""The devices' binary layouts, each declared once, with construct, as the virtio 1.2 specification gives them.

A run never imports this module: tools/gen_layouts.py derives from each declaration a `struct` (and its field
list) in devices/layouts_struct.py, committed, which the devices use. tests/test_layouts.py checks that the
generated file is current and that both read and write the same bytes. After changing a declaration:
python tools/gen_layouts.py"""
from construct import Array, Const, Int8ul, Int16ul, Int32ul, Int64ul, Padding, Struct

# --- split virtqueues (2.7) -----------------------------------------------------

VirtqDesc = Struct("addr" / Int64ul, "len" / Int32ul, "flags" / Int16ul, "next" / Int16ul)
VirtqAvailElem = Int16ul
VirtqUsedElem = Struct("id" / Int32ul, "len" / Int32ul)


def virtq_avail(size: int) -> Struct:
    """The driver area; used_event is meaningful only with VIRTIO_F_EVENT_IDX."""
    return Struct("flags" / Int16ul, "idx" / Int16ul, "ring" / Array(size, VirtqAvailElem),
                  "used_event" / Int16ul)


def virtq_used(size: int) -> Struct:
    """The device area; avail_event is meaningful only with VIRTIO_F_EVENT_IDX."""
    return Struct("flags" / Int16ul, "idx" / Int16ul, "ring" / Array(size, VirtqUsedElem),
                  "avail_event" / Int16ul)


# --- virtio-blk (5.2) -----------------------------------------------------------

VirtioBlkOuthdr = Struct("type" / Int32ul, "reserved" / Int32ul, "sector" / Int64ul)
VirtioBlkDiscardWriteZeroes = Struct("sector" / Int64ul, "num_sectors" / Int32ul, "flags" / Int32ul)
VirtioBlkConfig = Struct(
    "capacity" / Int64ul,                       # @0, 512-byte sectors
    "size_max" / Int32ul,                       # @8
    "seg_max" / Int32ul,                        # @12
    "geometry" / Struct("cylinders" / Int16ul, "heads" / Int8ul, "sectors" / Int8ul),   # @16
    "blk_size" / Int32ul,                       # @20
    "topology" / Struct("physical_block_exp" / Int8ul, "alignment_offset" / Int8ul,
                        "min_io_size" / Int16ul, "opt_io_size" / Int32ul),              # @24
    "writeback" / Int8ul,                       # @32
    "unused0" / Const(0, Int8ul),
    "num_queues" / Int16ul,                     # @34
    "max_discard_sectors" / Int32ul,            # @36
    "max_discard_seg" / Int32ul,                # @40
    "discard_sector_alignment" / Int32ul,       # @44
    "max_write_zeroes_sectors" / Int32ul,       # @48
    "max_write_zeroes_seg" / Int32ul,           # @52
    "write_zeroes_may_unmap" / Int8ul,          # @56
    "unused1" / Padding(3),
)


# --- virtio-balloon (5.5) -------------------------------------------------------

VirtioBalloonConfig = Struct(
    "num_pages" / Int32ul,                  # @0, device-written target in 4 KiB pages
    "actual" / Int32ul,                     # @4, driver-written
    "free_page_hint_cmd_id" / Int32ul,      # @8, device-written
    "poison_val" / Int32ul,                 # @12, driver-written (with PAGE_POISON)
)
VirtioBalloonStat = Struct("tag" / Int16ul, "val" / Int64ul)       # struct virtio_balloon_stat, packed
VirtioBalloonPfn = Int32ul                                          # an inflate or deflate buffer's element
