"""Typed arguments, hostile pointers and faulting copies, compared line by line with native Linux
(tests/programs/syscall_args.c): wait4(-1) with edi = 0xffffffff, lseek by a negative off_t, kill with
the low 32 bits of sig, EFAULT for every pointer outside the user half, a pipe that keeps its data
when a read faults, short counts when a copy runs into a hole. The program reads itself, so running it
from the initramfs and from an ext2 root covers both file paths."""
import shutil
import subprocess
from pathlib import Path

import pytest

from ballast_testlib import boot, console_text
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.mkdisk import mkdisk

PROGRAMS = Path(__file__).resolve().parent / "programs"


def run_from_ext2(exe: Path, tmp_path) -> bytes:
    if shutil.which("mke2fs") is None and not Path("/sbin/mke2fs").exists():
        pytest.skip("needs e2fsprogs")
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(exe, root / "bin" / "syscall_args")
    image = tmp_path / "root.img"
    mkdisk(str(root), str(image))
    m = Machine(MachineConfig(mem=64 << 20, disks=[DiskConfig(str(image))]))
    try:
        m.load(None, "/bin/syscall_args", [], root_device="/dev/vda")
        assert m.boot() == 0, bytes(m.console_output)[-2000:]
        return bytes(m.console_output)
    finally:
        m.close()


@pytest.mark.parametrize("root", ["initramfs", "ext2"])
def test_syscall_arguments_match_native(compile_c, tmp_path, root):
    exe = compile_c((PROGRAMS / "syscall_args.c").read_text(), "syscall_args", flags=("-static", "-O1"))
    native = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert native.returncode == 0, native.stderr
    if root == "ext2":
        output = run_from_ext2(exe, tmp_path)
    else:
        run = boot(exe.read_bytes(), name="syscall_args")
        assert run.code == 0, (run.last_fatal, run.output[-2000:])
        output = run.output
    guest = console_text(output).replace("/bin/syscall_args", "PROG")
    native_lines = native.stdout.replace(str(exe), "PROG").splitlines()
    diff = [f"{g!r} native {n!r}" for g, n in zip(guest.splitlines(), native_lines) if g != n]
    assert not diff and len(guest.splitlines()) == len(native_lines), "\n".join(diff)
    assert "wait4(-1) reaped the child = 1" in guest and "lseek SEEK_CUR -9 = 91" in guest
    assert "pipe still held: hello" in guest and "read file across a hole = 100" in guest
