"""The balloon end to end, driven from the host through a session, as Firecracker's balloon tests
drive a real guest: memory really returned to the host, DEFLATE_ON_OOM, statistics, free page
reporting and hinting, back-off, and violations by a deliberately buggy driver."""
import pytest

from vmm.machine import MachineConfig
from vmm.memory import process_rss_bytes
from vmm.rootfs import root_image
from vmm.session import GuestSession

MiB = 1 << 20
MUST_TELL_HOST, STATS_VQ, DEFLATE_ON_OOM, FREE_PAGE_HINT, PAGE_POISON, REPORTING = (1 << b for b in range(6))


@pytest.fixture(scope="module")
def root():
    return root_image("builtin")


def session(root, mem_mib, features, **config):
    return GuestSession(MachineConfig(mem=mem_mib * MiB, balloon_features=features, **config), root=root).start()


def test_inflate_returns_dirtied_memory_to_the_host_and_deflate_gives_it_back(root):
    with session(root, 384, MUST_TELL_HOST | STATS_VQ) as s:
        assert s.run(["/bin/memhog", "256M"]).exit_code == 0          # dirtied, then freed at exit
        free_before = s.meminfo()["MemFree"]
        rss_before = process_rss_bytes()
        s.set_balloon_mib(200)
        assert s.wait_balloon()
        assert s.balloon.actual_pages == 200 * 256
        assert rss_before - process_rss_bytes() >= 0.9 * 200 * MiB
        assert free_before - s.meminfo()["MemFree"] >= 0.85 * 200 * 1024
        s.set_balloon_mib(0)
        assert s.wait_balloon()
        assert s.meminfo()["MemFree"] >= free_before - 1024       # within 1 MiB of before
        assert s.run(["/bin/memhog", "256M"]).exit_code == 0      # and the memory works again


def test_ten_inflate_deflate_cycles_end_at_the_same_rss(root):
    with session(root, 192, MUST_TELL_HOST) as s:
        rss, guest = [], []
        for _ in range(10):
            s.set_balloon_mib(96)
            assert s.wait_balloon()
            s.set_balloon_mib(0)
            assert s.wait_balloon()
            assert s.run(["/bin/memhog", "96M"]).exit_code == 0
            rss.append(process_rss_bytes())
            guest.append(s.machine.ram.resident_pages())
        # The second cycle still touches frames the first left alone (~2 MiB: the buddy allocator hands
        # out other frames after a deflate); from then on the host holds exactly as many of the guest's
        # frames after each cycle, and the process (the VMM, the host cache, Python) does not grow.
        assert len(set(guest[1:])) == 1 and guest[1] - guest[0] < 1024
        assert max(abs(r - rss[1]) for r in rss[1:]) <= 0.02 * rss[1]


def test_deflate_on_oom_lets_a_hungry_program_finish(root):
    with session(root, 128, MUST_TELL_HOST | DEFLATE_ON_OOM) as s:
        total = s.meminfo()["MemTotal"]
        s.set_balloon_mib(64)
        assert s.wait_balloon()
        assert s.meminfo()["MemTotal"] == total                       # kept with DEFLATE_ON_OOM
        result = s.run(["/bin/memhog", "100M"])
        assert result.exit_code == 0 and "pages verified" in result.output
        assert s.balloon.actual_pages < 64 * 256                     # the balloon gave pages back
        assert s.machine.kernel.balloon.counters["oom_deflated_pages"] % 256 == 0
        assert s.vmstat()["oom_kill"] == 0


def test_without_deflate_on_oom_the_program_is_killed_and_the_guest_survives(root):
    with session(root, 128, MUST_TELL_HOST) as s:
        s.set_balloon_mib(64)
        assert s.wait_balloon()
        result = s.run(["/bin/memhog", "100M"])
        assert result.signaled and result.status & 0x7F == 9
        assert s.vmstat()["oom_kill"] == 1
        assert s.balloon.actual_pages == 64 * 256                    # the balloon kept its pages
        assert s.run(["/bin/hello"]).exit_code == 0                  # the guest lives on


def test_statistics_move_the_right_way(root):
    with session(root, 192, MUST_TELL_HOST | STATS_VQ) as s:
        first = s.balloon_stats()
        assert set(first) == {"swap-in", "swap-out", "major-faults", "minor-faults", "free-memory",
                              "total-memory", "available-memory", "disk-caches", "hugetlb-allocations",
                              "hugetlb-failures", "oom-kills", "alloc-stalls", "async-scans", "direct-scans",
                              "async-reclaims", "direct-reclaims"}
        s.run(["/bin/memhog", "32M"])
        touched = s.balloon_stats()
        assert touched["minor-faults"] >= first["minor-faults"] + 8192
        s.set_balloon_mib(64)
        assert s.wait_balloon()
        inflated = s.balloon_stats()
        assert inflated["free-memory"] <= touched["free-memory"] - 60 * MiB
        assert inflated["available-memory"] < touched["available-memory"]
        assert inflated["total-memory"] == touched["total-memory"] - 64 * MiB
        s.set_balloon_mib(0)
        assert s.wait_balloon()
        deflated = s.balloon_stats()
        assert deflated["free-memory"] > inflated["free-memory"] + 60 * MiB
        assert deflated["available-memory"] > inflated["available-memory"]


def test_stats_polling_interval_refreshes_on_the_virtual_clock(root):
    with session(root, 128, STATS_VQ, balloon_stats_interval_s=1) as s:
        before = s.balloon.counters.stats_updates
        s.advance(5)
        assert s.balloon.counters.stats_updates - before in (4, 5, 6)


def test_free_page_reporting_returns_freed_memory_without_inflating(root):
    with session(root, 256, MUST_TELL_HOST | REPORTING) as s:
        s.run(["/bin/memhog", "160M"])
        dirty_rss = process_rss_bytes()
        s.advance(3)                                                 # reporting runs 2 s after frees
        assert s.balloon.counters.reported_pages >= 150 * 256
        assert dirty_rss - process_rss_bytes() >= 140 * MiB
        assert s.balloon.actual_pages == 0 and s.machine.violations == []
        assert s.run(["/bin/memhog", "160M"]).exit_code == 0         # reported pages need no deflate


def test_free_page_hinting_round(root):
    with session(root, 128, MUST_TELL_HOST | FREE_PAGE_HINT) as s:
        free = s.meminfo()["MemFree"]
        s.balloon.start_hinting()
        s.advance(0.01)
        driver = s.machine.kernel.balloon
        assert driver.counters["hint_rounds"] == 1 and driver.hinted
        assert s.balloon.counters.hinted_pages == len(driver.hinted) * 1024
        assert s.meminfo()["MemFree"] < free - 64 * 1024              # held by the driver for now
        s.balloon.done_hinting()
        s.advance(0.01)
        assert not driver.hinted and s.meminfo()["MemFree"] >= free - 64


def test_inflate_backs_off_when_the_guest_has_no_more_to_give(root):
    with session(root, 128, MUST_TELL_HOST) as s:
        s.set_balloon_mib(127)
        assert not s.wait_balloon(timeout_s=1)
        driver = s.machine.kernel.balloon
        actual, tries = s.balloon.actual_pages, driver.counters["out_of_puff"]
        assert 0 < actual < 127 * 256 and 3 <= tries <= 6           # every 200 ms of guest time
        assert s.vmstat()["oom_kill"] == 0
        s.set_balloon_mib(0)
        assert s.wait_balloon()
        assert s.run(["/bin/hello"]).exit_code == 0


def test_a_driver_that_reuses_inflated_pages_is_caught(root):
    with session(root, 128, MUST_TELL_HOST, cmdline="virtio_balloon.bug=reuse") as s:
        s.set_balloon_mib(32)
        assert s.wait_balloon()
        s.run(["/bin/memhog", "100M"])
        violations = s.machine.violations
        assert violations
        assert all(v.pfn in s.balloon.inflated for v in violations)
        assert {v.access for v in violations} <= {"read", "write", "fetch"} and violations[0].instruction


def test_stop_mode_stops_the_machine_at_the_first_violation(root):
    with session(root, 128, MUST_TELL_HOST, cmdline="virtio_balloon.bug=reuse", on_violation="stop") as s:
        s.set_balloon_mib(32)
        assert s.wait_balloon()
        with pytest.raises(Exception, match="violation|did not finish|powered off"):
            s.run(["/bin/memhog", "100M"])
        assert len(s.machine.violations) == 1
        assert "balloon violation" in s.machine.stop_reason


@pytest.mark.parametrize("bug, caught", [("", False), ("early-free", True)])
def test_no_page_is_reused_before_its_deflate_is_acknowledged(root, bug, caught):
    # the host acknowledges each buffer after 0.2 ms: the balloon thread, one batch at a time, deflates
    # faster than memhog allocates (with 2 ms, memhog ran out of memory first, as it would in Linux)
    config = dict(balloon_service_delay_ns=200_000, cmdline=f"virtio_balloon.bug={bug}" if bug else "")
    with session(root, 128, MUST_TELL_HOST, **config) as s:
        s.set_balloon_mib(64)
        assert s.wait_balloon()
        s.machine.clock.schedule(1_000_000, lambda: s.set_balloon_mib(0))   # deflate while memhog runs
        result = s.run(["/bin/memhog", "100M"])
        assert bool(s.machine.violations) == caught
        if not caught:
            assert result.exit_code == 0 and s.balloon.actual_pages == 0


def test_a_target_larger_than_the_guest_is_refused_by_the_host_api(root):
    with session(root, 64, MUST_TELL_HOST) as s:
        with pytest.raises(ValueError):
            s.balloon.set_target_pages(65 * 256)
        s.set_guest_mib(1024)                        # QEMU's view: more than RAM means no balloon
        assert s.balloon.target_pages == 0

