"""The duplication oracle is exact on constructed cases: pages in both caches, in one only, and
host pages that two guests hold; beside it the host's estimate from its per-VM cache stat."""
import pytest

from devices.host import Host
from vmm import oracle
from vmm.machine import MachineConfig
from vmm.rootfs import root_image
from vmm.session import GuestSession

MiB = 1 << 20
FILE_PAGES = 16 * MiB // 4096          # /data/mapped.bin in the built-in root


@pytest.fixture(scope="module")
def root():
    return root_image("builtin")


def guest(root, host):
    return GuestSession(MachineConfig(mem=128 * MiB), root=root, host=host, root_read_only=True).start()


def test_pages_in_both_caches_are_duplicated_and_named_by_file(root):
    with Host() as host, guest(root, host) as a:
        before = oracle.duplication(host, [a.machine])["vms"][a.machine.vm_id]["files"]
        assert a.run(["/bin/seqread", "/data/mapped.bin"]).exit_code == 0
        report = oracle.duplication(host, [a.machine])
        vm = report["vms"][a.machine.vm_id]
        assert vm["files"]["/data/mapped.bin"] == FILE_PAGES
        assert vm["duplicated_pages"] == vm["guest_disk_pages"] == report["duplicated_pages"]
        assert "/data/mapped.bin" not in before
        # the host's own view agrees here: everything it caches was read by this guest, once
        assert vm["estimated_duplicated_pages"] == host.cache.usage_pages(a.machine.vm_id)


def test_pages_in_one_cache_only_are_not_duplicated(root):
    with Host() as host, guest(root, host) as a:
        a.run(["/bin/seqread", "/data/mapped.bin"])
        host.cache.drop_caches()                         # now only the guest holds them
        vm = oracle.duplication(host, [a.machine])["vms"][a.machine.vm_id]
        assert vm["duplicated_pages"] == 0 and vm["guest_disk_pages"] >= FILE_PAGES
        assert oracle.duplicated_pages(host, [a.machine]) == 0
        a.run(["/bin/seqread", "/data/random.bin"])      # read again: in both caches
        a.machine.kernel.drop_pagecache()                # now only the host holds /data/random.bin
        vm = oracle.duplication(host, [a.machine])["vms"][a.machine.vm_id]
        assert "/data/random.bin" not in vm["files"]
        assert host.cache.nr_pages >= 32 * MiB // 4096


def test_a_host_page_two_guests_hold_is_counted_once_on_the_host(root):
    with Host() as host, guest(root, host) as a, guest(root, host) as b:
        a.run(["/bin/seqread", "/data/mapped.bin"])
        b.run(["/bin/seqread", "/data/mapped.bin"])
        report = oracle.duplication(host, [a.machine, b.machine])
        shared = report["host_pages_in_several_guests"]
        assert shared >= FILE_PAGES
        assert report["duplicated_pages"] == report["vms"][a.machine.vm_id]["duplicated_pages"] + \
            report["vms"][b.machine.vm_id]["duplicated_pages"]
        # the time series' count (arrays of struct pages) is the same number
        assert oracle.duplicated_pages(host, [a.machine, b.machine]) == report["duplicated_pages"]
        # the second guest's reads were host-cache hits charged to the first: the host's
        # per-VM estimate misses them entirely, the oracle does not
        assert report["vms"][b.machine.vm_id]["estimated_duplicated_pages"] < FILE_PAGES
        assert report["vms"][b.machine.vm_id]["files"]["/data/mapped.bin"] == FILE_PAGES


def test_dirty_guest_pages_are_not_duplicates(root):
    with Host() as host:
        s = GuestSession(MachineConfig(mem=128 * MiB), root=root, host=host).start()   # a writable snapshot
        assert s.run(["/bin/writer", "/tmp/out.bin", "4M", "--fsync"]).exit_code == 0
        clean = oracle.duplication(host, [s.machine])["vms"][s.machine.vm_id]["files"].get("/tmp/out.bin", 0)
        assert clean == 1024                      # fsynced: the same bytes in the guest and on the host
        assert s.run(["/bin/writer", "/tmp/out.bin", "4M"]).exit_code == 0    # rewritten, not yet written back
        assert s.meminfo()["Dirty"] >= 4096
        report = oracle.duplication(host, [s.machine])
        assert report["vms"][s.machine.vm_id]["files"].get("/tmp/out.bin", 0) == 0
        assert oracle.duplicated_pages(host, [s.machine]) == report["duplicated_pages"] > 0
        s.close()
