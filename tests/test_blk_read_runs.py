"""The IN fast path: a device's DMA given as runs of guest RAM (BlockBackend.read_runs_into) does exactly what
the same read through one view per buffer (readv_into) does, in every cache mode, and virtio-blk gives the
guest the same bytes, statuses, used ring, costs and counters with and without it."""
import random

import pytest

from devices.block_backend import CACHE_MODES
from devices.host import Host
from devices.virtio_blk import VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN
from vmm.memory import GuestRAM

from test_virtio_blk import Bed

PAGE = 4096
IMAGE_SIZE = 512 * 1024
MiB = 1 << 20


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(random.Random(7).randbytes(IMAGE_SIZE))
    return path


def state(host, disk):
    c = host.cache
    return (disk.stats.as_dict(), c.stats(), list(c._inactive), list(c._active), bytes(c._flags[:c._fresh]))


@pytest.mark.parametrize("mode", list(CACHE_MODES))
def test_read_runs_into_equals_readv_into(image_path, mode):
    rng = random.Random(mode)
    hosts = [Host(cache_capacity=48), Host(cache_capacity=48)]     # small: misses and evictions too
    disks = [h.block_backend(str(image_path), mode, 1, False, "nvme", serial=b"x", snapshot=False) for h in hosts]
    rams = [bytearray(256 * 1024), bytearray(256 * 1024)]
    try:
        for _ in range(60):
            offset = rng.randrange(IMAGE_SIZE // 512) * 512
            pieces = [rng.choice([512, 1024, 3584, PAGE, 2 * PAGE, 5 * PAGE]) for _ in range(rng.randint(1, 4))]
            while offset + sum(pieces) > IMAGE_SIZE:
                pieces.pop()
            if not pieces:
                continue
            addrs = rng.sample(range(0, 256 * 1024 - 5 * PAGE, 512), len(pieces))
            runs = list(zip(addrs, pieces))
            if any(a < b + m and b < a + n for i, (a, n) in enumerate(runs) for (b, m) in runs[i + 1:]):
                continue                    # overlapping buffers: the order of the copies would show
            cost_a = disks[0].read_runs_into(offset, memoryview(rams[0]), runs, sum(pieces))
            view = memoryview(rams[1])
            cost_b = disks[1].readv_into(offset, [view[a:a + n] for a, n in runs])
            assert cost_a == cost_b
            assert rams[0] == rams[1]
            assert state(hosts[0], disks[0]) == state(hosts[1], disks[1])
    finally:
        for h in hosts:
            h.close()


class ViewsOnly:
    """A backend without read_runs_into: the device falls back to readv_into with views."""

    def __init__(self, backend):
        self._backend = backend

    def __getattr__(self, name):
        if name == "read_runs_into":
            raise AttributeError(name)
        return getattr(self._backend, name)


@pytest.mark.parametrize("pieces", [1, 2, 5])
def test_device_reads_are_the_same_with_and_without_runs(image_path, pieces):
    outcomes = []
    for wrap in (False, True):
        host = Host(cache_capacity=64)
        disk = host.block_backend(str(image_path), "writeback", 1, False, "nvme", serial=b"x", snapshot=False)
        mem = GuestRAM(16 * MiB)
        try:
            bed = Bed(mem, backend=ViewsOnly(disk) if wrap else disk)
            assert (bed.blk._read_runs is None) == wrap
            results = []
            for sector, length in ((0, 8 * PAGE), (8, 3 * PAGE), (1000, 512 * 3), (16, 20 * PAGE), (2040, PAGE)):
                status, req, used = bed.do(VIRTIO_BLK_T_IN, sector=sector, in_len=length, pieces=pieces)
                results.append((status, used, bed.data(req), bed.clock.now_ns()))
            assert results[0][0] == VIRTIO_BLK_S_OK and results[-1][0] != VIRTIO_BLK_S_OK    # past the end
            outcomes.append((results, state(host, disk), bed.blk.counters, bed.t.counters))
        finally:
            host.close()
            mem.close()
    assert outcomes[0] == outcomes[1]
