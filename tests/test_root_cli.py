"""`ballast run --root`: a directory or an image as the guest's root, and durability of file
data when the VMM is killed: fsync'ed data, and data the periodic flusher wrote back."""
import os
import signal
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ballast_testlib import FIRMWARE, REPO

PROGRAMS = Path(__file__).resolve().parent / "programs"
pytestmark = pytest.mark.skipif(shutil.which("debugfs") is None and not Path("/sbin/debugfs").exists(),
                                reason="needs e2fsprogs")


def ballast(args, cache, **kw):
    env = dict(os.environ, BALLAST_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", "vmm.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, **kw)


def test_run_from_a_directory_root_is_cached(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(FIRMWARE / "hello", root / "bin" / "hello")
    first = ballast(["run", "--root", str(root), "/bin/hello", "5"], tmp_path / "cache")
    assert first.returncode == 5 and first.stdout == "Hello from the Ballast guest!\n"
    images = list((tmp_path / "cache" / "roots").glob("*.img"))
    assert len(images) == 1
    mtime = images[0].stat().st_mtime_ns
    again = ballast(["run", "--root", str(root), "/bin/hello"], tmp_path / "cache")
    assert again.returncode == 0 and images[0].stat().st_mtime_ns >= mtime
    assert len(list((tmp_path / "cache" / "roots").glob("*.img"))) == 1


@pytest.mark.parametrize("args,message", [
    (["--root", "{tmp}/nothing", "/bin/hello"], "No such file"),
    (["--root", "{readme}", "/bin/hello"], "not a directory or an ext2 image"),
    (["--root", "{tmp}", "bin/hello"], "absolute path inside the guest"),
    (["--root", "{tmp}", "--cache", "sometimes", "/bin/hello"], "unknown mode 'sometimes'"),
])
def test_root_errors_are_one_line(tmp_path, args, message):
    argv = [a.format(tmp=tmp_path, readme=REPO / "README.md") for a in args]
    proc = ballast(["run", *argv], tmp_path / "cache")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ballast: ") and message in lines[0]


@pytest.mark.parametrize("cache,flushed_durable", [
    ("writeback", False),        # the flusher's writes sit in the host cache until a FLUSH: lost
    ("writethrough", True),      # every write the flusher makes is durable
])
def test_fsync_and_the_flusher_under_sigkill(tmp_path, compile_c, cache, flushed_durable):
    exe = compile_c((PROGRAMS / "flushtest.c").read_text(), "flushtest", flags=("-static", "-O1"))
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(exe, root / "bin" / "flushtest")
    image = tmp_path / "root.img"
    subprocess.run([sys.executable, "-m", "vmm.cli", "mkdisk", str(root), str(image)], cwd=REPO, check=True,
                   capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "vmm.cli", "run", "--root", str(image), "--cache", cache,
                             "/bin/flushtest"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"synced\n"
    assert proc.stdout.readline() == b"slept\n"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    def cat(path):
        return subprocess.run(["debugfs", "-R", f"cat {path}", str(image)], capture_output=True).stdout

    assert cat("/a") == b"fsynced data\n"
    assert (cat("/b") == b"flushed by the flusher\n") == flushed_durable
