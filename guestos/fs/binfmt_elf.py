"""ELF64 executable loading, after Linux's fs/binfmt_elf.c.

parse_elf() makes the checks load_elf_binary() makes before it maps anything
and says where each PT_LOAD goes; mapping is the caller's job.
create_elf_tables() lays out the initial stack (argc, argv, envp, auxv and the
strings they point to) the way Linux does.  Only static programs load: ET_EXEC,
or ET_DYN without PT_INTERP (static-pie).
"""

import struct
from typing import NamedTuple

from .. import layouts_struct
from ..structview import StructView


# --- ELF constants (include/uapi/linux/elf.h) -------------------------------

EI_NIDENT = 16
EI_CLASS = 4
EI_DATA = 5
EI_VERSION = 6
EI_OSABI = 7

ELFMAG = b"\x7fELF"
SELFMAG = 4

ELFCLASSNONE = 0
ELFCLASS32 = 1
ELFCLASS64 = 2

ELFDATANONE = 0
ELFDATA2LSB = 1
ELFDATA2MSB = 2

EV_NONE = 0
EV_CURRENT = 1

ET_NONE = 0
ET_REL = 1
ET_EXEC = 2
ET_DYN = 3
ET_CORE = 4

EM_NONE = 0
EM_SPARC = 2
EM_386 = 3
EM_MIPS = 8
EM_PPC = 20
EM_PPC64 = 21
EM_S390 = 22
EM_ARM = 40
EM_SPARCV9 = 43
EM_IA_64 = 50
EM_X86_64 = 62
EM_AARCH64 = 183
EM_RISCV = 243
EM_LOONGARCH = 258

PT_NULL = 0
PT_LOAD = 1
PT_DYNAMIC = 2
PT_INTERP = 3
PT_NOTE = 4
PT_SHLIB = 5
PT_PHDR = 6
PT_TLS = 7
PT_GNU_EH_FRAME = 0x6474E550
PT_GNU_STACK = 0x6474E551
PT_GNU_RELRO = 0x6474E552
PT_GNU_PROPERTY = 0x6474E553

PF_X = 1
PF_W = 2
PF_R = 4

SHT_NULL = 0
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHN_UNDEF = 0

# Auxiliary vector types (include/uapi/linux/auxvec.h, arch/x86).
AT_NULL = 0
AT_IGNORE = 1
AT_EXECFD = 2
AT_PHDR = 3
AT_PHENT = 4
AT_PHNUM = 5
AT_PAGESZ = 6
AT_BASE = 7
AT_FLAGS = 8
AT_ENTRY = 9
AT_NOTELF = 10
AT_UID = 11
AT_EUID = 12
AT_GID = 13
AT_EGID = 14
AT_PLATFORM = 15
AT_HWCAP = 16
AT_CLKTCK = 17
AT_SECURE = 23
AT_BASE_PLATFORM = 24
AT_RANDOM = 25
AT_HWCAP2 = 26
AT_EXECFN = 31
AT_SYSINFO_EHDR = 33
AT_MINSIGSTKSZ = 51

# --- x86-64 parameters -------------------------------------------------------

ELF_MIN_ALIGN = PAGE_SIZE = ELF_EXEC_PAGESIZE = 4096
# 47-bit user address space minus the guard page (DEFAULT_MAP_WINDOW).
TASK_SIZE = 0x7FFFFFFFF000
# Linux: DEFAULT_MAP_WINDOW / 3 * 2 (not page aligned; load_elf_binary aligns it).
ELF_ET_DYN_BASE = TASK_SIZE // 3 * 2
ELF_HWCAP = 0x178BFBFF  # CPUID.1:EDX of a plain x86-64
ELF_HWCAP2 = 0
ELF_PLATFORM = b"x86_64"
CLOCKS_PER_SEC = 100  # USER_HZ
MINSIGSTKSZ = 2048

# --- ELF64 layouts (include/uapi/linux/elf.h), declared in guestos/layouts.py ----

EHDR = StructView(layouts_struct.Elf64_Ehdr_FIELDS)
PHDR = StructView(layouts_struct.Elf64_Phdr_FIELDS)
SHDR = StructView(layouts_struct.Elf64_Shdr_FIELDS)
SYM = StructView(layouts_struct.Elf64_Sym_FIELDS)
EHDR_SIZE = EHDR.size  # 64
PHDR_SIZE = PHDR.size  # 56
SHDR_SIZE = SHDR.size  # 64
SYM_SIZE = SYM.size  # 24

_EM_NAMES = {v: k for k, v in globals().items() if k.startswith("EM_") and isinstance(v, int)}


def ELF_PAGESTART(v: int) -> int:
    return v & ~(ELF_MIN_ALIGN - 1)


def ELF_PAGEOFFSET(v: int) -> int:
    return v & (ELF_MIN_ALIGN - 1)


def ELF_PAGEALIGN(v: int) -> int:
    return (v + ELF_MIN_ALIGN - 1) & ~(ELF_MIN_ALIGN - 1)


class ENOEXEC(Exception):
    """The file is not an executable this kernel can run (execve fails with ENOEXEC)."""

    errno = 8

    def __init__(self, message: str):
        # One line: it ends up in a single log/diagnostic line.
        super().__init__(" ".join(message.split()))


class LoadSegment(NamedTuple):
    """One PT_LOAD. vaddr is the run-time address (load_bias already added).

    Map file bytes [offset, offset+filesz) at vaddr and zero-fill up to
    vaddr+memsz.  Adjacent segments never overlap in bytes but may share a page.
    """

    vaddr: int
    memsz: int
    filesz: int
    offset: int
    flags: int  # PF_R | PF_W | PF_X
    align: int = ELF_MIN_ALIGN

    @property
    def prot_read(self) -> bool:
        return bool(self.flags & PF_R)

    @property
    def prot_write(self) -> bool:
        return bool(self.flags & PF_W)

    @property
    def prot_exec(self) -> bool:
        return bool(self.flags & PF_X)

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz


class TlsSegment(NamedTuple):
    """PT_TLS: the initial TLS image (vaddr has load_bias added)."""

    vaddr: int
    memsz: int
    filesz: int
    offset: int
    align: int


class ElfImage(NamedTuple):
    """A loaded ELF program: its entry point, program headers, PT_LOAD and TLS segments."""
    entry: int  # run-time entry point (AT_ENTRY)
    phdr_vaddr: int  # run-time address of the program headers (AT_PHDR)
    phnum: int
    phentsize: int
    segments: tuple[LoadSegment, ...]  # PT_LOADs in program-header order
    tls: TlsSegment | None
    load_bias: int  # 0 for ET_EXEC
    brk_start: int  # page-aligned end of the highest segment (mm->start_brk)
    e_type: int
    executable_stack: bool = False  # PT_GNU_STACK has PF_X


def _parse(view, data, offset: int, what: str, file_size: int):
    if offset < 0 or offset + view.size > file_size:
        raise ENOEXEC(f"truncated ELF: {what} lies beyond the end of the file (size {file_size})")
    return view.parse(data, offset)


def _machine_name(machine: int) -> str:
    return _EM_NAMES.get(machine, f"e_machine {machine}")


def elf_check_arch(elf_ex) -> bool:
    return elf_ex.e_machine == EM_X86_64


def _check_ident(data, file_size: int) -> None:
    ident = bytes(data[:EI_NIDENT])
    if ident[:SELFMAG] != ELFMAG:
        raise ENOEXEC("not an ELF file")
    if len(ident) < EI_NIDENT:
        raise ENOEXEC(f"truncated ELF: e_ident lies beyond the end of the file (size {file_size})")
    if ident[EI_CLASS] == ELFCLASS32:
        raise ENOEXEC("32-bit ELF is not supported")
    if ident[EI_CLASS] != ELFCLASS64:
        raise ENOEXEC(f"invalid ELF class {ident[EI_CLASS]}")
    if ident[EI_DATA] == ELFDATA2MSB:
        raise ENOEXEC("big-endian ELF is not supported")
    if ident[EI_DATA] != ELFDATA2LSB:
        raise ENOEXEC(f"invalid ELF data encoding {ident[EI_DATA]}")
    if ident[EI_VERSION] != EV_CURRENT:
        raise ENOEXEC(f"invalid ELF version {ident[EI_VERSION]}")


def _read_ehdr(data, file_size: int):
    _check_ident(data, file_size)
    return _parse(EHDR, data, 0, "ELF header", file_size)


def load_elf_phdrs(data, elf_ex, file_size: int) -> list:
    if elf_ex.e_phentsize != PHDR_SIZE:
        raise ENOEXEC(f"bad program header size e_phentsize={elf_ex.e_phentsize} (expected {PHDR_SIZE})")
    size = elf_ex.e_phnum * PHDR_SIZE
    if size == 0:
        raise ENOEXEC("ELF has no program headers")
    if size > 65536:  # same limit as Linux
        raise ENOEXEC(f"too many program headers (e_phnum {elf_ex.e_phnum})")
    return [
        _parse(PHDR, data, elf_ex.e_phoff + i * PHDR_SIZE, f"program header {i}", file_size)
        for i in range(elf_ex.e_phnum)
    ]


def maximum_alignment(phdrs) -> int:
    alignment = 0
    for ph in phdrs:
        if ph.p_type == PT_LOAD and ph.p_align and ph.p_align & (ph.p_align - 1) == 0:
            alignment = max(alignment, ph.p_align)
    return max(alignment, ELF_MIN_ALIGN)


def parse_elf(data: bytes | bytearray | memoryview) -> ElfImage:
    """Validate an x86-64 static executable and describe how to load it.

    Raises ENOEXEC (and nothing else) for anything the kernel would refuse.
    """
    file_size = len(data)
    elf_ex = _read_ehdr(data, file_size)
    if elf_ex.e_version != EV_CURRENT:
        raise ENOEXEC(f"invalid ELF version {elf_ex.e_version}")
    if elf_ex.e_type not in (ET_EXEC, ET_DYN):
        kind = {ET_REL: "relocatable object (ET_REL)", ET_CORE: "core dump (ET_CORE)"}
        raise ENOEXEC(f"not an executable: {kind.get(elf_ex.e_type, f'e_type {elf_ex.e_type}')}")
    if not elf_check_arch(elf_ex):
        raise ENOEXEC(f"ELF for another architecture ({_machine_name(elf_ex.e_machine)})")

    phdrs = load_elf_phdrs(data, elf_ex, file_size)

    # Linux looks for the interpreter first; we have no ld.so to offer.
    if any(ph.p_type == PT_INTERP for ph in phdrs):
        raise ENOEXEC("dynamically linked programs are not supported (PT_INTERP)")

    executable_stack = False
    for ph in phdrs:
        if ph.p_type == PT_GNU_STACK:
            executable_stack = bool(ph.p_flags & PF_X)
            break

    loads = [(i, ph) for i, ph in enumerate(phdrs) if ph.p_type == PT_LOAD]
    if not loads:
        raise ENOEXEC("ELF has no loadable segments (PT_LOAD)")

    for i, ph in loads:
        if ph.p_filesz > ph.p_memsz:
            raise ENOEXEC(
                f"segment {i} (PT_LOAD): p_filesz {ph.p_filesz:#x} is larger than p_memsz {ph.p_memsz:#x}"
            )
        if ph.p_offset + ph.p_filesz > file_size:
            raise ENOEXEC(
                f"truncated ELF: segment {i} (PT_LOAD) file data "
                f"[{ph.p_offset:#x}, {ph.p_offset + ph.p_filesz:#x}) lies beyond the end of the file "
                f"(size {file_size})"
            )
        if ELF_PAGEOFFSET(ph.p_vaddr) != ELF_PAGEOFFSET(ph.p_offset):
            raise ENOEXEC(
                f"segment {i} (PT_LOAD): p_vaddr {ph.p_vaddr:#x} and p_offset {ph.p_offset:#x} "
                f"differ modulo the page size"
            )

    load_bias = 0
    if elf_ex.e_type == ET_DYN:
        # Static-pie: Linux uses ELF_ET_DYN_BASE only when there is an
        # interpreter; we always do, for a fixed, familiar address.
        base = ELF_ET_DYN_BASE & ~(maximum_alignment(phdrs) - 1)
        load_bias = ELF_PAGESTART(base - loads[0][1].p_vaddr)

    segments = []
    for i, ph in loads:
        start = ph.p_vaddr + load_bias
        end = start + ph.p_memsz
        if start < 0 or end > TASK_SIZE:
            raise ENOEXEC(
                f"segment {i} (PT_LOAD) [{start:#x}, {end:#x}) lies outside the user address space"
            )
        segments.append(
            LoadSegment(
                vaddr=start,
                memsz=ph.p_memsz,
                filesz=ph.p_filesz,
                offset=ph.p_offset,
                flags=ph.p_flags & (PF_R | PF_W | PF_X),
                align=ph.p_align,
            )
        )

    ordered = sorted(zip((i for i, _ in loads), segments), key=lambda t: t[1].vaddr)
    for (ia, a), (ib, b) in zip(ordered, ordered[1:]):
        if b.vaddr < a.end:
            raise ENOEXEC(f"segments {ia} and {ib} (PT_LOAD) overlap")

    entry = elf_ex.e_entry + load_bias
    if not any(s.prot_exec and s.vaddr <= entry < s.end for s in segments):
        raise ENOEXEC(f"entry point {entry:#x} is not inside an executable segment")

    # AT_PHDR: PT_PHDR if present, else where e_phoff lands inside a PT_LOAD
    # (Linux >= 5.18; it leaves 0 + load_bias if the headers are not loaded).
    phdr_addr = 0
    pt_phdr = next((ph for ph in phdrs if ph.p_type == PT_PHDR), None)
    if pt_phdr is not None:
        phdr_addr = pt_phdr.p_vaddr
    else:
        for _, ph in loads:
            if ph.p_offset <= elf_ex.e_phoff < ph.p_offset + ph.p_filesz:
                phdr_addr = elf_ex.e_phoff - ph.p_offset + ph.p_vaddr
    phdr_addr += load_bias

    tls = None
    pt_tls = next((ph for ph in phdrs if ph.p_type == PT_TLS), None)  # glibc uses the first
    if pt_tls is not None:
        tls = TlsSegment(
            vaddr=pt_tls.p_vaddr + load_bias,
            memsz=pt_tls.p_memsz,
            filesz=pt_tls.p_filesz,
            offset=pt_tls.p_offset,
            align=pt_tls.p_align,
        )

    return ElfImage(
        entry=entry,
        phdr_vaddr=phdr_addr,
        phnum=elf_ex.e_phnum,
        phentsize=elf_ex.e_phentsize,
        segments=tuple(segments),
        tls=tls,
        load_bias=load_bias,
        brk_start=ELF_PAGEALIGN(max(s.end for s in segments)),
        e_type=elf_ex.e_type,
        executable_stack=executable_stack,
    )


def find_symbol(data: bytes | bytearray | memoryview, name: str | bytes) -> int | None:
    """st_value of a defined symbol in .symtab (link-time value: add load_bias
    for static-pie), or None if absent or the file has no symbol table."""
    if isinstance(name, str):
        name = name.encode()
    file_size = len(data)
    elf_ex = _read_ehdr(data, file_size)
    if elf_ex.e_shoff == 0 or elf_ex.e_shnum == 0:
        return None
    if elf_ex.e_shentsize != SHDR_SIZE:
        raise ENOEXEC(f"bad section header size e_shentsize={elf_ex.e_shentsize} (expected {SHDR_SIZE})")
    shdrs = [
        _parse(SHDR, data, elf_ex.e_shoff + i * SHDR_SIZE, f"section header {i}", file_size)
        for i in range(elf_ex.e_shnum)
    ]
    wanted = name + b"\0"
    for i, sh in enumerate(shdrs):
        if sh.sh_type != SHT_SYMTAB:
            continue
        if sh.sh_entsize != SYM_SIZE or sh.sh_link >= len(shdrs):
            raise ENOEXEC(f"malformed symbol table in section {i}")
        strtab = shdrs[sh.sh_link]
        if sh.sh_offset + sh.sh_size > file_size or strtab.sh_offset + strtab.sh_size > file_size:
            raise ENOEXEC(f"truncated ELF: symbol table in section {i} lies beyond the end of the file")
        strings = bytes(data[strtab.sh_offset : strtab.sh_offset + strtab.sh_size])
        # Every offset whose string reads `name`; linkers merge string tails,
        # so st_name may point into the middle of a longer string.
        starts = set()
        pos = strings.find(wanted)
        while pos != -1:
            starts.add(pos)
            pos = strings.find(wanted, pos + 1)
        if not starts:
            continue
        count = sh.sh_size // SYM_SIZE
        table = bytes(data[sh.sh_offset : sh.sh_offset + count * SYM_SIZE])
        for st_name, _info, _other, st_shndx, st_value, _size in SYM.struct.iter_unpack(table):
            if st_name in starts and st_shndx != SHN_UNDEF:
                return st_value
    return None


# --- initial process stack ---------------------------------------------------


def elf_auxv(image: ElfImage, *, uid: int = 0, euid: int = 0, gid: int = 0, egid: int = 0,
             secure: int = 0, sysinfo_ehdr: int = None) -> list[tuple[int, int]]:
    """The auxv entries Linux gives a static binary, in Linux's order, without
    AT_RANDOM/AT_EXECFN/AT_PLATFORM/AT_NULL (create_elf_tables adds those).
    AT_SYSINFO_EHDR (x86's ARCH_DLINFO, first) when a vDSO is mapped."""
    return ([(AT_SYSINFO_EHDR, sysinfo_ehdr)] if sysinfo_ehdr is not None else []) + [
        (AT_MINSIGSTKSZ, MINSIGSTKSZ),  # x86 ARCH_DLINFO
        (AT_HWCAP, ELF_HWCAP),
        (AT_PAGESZ, ELF_EXEC_PAGESIZE),
        (AT_CLKTCK, CLOCKS_PER_SEC),
        (AT_PHDR, image.phdr_vaddr),
        (AT_PHENT, PHDR_SIZE),
        (AT_PHNUM, image.phnum),
        (AT_BASE, 0),  # no interpreter
        (AT_FLAGS, 0),
        (AT_ENTRY, image.entry),
        (AT_UID, uid),
        (AT_EUID, euid),
        (AT_GID, gid),
        (AT_EGID, egid),
        (AT_SECURE, secure),
        (AT_HWCAP2, ELF_HWCAP2),
    ]


def create_elf_tables(
    stack_top: int,
    argv: list[bytes],
    envp: list[bytes],
    auxv: list[tuple[int, int]],
    random_bytes: bytes,
    platform: bytes | None = ELF_PLATFORM,
    execfn: bytes | None = None,
) -> tuple[int, bytes]:
    """Build the initial stack; return (rsp, bytes for [rsp, stack_top)).

    Layout, high to low, as execve + create_elf_tables leave it: 8 zero bytes,
    the execfn string (AT_EXECFN; defaults to argv[0]), envp strings, argv
    strings, 16-byte alignment, platform string, 16 AT_RANDOM bytes, padding,
    auxv (ending in AT_NULL), envp pointers + NULL, argv pointers + NULL, argc
    at rsp (rsp % 16 == 0).  Strings are given without their NUL.
    """
    argv = list(argv) or [b""]  # Linux >= 5.18 turns argc == 0 into argv = {""}
    envp = list(envp)
    if execfn is None:
        execfn = argv[0]
    if len(random_bytes) != 16:
        raise ValueError("random_bytes must be 16 bytes")
    for s in [*argv, *envp, execfn, platform or b""]:
        if b"\0" in s:
            raise ValueError(f"string contains NUL: {s!r}")
    for key, _ in auxv:
        if key in (AT_NULL, AT_RANDOM, AT_PLATFORM, AT_EXECFN):
            raise ValueError(f"auxv entry {key} is added by create_elf_tables")

    chunks: list[tuple[int, bytes]] = []
    p = stack_top - 8  # __bprm_mm_init leaves a NULL pointer at the very top

    def stack_alloc(blob: bytes) -> int:
        nonlocal p
        p -= len(blob)
        chunks.append((p, blob))
        return p

    # execve copies the filename first, then envp and argv, each from last to first.
    u_execfn = stack_alloc(bytes(execfn) + b"\0")
    envp_addrs = [stack_alloc(bytes(s) + b"\0") for s in reversed(envp)][::-1]
    argv_addrs = [stack_alloc(bytes(s) + b"\0") for s in reversed(argv)][::-1]

    p &= ~15  # arch_align_stack(), without the random offset
    u_platform = stack_alloc(bytes(platform) + b"\0") if platform is not None else None
    u_rand_bytes = stack_alloc(bytes(random_bytes))

    elf_info = list(auxv)
    # Linux puts AT_RANDOM right after AT_SECURE.
    secure_at = next((n for n, (k, _) in enumerate(elf_info) if k == AT_SECURE), len(elf_info) - 1)
    elf_info.insert(secure_at + 1, (AT_RANDOM, u_rand_bytes))
    elf_info.append((AT_EXECFN, u_execfn))
    if u_platform is not None:
        elf_info.append((AT_PLATFORM, u_platform))
    elf_info.append((AT_NULL, 0))

    sp = p - 16 * len(elf_info)
    items = (len(argv) + 1) + (len(envp) + 1) + 1
    sp = (sp - 8 * items) & ~15  # STACK_ROUND

    words = [len(argv), *argv_addrs, 0, *envp_addrs, 0]
    for key, val in elf_info:
        words += (key, val)
    image = bytearray(stack_top - sp)
    struct.pack_into(f"<{len(words)}Q", image, 0, *words)
    for addr, blob in chunks:
        image[addr - sp : addr - sp + len(blob)] = blob
    return sp, bytes(image)
