"""User programs run at CPL 3: every privileged instruction and every CPU trap ends the way it does
on Linux, checked against this host's Linux running the same static binary.

tests/programs/traps.c runs one case per boot. With `handler`, a SA_SIGINFO handler prints signo,
si_code, si_addr and the interrupted RIP relative to the faulting instruction; without, the default
action ends the program (the shell status 128 + N). The int $0x80, pause() and bss-in-R+X programs
are compared the same way."""
import os
import platform
import struct
import subprocess
from pathlib import Path

import pytest

from ballast_testlib import boot, console_text

PROGRAMS = Path(__file__).resolve().parent / "programs"

PRIVILEGED = ["cli", "sti", "hlt", "rdmsr", "wrmsr", "read_cr3", "write_cr3", "read_cr0", "lgdt", "lidt",
              "invlpg", "wbinvd", "swapgs", "sysretq", "vmcall", "sysenter", "int_0x81", "clts", "lmsw", "ltr",
              "lldt", "invd", "xsetbv", "read_dr7", "write_dr7", "rdpmc", "monitor", "mwait"]
TRAPS = ["int3", "int_3", "ud2", "div0", "idiv_overflow", "single_step", "push_noncanonical", "load_noncanonical",
         "read_kernel", "write_unmapped", "write_text", "int_0x0d", "int_1", "int_4", "icebp"]
# Unicorn 2.1.4 compiles out the I/O permission check (translate.c gen_check_io); the vCPU makes
# IN/OUT fault through an I/O breakpoint (cython_ext/mmu.pyx: port_io_fault)
PORT_IO = ["inb", "outb", "inb_dx", "outb_dx", "insb", "insl_regs"]


def _cpu_flags() -> tuple:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", ""
    vendor = next((line.split(":")[1].strip() for line in info.splitlines() if line.startswith("vendor_id")), "")
    flags = next((line.split(":")[1] for line in info.splitlines() if line.startswith("flags")), "")
    return vendor, flags


VENDOR, FLAGS = _cpu_flags()


def native(exe: Path, *args) -> tuple:
    """(shell status, output) of the binary on this host."""
    if platform.machine() != "x86_64" or platform.system() != "Linux":
        pytest.skip("needs an x86-64 Linux host to compare with")
    proc = subprocess.run([str(exe), *args], capture_output=True, timeout=30)
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    return code, proc.stdout.decode()


def guest(exe: Path, *args) -> tuple:
    run = boot(exe.read_bytes(), args, name=exe.name)
    return run.code, console_text(run.output)


@pytest.fixture(scope="module")
def traps_exe(compile_c):
    return compile_c((PROGRAMS / "traps.c").read_text(), "traps", flags=("-static", "-O1"))


def _skip_unless_native_model(case: str) -> None:
    """Two cases depend on the host: we model an AMD CPU under a hypervisor."""
    if case == "sysenter" and VENDOR != "AuthenticAMD":
        pytest.skip("sysenter in 64-bit mode is #UD only on AMD; Ballast models AMD")
    if case == "vmcall" and " hypervisor" not in FLAGS:
        pytest.skip("vmcall at CPL 3 is #GP under a hypervisor (Ballast's model), #UD on bare metal")


@pytest.mark.parametrize("mode", ["handler", "default"])
@pytest.mark.parametrize("case", PRIVILEGED + PORT_IO + TRAPS)
def test_trap_matches_linux(traps_exe, case, mode):
    _skip_unless_native_model(case)
    args = (case, "handler") if mode == "handler" else (case,)
    expected = native(traps_exe, *args)
    assert expected[0] != 1, f"{case} did not fault natively"
    assert guest(traps_exe, *args) == expected


@pytest.mark.parametrize("case", ["segments", "user_ok"])
def test_what_user_mode_may_do(traps_exe, case):
    """mov to DS/ES/SS, lsl and lar read the GDT as a supervisor: allowed from CPL 3, while an
    explicit read of the same kernel address faults (read_kernel above). cpuid, rdtscp, rdfsbase,
    iretq and lretq to CPL 3 run; popf leaves IF alone at IOPL 0 without a fault."""
    expected = native(traps_exe, case, "handler")
    assert expected == (1, "start\nno fault\n")
    assert guest(traps_exe, case, "handler") == expected


def test_stack_fault_with_an_alternate_stack(traps_exe):
    """#SS from a push through a non-canonical RSP: SIGBUS, on the alternate stack (the handler
    cannot run on the broken one: without sigaltstack, Linux kills with SIGSEGV, tested above)."""
    expected = native(traps_exe, "push_noncanonical", "altstack")
    if "signal 7" not in expected[1]:
        pytest.skip("sigaltstack is not honoured by this kernel")
    assert guest(traps_exe, "push_noncanonical", "altstack") == expected


def test_sigaltstack_matches_linux(compile_c):
    exe = compile_c((PROGRAMS / "altstack.c").read_text(), "altstack", flags=("-static", "-O1"))
    expected = native(exe)
    assert "handler 10 on altstack 1" in expected[1] and "too small: -1 errno 12" in expected[1]
    assert guest(exe) == expected


def test_expected_signals_are_linux_s(traps_exe):
    """The table the comparison relies on, spelled out (so a changed host cannot hide a regression)."""
    want = {"cli": "signal 11 code 128 addr 0 rip +0 trapno 13 err 0 cr2 0",
            "int3": "signal 5 code 128 addr 0 rip +1 trapno 3 err 0 cr2 0",
            "ud2": "signal 4 code 2 addr +0 rip +0 trapno 6 err 0 cr2 0",
            "div0": "signal 8 code 1 addr +0 rip +0 trapno 0 err 0 cr2 0",
            "single_step": "signal 5 code 2 addr +1 rip +1 trapno 1 err 0 cr2 0",
            "sysenter": "signal 4 code 2 addr +0 rip +0 trapno 6 err 0 cr2 0",
            "load_noncanonical": "signal 11 code 128 addr 0 rip +0 trapno 13 err 0 cr2 0",
            "inb_dx": "signal 11 code 128 addr 0 rip +0 trapno 13 err 0 cr2 0",
            "int_0x81": "signal 11 code 128 addr 0 rip +0 trapno 13 err 1034 cr2 0"}
    for case, line in want.items():
        assert guest(traps_exe, case, "handler") == (0, f"start\n{line}\n"), case
    assert guest(traps_exe, "push_noncanonical")[0] == 128 + 7


def test_single_step_across_a_system_call(compile_c):
    exe = compile_c((PROGRAMS / "stepsys.c").read_text(), "stepsys", flags=("-static", "-O1"))
    expected = native(exe)
    assert expected == (0, "sig 5 code 2 at after_mov rax_is_pid 0\nsig 5 code 2 at after_nop rax_is_pid 1\ndone\n")
    assert guest(exe) == expected


def test_x87_exception_matches_linux(compile_c):
    """An unmasked x87 divide-by-zero: SIGFPE FPE_FLTDIV with trap number 16 (#MF)."""
    exe = compile_c((PROGRAMS / "fpe.c").read_text(), "fpe", flags=("-static", "-O1"))
    expected = native(exe, "x87")
    assert expected == (0, "sig 8 code 3 trapno 16\n")
    assert guest(exe, "x87") == expected


@pytest.mark.xfail(strict=True, reason="Unicorn 2.1.4 (QEMU 5 softfloat) never raises #XM for SSE")
def test_sse_exception_matches_linux(compile_c):
    exe = compile_c((PROGRAMS / "fpe.c").read_text(), "fpe", flags=("-static", "-O1"))
    expected = native(exe, "sse")
    assert expected == (0, "sig 8 code 3 trapno 19\n")
    assert guest(exe, "sse") == expected


def test_killed_program_exits_128_plus_signal(traps_exe, capfd):
    from vmm import cli
    code = cli.main(["run", "--mem", "64M", str(traps_exe), "int3"])
    out, err = capfd.readouterr()
    assert code == 128 + 5
    assert err.count("\n") == 1 and "killed by SIGTRAP" in err
    assert out.startswith("start\n")


def test_int80_runs_the_32_bit_table(compile_c):
    exe = compile_c((PROGRAMS / "int80.c").read_text(), "int80", flags=("-static", "-O1"))
    expected = native(exe)
    if expected[0] == 128 + 11:
        pytest.skip("this host's kernel has no IA-32 emulation")
    run = boot(exe.read_bytes(), name="int80", cmdline="loglevel=8")
    assert (run.code, console_text(run.output)) == expected == (42, "hello via int80\nwrite=16\nread_badfd=-9\n"
                                                                     "nr17=-38 nr500=-38\n")
    log = run.output.decode()
    assert log.count("unknown 32-bit system call 17 (?)") == 1 and log.count("unknown 32-bit system call 500") == 1


@pytest.mark.parametrize("mode", ["alarm", "child", "default", "int80"])
def test_pause_sleeps_until_a_signal(compile_c, mode):
    exe = compile_c((PROGRAMS / "pause.c").read_text(), "pause", flags=("-static", "-O1"))
    expected = native(exe, mode)
    run = boot(exe.read_bytes(), [mode], name="pause")
    assert (run.code, console_text(run.output)) == expected
    if mode in ("alarm", "default"):
        assert run.now_ns >= 10**9           # it slept (virtual time) until the alarm


def test_pause_with_nothing_to_wake_it_ends_cleanly(compile_c, capfd):
    from vmm import cli
    exe = compile_c("#include <unistd.h>\nint main(void){pause();return 0;}\n", "forever")
    code = cli.main(["run", "--mem", "64M", str(exe)])
    _, err = capfd.readouterr()
    assert code == 128 + 9
    assert err.count("\n") == 1 and "nothing could wake" in err


def rx_bss_elf(filesz: int = 0x200, memsz: int = 0x3000) -> bytes:
    """A static ELF with one read+execute PT_LOAD whose p_memsz > p_filesz. It prints the last 8
    bytes of the file part with the 8 after them (the file holds 0xAA there), then 16 bytes across
    the first two bss pages, and exits 0."""
    base = 0x400000
    write_16 = b"\xba\x10\x00\x00\x00" + b"\xb8\x01\x00\x00\x00" + b"\x0f\x05"      # write(edi, esi, 16)
    code = (b"\xbf\x01\x00\x00\x00" + b"\xbe" + struct.pack("<I", base + filesz - 8) + write_16
            + b"\xbe" + struct.pack("<I", base + 0x1FF8) + write_16
            + b"\x31\xff" + b"\xb8\x3c\x00\x00\x00" + b"\x0f\x05")                  # exit(0)
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, base + 64 + 56, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, filesz, memsz, 0x1000)     # PT_LOAD, PF_R|PF_X
    body = (ehdr + phdr + code).ljust(filesz - 8, b"\0") + b"FILEEND!"
    return body + b"\xAA" * 16


def test_bss_in_a_read_execute_segment(tmp_path):
    exe = tmp_path / "rxbss"
    exe.write_bytes(rx_bss_elf())
    os.chmod(exe, 0o755)
    proc = subprocess.run([str(exe)], capture_output=True, timeout=30)
    run = boot(exe.read_bytes(), name="rxbss")
    guest_out = run.output[-32:]
    assert proc.returncode == run.code == 0
    assert guest_out == proc.stdout
    # Linux cannot clear the tail of a file page it maps read-only, and ignores that; bss pages are zero
    assert proc.stdout == b"FILEEND!" + b"\xAA" * 8 + bytes(16)
