"""Hypothesis-made ELF headers and program headers run through `ballast run` (vmm.cli.main, in process):
the answer is a one-line `ballast: PROGRAM: reason` (the kernel's ENOEXEC), a signal, or the program's
own exit; never an internal error, a host exception or a hang.

The file is a small valid program (exit(42) at 0x401000) whose headers hypothesis bends: e_phoff/e_phnum
out of range, overlapping and huge segments, p_offset past the end, p_filesz > p_memsz, unaligned and
kernel-half or non-canonical p_vaddr, entries outside every segment, PT_INTERP, PT_GNU_STACK and PT_TLS
variants, truncation. BALLAST_FUZZ_EXAMPLES=N runs a longer campaign (tests/README.md)."""
import os
import signal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from guestos.fs.binfmt_elf import (ENOEXEC, ET_DYN, ET_EXEC, PF_R, PF_W, PF_X, PT_GNU_STACK, PT_INTERP,
                                   PT_LOAD, PT_NOTE, PT_PHDR, PT_TLS, parse_elf)
from guestos.layouts import Elf64_Ehdr, Elf64_Phdr
from vmm import cli

EXAMPLES = int(os.environ.get("BALLAST_FUZZ_EXAMPLES", "0")) or 300
WALL_LIMIT_S = 60                      # a run that takes this long on the host is a hang

# mov $42, %edi; mov $60, %eax; syscall: exit(42)
EXIT_42 = bytes.fromhex("bf2a000000b83c0000000f05")
CODE_OFFSET, CODE_VADDR = 0x1000, 0x401000
FILE_SIZE = 0x3000

U64_EDGES = [0, 1, 0xFFF, 0x1000, 0x7FFFFFFFF000, 0x800000000000, 0xFFFF800000000000, 0xFFFF888000000000,
             0xFFFFFFFFFFFFF000, 0xFFFFFFFFFFFFFFFF, 1 << 63, 1 << 47]
PAGE_ADDRS = st.sampled_from([0x400000, 0x401000, 0x402000, 0x10000, 0x1000, 0x7FFFFFFFE000, 0x7FFFFFFFF000])


def u64(near: list) -> st.SearchStrategy:
    """A 64-bit field: usually a sane value, sometimes an edge, sometimes anything."""
    return st.one_of(st.sampled_from(near), st.sampled_from(U64_EDGES), st.integers(0, (1 << 64) - 1),
                     st.integers(0, 0x5000))


@st.composite
def program_headers(draw):
    kind = draw(st.sampled_from([PT_LOAD] * 6 + [PT_INTERP, PT_GNU_STACK, PT_TLS, PT_PHDR, PT_NOTE, 0x12345678]))
    vaddr = draw(st.one_of(PAGE_ADDRS, u64([0x400000, 0x401000, 0x401100, 0x400123])))
    offset = draw(st.one_of(st.sampled_from([0, 0x1000, 0x2000]), u64([0x1100, 0x123, FILE_SIZE])))
    if draw(st.booleans()):            # keep p_vaddr == p_offset modulo the page size, as linkers do
        vaddr = (vaddr & ~0xFFF) | (offset & 0xFFF)
    filesz = draw(u64([0, 0x1000, 0x2000, 0x10, FILE_SIZE]))
    memsz = draw(st.one_of(st.just(filesz), u64([0x1000, 0x2000, 0x3000, 1 << 40])))
    return dict(p_type=kind, p_flags=draw(st.sampled_from([PF_R, PF_R | PF_X, PF_R | PF_W, PF_R | PF_W | PF_X, 0,
                                                           PF_X, 0xFFFFFFFF])),
                p_offset=offset, p_vaddr=vaddr, p_paddr=vaddr, p_filesz=filesz, p_memsz=memsz,
                p_align=draw(st.sampled_from([0x1000, 0, 1, 0x200000, 3, 1 << 63])))


TEXT = dict(p_type=PT_LOAD, p_flags=PF_R | PF_X, p_offset=0, p_vaddr=0x400000, p_paddr=0x400000,
            p_filesz=0x2000, p_memsz=0x2000, p_align=0x1000)


DATA = dict(p_type=PT_LOAD, p_flags=PF_R | PF_W, p_offset=0x2000, p_vaddr=0x402000, p_paddr=0x402000,
            p_filesz=0x100, p_memsz=0x3000, p_align=0x1000)
STACK = dict(p_type=PT_GNU_STACK, p_flags=PF_R | PF_W, p_offset=0, p_vaddr=0, p_paddr=0, p_filesz=0, p_memsz=0,
             p_align=16)
TLS = dict(p_type=PT_TLS, p_flags=PF_R, p_offset=0x2000, p_vaddr=0x402000, p_paddr=0x402000, p_filesz=0x10,
           p_memsz=0x40, p_align=8)
PHDR_FIELDS = {
    "p_type": st.sampled_from([PT_LOAD, PT_INTERP, PT_GNU_STACK, PT_TLS, PT_PHDR, PT_NOTE, 0, 0x12345678]),
    "p_flags": st.sampled_from([0, PF_R, PF_X, PF_R | PF_X, PF_R | PF_W, PF_R | PF_W | PF_X, 0xFFFFFFFF]),
    "p_offset": u64([0, 0x1000, 0x2000, 0x1100, 0x123, FILE_SIZE, FILE_SIZE - 1]),
    "p_vaddr": st.one_of(PAGE_ADDRS, u64([0x400123, 0x401100, 0x401FFF, 0x402000, 0x403000])),
    "p_filesz": u64([0, 0x10, 0x1000, 0x2000, 0x2001, FILE_SIZE]),
    "p_memsz": u64([0, 0x10, 0x1000, 0x2000, 0x3000, 1 << 30, 1 << 40]),
    "p_align": st.sampled_from([0, 1, 3, 8, 0x1000, 0x200000, 1 << 63]),
}
EHDR_FIELDS = {
    "e_type": st.sampled_from([ET_EXEC, ET_DYN, 0, 1, 4, 0xFFFF]),
    "e_entry": u64([0x400000, 0x401000, 0x402000, 0x402100, 0x404FFF, 0x405000]),
    "e_phoff": u64([0, 56, 64, 120, FILE_SIZE - 56, FILE_SIZE]),
    "e_phnum": st.sampled_from([0, 1, 2, 3, 5, 6, 0xFFFF, 1170, 1171, 1172]),
    "e_phentsize": st.sampled_from([0, 32, 56, 64, 0xFFFF]),
}


@st.composite
def elf_files(draw):
    """A valid static program (text, data+bss, GNU_STACK, sometimes TLS), then a few fields bent."""
    phdrs = [dict(TEXT), dict(DATA), dict(STACK)] + ([dict(TLS)] if draw(st.booleans()) else [])
    header = dict(e_ident=b"\x7fELF\x02\x01\x01" + bytes(9), e_type=ET_EXEC, e_machine=62, e_version=1,
                  e_entry=CODE_VADDR, e_phoff=64, e_shoff=0, e_flags=0, e_ehsize=64, e_phentsize=56, e_phnum=0,
                  e_shentsize=64, e_shnum=0, e_shstrndx=0)
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            phdrs.insert(draw(st.integers(0, len(phdrs))), draw(program_headers()))
        else:
            phdrs.pop(draw(st.integers(0, len(phdrs) - 1)))
            if not phdrs:
                phdrs.append(dict(TEXT))
    header["e_phnum"] = len(phdrs)
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.integers(0, 3)) == 0:
            name = draw(st.sampled_from(sorted(EHDR_FIELDS)))
            header[name] = draw(EHDR_FIELDS[name])
        else:
            name = draw(st.sampled_from(sorted(PHDR_FIELDS)))
            ph = phdrs[draw(st.integers(0, len(phdrs) - 1))]
            ph[name] = draw(PHDR_FIELDS[name])
            if name in ("p_vaddr", "p_offset") and draw(st.booleans()):   # keep them congruent, as linkers do
                ph["p_vaddr"] = (ph["p_vaddr"] & ~0xFFF) | (ph["p_offset"] & 0xFFF)
    out = bytearray(Elf64_Ehdr.build(header))
    for ph in phdrs:
        out += Elf64_Phdr.build(ph)
    out += bytes(max(0, FILE_SIZE - len(out)))
    out[CODE_OFFSET:CODE_OFFSET + len(EXIT_42)] = EXIT_42
    if draw(st.integers(0, 7)) == 0:            # a stray byte in the headers (e_ident included)
        out[draw(st.integers(0, 64 + 56 * len(phdrs) - 1))] = draw(st.integers(0, 255))
    if draw(st.integers(0, 7)) == 0:            # truncated: in the headers, the code, or the data
        del out[draw(st.sampled_from([0, 63, 64 + 56, CODE_OFFSET + 4, 0x2000 + 8, FILE_SIZE - 1])):]
    return bytes(out)


class WallClockHang(Exception):
    pass


def _alarm(signum, frame):
    raise WallClockHang(f"ballast run took more than {WALL_LIMIT_S} s of host time")


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=elf_files())
def test_ballast_run_of_a_bent_elf(data, tmp_path_factory, capfd, monkeypatch):
    monkeypatch.setenv("BALLAST_DEBUG", "1")         # an internal error raises here instead of exit 70
    path = tmp_path_factory.mktemp("elf") / "prog"
    path.write_bytes(data)
    try:
        parse_elf(data)
        accepted = True
    except ENOEXEC:
        accepted = False
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(WALL_LIMIT_S)
    try:
        code = cli.main(["run", "--mem", "32M", str(path)])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    out, err = capfd.readouterr()
    event("refused" if not accepted else "exit 42" if code == 42 else f"exit {code}")
    assert code != 70 and "internal error" not in err and "Traceback" not in err
    if not accepted:
        # refused before the machine starts: one line naming the program and the kernel's reason
        assert code == 2
        assert err.count("\n") == 1 and err.startswith(f"ballast: {path}: ")
    elif code == 42:
        assert err == ""
    else:
        # killed by a signal (a bad entry point, a missing page): 128 + N and one line saying so
        assert code > 128, (code, err)
        assert err.count("\n") == 1 and err.startswith(f"ballast: {path} killed by SIG"), err


def test_the_fuzzed_base_program_runs(tmp_path, capfd):
    """The unbent file runs to exit(42): the fuzz starts from a program that works."""
    header = dict(e_ident=b"\x7fELF\x02\x01\x01" + bytes(9), e_type=ET_EXEC, e_machine=62, e_version=1,
                  e_entry=CODE_VADDR, e_phoff=64, e_shoff=0, e_flags=0, e_ehsize=64, e_phentsize=56, e_phnum=1,
                  e_shentsize=64, e_shnum=0, e_shstrndx=0)
    out = bytearray(Elf64_Ehdr.build(header) + Elf64_Phdr.build(TEXT))
    out += bytes(FILE_SIZE - len(out))
    out[CODE_OFFSET:CODE_OFFSET + len(EXIT_42)] = EXIT_42
    (tmp_path / "prog").write_bytes(bytes(out))
    assert cli.main(["run", "--mem", "32M", str(tmp_path / "prog")]) == 42


# --- the same files through execve(2) from a running program ---

EXEC_ONE = r"""
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char *args[] = {argv[1], 0};
    execve(argv[1], args, args + 1);
    printf("errno %d\n", errno);
    return 3;
}
"""


@pytest.fixture(scope="module")
def exec_one(tmp_path_factory):
    import shutil
    import subprocess
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed")
    d = tmp_path_factory.mktemp("exec_one")
    (d / "exec_one.c").write_text(EXEC_ONE)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(d / "exec_one"), str(d / "exec_one.c")], check=True)
    return d / "exec_one"


@settings(max_examples=max(EXAMPLES // 6, 1), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=elf_files())
def test_execve_of_a_bent_elf(data, exec_one):
    """A refused file is ENOEXEC to the caller, which goes on running; an accepted one replaces it."""
    from ballast_testlib import console_text
    from vmm.machine import Machine, MachineConfig
    from vmm.oracle import decode_wait_status
    try:
        parse_elf(data)
        accepted = True
    except ENOEXEC:
        accepted = False
    machine = Machine(MachineConfig(mem=32 << 20))
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(WALL_LIMIT_S)
    try:
        machine.load(exec_one.read_bytes(), "/bin/exec_one", ["/bin/bent"], initramfs={"/bin/bent": data})
        status = machine.boot()
        output = console_text(bytes(machine.console_output))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        machine.close()
    code = decode_wait_status(status)["code"]
    event("ENOEXEC" if not accepted else f"exit {code}")
    if not accepted:
        assert (code, output) == (3, "errno 8\n")
    else:
        assert code == 42 or code > 128, (code, output)
