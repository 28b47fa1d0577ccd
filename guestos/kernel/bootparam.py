"""The boot protocol between the loader (the VMM) and the kernel: a zero page
at a fixed guest-physical address, as Linux's boot_params, declared once here."""
from construct import Array, Const, Int32ul, Int64ul, Struct, this

ZERO_PAGE_PADDR = 0x1000
E820_RAM = 1
E820_RESERVED = 2
E820_MAX = 32

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
