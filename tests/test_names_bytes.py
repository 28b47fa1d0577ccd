"""File names are bytes from the disk to the program: names that are not UTF-8, copied in by
`ballast mkdisk` or made by the program, list, stat, open, rename and getcwd exactly as natively."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.mkdisk import mkdisk

PROGRAMS = Path(__file__).resolve().parent / "programs"
pytestmark = pytest.mark.skipif(shutil.which("mke2fs") is None and not Path("/sbin/mke2fs").exists(),
                                reason="needs e2fsprogs")

NAMES = [b"plain", b"caf\xc3\xa9", b"latin1-\xe9t\xe9", b"bad-\xff", b"\xc3\x28", b"x\x80y", b"tab\there"]


def make_tree(where: Path) -> Path:
    names = where / "names"
    names.mkdir(parents=True)
    for raw in NAMES:
        with open(os.path.join(os.fsencode(names), raw), "wb") as f:
            f.write(b"content of " + raw)
    os.mkdir(os.path.join(os.fsencode(names), b"dir-\xfe"))
    return names


def test_names_that_are_not_utf8_match_native(tmp_path, compile_c):
    exe = compile_c((PROGRAMS / "names.c").read_text(), "names", flags=("-static", "-O1"))
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(exe, root / "bin" / "names")
    make_tree(root)
    image = tmp_path / "root.img"
    mkdisk(str(root), str(image))
    native_tree = make_tree(tmp_path / "native")
    native = subprocess.run([str(exe), str(native_tree)], capture_output=True)
    assert native.returncode == 0, native.stderr

    m = Machine(MachineConfig(mem=64 << 20, disks=[DiskConfig(str(image))]))
    try:
        m.load(None, "/bin/names", ["/names"], root_device="/dev/vda")
        status = m.boot()
        out = bytes(m.console_output)
    finally:
        m.close()
    assert status == 0, out
    assert out == native.stdout
    assert b"bad-\\xff mode=100644 size=16 content=content of bad-\\xff\n" in out     # read by its own name
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout
