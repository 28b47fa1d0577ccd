"""Exclusive host caching: the host drops its copy of what exactly one guest read (that guest now
holds it) and keeps what several guests read; it never drops a block two guests hold."""
import pytest

from devices.host import Host
from vmm import oracle
from vmm.machine import MachineConfig
from vmm.rootfs import root_image
from vmm.session import GuestSession

MiB = 1 << 20
FILE_PAGES = 16 * MiB // 4096


@pytest.fixture(scope="module")
def root():
    return root_image("builtin")


def guest(root, host):
    return GuestSession(MachineConfig(mem=96 * MiB), root=root, host=host, root_read_only=True).start()


def test_one_guest_keeps_its_pages_and_the_host_forgets_them(root):
    with Host(exclusive_cache=True) as host, guest(root, host) as a:
        assert a.run(["/bin/seqread", "/data/mapped.bin"]).exit_code == 0
        report = oracle.duplication(host, [a.machine])
        assert report["vms"][a.machine.vm_id]["files"].get("/data/mapped.bin", 0) == 0
        assert oracle.guest_disk_pages(a.machine) and host.cache.demoted >= FILE_PAGES
        assert report["duplicated_pages"] == 0


def test_pages_two_guests_read_stay_on_the_host(root):
    with Host(exclusive_cache=True) as host, guest(root, host) as a, guest(root, host) as b:
        a.run(["/bin/seqread", "/data/mapped.bin"])
        b.run(["/bin/seqread", "/data/mapped.bin"])          # misses: a's copy was demoted
        key = a.machine.disks[0][1].key
        shared = host.cache.shared_pages(key)
        assert len(shared) >= FILE_PAGES
        assert shared <= host.cache.pages_of(key)
        a.machine.kernel.drop_pagecache()
        hits = host.cache.hits
        a.run(["/bin/seqread", "/data/mapped.bin"])           # served from the host now, and kept
        assert host.cache.hits - hits >= FILE_PAGES
        assert shared <= host.cache.pages_of(key)
        report = oracle.duplication(host, [a.machine, b.machine])
        assert report["host_pages_in_several_guests"] >= FILE_PAGES


def test_without_exclusive_caching_nothing_is_demoted(root):
    with Host() as host, guest(root, host) as a:
        a.run(["/bin/seqread", "/data/mapped.bin"])
        assert host.cache.demoted == 0
        assert oracle.duplication(host, [a.machine])["vms"][a.machine.vm_id]["files"]["/data/mapped.bin"] == FILE_PAGES
