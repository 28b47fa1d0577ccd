"""Reclaim of the file LRU: a small guest reads files larger than its memory by recycling its
page cache; repeatedly read pages are activated and outlive a stream; the lists stay coherent;
anonymous demand over RAM without swap ends in the OOM killer, and the kernel goes on."""
import hashlib
import shutil

import pytest

from ballast_testlib import FIRMWARE
from guestos.mm.lru import NR_LRU_LISTS, page_lru
from guestos.mm.mm_types import NIL, PG_active, PG_lru
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.mkdisk import mkdisk

MiB = 1 << 20


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reclaim")
    root = tmp / "root"
    (root / "bin").mkdir(parents=True)
    for name in ("vdread", "vdsha256", "memhog"):
        shutil.copy(FIRMWARE / name, root / "bin" / name)
    (root / "big").write_bytes(hashlib.shake_256(b"big").digest(96 * MiB))
    (root / "hot").write_bytes(hashlib.shake_256(b"hot").digest(2 * MiB))
    img = tmp / "root.img"
    mkdisk(str(root), str(img))
    return img, hashlib.sha256((root / "big").read_bytes()).hexdigest()


def boot(img, argv, mem=32 * MiB):
    m = Machine(MachineConfig(mem=mem, disks=[DiskConfig(str(img), snapshot=True)]))
    m.load(None, argv[0], argv[1:], root_device="/dev/vda")
    status = m.boot()
    return m, status


def check_lru_invariants(k) -> None:
    """Every page on at most one list, in the list its flags name; sizes equal the counters."""
    seen = set()
    mem_map = k.mem_map
    for lru in range(NR_LRU_LISTS):
        count, pfn, prev = 0, k.lru.head[lru], NIL
        while pfn != NIL:
            assert pfn not in seen
            seen.add(pfn)
            assert mem_map.test(pfn, PG_lru) and page_lru(mem_map, pfn) == lru
            assert mem_map.lru_prev(pfn) == prev
            prev, pfn = pfn, mem_map.lru_next(pfn)
            count += 1
        assert k.lru.tail[lru] == prev
        assert count == k.lru.nr[lru]
    free = k.page_alloc.nr_free_pages
    assert free + len(seen) <= k.totalram_pages


def test_small_guest_reads_a_file_three_times_its_memory(image):
    img, expected = image
    m, status = boot(img, ["/bin/vdsha256", "/big"])
    k = m.kernel
    assert status == 0
    assert m.console_output.decode().split()[0] == expected
    vmstat = k.vmstat_snapshot()
    assert vmstat["pgsteal_kswapd"] + vmstat["pgsteal_direct"] > 96 * MiB // 4096 // 2
    assert vmstat["oom_kill"] == 0
    check_lru_invariants(k)
    m.close()


@pytest.fixture(scope="module")
def big_image(tmp_path_factory):
    """The issue's own sizes: a 512 MiB file for a 128 MiB guest."""
    tmp = tmp_path_factory.mktemp("reclaim512")
    root = tmp / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(FIRMWARE / "vdsha256", root / "bin" / "vdsha256")
    data = hashlib.shake_256(b"512").digest(512 * MiB)
    (root / "big").write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    del data
    img = tmp / "root.img"
    mkdisk(str(root), str(img))
    (root / "big").unlink()
    return img, expected


def test_a_128m_guest_checksums_a_512m_file(big_image):
    img, expected = big_image
    m, status = boot(img, ["/bin/vdsha256", "/big"], mem=128 * MiB)
    k = m.kernel
    assert status == 0
    assert m.console_output.decode().split()[0] == expected
    vmstat = k.vmstat_snapshot()
    assert vmstat["pgsteal_kswapd"] + vmstat["pgsteal_direct"] > (512 - 128) * MiB // 4096
    assert vmstat["oom_kill"] == 0
    check_lru_invariants(k)
    m.close()


def test_repeatedly_read_pages_are_active(image):
    img, _ = image
    m = Machine(MachineConfig(mem=48 * MiB, disks=[DiskConfig(str(img), snapshot=True)]))
    # /hot three times (referenced, then activated), then one streaming pass over /big
    m.load(None, "/bin/vdread", ["/hot", "65536", "3"], root_device="/dev/vda")
    assert m.boot() == 0
    k = m.kernel
    fs, vfs = k.vfs.fs, k.vfs
    hot = vfs.mappings[fs.namei("/hot")]
    assert hot.nrpages == 512
    assert all(k.mem_map.test(pfn, PG_active) for pfn in hot.pages.values())
    check_lru_invariants(k)
    m.close()


def test_stream_is_reclaimed_before_the_hot_set(image, compile_c):
    img, _ = image
    both = compile_c(r'''
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
static char buf[65536];
static long drain(const char *p) { int fd = open(p, O_RDONLY); long t = 0, n;
    while ((n = read(fd, buf, sizeof buf)) > 0) t += n; close(fd); return t; }
int main(void) { for (int i = 0; i < 3; i++) drain("/hot"); printf("%ld\n", drain("/big")); return 0; }
''', "hotthenstream", flags=("-static", "-O1"))
    root_img = img.parent / "with-prog.img"
    staging = img.parent / "root"
    shutil.copy(both, staging / "bin" / "hotthenstream")
    mkdisk(str(staging), str(root_img))
    m, status = boot(root_img, ["/bin/hotthenstream"], mem=48 * MiB)
    assert status == 0 and m.console_output == b"100663296\n"
    k = m.kernel
    fs, vfs = k.vfs.fs, k.vfs
    hot = vfs.mappings[fs.namei("/hot")]
    big = vfs.mappings[fs.namei("/big")]
    assert hot.nrpages == 512                        # the hot set survived the stream
    assert big.nrpages < 96 * MiB // 4096 // 2       # most of the stream was reclaimed
    check_lru_invariants(k)
    m.close()


def test_anonymous_demand_over_ram_ends_in_the_oom_killer():
    m = Machine(MachineConfig(mem=32 * MiB))
    m.load((FIRMWARE / "memhog").read_bytes(), "/bin/memhog", ["64M"])
    status = m.boot()
    k = m.kernel
    assert status & 0x7F == 9                         # SIGKILL
    assert k.vmstat_snapshot()["oom_kill"] == 1
    assert k.vmstat_snapshot()["nr_anon_pages"] == 0  # its memory came back; the kernel went on
    m.close()


HOTCOLD = r'''
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
static char buf[1 << 20];
int main(void) {
    int hf = open("/hot", O_RDONLY), cf = open("/cold", O_RDONLY), bf = open("/big", O_RDONLY);
    volatile char *hot = mmap(0, 2 << 20, PROT_READ, MAP_SHARED, hf, 0);
    volatile char *cold = mmap(0, 2 << 20, PROT_READ, MAP_SHARED, cf, 0);
    long sum = 0, n, total = 0;
    for (int i = 0; i < 512; i++) sum += cold[i * 4096];          /* touched once, then cold */
    while ((n = read(bf, buf, sizeof buf)) > 0) {
        total += n;
        for (int i = 0; i < 512; i++) sum += hot[i * 4096];       /* the hot set, every MiB */
    }
    printf("%ld %ld\n", total, sum != 0);
    return 0;
}
'''


def test_referenced_mapped_pages_survive_cold_ones_go(image, compile_c, tmp_path):
    img, _ = image
    exe = compile_c(HOTCOLD, "hotcold", flags=("-static", "-O1"))
    staging = img.parent / "root"
    shutil.copy(exe, staging / "bin" / "hotcold")
    (staging / "cold").write_bytes(hashlib.shake_256(b"cold").digest(2 * MiB))
    root_img = tmp_path / "hotcold.img"
    mkdisk(str(staging), str(root_img))
    m, status = boot(root_img, ["/bin/hotcold"], mem=48 * MiB)
    assert status == 0 and m.console_output.startswith(b"100663296 ")
    k = m.kernel
    fs, vfs = k.vfs.fs, k.vfs
    hot = vfs.mappings[fs.namei("/hot")]
    cold = vfs.mappings[fs.namei("/cold")]
    assert hot.nrpages == 512                 # referenced through their PTEs: kept
    assert cold.nrpages < 128                 # mapped but cold: unmapped and reclaimed
    check_lru_invariants(k)
    m.close()
