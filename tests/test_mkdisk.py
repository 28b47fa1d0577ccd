"""`ballast mkdisk`: real ext2 images from a directory."""
import shutil
import subprocess

import pytest

from vmm.cli import main

pytestmark = pytest.mark.skipif(shutil.which("mke2fs") is None and not __import__("os").path.exists("/sbin/mke2fs"),
                                reason="needs e2fsprogs")


def test_mkdisk_makes_a_clean_ext2_image(tmp_path, capsys):
    src = tmp_path / "root"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "data").write_bytes(bytes(range(256)) * 100)
    (src / "empty").write_bytes(b"")
    image = tmp_path / "root.img"
    assert main(["mkdisk", str(src), str(image)]) == 0
    assert "ext2" in capsys.readouterr().out
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    cat = subprocess.run(["debugfs", "-R", "cat /bin/data", str(image)], capture_output=True)
    assert cat.stdout == bytes(range(256)) * 100


@pytest.mark.parametrize("args,message", [
    (["mkdisk", "{tmp}/missing", "{tmp}/x.img"], "not a directory"),
    (["mkdisk", "{tmp}", "{tmp}/x.img", "--size", "1M"], "at least 8M"),
    (["mkdisk", "{tmp}", "{tmp}/x.img", "--size", "lots"], "cannot read 'lots'"),
    (["mkdisk", "{tmp}", "{tmp}/no/such/dir/x.img"], "No such file or directory"),
])
def test_mkdisk_errors_are_one_line(tmp_path, capsys, args, message):
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("ballast: ") and message in err[0]
