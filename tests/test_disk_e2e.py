"""virtio-blk end to end: guest programs on /dev/vda, the host page cache behind it, and
the durability promises of QEMU's cache modes seen from outside the VMM process."""
import hashlib
import os
import signal
import subprocess
import sys

import pytest

from ballast_testlib import REPO
from devices.host import Host
from vmm.machine import DiskConfig, Machine, MachineConfig

SRC = REPO / "firmware" / "src"
MiB = 1 << 20


@pytest.fixture(scope="module")
def programs(compile_c):
    return {name: compile_c((SRC / f"{name}.c").read_text(), name, flags=("-static", "-O2"))
            for name in ("vdsha256", "vdwrite", "vdread")}


@pytest.fixture(scope="module")
def image64(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "data.img"
    path.write_bytes(hashlib.shake_256(b"ballast disk").digest(64 * MiB))
    return path


def run_guest(program, args, disks, host=None, mem=128 * MiB):
    m = Machine(MachineConfig(mem=mem, disks=disks), host=host)
    m.load(program.read_bytes(), "/bin/" + program.name, args)
    status = m.boot()
    result = (status, bytes(m.console_output), m)
    m.close()
    return result


def test_sha256_through_vda_matches_the_host_and_a_second_vm_hits_the_host_cache(programs, image64):
    host = Host()
    expected = hashlib.sha256(image64.read_bytes()).hexdigest()
    status, out, m1 = run_guest(programs["vdsha256"], ["/dev/vda"], [DiskConfig(str(image64))], host)
    assert status == 0, out
    assert out.decode().split() == [expected, str(64 * MiB)]
    cache = host.cache
    pages = 64 * MiB // 4096
    assert cache.misses == pages and cache.hits == 0
    assert cache.usage_pages(m1.vm_id) == pages            # charged to the first VM, like a memcg
    reads_before = cache.disk_reads_pages
    status, out, m2 = run_guest(programs["vdsha256"], ["/dev/vda"], [DiskConfig(str(image64))], host)
    assert status == 0 and out.decode().split()[0] == expected
    assert cache.hits == pages                               # the second VM read it from the host cache
    assert cache.disk_reads_pages == reads_before            # and not from the disk
    assert cache.usage_pages(m2.vm_id) == 0
    host.close()


def test_cache_none_leaves_the_host_cache_empty(programs, image64):
    host = Host()
    status, out, _ = run_guest(programs["vdread"], ["/dev/vda"], [DiskConfig(str(image64), cache="none")], host)
    assert status == 0 and out.startswith(b"67108864 bytes")
    assert host.cache.nr_pages == 0 and host.cache.hits == 0
    host.close()


@pytest.fixture
def scratch(tmp_path):
    path = tmp_path / "scratch.img"
    path.write_bytes(bytes([0xEE]) * (4 * MiB))
    return path


@pytest.mark.parametrize("offset,count", [(4096, 8192), (1000, 3000)])     # aligned (DMA) and bounce paths
def test_guest_writes_reach_the_image(programs, scratch, offset, count):
    status, out, _ = run_guest(programs["vdwrite"], ["/dev/vda", str(offset), "0x41", str(count), "fsync"],
                               [DiskConfig(str(scratch))])
    assert status == 0 and out == b"synced\n"
    data = scratch.read_bytes()
    assert data[offset:offset + count] == b"A" * count
    assert data[offset - 1] == 0xEE and data[offset + count] == 0xEE


def test_read_only_disk_refuses_writes(programs, scratch):
    status, out, _ = run_guest(programs["vdwrite"], ["/dev/vda", "0", "1", "512"],
                               [DiskConfig(str(scratch), read_only=True)])
    assert status >> 8 == 1 and out == b"open: errno 30\n"      # EROFS
    assert scratch.read_bytes() == bytes([0xEE]) * (4 * MiB)


def test_disk_runs_are_deterministic(programs, image64):
    runs = []
    for _ in range(2):
        m = Machine(MachineConfig(mem=128 * MiB, disks=[DiskConfig(str(image64), profile="hdd")]))
        m.load(programs["vdread"].read_bytes(), "/bin/vdread", ["/dev/vda", "131072"])
        m.boot()
        runs.append((m.cpu.icount, m.clock.now_ns(), bytes(m.console_output)))
        m.close()
    assert runs[0] == runs[1]
    assert runs[0][1] > 64 * MiB / 150e6 * 1e9 * 0.9             # an hdd reads ~150 MB/s in virtual time


def _ballast(args):
    return subprocess.Popen([sys.executable, "-m", "vmm.cli", "run", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_when(proc, line: bytes):
    got = proc.stdout.readline()
    assert got == line, got + proc.stderr.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("cache,flush,durable", [
    ("writeback", True, True),       # a completed FLUSH is on the image
    ("writeback", False, False),     # without one the data sat in the (killed) host cache
    ("writethrough", False, True),   # every write is durable when it completes
    ("unsafe", True, False),         # flushes are ignored
])
def test_durability_when_the_vmm_is_killed(programs, scratch, cache, flush, durable):
    args = [f"--disk={scratch},cache={cache}", str(programs["vdwrite"]), "/dev/vda", "8192", "0x5a", "4096"]
    args += ["fsync"] if flush else []
    proc = _ballast(args + ["spin"])
    _kill_when(proc, b"synced\n" if flush else b"written\n")
    data = scratch.read_bytes()[8192:8192 + 4096]
    assert data == (b"\x5a" * 4096 if durable else b"\xee" * 4096)


@pytest.mark.parametrize("spec,message", [
    ("{img},cache=bogus", "unknown cache mode 'bogus'"),
    ("{img},frobnicate", "unknown option 'frobnicate'"),
    ("{missing}", "disk image not found"),
])
def test_bad_disk_options_are_one_line_errors(programs, scratch, tmp_path, spec, message):
    arg = spec.format(img=scratch, missing=tmp_path / "nope.img")
    proc = subprocess.run([sys.executable, "-m", "vmm.cli", "run", "--disk", arg, str(programs["vdread"])],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ballast: ") and message in lines[0]
