# test_balloon.py: balloon CI with Ballast (install ballast and pytest, then run pytest)
import pytest

MiB = 1 << 20


def test_inflating_returns_memory_to_the_host(balloon_vm):
    balloon_vm.run_ok(["/bin/memhog", "96M"])          # the guest dirties 96 MiB and frees it
    rss = balloon_vm.host_rss_bytes()
    free_kib = balloon_vm.meminfo()["MemFree"]

    assert balloon_vm.resize_balloon(64)                # inflate by 64 MiB; True once actual == target
    assert balloon_vm.host_rss_bytes() <= rss - 0.8 * 64 * MiB
    assert balloon_vm.meminfo()["MemFree"] <= free_kib - 0.85 * 64 * 1024

    assert balloon_vm.resize_balloon(0)                 # deflate: the guest gets its memory back
    assert balloon_vm.meminfo()["MemFree"] >= free_kib - 1024
    assert balloon_vm.violations == []


def test_statistics_move_the_right_way(balloon_vm):
    before = balloon_vm.balloon_stats()
    assert balloon_vm.resize_balloon(32)
    after = balloon_vm.balloon_stats()
    assert after["free-memory"] < before["free-memory"]
    assert after["available-memory"] < before["available-memory"]

    balloon_vm.run_ok(["/bin/memhog", "16M"])
    assert balloon_vm.balloon_stats()["minor-faults"] >= after["minor-faults"] + 4096


@pytest.mark.ballast(balloon=["MUST_TELL_HOST", "STATS_VQ", "DEFLATE_ON_OOM"])
def test_with_deflate_on_oom_a_hungry_program_completes(balloon_vm):
    assert balloon_vm.resize_balloon(64)
    balloon_vm.run_ok(["/bin/memhog", "96M"])           # more than is left: the balloon gives way
    assert balloon_vm.balloon_mib() < 64


def test_without_deflate_on_oom_the_program_is_killed_and_the_vm_survives(ballast_vm):
    vm = ballast_vm(mem="128M", balloon=["MUST_TELL_HOST"])
    assert vm.resize_balloon(64)
    result = vm.run(["/bin/memhog", "96M"])
    assert result.signaled                              # SIGKILL from the guest's OOM killer
    assert "Out of memory" in result.output
    assert vm.run_ok(["/bin/hello"]).startswith("Hello")
    assert vm.balloon_mib() == 64
