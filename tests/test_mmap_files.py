"""mmap of ext2 files: MAP_PRIVATE copy-on-write, MAP_SHARED writes reaching the file, and the
kernel counting mapped page-cache pages."""
import subprocess
from pathlib import Path

from test_ext2_root import e2fsck_clean, make_root, run_root
from vmm.mkdisk import mkdisk

PROGRAMS = Path(__file__).resolve().parent / "programs"
CONTENT = bytes((i * 7) % 251 for i in range(5 * 4096 + 100))


def test_file_mappings_match_native(tmp_path, compile_c):
    exe = compile_c((PROGRAMS / "mmaptest.c").read_text(), "mmaptest", flags=("-static", "-O1"))
    root = make_root(tmp_path, {"mmaptest": exe})
    (root / "data.bin").write_bytes(CONTENT)
    image = tmp_path / "root.img"
    mkdisk(str(root), str(image))
    native_file = tmp_path / "native.bin"
    native_file.write_bytes(CONTENT)
    native = subprocess.run([str(exe), str(native_file)], capture_output=True, text=True)
    status, out, vmstat, _ = run_root(image, ["/bin/mmaptest", "/data.bin"])
    assert status == 0, out
    assert out == native.stdout
    assert "shared write seen by read: 'SHARED!!'" in out
    e2fsck_clean(image)
    on_disk = subprocess.run(["debugfs", "-R", "cat /data.bin", str(image)], capture_output=True).stdout
    assert on_disk == native_file.read_bytes()          # shared writes (synced or not) reached the file
    assert on_disk[:8] == CONTENT[:8]                    # the private write did not
    assert vmstat["nr_mapped"] == 0                      # every mapping is gone after exit
