"""The built-in root's workloads print in the guest exactly what they print natively on the
same tree (chrooted), and the image they run from is never changed (a snapshot)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ballast_testlib import FIRMWARE
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.rootfs import BUILTIN_PROGRAMS, builtin_root

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the native comparison runs chrooted, as root")

WORKLOADS = [
    ["/bin/seqread", "/data/stream.bin", "2"],
    ["/bin/randread", "/data/random.bin", "2000", "--zipf", "1.1", "--seed", "3"],
    ["/bin/randread", "/data/random.bin", "500"],
    ["/bin/mmapread", "/data/mapped.bin", "2"],
    ["/bin/mmapread", "/data/mapped.bin", "2", "--beside", "/data/stream.bin"],
    ["/bin/writer", "/tmp/out.bin", "3M", "--fsync"],
    ["/bin/mixed", "/src"],
    ["/bin/mixed", "/src", "2", "7"],           # WORK mix rounds per word instead of 4
]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    os.environ["BALLAST_CACHE"] = str(cache)
    try:
        image = builtin_root()
    finally:
        del os.environ["BALLAST_CACHE"]
    native = tmp_path_factory.mktemp("native")
    (native / "bin").mkdir()
    for name in BUILTIN_PROGRAMS:
        shutil.copy(FIRMWARE / name, native / "bin" / name)
    subprocess.run([str(FIRMWARE / "mkdata"), str(native)], check=True, capture_output=True)
    (native / "tmp").mkdir()
    return image, native


def _summary(text: str) -> list:
    return [ln for ln in text.splitlines() if not ln.startswith(("time:", "["))]


def _assert_guest_matches_native(image, native, argv, mem: int) -> str:
    """Run argv in a guest booted from image and natively chrooted in native: same status (0) and
    summary. Returns the guest's console."""
    m = Machine(MachineConfig(mem=mem, disks=[DiskConfig(image, snapshot=True)]))
    m.load(None, argv[0], argv[1:], root_device="/dev/vda")
    status = m.boot()
    out = m.console_output.decode()
    m.close()
    expected = subprocess.run(["chroot", str(native), *argv], capture_output=True, text=True)
    assert status >> 8 == expected.returncode == 0, out
    assert _summary(out) == _summary(expected.stdout)
    return out


@pytest.mark.parametrize("argv", WORKLOADS, ids=lambda a: a[0].rsplit("/", 1)[1] + "-" + str(len(a)))
def test_workload_matches_native(trees, argv):
    image, native = trees
    before = Path(image).stat().st_mtime_ns
    _assert_guest_matches_native(image, native, argv, mem=256 << 20)
    assert Path(image).stat().st_mtime_ns == before          # the snapshot kept the image as it was


TREE_BYTES = 3 * 1024 * 1024 + 12345       # a few files, the last one cut to size


def test_a_builtin_root_with_a_tree_builds_it_as_mkdata_does_natively(tmp_path):
    """root = "builtin:SIZE" (the paper's build at a real machine's scale) adds mkdata's /tree of
    exactly SIZE bytes; the build over it prints in the guest what it prints natively."""
    os.environ["BALLAST_CACHE"] = str(tmp_path / "cache")
    try:
        from vmm.rootfs import root_image
        image = root_image(f"builtin:{TREE_BYTES}")
    finally:
        del os.environ["BALLAST_CACHE"]
    native = tmp_path / "native"
    (native / "bin").mkdir(parents=True)
    shutil.copy(FIRMWARE / "mixed", native / "bin" / "mixed")
    made = subprocess.run([str(FIRMWARE / "mkdata"), str(native), str(TREE_BYTES)], check=True,
                          capture_output=True, text=True).stdout
    files = sorted(native.glob("tree/d*/f*.c"))
    assert sum(f.stat().st_size for f in files) == TREE_BYTES
    assert all(256 << 10 <= f.stat().st_size < (256 + 1536) << 10 for f in files[:-1])
    assert f"/tree {len(files)} files in 1 directories, {TREE_BYTES} bytes" in made
    argv = ["/bin/mixed", "/tree", "1", "9"]
    out = _assert_guest_matches_native(image, native, argv, mem=64 << 20)
    assert f"{len(files)} files, {TREE_BYTES} bytes" in out
