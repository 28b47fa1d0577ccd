"""Tests for guestos.fs.binfmt_elf: ELF validation and the initial stack."""

import re
import shutil
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guestos.fs import binfmt_elf as be
from guestos.layouts import Elf64_Ehdr, Elf64_Phdr
from guestos.fs.binfmt_elf import (
    AT_EXECFN,
    AT_NULL,
    AT_PHDR,
    AT_PLATFORM,
    AT_RANDOM,
    ENOEXEC,
    ET_DYN,
    ET_EXEC,
    LoadSegment,
    PF_R,
    PF_W,
    PF_X,
    PT_INTERP,
    PT_LOAD,
    create_elf_tables,
    elf_auxv,
    find_symbol,
    parse_elf,
)

C_PROGRAM = r"""
#include <stdio.h>
int counter = 7;
int main(int argc, char **argv) { printf("hi %d\n", argc + counter); return 0; }
"""


def _gcc(tmp_dir, name, *flags):
    src = tmp_dir / "prog.c"
    if not src.exists():
        src.write_text(C_PROGRAM)
    out = tmp_dir / name
    proc = subprocess.run(["gcc", *flags, "-O1", "-o", str(out), str(src)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"gcc {' '.join(flags)} failed: {proc.stderr.strip()[:200]}")
    return out


@pytest.fixture(scope="session")
def binaries(tmp_path_factory):
    if not shutil.which("gcc") or not shutil.which("readelf"):
        pytest.skip("gcc and readelf are needed")
    d = tmp_path_factory.mktemp("elf")
    return {
        "static": _gcc(d, "static", "-static", "-no-pie"),
        "static_pie": _gcc(d, "static_pie", "-static-pie"),
        "dynamic_pie": _gcc(d, "dynamic_pie", "-pie", "-fPIE"),
        "dynamic_nopie": _gcc(d, "dynamic_nopie", "-no-pie"),
    }


def readelf(path):
    """Parse `readelf -lhW`: e_type, entry, phoff, phnum and the program headers."""
    text = subprocess.run(["readelf", "-lhW", str(path)], capture_output=True, text=True, check=True).stdout
    info = {
        "type": re.search(r"^\s*Type:\s+(\w+)", text, re.M).group(1),
        "entry": int(re.search(r"Entry point address:\s+(0x[0-9a-f]+)", text).group(1), 16),
        "phoff": int(re.search(r"Start of program headers:\s+(\d+)", text).group(1)),
        "phnum": int(re.search(r"Number of program headers:\s+(\d+)", text).group(1)),
        "phentsize": int(re.search(r"Size of program headers:\s+(\d+)", text).group(1)),
    }
    headers = []
    row = re.compile(
        r"^\s+([A-Z_]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)"
        r"\s+([RWE ]{3})\s+0x([0-9a-f]+)$",
        re.M,
    )
    for m in row.finditer(text):
        kind, off, vaddr, _paddr, filesz, memsz, flg, align = m.groups()
        flags = (PF_R if "R" in flg else 0) | (PF_W if "W" in flg else 0) | (PF_X if "E" in flg else 0)
        headers.append(
            dict(type=kind, offset=int(off, 16), vaddr=int(vaddr, 16), filesz=int(filesz, 16),
                 memsz=int(memsz, 16), flags=flags, align=int(align, 16))
        )
    assert len(headers) == info["phnum"]
    info["headers"] = headers
    return info


def _check_against_readelf(path, expected_type):
    data = path.read_bytes()
    img = parse_elf(data)
    ref = readelf(path)
    assert img.e_type == expected_type
    assert img.phnum == ref["phnum"]
    assert img.phentsize == ref["phentsize"] == 56
    bias = img.load_bias
    assert img.entry == ref["entry"] + bias
    loads = [h for h in ref["headers"] if h["type"] == "LOAD"]
    assert [
        (s.vaddr - bias, s.memsz, s.filesz, s.offset, s.flags, s.align) for s in img.segments
    ] == [(h["vaddr"], h["memsz"], h["filesz"], h["offset"], h["flags"], h["align"]) for h in loads]
    # AT_PHDR: PT_PHDR, else where e_phoff lands inside a PT_LOAD.
    phdr = [h for h in ref["headers"] if h["type"] == "PHDR"]
    if phdr:
        assert img.phdr_vaddr == phdr[0]["vaddr"] + bias
    else:
        (home,) = [h for h in loads if h["offset"] <= ref["phoff"] < h["offset"] + h["filesz"]]
        assert img.phdr_vaddr == ref["phoff"] - home["offset"] + home["vaddr"] + bias
    top = max(h["vaddr"] + h["memsz"] for h in loads) + bias
    assert img.brk_start == (top + 4095) & ~4095
    tls = [h for h in ref["headers"] if h["type"] == "TLS"]
    if tls:
        assert (img.tls.vaddr - bias, img.tls.memsz, img.tls.filesz) == (
            tls[0]["vaddr"], tls[0]["memsz"], tls[0]["filesz"])
    stack = [h for h in ref["headers"] if h["type"] == "GNU_STACK"]
    assert img.executable_stack == bool(stack and stack[0]["flags"] & PF_X)
    for s in img.segments:
        assert s.prot_read == bool(s.flags & PF_R)
        assert s.prot_write == bool(s.flags & PF_W)
        assert s.prot_exec == bool(s.flags & PF_X)
    return img


# --- real binaries -------------------------------------------------------------


def test_static_no_pie_matches_readelf(binaries):
    img = _check_against_readelf(binaries["static"], ET_EXEC)
    assert img.load_bias == 0
    assert img.segments[0].vaddr == 0x400000


def test_static_pie_matches_readelf(binaries):
    img = _check_against_readelf(binaries["static_pie"], ET_DYN)
    assert img.load_bias == 0x555555554000


def test_parse_accepts_memoryview_and_bytearray(binaries):
    data = binaries["static"].read_bytes()
    assert parse_elf(memoryview(data)) == parse_elf(data) == parse_elf(bytearray(data))


def test_find_symbol_main(binaries):
    for name in ("static", "static_pie"):
        path = binaries[name]
        out = subprocess.run(["readelf", "-sW", str(path)], capture_output=True, text=True, check=True).stdout
        (value,) = {int(m.group(1), 16) for m in re.finditer(r"^\s*\d+:\s+([0-9a-f]+)\s+\d+\s+FUNC\s+\w+\s+\w+\s+\d+\s+main$", out, re.M)}
        assert find_symbol(path.read_bytes(), "main") == value
        assert find_symbol(path.read_bytes(), b"counter") is not None
        assert find_symbol(path.read_bytes(), "no_such_symbol_here") is None


def test_find_symbol_stripped(binaries, tmp_path):
    stripped = tmp_path / "stripped"
    subprocess.run(["strip", "-o", str(stripped), str(binaries["static"])], check=True)
    assert find_symbol(stripped.read_bytes(), "main") is None
    parse_elf(stripped.read_bytes())


@pytest.mark.parametrize("name", ["dynamic_pie", "dynamic_nopie"])
def test_dynamically_linked_rejected(binaries, name):
    with pytest.raises(ENOEXEC, match=r"dynamically linked programs are not supported \(PT_INTERP\)"):
        parse_elf(binaries[name].read_bytes())


def test_wrong_machine(binaries):
    data = bytearray(binaries["static"].read_bytes())
    struct.pack_into("<H", data, 18, be.EM_AARCH64)
    with pytest.raises(ENOEXEC, match=r"^ELF for another architecture \(EM_AARCH64\)$"):
        parse_elf(data)
    struct.pack_into("<H", data, 18, 0x1234)
    with pytest.raises(ENOEXEC, match="another architecture"):
        parse_elf(data)


def test_not_elf(binaries):
    for blob in (b"", b"\x7fEL", b"#!/bin/sh\necho hi\n", b"MZ" + bytes(100), (binaries["static"].parent / "prog.c").read_bytes()):
        with pytest.raises(ENOEXEC, match="^not an ELF file$"):
            parse_elf(blob)


def test_32bit_elf():
    # Elf32_Ehdr of an i386 executable, built by hand (gcc -m32 may be missing).
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
    ehdr32 = ident + struct.pack("<HHIIIIIHHHHHH", ET_EXEC, be.EM_386, 1, 0x8048000, 52, 0, 0, 52, 32, 1, 40, 0, 0)
    phdr32 = struct.pack("<8I", PT_LOAD, 0, 0x8048000, 0x8048000, 84, 84, PF_R | PF_X, 0x1000)
    with pytest.raises(ENOEXEC, match="^32-bit ELF is not supported$"):
        parse_elf(ehdr32 + phdr32)


def test_bad_ident_fields(binaries):
    data = binaries["static"].read_bytes()
    for index, value, pattern in [
        (be.EI_CLASS, 0, "invalid ELF class"),
        (be.EI_DATA, be.ELFDATA2MSB, "big-endian"),
        (be.EI_DATA, 0, "data encoding"),
        (be.EI_VERSION, 0, "invalid ELF version"),
    ]:
        bad = bytearray(data)
        bad[index] = value
        with pytest.raises(ENOEXEC, match=pattern):
            parse_elf(bad)
    bad = bytearray(data)
    struct.pack_into("<I", bad, 20, 2)  # e_version
    with pytest.raises(ENOEXEC, match="invalid ELF version"):
        parse_elf(bad)
    for e_type, pattern in [(be.ET_REL, "ET_REL"), (be.ET_CORE, "ET_CORE"), (0, "e_type 0")]:
        bad = bytearray(data)
        struct.pack_into("<H", bad, 16, e_type)
        with pytest.raises(ENOEXEC, match=pattern):
            parse_elf(bad)


def test_corrupted_phoff(binaries):
    data = binaries["static"].read_bytes()
    for phoff in (len(data), len(data) - 20, 2**63, 2**64 - 1):
        bad = bytearray(data)
        struct.pack_into("<Q", bad, 32, phoff)
        with pytest.raises(ENOEXEC, match=r"^truncated ELF: program header \d+ lies beyond the end of the file \(size \d+\)$"):
            parse_elf(bad)


def test_corrupted_phentsize_and_phnum(binaries):
    data = binaries["static"].read_bytes()
    bad = bytearray(data)
    struct.pack_into("<H", bad, 54, 32)
    with pytest.raises(ENOEXEC, match="e_phentsize"):
        parse_elf(bad)
    bad = bytearray(data)
    struct.pack_into("<H", bad, 56, 0)
    with pytest.raises(ENOEXEC, match="no program headers"):
        parse_elf(bad)
    bad = bytearray(data)
    struct.pack_into("<H", bad, 56, 0xFFFF)
    with pytest.raises(ENOEXEC, match="too many program headers"):
        parse_elf(bad)


def _assert_enoexec_or_image(data):
    try:
        return parse_elf(data)
    except ENOEXEC as e:
        msg = str(e)
        assert msg and "\n" not in msg
        return None


def test_truncated_at_every_length_of_the_headers(binaries):
    data = binaries["static"].read_bytes()
    img = parse_elf(data)
    needed = max(s.offset + s.filesz for s in img.segments)
    for n in range(0, 64 + img.phnum * 56 + 64):
        with pytest.raises(ENOEXEC) as exc:
            parse_elf(data[:n])
        assert "\n" not in str(exc.value)
    # Cutting into the last PT_LOAD's file data is always fatal.
    for n in (needed - 1, needed - 4096, needed // 2, 4097):
        with pytest.raises(ENOEXEC, match="^truncated ELF"):
            parse_elf(data[:n])
    # Section headers are not needed to run.
    assert parse_elf(data[:needed]) == img


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_truncated_anywhere(binaries, draw):
    data = binaries[draw.draw(st.sampled_from(["static", "static_pie"]))].read_bytes()
    n = draw.draw(st.integers(0, len(data)))
    img = _assert_enoexec_or_image(data[:n])
    needed = max(s.offset + s.filesz for s in parse_elf(data).segments)
    assert (img is not None) == (n >= needed)
    try:
        find_symbol(data[:n], "main")
    except ENOEXEC as e:
        assert "\n" not in str(e)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_corrupted_headers_never_crash(binaries, draw):
    data = bytearray(binaries["static_pie"].read_bytes())
    limit = 64 + 56 * parse_elf(data).phnum
    for _ in range(draw.draw(st.integers(1, 8))):
        data[draw.draw(st.integers(0, limit - 1))] = draw.draw(st.integers(0, 255))
    _assert_enoexec_or_image(bytes(data))


# --- hand-built ELF files --------------------------------------------------------


def make_elf(phdrs, entry=0x401000, e_type=ET_EXEC, size=0x3000, **ehdr):
    """A minimal ELF64 x86-64 file: header, program headers, zero padding."""
    fields = dict(
        e_ident=b"\x7fELF\x02\x01\x01" + bytes(9), e_type=e_type, e_machine=be.EM_X86_64, e_version=1,
        e_entry=entry, e_phoff=64, e_shoff=0, e_flags=0, e_ehsize=64, e_phentsize=56,
        e_phnum=len(phdrs), e_shentsize=64, e_shnum=0, e_shstrndx=0,
    )
    fields.update(ehdr)
    out = bytearray(Elf64_Ehdr.build(fields))
    for ph in phdrs:
        full = dict(p_type=PT_LOAD, p_flags=PF_R, p_offset=0, p_vaddr=0, p_paddr=0, p_filesz=0,
                    p_memsz=0, p_align=0x1000)
        full.update(ph)
        full.setdefault("p_paddr", full["p_vaddr"])
        out += Elf64_Phdr.build(full)
    out += bytes(max(0, size - len(out)))
    return bytes(out)


TEXT = dict(p_offset=0, p_vaddr=0x400000, p_filesz=0x2000, p_memsz=0x2000, p_flags=PF_R | PF_X)
DATA = dict(p_offset=0x2000, p_vaddr=0x402000, p_filesz=0x100, p_memsz=0x5000, p_flags=PF_R | PF_W)


def test_minimal_elf_loads():
    img = parse_elf(make_elf([TEXT, DATA]))
    assert img.segments == (
        LoadSegment(vaddr=0x400000, memsz=0x2000, filesz=0x2000, offset=0, flags=PF_R | PF_X),
        LoadSegment(vaddr=0x402000, memsz=0x5000, filesz=0x100, offset=0x2000, flags=PF_R | PF_W),
    )
    assert img.entry == 0x401000
    assert img.phdr_vaddr == 0x400040
    assert img.brk_start == 0x407000
    assert img.tls is None


def test_pt_phdr_wins():
    pt_phdr = dict(p_type=be.PT_PHDR, p_offset=64, p_vaddr=0x400040, p_filesz=168, p_memsz=168)
    assert parse_elf(make_elf([pt_phdr, TEXT, DATA])).phdr_vaddr == 0x400040
    # Headers outside every PT_LOAD: only PT_PHDR can say where they are.
    text = dict(TEXT, p_offset=0x1000, p_vaddr=0x401000, p_filesz=0x1000, p_memsz=0x1000)
    assert parse_elf(make_elf([dict(pt_phdr, p_vaddr=0x500040), text, DATA])).phdr_vaddr == 0x500040
    assert parse_elf(make_elf([text, DATA])).phdr_vaddr == 0  # what Linux passes as AT_PHDR


@pytest.mark.parametrize(
    "phdrs, kwargs, pattern",
    [
        ([], {}, "no program headers"),
        ([dict(p_type=be.PT_NOTE)], {}, r"no loadable segments \(PT_LOAD\)"),
        ([TEXT, dict(DATA, p_filesz=0x6000)], {}, "p_filesz .* larger than p_memsz"),
        ([TEXT, dict(DATA, p_offset=0x2000, p_filesz=0x1001, p_memsz=0x2000)], {}, "^truncated ELF: segment 1 "),
        ([TEXT, dict(DATA, p_offset=2**64 - 0x1000, p_vaddr=0x403000)], {}, "^truncated ELF: segment 1"),
        ([TEXT, dict(DATA, p_vaddr=0x402010)], {}, "differ modulo the page size"),
        ([TEXT, dict(DATA, p_vaddr=0x401000)], {}, "segments 0 and 1 .* overlap"),
        ([TEXT, dict(DATA, p_vaddr=0x7FFFFFFFE000)], {}, "outside the user address space"),
        ([TEXT, dict(DATA, p_vaddr=0xFFFFFFFFFFFFF000)], {}, "outside the user address space"),
        ([TEXT, dict(DATA, p_memsz=2**64 - 1)], {}, "outside the user address space"),
        ([TEXT, DATA], dict(entry=0x402010), "entry point 0x402010 is not inside an executable segment"),
        ([TEXT, DATA], dict(entry=0x300000), "not inside an executable segment"),
        ([TEXT, DATA, dict(p_type=PT_INTERP, p_offset=0x100, p_filesz=10)], {}, "PT_INTERP"),
        ([TEXT, DATA], dict(e_phentsize=64), "e_phentsize"),
        ([TEXT, DATA], dict(size=0x2000), "^truncated ELF: segment 1"),
    ],
)
def test_rejections(phdrs, kwargs, pattern):
    with pytest.raises(ENOEXEC, match=pattern) as exc:
        parse_elf(make_elf(phdrs, **kwargs))
    assert "\n" not in str(exc.value)


def test_static_pie_bias_and_executable_stack():
    text = dict(TEXT, p_vaddr=0)
    data = dict(DATA, p_vaddr=0x2000)
    stack = dict(p_type=be.PT_GNU_STACK, p_flags=PF_R | PF_W | PF_X)
    tls = dict(p_type=be.PT_TLS, p_offset=0x2000, p_vaddr=0x2000, p_filesz=8, p_memsz=16, p_align=8)
    img = parse_elf(make_elf([text, data, stack, tls], entry=0x1000, e_type=ET_DYN))
    bias = 0x555555554000
    assert img.load_bias == bias
    assert img.entry == bias + 0x1000
    assert img.phdr_vaddr == bias + 64
    assert [s.vaddr for s in img.segments] == [bias, bias + 0x2000]
    assert img.executable_stack
    assert (img.tls.vaddr, img.tls.filesz, img.tls.memsz, img.tls.align) == (bias + 0x2000, 8, 16, 8)


def test_enoexec_is_one_line():
    assert str(ENOEXEC("a\nb  c")) == "a b c"
    assert ENOEXEC.errno == 8


# --- initial stack ------------------------------------------------------------------


def _u64(image, rsp, addr):
    return struct.unpack_from("<Q", image, addr - rsp)[0]


def _cstr(image, rsp, addr):
    off = addr - rsp
    return image[off : image.index(b"\0", off)]


def decode_stack(rsp, image, stack_top):
    """Read argc/argv/envp/auxv back the way a libc's _start does."""
    assert len(image) == stack_top - rsp
    p = rsp
    argc = _u64(image, rsp, p)
    p += 8
    argv_ptrs = [_u64(image, rsp, p + 8 * i) for i in range(argc)]
    p += 8 * argc
    assert _u64(image, rsp, p) == 0
    p += 8
    envp_ptrs = []
    while (ptr := _u64(image, rsp, p)) != 0:
        envp_ptrs.append(ptr)
        p += 8
    p += 8
    auxv = []
    while True:
        key, val = _u64(image, rsp, p), _u64(image, rsp, p + 8)
        auxv.append((key, val))
        p += 16
        if key == AT_NULL:
            break
    for ptr in argv_ptrs + envp_ptrs:
        assert rsp <= ptr < stack_top
    return dict(
        argc=argc,
        argv=[_cstr(image, rsp, a) for a in argv_ptrs],
        envp=[_cstr(image, rsp, a) for a in envp_ptrs],
        argv_ptrs=argv_ptrs,
        envp_ptrs=envp_ptrs,
        auxv=auxv,
        auxv_end=p,
    )


STACK_TOP = 0x7FFFFFFFF000
RANDOM = bytes(range(0xA0, 0xB0))


def test_create_elf_tables_layout():
    argv = [b"/bin/prog", b"hello", b""]
    envp = [b"PATH=/bin", b"HOME=/root"]
    auxv = [(be.AT_PAGESZ, 4096), (be.AT_SECURE, 0), (be.AT_HWCAP2, 0)]
    rsp, image = create_elf_tables(STACK_TOP, argv, envp, auxv, RANDOM, execfn=b"/bin/prog-file")
    assert rsp % 16 == 0
    st_ = decode_stack(rsp, image, STACK_TOP)
    assert st_["argc"] == 3 and st_["argv"] == argv and st_["envp"] == envp
    aux = dict(st_["auxv"])
    keys = [k for k, _ in st_["auxv"]]
    # Caller's entries kept in order; AT_RANDOM follows AT_SECURE as in Linux.
    assert keys == [be.AT_PAGESZ, be.AT_SECURE, AT_RANDOM, be.AT_HWCAP2, AT_EXECFN, AT_PLATFORM, AT_NULL]
    r = aux[AT_RANDOM]
    assert rsp <= r and r + 16 <= STACK_TOP
    assert image[r - rsp : r - rsp + 16] == RANDOM
    assert _cstr(image, rsp, aux[AT_PLATFORM]) == b"x86_64"
    assert _cstr(image, rsp, aux[AT_EXECFN]) == b"/bin/prog-file"
    # Strings as execve leaves them: argv then envp then execfn, contiguous,
    # ending 8 bytes below the top.
    strings = b"".join(s + b"\0" for s in argv + envp + [b"/bin/prog-file"])
    start = st_["argv_ptrs"][0]
    assert image[start - rsp :] == strings + bytes(8)
    assert STACK_TOP - 8 - len(strings) == start
    # Platform and random bytes lie between the auxv and the strings.
    assert st_["auxv_end"] <= r < aux[AT_PLATFORM] < start
    assert aux[AT_PLATFORM] + 7 == (start & ~15)
    assert r + 16 == aux[AT_PLATFORM]


def test_create_elf_tables_without_platform_and_empty_argv():
    rsp, image = create_elf_tables(STACK_TOP, [], [], [], RANDOM, platform=None, execfn=b"/x")
    st_ = decode_stack(rsp, image, STACK_TOP)
    assert st_["argc"] == 1 and st_["argv"] == [b""]  # Linux >= 5.18
    assert [k for k, _ in st_["auxv"]] == [AT_RANDOM, AT_EXECFN, AT_NULL]


def test_create_elf_tables_rejects_bad_input():
    with pytest.raises(ValueError):
        create_elf_tables(STACK_TOP, [b"a"], [], [], b"short")
    with pytest.raises(ValueError):
        create_elf_tables(STACK_TOP, [b"a\0b"], [], [], RANDOM)
    with pytest.raises(ValueError):
        create_elf_tables(STACK_TOP, [b"a"], [], [(AT_RANDOM, 1)], RANDOM)


@settings(max_examples=200, deadline=None, database=None)
@given(
    argv=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"x")), min_size=1, max_size=12),
    envp=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"y")), max_size=12),
    top=st.integers(0x10000, 0x7FFFFFFFF000).map(lambda t: t & ~0xFFF),
    random_bytes=st.binary(min_size=16, max_size=16),
)
def test_create_elf_tables_roundtrip(argv, envp, top, random_bytes):
    auxv = [(be.AT_PAGESZ, 4096), (be.AT_SECURE, 0)]
    rsp, image = create_elf_tables(top, argv, envp, auxv, random_bytes)
    assert rsp % 16 == 0 and rsp < top
    st_ = decode_stack(rsp, image, top)
    assert st_["argc"] == len(argv) and st_["argv"] == argv and st_["envp"] == envp
    aux = dict(st_["auxv"])
    assert image[aux[AT_RANDOM] - rsp : aux[AT_RANDOM] - rsp + 16] == random_bytes
    assert _cstr(image, rsp, aux[AT_EXECFN]) == argv[0]
    assert _cstr(image, rsp, aux[AT_PLATFORM]) == b"x86_64"
    assert image[-8:] == bytes(8)


def test_elf_auxv_for_static_binary(binaries):
    img = parse_elf(binaries["static"].read_bytes())
    aux = elf_auxv(img)
    d = dict(aux)
    assert len(d) == len(aux)
    assert d[AT_PHDR] == img.phdr_vaddr
    assert d[be.AT_PHENT] == 56 and d[be.AT_PHNUM] == img.phnum
    assert d[be.AT_ENTRY] == img.entry and d[be.AT_PAGESZ] == 4096
    assert d[be.AT_BASE] == 0 and d[be.AT_FLAGS] == 0 and d[be.AT_SECURE] == 0
    assert d[be.AT_UID] == d[be.AT_EUID] == d[be.AT_GID] == d[be.AT_EGID] == 0
    assert d[be.AT_CLKTCK] == 100 and d[be.AT_HWCAP] == 0x178BFBFF and d[be.AT_HWCAP2] == 0
    assert d[be.AT_MINSIGSTKSZ] == 2048
    # Same order as a real Linux kernel (minus AT_SYSINFO_EHDR and the AT_RSEQ_* entries).
    rsp, image = create_elf_tables(STACK_TOP, [b"prog"], [], aux, RANDOM)
    keys = [k for k, _ in decode_stack(rsp, image, STACK_TOP)["auxv"]]
    assert keys == [51, 16, 6, 17, 3, 4, 5, 7, 8, 9, 11, 12, 13, 14, 23, 25, 26, 31, 15, 0]
