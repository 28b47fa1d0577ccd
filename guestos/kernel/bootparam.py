"""The boot protocol between the loader (the VMM) and the kernel: a zero page at a fixed guest-physical
address, as Linux's boot_params. Its layout is declared in guestos/layouts.py (BootParams, E820Entry)."""
from types import SimpleNamespace

from .. import layouts_struct
from ..structview import StructView

ZERO_PAGE_PADDR = 0x1000
E820_RAM = 1
E820_RESERVED = 2
E820_MAX = 32

BOOT_PARAMS = StructView(layouts_struct.BootParams_FIELDS)     # the header; e820_nr entries follow it
E820_ENTRY = StructView(layouts_struct.E820Entry_FIELDS)


def build_boot_params(e820: list[dict], **header) -> bytes:
    """The zero page's bytes: the header fields, then the e820 map."""
    return BOOT_PARAMS.pack(dict(header, e820_nr=len(e820))) + b"".join(E820_ENTRY.pack(e) for e in e820)


def parse_boot_params(page) -> SimpleNamespace:
    """The header's fields as attributes, and `e820`, its entries (LayoutError without the magic)."""
    bp = BOOT_PARAMS.parse(page)
    if BOOT_PARAMS.size + bp.e820_nr * E820_ENTRY.size > len(page):
        raise ValueError(f"boot_params: {bp.e820_nr} e820 entries run past the zero page")
    bp.e820 = [E820_ENTRY.parse(page, BOOT_PARAMS.size + i * E820_ENTRY.size) for i in range(bp.e820_nr)]
    return bp
