"""Disk images, cache modes and their durability promises (checked with SIGKILL), costs, and the Host."""
import errno
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from devices.block_backend import CACHE_MODES, BlockBackend
from devices.disk import PAGE_SIZE, PROFILES, DiskImage, DiskProfile, HostCosts
from devices.host import DEFAULT_CACHE_BYTES, Host
from devices.host_cache import HostPageCache

REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 256 * 1024
MODES = list(CACHE_MODES)


def pattern(size, seed=1):
    return random.Random(seed).randbytes(size)


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(pattern(IMAGE_SIZE))
    return path


@pytest.fixture
def host():
    h = Host(cache_capacity=1024)
    yield h
    h.close()


def on_disk(path, offset=0, length=None):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


# --- DiskImage ---

def test_image_reads_writes_and_reports_its_identity(image_path):
    with DiskImage(image_path) as image:
        st_ = os.stat(image_path)
        assert image.key == (st_.st_dev, st_.st_ino) and image.size == IMAGE_SIZE
        assert image.pread(1000, 24) == pattern(IMAGE_SIZE)[1000:1024]
        image.pwrite(512, b"hello")
        image.fsync()
        assert on_disk(image_path, 512, 5) == b"hello" and image.fsyncs == 1


def test_image_reads_zeros_past_the_end_of_a_truncated_file(image_path):
    with DiskImage(image_path) as image:
        os.truncate(image_path, 4096)
        assert image.size == IMAGE_SIZE
        assert image.pread(4096 - 8, 16) == pattern(IMAGE_SIZE)[4088:4096] + bytes(8)
        buf = bytearray(b"\xff" * 3 * PAGE_SIZE)
        image.read_pages(0, [memoryview(buf)[i * PAGE_SIZE:(i + 1) * PAGE_SIZE] for i in range(3)])
        assert bytes(buf[PAGE_SIZE:]) == bytes(2 * PAGE_SIZE)


def test_image_rejects_ranges_outside_it(image_path):
    with DiskImage(image_path) as image:
        with pytest.raises(ValueError, match="outside disk image"):
            image.pread(IMAGE_SIZE - 10, 20)
        with pytest.raises(ValueError, match="outside disk image"):
            image.pwrite(-512, b"x")


def test_image_write_pages_stops_at_the_end_of_an_odd_sized_image(tmp_path):
    path = tmp_path / "odd.img"
    path.write_bytes(bytes(PAGE_SIZE + 1024))            # 1.25 pages
    with DiskImage(path) as image:
        image.write_pages(1, [memoryview(b"\x07" * PAGE_SIZE)])
    assert path.stat().st_size == PAGE_SIZE + 1024
    assert on_disk(path, PAGE_SIZE) == b"\x07" * 1024


def test_image_zero_range(image_path):
    with DiskImage(image_path) as image:
        image.zero_range(512, 3 * PAGE_SIZE)
    data = on_disk(image_path)
    assert data[512:512 + 3 * PAGE_SIZE] == bytes(3 * PAGE_SIZE)
    assert data[:512] == pattern(IMAGE_SIZE)[:512]
    assert data[512 + 3 * PAGE_SIZE:] == pattern(IMAGE_SIZE)[512 + 3 * PAGE_SIZE:]


def test_missing_image(tmp_path):
    with pytest.raises(FileNotFoundError, match="disk image not found") as e:
        DiskImage(tmp_path / "nope.img")
    assert "\n" not in str(e.value) and "nope.img" in str(e.value)


def test_directory_image(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        DiskImage(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_image(image_path):
    image_path.chmod(0)
    try:
        with pytest.raises(PermissionError, match="not readable"):
            DiskImage(image_path, read_only=True)
        image_path.chmod(0o444)
        with pytest.raises(PermissionError, match="read-only"):
            DiskImage(image_path)
    finally:
        image_path.chmod(0o644)


def test_unreadable_image_even_as_root(image_path, monkeypatch):
    def refuse(*args):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr("devices.disk.os.open", refuse)
    with pytest.raises(PermissionError, match="disk image not readable") as e:
        DiskImage(image_path, read_only=True)
    assert "\n" not in str(e.value) and "disk.img" in str(e.value)


@pytest.mark.parametrize("size, message", [(1000, "not a multiple of 512"), (0, "is empty")])
def test_badly_sized_image(tmp_path, size, message):
    path = tmp_path / "bad.img"
    path.write_bytes(bytes(size))
    with pytest.raises(ValueError, match=message) as e:
        DiskImage(path)
    assert "\n" not in str(e.value)


def test_read_only_image_rejects_writes_with_erofs(image_path):
    with DiskImage(image_path, read_only=True) as image:
        with pytest.raises(OSError) as e:
            image.pwrite(0, b"x" * 512)
        assert e.value.errno == errno.EROFS


# --- cost profiles ---

def test_profiles_cost_what_they_document():
    hdd, ssd, nvme = PROFILES["hdd"], PROFILES["ssd"], PROFILES["nvme"]
    assert DiskProfile() == nvme and DiskProfile.named("hdd") is hdd
    assert 8_000_000 <= hdd.read_cost_ns(PAGE_SIZE) <= 8_200_000          # a seek
    assert hdd.read_cost_ns(150_000_000, sequential=True) == pytest.approx(1e9, rel=0.01)  # 150 MB/s
    assert ssd.read_cost_ns(PAGE_SIZE) == pytest.approx(100_000, rel=0.1)
    assert ssd.read_cost_ns(500_000_000, sequential=True) == pytest.approx(1e9, rel=0.01)
    assert nvme.read_cost_ns(PAGE_SIZE) == pytest.approx(80_000, rel=0.05)
    assert nvme.write_cost_ns(PAGE_SIZE) == pytest.approx(20_000, rel=0.2)
    assert nvme.read_cost_ns(3_000_000_000, sequential=True) == pytest.approx(1e9, rel=0.01)
    for p in (hdd, ssd, nvme):
        assert p.read_cost_ns(0) == 0 and p.flush_cost_ns() > 0
        assert p.read_cost_ns(65536, True) <= p.read_cost_ns(65536, False)
    assert hdd.read_cost_ns(65536, False) - hdd.read_cost_ns(65536, True) == hdd.seek_ns
    assert HostCosts().host_cache_hit_ns_per_page == 250
    with pytest.raises(ValueError, match="unknown disk profile"):
        DiskProfile.named("floppy")


# --- BlockBackend basics ---

def test_mode_table_matches_qemu(image_path, host):
    expect = {  # mode: (through host cache, write cache seen by guest, flush ignored)
        "writeback": (True, True, False), "none": (False, True, False),
        "writethrough": (True, False, False), "directsync": (False, False, False),
        "unsafe": (True, True, True),
    }
    for mode, (cached, wce, no_flush) in expect.items():
        disk = host.block_backend(image_path, mode)
        assert (disk.mode.host_cache, disk.write_cache_enabled, disk.mode.no_flush) == (cached, wce, no_flush)
        assert disk.capacity_bytes == IMAGE_SIZE and disk.capacity_sectors == IMAGE_SIZE // 512


def test_backend_validates_its_arguments(image_path):
    image = DiskImage(image_path)
    with pytest.raises(ValueError, match="unknown cache mode"):
        BlockBackend(image, "sometimes", HostPageCache(8), 1)
    with pytest.raises(ValueError, match="needs a host page cache"):
        BlockBackend(image, "writeback", None, 1)
    with pytest.raises(ValueError, match="longer than 20"):
        BlockBackend(image, "none", None, 1, serial=b"x" * 21)
    disk = BlockBackend(image, "none", None, 1, serial="vda-serial")
    assert disk.serial == b"vda-serial" and not disk.read_only
    with pytest.raises(ValueError, match="not aligned"):
        disk.read(100, 512)
    with pytest.raises(ValueError, match="not aligned"):
        disk.write(0, b"x" * 100)
    with pytest.raises(ValueError, match="beyond the disk"):
        disk.read(IMAGE_SIZE - 512, 1024)
    with pytest.raises(ValueError, match="smaller than"):
        disk.read_into(0, 1024, bytearray(512))
    image.close()
    ro = DiskImage(image_path, read_only=True)
    with pytest.raises(ValueError, match="open read-only"):
        BlockBackend(ro, "none", None, 1, read_only=False)
    ro.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("image_read_only", [True, False])
def test_read_only_disk_rejects_writes_with_erofs(image_path, host, mode, image_read_only):
    if image_read_only:
        disk = host.block_backend(image_path, mode, read_only=True)
    else:
        disk = BlockBackend(host.open_image(image_path), mode, host.cache, 1, read_only=True)
    assert disk.read_only
    for call in (lambda: disk.write(0, b"x" * 512), lambda: disk.discard(0, 4096),
                 lambda: disk.write_zeroes(0, 4096)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EROFS
    assert disk.read(0, 512)[0] == pattern(IMAGE_SIZE)[:512]
    disk.flush()
    assert on_disk(image_path) == pattern(IMAGE_SIZE)


@pytest.mark.parametrize("mode", MODES)
def test_sub_page_writes_keep_the_rest_of_the_page(image_path, host, mode):
    disk = host.block_backend(image_path, mode)
    want = bytearray(pattern(IMAGE_SIZE))
    for offset, length in [(512, 512), (3 * 512, 1024), (PAGE_SIZE - 512, 1024), (5 * PAGE_SIZE + 1536, 7 * 512)]:
        data = bytes([offset % 251 + 1]) * length
        disk.write(offset, data)
        want[offset:offset + length] = data
        assert disk.read(0, 8 * PAGE_SIZE)[0] == bytes(want[:8 * PAGE_SIZE])
    disk.close()                # clean shutdown writes everything back, unsafe included
    assert on_disk(image_path) == bytes(want)


@pytest.mark.parametrize("mode, fsyncs_per_write", [
    ("writeback", 0), ("none", 0), ("writethrough", 1), ("directsync", 1), ("unsafe", 0)])
def test_only_write_through_modes_fsync_each_write(image_path, host, mode, fsyncs_per_write):
    disk = host.block_backend(image_path, mode)
    for i in range(3):
        disk.write(i * 1024, b"f" * 1024)
    assert disk.image.fsyncs == 3 * fsyncs_per_write
    disk.flush()
    assert disk.image.fsyncs == 3 * fsyncs_per_write + (mode != "unsafe")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", ["discard", "write_zeroes"])
def test_discard_and_write_zeroes_read_back_as_zeros(image_path, host, mode, op):
    disk = host.block_backend(image_path, mode)
    disk.read(0, 16 * PAGE_SIZE)                                # cache (or not) what is there
    disk.write(2 * PAGE_SIZE, b"d" * 2 * PAGE_SIZE)             # dirty pages inside the range
    want = bytearray(pattern(IMAGE_SIZE))
    want[2 * PAGE_SIZE:4 * PAGE_SIZE] = b"d" * 2 * PAGE_SIZE
    for offset, length in [(1536, 3 * PAGE_SIZE), (10 * PAGE_SIZE + 512, 1024), (12 * PAGE_SIZE, 2 * PAGE_SIZE)]:
        cost = getattr(disk, op)(offset, length)
        assert cost > 0
        want[offset:offset + length] = bytes(length)
        assert disk.read(0, 16 * PAGE_SIZE)[0] == bytes(want[:16 * PAGE_SIZE])
    host.close()
    assert on_disk(image_path) == bytes(want)


def test_readv_and_writev_scatter_and_gather(image_path, host):
    disk = host.block_backend(image_path, "writeback")
    disk.writev(4096, [b"a" * 512, b"b" * 1024, b"c" * 512])
    bufs = [bytearray(1024), bytearray(1024)]
    disk.readv_into(4096, [memoryview(b) for b in bufs])
    assert bytes(bufs[0]) == b"a" * 512 + b"b" * 512 and bytes(bufs[1]) == b"b" * 512 + b"c" * 512


# --- the host cache as each mode uses it ---

def test_cache_none_leaves_the_host_cache_empty(image_path, host):
    disk = host.block_backend(image_path, "none")
    disk.read(0, 64 * 1024)
    disk.write(8192, b"n" * 8192)
    disk.write_zeroes(0, 4096)
    disk.flush()
    assert host.cache.pages_of(disk.key) == set() and host.cache.nr_pages == 0
    assert host.cache.usage_pages(disk.vm_id) == 0
    assert disk.stats.host_hits == disk.stats.host_misses == 0
    assert on_disk(image_path, 8192, 8192) == b"n" * 8192      # written with pwrite at once


def test_second_vm_hits_the_pages_the_first_vm_brought_in(image_path, host):
    first = host.block_backend(image_path, "writeback")
    second = host.block_backend(image_path, "writeback")
    assert first.vm_id != second.vm_id and first.image is second.image
    first.read(0, 64 * 1024)
    data, cost = second.read(0, 64 * 1024)
    assert data == pattern(IMAGE_SIZE)[:64 * 1024]
    assert (second.stats.host_hits, second.stats.host_misses) == (16, 0)
    assert cost == 16 * HostCosts().host_cache_hit_ns_per_page
    assert host.cache.usage_pages(first.vm_id) == 16 and host.cache.usage_pages(second.vm_id) == 0
    assert host.cache.pages_of(first.key) == set(range(16))


def test_direct_io_stays_coherent_with_another_vms_cached_pages(image_path, host):
    cached = host.block_backend(image_path, "writeback")
    direct = host.block_backend(image_path, "none")
    cached.write(0, b"w" * 8192)                                 # dirty in the host cache
    assert direct.read(0, 8192)[0] == b"w" * 8192               # written back before the direct read
    assert host.cache.nr_dirty == 0
    cached.read(0, 4 * PAGE_SIZE)
    direct.write(1024, b"D" * 1024)                              # invalidates the stale cached page
    assert 0 not in host.cache.pages_of(cached.key)
    assert cached.read(0, 4096)[0] == b"w" * 1024 + b"D" * 1024 + b"w" * 2048


def test_writeback_holds_writes_in_the_host_cache_until_flush(image_path, host):
    disk = host.block_backend(image_path, "writeback")
    disk.write(4096, b"x" * 4096)
    assert on_disk(image_path, 4096, 4096) == pattern(IMAGE_SIZE)[4096:8192]
    assert host.cache.nr_dirty == 1
    fsyncs = disk.image.fsyncs
    disk.flush()
    assert on_disk(image_path, 4096, 4096) == b"x" * 4096
    assert host.cache.nr_dirty == 0 and disk.image.fsyncs == fsyncs + 1


def test_unsafe_ignores_flush_and_writes_back_on_close(image_path, host):
    disk = host.block_backend(image_path, "unsafe")
    disk.write(0, b"u" * 4096)
    assert disk.flush() == 0
    assert on_disk(image_path, 0, 4096) == pattern(IMAGE_SIZE)[:4096] and disk.image.fsyncs == 0
    disk.close()
    assert on_disk(image_path, 0, 4096) == b"u" * 4096


def test_host_close_writes_back_everything(image_path, tmp_path):
    other = tmp_path / "other.img"
    other.write_bytes(bytes(IMAGE_SIZE))
    host = Host(cache_capacity=256)
    a = host.block_backend(image_path, "unsafe")
    b = host.block_backend(other, "writeback")
    a.write(0, b"A" * 4096)
    b.write(8192, b"B" * 512)
    host.close()
    assert on_disk(image_path, 0, 4096) == b"A" * 4096 and on_disk(other, 8192, 512) == b"B" * 512
    assert a.image.closed and b.image.closed


def test_disabling_the_write_cache_makes_writes_durable_like_qemu(image_path, host):
    wb = host.block_backend(image_path, "writeback")
    wb.set_write_cache(False)                                    # writeback -> writethrough
    wb.write(0, b"1" * 512)
    assert on_disk(image_path, 0, 512) == b"1" * 512 and host.cache.nr_dirty == 0
    none = host.block_backend(image_path, "none")
    fsyncs = none.image.fsyncs
    none.set_write_cache(False)                                  # none -> directsync
    none.write(512, b"2" * 512)
    assert none.image.fsyncs == fsyncs + 1
    wt = host.block_backend(image_path, "writethrough")
    wt.set_write_cache(True)                                     # the guest turned the cache on
    wt.write(1024, b"3" * 512)
    assert host.cache.nr_dirty == 1
    unsafe = host.block_backend(image_path, "unsafe")
    unsafe.set_write_cache(False)                                # flushes stay ignored
    unsafe.write(4 * PAGE_SIZE, b"4" * 512)
    assert on_disk(image_path, 4 * PAGE_SIZE, 512) != b"4" * 512


# --- costs ---

def test_costs_follow_the_model(image_path, host):
    profile, costs = PROFILES["ssd"], HostCosts()
    disk = host.block_backend(image_path, "writeback", profile="ssd")
    assert disk.read(0, 65536)[1] == 16 * costs.host_cache_hit_ns_per_page + profile.read_cost_ns(65536)
    # continues the previous request: sequential
    assert disk.read(65536, 65536)[1] == 16 * costs.host_cache_hit_ns_per_page + profile.read_cost_ns(65536, True)
    assert disk.read(0, 65536)[1] == 16 * costs.host_cache_hit_ns_per_page
    assert disk.write(0, b"w" * 8192) == 2 * costs.host_cache_fill_ns_per_page
    assert disk.flush() == profile.write_cost_ns(8192) + profile.flush_cost_ns()
    assert disk.flush() == profile.flush_cost_ns()

    wt = host.block_backend(image_path, "writethrough", profile="ssd")
    assert wt.write(0, b"t" * 4096) == (costs.host_cache_fill_ns_per_page + profile.write_cost_ns(4096)
                                        + profile.flush_cost_ns())
    direct = host.block_backend(image_path, "directsync", profile="hdd")
    hdd = PROFILES["hdd"]
    assert direct.write(PAGE_SIZE * 40, b"d" * 4096) == hdd.write_cost_ns(4096) + hdd.flush_cost_ns()
    assert direct.read(0, 512)[1] == hdd.read_cost_ns(512)
    unsafe = host.block_backend(image_path, "unsafe")
    assert unsafe.flush() == 0
    assert disk.stats.busy_ns > 0 and disk.stats.reads == 3 and disk.stats.flushes == 2


# --- the Host ---

def test_host_opens_each_image_once_by_file_identity(image_path, tmp_path):
    link = tmp_path / "link.img"
    os.link(image_path, link)
    with Host(cache_capacity=16) as host:
        ro = host.open_image(image_path, read_only=True)
        assert host.open_image(link, read_only=True) is ro and ro.read_only
        assert host.open_image(image_path) is ro and not ro.read_only     # upgraded in place
        assert host.images == [ro]
        assert host.new_vm_id() != host.new_vm_id()


def test_host_cache_capacity_follows_the_budget(image_path):
    assert Host().cache.capacity_pages == DEFAULT_CACHE_BYTES // PAGE_SIZE
    assert Host(memory_budget_bytes=1 << 20).cache.capacity_pages == 256
    assert Host(memory_budget_bytes=1 << 20, cache_capacity=10).cache.capacity_pages == 10
    with pytest.raises(ValueError, match="below one page"):
        Host(memory_budget_bytes=100)
    with Host(memory_budget_bytes=1 << 20) as host:
        disk = host.block_backend(image_path, "writeback")
        disk.write(0, b"s" * 64 * PAGE_SIZE)
        assert host.set_memory_budget(16 * PAGE_SIZE) == 48
        assert host.cache.nr_pages == 16
        assert on_disk(image_path, 0, 48 * PAGE_SIZE) == b"s" * 48 * PAGE_SIZE


# --- durability, for real: a writer process killed with SIGKILL ---

WRITER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from devices.host import Host
path, mode, flush = sys.argv[2], sys.argv[3], sys.argv[4] == "flush"
disk = Host(cache_capacity=1024).block_backend(path, mode)
disk.write(4096, b"N" * 8192)
disk.write(512, b"S" * 512)
if flush:
    disk.flush()
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("mode, flush, durable", [
    ("writeback", True, True),         # flush returned: on disk
    ("writeback", False, False),       # still only in the (modelled) host cache
    ("none", True, True),
    ("none", False, True),             # O_DIRECT: the write went to the image at once
    ("writethrough", False, True),     # every write durable when it returns
    ("directsync", False, True),
    ("unsafe", True, False),           # flush ignored
])
def test_durability_survives_sigkill(image_path, mode, flush, durable):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(REPO), str(image_path), mode,
                             "flush" if flush else "no-flush"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    old = pattern(IMAGE_SIZE)
    data = on_disk(image_path)
    if durable:
        assert data[4096:12288] == b"N" * 8192 and data[512:1024] == b"S" * 512
    else:
        assert data == old
    assert data[:512] == old[:512] and data[12288:] == old[12288:]


# --- property test: any mix of modes on one image reads like one flat disk ---

SECTORS = 64                      # a 32 KiB disk
ops = st.tuples(st.sampled_from(["read", "read", "read", "write", "write", "write", "flush", "discard",
                                  "write_zeroes", "wce"]),
                st.integers(0, SECTORS - 1), st.integers(1, 24), st.integers(0, 1))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(modes=st.tuples(st.sampled_from(MODES), st.sampled_from(MODES)), capacity=st.integers(1, 6),
       script=st.lists(ops, min_size=3, max_size=30))
def test_any_mix_of_modes_behaves_like_one_flat_disk(tmp_path, modes, capacity, script):
    path = tmp_path / f"mix-{random.getrandbits(64):x}.img"
    path.write_bytes(pattern(SECTORS * 512, seed=9))
    model = bytearray(pattern(SECTORS * 512, seed=9))
    host = Host(cache_capacity=capacity)
    disks = [host.block_backend(path, mode) for mode in modes]
    for n, (op, sector, count, which) in enumerate(script):
        disk = disks[which]
        offset, length = sector * 512, min(count, SECTORS - sector) * 512
        if op == "read":
            assert disk.read(offset, length)[0] == bytes(model[offset:offset + length])
        elif op == "write":
            data = bytes([n % 255 + 1]) * length
            disk.write(offset, data)
            model[offset:offset + length] = data
        elif op == "flush":
            disk.flush()
        elif op == "wce":
            disk.set_write_cache(not disk.write_cache_enabled)
        else:
            getattr(disk, op)(offset, length)
            model[offset:offset + length] = bytes(length)
        host.cache.audit()
    assert disks[0].read(0, SECTORS * 512)[0] == bytes(model)
    host.close()
    assert path.read_bytes() == bytes(model)
    path.unlink()
