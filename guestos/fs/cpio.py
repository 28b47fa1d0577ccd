"""The initramfs format: cpio "newc" archives, as Linux's init/initramfs.c reads them."""
from types import SimpleNamespace

from .. import layouts_struct
from ..structview import StructView
from .names import fs_decode

PAD = 4
MAGIC = b"070701"
TRAILER = "TRAILER!!!"
S_IFREG = 0o100000
S_IFDIR = 0o040000


def parse_hex8(raw: bytes) -> int:
    """A header field: eight ASCII hex digits."""
    return int(raw, 16)


def format_hex8(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"cpio newc: {value} does not fit a header field")
    return b"%08X" % value


NEWC = StructView(layouts_struct.NewcHeader_FIELDS)         # declared in guestos/layouts.py
HEADER_SIZE = NEWC.size
_NUMBERS = NEWC.names[1:]                                   # every field after the magic


def _align(n: int) -> int:
    return (n + PAD - 1) & ~(PAD - 1)


def pack_newc(files: list[tuple[str, int, bytes]]) -> bytes:
    """files: (path, mode, data) -> a newc archive with a trailer."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate(list(files) + [(TRAILER, 0, b"")], start=1):
        raw = name.encode() + b"\0"
        numbers = dict(ino=ino, mode=mode, uid=0, gid=0, nlink=1, mtime=0, filesize=len(data), devmajor=0,
                       devminor=0, rdevmajor=0, rdevminor=0, namesize=len(raw), check=0)
        hdr = NEWC.pack({name: format_hex8(numbers[name]) for name in _NUMBERS})
        out += hdr + raw
        out += bytes(_align(len(out)) - len(out))
        out += data
        out += bytes(_align(len(out)) - len(out))
    return bytes(out)


def unpack_newc(buf) -> list[tuple[str, int, memoryview]]:
    """Entries of an archive, up to its trailer; raises ValueError on a bad archive."""
    view = memoryview(buf)
    entries, pos = [], 0
    while True:
        if pos + HEADER_SIZE > len(view):
            raise ValueError("initramfs: truncated cpio header")
        try:
            raw = NEWC.unpack(view, pos)
            h = SimpleNamespace(**{name: parse_hex8(raw[name]) for name in _NUMBERS})
        except ValueError as e:
            raise ValueError(f"initramfs: bad cpio header at {pos}") from e
        pos += HEADER_SIZE
        name = fs_decode(bytes(view[pos:pos + h.namesize]).rstrip(b"\0"))      # every byte kept
        pos = _align(pos + h.namesize)
        if name == TRAILER:
            return entries
        if pos + h.filesize > len(view):
            raise ValueError(f"initramfs: {name} runs past the archive")
        entries.append((name, h.mode, view[pos:pos + h.filesize]))
        pos = _align(pos + h.filesize)
