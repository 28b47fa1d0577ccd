"""The initramfs format: cpio "newc" archives, as Linux's init/initramfs.c reads them."""
from construct import Adapter, Bytes, Const, Struct

from .names import fs_decode

PAD = 4
MAGIC = b"070701"
TRAILER = "TRAILER!!!"
S_IFREG = 0o100000
S_IFDIR = 0o040000


class Hex8(Adapter):
    def _decode(self, obj, context, path):
        return int(obj, 16)

    def _encode(self, obj, context, path):
        return b"%08X" % obj


NewcHeader = Struct(
    "magic" / Const(MAGIC),
    "ino" / Hex8(Bytes(8)), "mode" / Hex8(Bytes(8)), "uid" / Hex8(Bytes(8)),
    "gid" / Hex8(Bytes(8)), "nlink" / Hex8(Bytes(8)), "mtime" / Hex8(Bytes(8)),
    "filesize" / Hex8(Bytes(8)), "devmajor" / Hex8(Bytes(8)), "devminor" / Hex8(Bytes(8)),
    "rdevmajor" / Hex8(Bytes(8)), "rdevminor" / Hex8(Bytes(8)), "namesize" / Hex8(Bytes(8)),
    "check" / Hex8(Bytes(8)),
)
HEADER_SIZE = NewcHeader.sizeof()


def _align(n: int) -> int:
    return (n + PAD - 1) & ~(PAD - 1)


def pack_newc(files: list[tuple[str, int, bytes]]) -> bytes:
    """files: (path, mode, data) -> a newc archive with a trailer."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate(list(files) + [(TRAILER, 0, b"")], start=1):
        raw = name.encode() + b"\0"
        hdr = NewcHeader.build(dict(ino=ino, mode=mode, uid=0, gid=0, nlink=1, mtime=0,
                                    filesize=len(data), devmajor=0, devminor=0, rdevmajor=0,
                                    rdevminor=0, namesize=len(raw), check=0))
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
            h = NewcHeader.parse(bytes(view[pos:pos + HEADER_SIZE]))
        except Exception as e:
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
