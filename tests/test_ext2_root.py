"""Programs on an ext2 root: the same file work as natively, a clean image afterwards, and a
page cache that behaves like Linux's (a second read costs no I/O, fadvise DONTNEED drops)."""
import shutil
import subprocess
from pathlib import Path

import pytest

from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.mkdisk import mkdisk

PROGRAMS = Path(__file__).resolve().parent / "programs"
pytestmark = pytest.mark.skipif(shutil.which("e2fsck") is None and not Path("/sbin/e2fsck").exists(),
                                reason="needs e2fsprogs")

INPUT = "".join(f"input line {i}: {'x' * (i % 50)}\n" for i in range(2000))


@pytest.fixture(scope="module", params=["gcc", "musl-gcc"])
def filetest(request, compile_c):
    """The same program built with glibc and, where installable, musl."""
    if shutil.which(request.param) is None:
        pytest.skip(f"{request.param} is not installed")
    return compile_c((PROGRAMS / "filetest.c").read_text(), "filetest", cc=request.param, flags=("-static", "-O1"))


def make_root(tmp_path, programs: dict) -> Path:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "work").mkdir()
    (root / "work" / "input.txt").write_text(INPUT)
    for name, exe in programs.items():
        shutil.copy(exe, root / "bin" / name)
    return root


def run_root(image, argv, mem=128 << 20):
    m = Machine(MachineConfig(mem=mem, disks=[DiskConfig(str(image))]))
    m.load(None, argv[0], argv[1:], root_device="/dev/vda")
    status = m.boot()
    result = status, m.console_output.decode(), m.kernel.vmstat_snapshot(), dict(m.disks[0][2].counters.requests)
    m.close()
    return result


def e2fsck_clean(image) -> None:
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_file_work_matches_native_and_leaves_a_clean_image(tmp_path, filetest):
    root = make_root(tmp_path, {"filetest": filetest})
    image = tmp_path / "root.img"
    mkdisk(str(root), str(image))
    native_dir = tmp_path / "native"
    shutil.copytree(root / "work", native_dir)
    native = subprocess.run([str(filetest), str(native_dir)], capture_output=True, text=True)
    status, out, vmstat, _ = run_root(image, ["/bin/filetest", "/work"])
    assert status == 0, out
    assert out == native.stdout
    e2fsck_clean(image)
    listing = subprocess.run(["debugfs", "-R", "ls -l /work", str(image)], capture_output=True, text=True).stdout
    assert "input.txt" not in listing and "sub" not in listing


def test_second_read_is_served_by_the_page_cache_and_dontneed_drops_it(tmp_path, compile_c):
    reader = compile_c(r'''
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    static char buf[65536];
    int passes = atoi(argv[2]), dontneed = argc > 3;
    for (int p = 0; p < passes; p++) {
        int fd = open(argv[1], O_RDONLY); long total = 0; ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0) total += n;
        if (dontneed) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
        printf("pass %d: %ld\n", p, total);
    }
    return 0;
}''', "reader", flags=("-static", "-O1"))
    root = make_root(tmp_path, {"reader": reader})
    (root / "big").write_bytes(bytes(range(256)) * 4096 * 8)           # 8 MiB
    image = tmp_path / "root.img"
    mkdisk(str(root), str(image))
    _, out1, vm1, req1 = run_root(image, ["/bin/reader", "/big", "1"])
    _, out2, vm2, req2 = run_root(image, ["/bin/reader", "/big", "2"])
    _, out3, vm3, req3 = run_root(image, ["/bin/reader", "/big", "2", "dontneed"])
    assert "pass 1: 8388608" in out2 and "pass 1: 8388608" in out3
    assert req2["in"] == req1["in"]                     # the second pass issued no disk requests
    assert vm2["pgpgin"] == vm1["pgpgin"]
    assert req3["in"] > req1["in"]                       # after DONTNEED it had to read again
    assert vm3["pgpgin"] >= vm1["pgpgin"] + 8192 - 64
    # readahead: far fewer requests than pages
    assert req1["in"] < 2048 // 8


def test_fsync_reaches_the_image_before_poweroff(tmp_path, compile_c):
    writer = compile_c(r'''
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    int fd = open("/written", O_CREAT | O_WRONLY, 0600);
    const char *msg = "durable bytes\n";
    write(fd, msg, strlen(msg));
    return fsync(fd) != 0;
}''', "writer", flags=("-static", "-O1"))
    root = make_root(tmp_path, {"writer": writer})
    image = tmp_path / "root.img"
    mkdisk(str(root), str(image))
    status, out, vmstat, req = run_root(image, ["/bin/writer"])
    assert status == 0, out
    assert req["flush"] >= 1
    cat = subprocess.run(["debugfs", "-R", "cat /written", str(image)], capture_output=True)
    assert cat.stdout == b"durable bytes\n"
    e2fsck_clean(image)


def test_each_cached_page_knows_its_disk_block(tmp_path):
    from ballast_testlib import FIRMWARE
    root = make_root(tmp_path, {"vdread": FIRMWARE / "vdread"})
    (root / "big").write_bytes(bytes(range(256)) * 4096 * 2)            # 2 MiB
    image = tmp_path / "root.img"
    mkdisk(str(root), str(image))
    m = Machine(MachineConfig(mem=64 << 20, disks=[DiskConfig(str(image))]))
    m.load(None, "/bin/vdread", ["/big"], root_device="/dev/vda")
    assert m.boot() == 0
    k = m.kernel
    fs = k.vfs.fs
    inode = fs.iget(fs.namei("/big"))
    mapping = k.vfs.mappings[inode.ino]
    assert mapping.nrpages == 512
    per_page = 4096 // fs.block_size
    for index, pfn in mapping.pages.items():
        block = fs.bmap(inode, index * per_page)
        assert k.mem_map.disk_sector(pfn) == block * fs.block_size // 512
    m.close()
