"""A corrupted root image never crashes or hangs the VMM: a bad superblock is a mount error
(one line), damage found later is EIO to the program."""
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ballast_testlib import FIRMWARE, REPO
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.mkdisk import mkdisk

BUSYBOX = Path("/bin/busybox")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corrupt")
    root = tmp / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(FIRMWARE / "hello", root / "bin" / "hello")
    if BUSYBOX.exists():
        shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for d in range(8):
        (root / f"dir{d}").mkdir()
        for f in range(10):
            (root / f"dir{d}" / f"file{f}").write_bytes(bytes([d * 10 + f]) * (f * 700 + 1))
    image = tmp / "root.img"
    mkdisk(str(root), str(image), 16 << 20)
    return image.read_bytes()


def test_bad_superblock_is_a_one_line_mount_error(tmp_path, pristine):
    image = tmp_path / "bad.img"
    data = bytearray(pristine)
    data[1024 + 24:1024 + 28] = (9).to_bytes(4, "little")   # s_log_block_size: 512 KiB blocks
    image.write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "vmm.cli", "run", "--root", str(image), "/bin/hello"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ballast: guest kernel panic: VFS: Unable to mount root fs")


@pytest.mark.parametrize("seed", range(12))
def test_random_metadata_damage_never_crashes(tmp_path, pristine, seed):
    rng = random.Random(seed)
    data = bytearray(pristine)
    for _ in range(40):                                   # bytes in the first MiB: bitmaps, inodes, dirs
        data[rng.randrange(2048, 1 << 20)] = rng.randrange(256)
    image = tmp_path / "fuzzed.img"
    image.write_bytes(bytes(data))
    argv = ["/bin/busybox", "ls", "-lR", "/"] if BUSYBOX.exists() else ["/bin/hello"]
    m = Machine(MachineConfig(mem=64 << 20, disks=[DiskConfig(str(image))]))
    m.load(None, argv[0], argv[1:], root_device="/dev/vda")
    status = m.boot()                                     # any status; never an exception or a hang
    kernel = m.kernel
    m.close()
    assert isinstance(status, int)
    assert kernel.panic_message is None or "Unable to mount" in kernel.panic_message \
        or "init" in kernel.panic_message
