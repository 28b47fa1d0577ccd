"""Duplication-aware cooperation (docs/host-cache-query.md): the disk tells the guest which of its
pages the host caches; with pagecache_dedup the guest drops those copies first under pressure."""
import pytest

from devices.host import Host
from vmm import oracle
from vmm.machine import DiskConfig, MachineConfig
from vmm.rootfs import root_image
from vmm.session import GuestSession

MiB = 1 << 20


@pytest.fixture(scope="module")
def root():
    return root_image("builtin")


def test_the_query_reports_exactly_the_host_cached_pages(root):
    with Host() as host:
        s = GuestSession(MachineConfig(mem=96 * MiB), root=root, host=host).start()
        s.run(["/bin/seqread", "/data/mapped.bin"])
        blk = s.machine.kernel.block_devices["vda"]
        bitmap = blk.query_host_cache()
        key = s.machine.disks[0][1].key
        reported = {i for i in range(len(bitmap) * 8) if bitmap[i >> 3] >> (i & 7) & 1}
        assert reported == host.cache.pages_of(key) and len(reported) >= 4096
        host.cache.drop_caches()
        assert not any(blk.query_host_cache())
        s.close()


def test_without_a_host_cache_the_feature_is_not_offered(root, tmp_path):
    with Host() as host:
        config = MachineConfig(mem=64 * MiB, disks=[DiskConfig(root, cache="none", read_only=True)])
        s = GuestSession(config, host=host).start()
        assert s.machine.kernel.block_devices["vda"].query_host_cache() is None
        s.close()


def _squeeze(root, cmdline):
    """mapped.bin read, then dropped from the host (only the guest holds it); random.bin read
    (both hold it); then a balloon forces reclaim. -> pages of each file the guest kept."""
    with Host() as host:
        s = GuestSession(MachineConfig(mem=128 * MiB, cmdline=cmdline, balloon_features=1),
                         root=root, host=host).start()
        s.run(["/bin/seqread", "/data/mapped.bin"])
        host.cache.drop_caches()
        s.run(["/bin/seqread", "/data/random.bin"])
        s.set_balloon_mib(90)
        assert s.wait_balloon()
        files = oracle.guest_disk_pages(s.machine)
        kept = {}
        for pages in files.values():
            for holders in pages.values():
                for name, _ in holders:
                    kept[name] = kept.get(name, 0) + 1
        vmstat = s.vmstat()
        s.close()
    return kept, vmstat


def test_dedup_reclaim_drops_duplicates_and_keeps_what_only_the_guest_holds(root):
    plain, plain_vm = _squeeze(root, "")
    dedup, vm = _squeeze(root, "pagecache_dedup")
    assert vm["pgsteal_dedup"] >= 2048 and plain_vm["pgsteal_dedup"] == 0
    assert dedup.get("/data/mapped.bin", 0) >= 4000                  # guest-only: kept
    assert plain.get("/data/mapped.bin", 0) < 2048                   # plain LRU took the older file
    assert dedup.get("/data/random.bin", 0) < plain.get("/data/random.bin", 0)
