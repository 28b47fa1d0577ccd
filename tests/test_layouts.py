"""Every binary layout is declared once, with construct (guestos/layouts.py, devices/layouts.py); a run reads
and writes them through the `struct` views tools/gen_layouts.py derives (guestos/layouts_struct.py,
devices/layouts_struct.py). The generated files are current, and each view reads and writes the same bytes
as construct does with its declaration."""
import random
import subprocess
import sys

import pytest
from construct import Struct
from hypothesis import given, settings
from hypothesis import strategies as st

from ballast_testlib import REPO
from devices import layouts as device_layouts, layouts_struct as device_structs
from guestos import layouts as guest_layouts, layouts_struct as guest_structs
from guestos.fs import cpio
from guestos.kernel.bootparam import build_boot_params, parse_boot_params
from guestos.structview import LayoutError, StructView

sys.path.insert(0, str(REPO / "tools"))
import gen_layouts  # noqa: E402


def _declarations():
    for declared, generated in ((guest_layouts, guest_structs), (device_layouts, device_structs)):
        for name in dir(generated):
            if name.endswith("_FIELDS"):
                yield pytest.param(getattr(declared, name[:-7]), getattr(generated, name),
                                   getattr(generated, name[:-7]), id=name[:-7])


def test_the_generated_views_are_current():
    check = subprocess.run([sys.executable, REPO / "tools" / "gen_layouts.py", "--check"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_a_changed_declaration_makes_the_view_stale(monkeypatch):
    before = gen_layouts.render("devices.layouts")
    monkeypatch.setattr(device_layouts, "VirtqUsedElem",
                        Struct("id" / device_layouts.Int32ul, "len" / device_layouts.Int16ul))
    assert gen_layouts.render("devices.layouts") != before


def test_every_declaration_has_a_view():
    names = {p.id for p in _declarations()}
    assert {"Elf64_Ehdr", "Elf64_Phdr", "Elf64_Shdr", "Elf64_Sym", "NewcHeader", "BootParams", "E820Entry",
            "StructPage", "SwapHeader", "ext2_super_block", "ext2_inode", "ext2_dir_entry_2", "VirtqDesc",
            "VirtqAvailElem", "VirtqUsedElem", "VirtioBlkOuthdr", "VirtioBlkConfig", "VirtioBalloonConfig",
            "VirtioBalloonStat", "VirtioBalloonPfn"} <= names


def _prefix(con):
    """The part of a declaration its view covers: all of it, or its fixed-size prefix."""
    if not isinstance(con, Struct):
        return con
    return Struct(*con.subcons[:gen_layouts.fixed_fields(con)[1]])


def _with_consts(fields, raw: bytes) -> bytes:
    """Random bytes with each Const field holding its value."""
    out, view = bytearray(raw), StructView(fields)
    for name, value in view.consts.items():
        view.set(out, 0, name, value)
    return bytes(out)


@pytest.mark.parametrize("con,fields,packed", list(_declarations()))
@settings(max_examples=40, database=None, deadline=None)
@given(data=st.data())
def test_a_view_reads_and_writes_what_construct_does(con, fields, packed, data):
    con = _prefix(con)
    view = StructView(fields)
    assert view.size == packed.size == con.sizeof()
    assert packed.format == view.struct.format
    if packed is guest_structs.NewcHeader:          # its Adapter takes hex digits only
        numbers = {name: data.draw(st.integers(0, 0xFFFFFFFF)) for name in view.names[1:]}
        raw = con.build(numbers)
    else:
        raw = _with_consts(fields, random.Random(data.draw(st.integers(0, 1 << 32))).randbytes(view.size))
    parsed = con.parse(raw)
    if not isinstance(con, Struct):
        assert view.unpack(raw)["value"] == parsed and packed.unpack(raw) == (parsed,)
        return
    flat = {}
    for name, value in parsed.items():
        if isinstance(value, dict):                 # a nested Struct, flattened OUTER_INNER
            flat.update({f"{name}_{k}": v for k, v in value.items() if k != "_io"})
        elif name != "_io":
            flat[name] = list(value) if isinstance(value, list) else value
    fields_read = view.unpack(raw)
    for name in view.names:                         # an Adapter's field is the raw bytes under it
        expected = cpio.format_hex8(flat[name]) if packed is guest_structs.NewcHeader and name != "magic" \
            else flat[name]
        assert fields_read[name] == expected, name
    built = con.build(parsed)                       # padding written as zeros
    assert view.pack(fields_read) == built == packed.pack(*packed.unpack(raw))
    assert view.unpack(built) == fields_read


def test_a_const_field_holds_its_value():
    view = StructView(guest_structs.BootParams_FIELDS)
    raw = bytearray(view.pack(dict(cmdline_paddr=1, cmdline_size=2, initrd_paddr=3, initrd_size=4, e820_nr=0)))
    assert raw[:4] == b"BLST" and view.parse(raw).cmdline_size == 2
    raw[0] ^= 1
    with pytest.raises(LayoutError, match="magic"):
        view.unpack(raw)


def test_the_zero_page_reads_as_construct_builds_it():
    e820 = [dict(addr=0, size=0x9F000, type=1), dict(addr=0x100000, size=64 << 20, type=1)]
    header = dict(cmdline_paddr=0x2000, cmdline_size=5, initrd_paddr=0x40000, initrd_size=512)
    page = build_boot_params(e820, **header)
    assert page == guest_layouts.BootParams.build(dict(header, e820_nr=2, e820=e820))
    bp = parse_boot_params(page.ljust(4096, b"\0"))
    assert bp.cmdline_paddr == 0x2000 and [(e.addr, e.size, e.type) for e in bp.e820] == \
        [(e["addr"], e["size"], e["type"]) for e in e820]
    with pytest.raises(ValueError, match="run past"):
        parse_boot_params(page[:-1])


def test_a_newc_archive_reads_as_construct_builds_its_headers():
    archive = cpio.pack_newc([("bin/hello", 0o100755, b"\x7fELF..."), ("etc", 0o040755, b"")])
    header = guest_layouts.NewcHeader.parse(archive[:cpio.HEADER_SIZE])
    assert header.mode == 0o100755 and header.filesize == 7 and header.namesize == len("bin/hello") + 1
    assert [(name, mode, bytes(data)) for name, mode, data in cpio.unpack_newc(archive)] == \
        [("bin/hello", 0o100755, b"\x7fELF..."), ("etc", 0o040755, b"")]
    with pytest.raises(ValueError, match="bad cpio header"):
        cpio.unpack_newc(b"070702" + archive[6:])
    with pytest.raises(ValueError, match="does not fit"):
        cpio.pack_newc([("x", 1 << 32, b"")])
