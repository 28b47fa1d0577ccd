"""Unmodified static binaries that no one here wrote: Debian's busybox-static on an ext2 root
prints exactly what it prints natively (natively run chrooted into the same tree)."""
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from test_ext2_root import run_root
from vmm.mkdisk import mkdisk

BUSYBOX = Path("/bin/busybox")
pytestmark = [
    pytest.mark.skipif(not BUSYBOX.exists(), reason="needs Debian's busybox-static (.ci/run installs it)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the native comparison runs chrooted, as root"),
]

COMMANDS = [
    ["echo", "hello", "world"],
    ["cat", "/data/words"],
    ["ls", "/data"],
    ["wc", "/data/words", "/data/blob"],
    ["sha256sum", "/data/blob"],
    ["md5sum", "/data/words", "/data/blob"],
    ["sort", "-r", "/data/words"],
    ["grep", "-n", "a", "/data/words"],
    ["find", "/data", "-type", "f"],
    ["tail", "-n", "2", "/data/words"],
    ["od", "-A", "x", "-t", "x1", "-N", "64", "/data/blob"],
]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("bb")
    tree = base / "root"
    (tree / "bin").mkdir(parents=True)
    (tree / "data" / "sub").mkdir(parents=True)
    shutil.copy(BUSYBOX, tree / "bin" / "busybox")
    (tree / "data" / "words").write_text("alpha\nbeta\ngamma\ndelta\n")
    (tree / "data" / "blob").write_bytes(hashlib.shake_256(b"blob").digest(300_000))
    (tree / "data" / "sub" / "note").write_text("nested\n")
    image = base / "root.img"
    mkdisk(str(tree), str(image))
    return tree, image


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0])
def test_busybox_matches_native(root, argv):
    tree, image = root
    native = subprocess.run(["chroot", str(tree), "/bin/busybox", *argv], capture_output=True)
    status, out, _, _ = run_root(image, ["/bin/busybox", *argv], mem=64 << 20)
    assert status >> 8 == native.returncode
    assert out == native.stdout.decode()
