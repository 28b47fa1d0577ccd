"""Fixed-size records read and written with `struct`.

Every layout is declared once, with construct, in guestos/layouts.py. tools/gen_layouts.py derives from each
declaration the field list a `StructView` takes (guestos/layouts_struct.py, committed), so that a run reads
and writes records without importing construct; tests/test_layouts.py holds the two to each other.

A field is (name, struct code) or (name, struct code, value) for a construct Const. An array of numbers is
one field whose code has a count ("15I"); padding has no name ("8x")."""
import struct
from types import SimpleNamespace


class LayoutError(ValueError):
    """A Const field does not hold its declared value (construct's ConstError)."""


def _array_count(code: str) -> int:
    """N for an array of N numbers ("15I"), 0 for one number or one bytes field ("I", "16s")."""
    return int(code[:-1]) if code[:-1] and code[-1] != "s" else 0


class StructView:
    """`unpack(buf, off)` gives a dict with construct's field names (arrays as lists), `parse` the same as
    attributes, `pack_into`/`pack` write one back (Const fields may be left out), `offset[name]` and
    `fmt[name]` address a single field for in-place updates."""

    def __init__(self, fields):
        self.names, self.counts, self.offset, self.fmt, self.consts = [], [], {}, {}, {}
        codes, off = ["<"], 0
        for field in fields:
            name, code = field[0], field[1]
            codes.append(code)
            size = struct.calcsize("<" + code)
            if name:
                self.names.append(name)
                self.counts.append(_array_count(code))
                self.offset[name] = off
                self.fmt[name] = struct.Struct("<" + code)
                if len(field) > 2:
                    self.consts[name] = field[2]
            off += size
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
        if self.consts:
            for name, value in self.consts.items():
                if out[name] != value:
                    raise LayoutError(f"{name} is {out[name]!r}, not {value!r}")
        return out

    def parse(self, buf, off: int = 0) -> SimpleNamespace:
        return SimpleNamespace(**self.unpack(buf, off))

    def _flat(self, fields: dict) -> list:
        values = []
        for name, count in zip(self.names, self.counts):
            value = fields[name] if name in fields or name not in self.consts else self.consts[name]
            if count:
                values.extend(value)
            else:
                values.append(value)
        return values

    def pack(self, fields: dict) -> bytes:
        return self.struct.pack(*self._flat(fields))

    def pack_into(self, buf, off: int, fields: dict) -> None:
        self.struct.pack_into(buf, off, *self._flat(fields))

    def get(self, buf, off: int, name: str):
        return self.fmt[name].unpack_from(buf, off + self.offset[name])[0]

    def set(self, buf, off: int, name: str, value) -> None:
        self.fmt[name].pack_into(buf, off + self.offset[name], value)
