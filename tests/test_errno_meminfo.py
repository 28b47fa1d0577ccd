"""Guest mistakes get Linux's errno; /proc/meminfo agrees with the kernel and counts mapped
file pages as Mapped."""
import subprocess
from pathlib import Path

import pytest

import guestos.kernel.main as kmain
from test_ext2_root import make_root
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.mkdisk import mkdisk

PROGRAMS = Path(__file__).resolve().parent / "programs"


@pytest.fixture(scope="module")
def image(tmp_path_factory, compile_c):
    tmp = tmp_path_factory.mktemp("errno")
    exe = compile_c((PROGRAMS / "errnotest.c").read_text(), "errnotest", flags=("-static", "-O1"))
    root = make_root(tmp, {"errnotest": exe})
    (root / "data.bin").write_bytes(bytes(range(256)) * 16 * 64)       # 64 pages
    img = tmp / "root.img"
    mkdisk(str(root), str(img))
    return img, root, exe


def test_errno_values_match_native(image):
    img, root, exe = image
    native = subprocess.run(["chroot", str(root), "/bin/errnotest", "/data.bin"], capture_output=True, text=True)
    m = Machine(MachineConfig(mem=128 << 20, disks=[DiskConfig(str(img), snapshot=True)]))
    m.load(None, "/bin/errnotest", ["/data.bin"], root_device="/dev/vda")
    assert m.boot() == 0
    out = m.console_output.decode()
    m.close()
    errno_lines = [ln for ln in out.splitlines() if "->" in ln]
    assert errno_lines == [ln for ln in native.stdout.splitlines() if "->" in ln]
    assert "Mapped grew by 256 kB" in out                   # 64 mapped page-cache pages
    assert "Mapped back to before" in out


def test_proc_meminfo_agrees_with_the_kernel(image, monkeypatch):
    img, _, _ = image
    seen = []
    real_open = kmain.Kernel.open_path

    def open_path(self, path, *args, **kwargs):
        f = real_open(self, path, *args, **kwargs)
        if path == "/proc/meminfo":
            seen.append((f.data.decode(), self.meminfo()))
        return f

    monkeypatch.setattr(kmain.Kernel, "open_path", open_path)
    m = Machine(MachineConfig(mem=128 << 20, disks=[DiskConfig(str(img), snapshot=True)]))
    m.load(None, "/bin/errnotest", ["/data.bin"], root_device="/dev/vda")
    m.boot()
    m.close()
    assert len(seen) == 4
    for text, counters in seen:
        shown = {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()}
        for name in ("MemTotal", "MemFree", "Buffers", "Cached", "Active(file)", "Inactive(file)", "Mapped",
                     "AnonPages", "Dirty", "Writeback"):
            assert shown[name] == counters[name], name
        assert shown["MemTotal"] >= shown["MemFree"] + shown["Cached"] + shown["Buffers"] + shown["AnonPages"]
    assert seen[0][1]["Buffers"] > 0 and seen[0][1]["Cached"] > 0
