"""Same inputs, same machine: the virtual clock, the counters and the output repeat exactly."""
import pytest

from ballast_testlib import boot, firmware

CASES = {
    "memhog 32M 2": ("memhog", ["32M", "2"], 128 << 20),
    "compute 200000": ("compute", ["200000"], 64 << 20),
}


def fingerprint(run):
    return dict(code=run.code, icount=run.icount, now_ns=run.now_ns, pgfault=run.vmstat["pgfault"],
                output=run.output, vmstat=run.vmstat)


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_runs_are_identical(case):
    name, args, mem = CASES[case]
    first = fingerprint(boot(firmware(name), args, mem=mem, name=name))
    second = fingerprint(boot(firmware(name), args, mem=mem, name=name))
    assert first["code"] == 0
    assert first == second


def test_compute_output():
    run = boot(firmware("compute"), ["200000"], mem=64 << 20, name="compute")
    assert run.code == 0
    assert run.output.startswith(b"compute: 200000 iterations, result 0x")
    # the loop retires at least a handful of instructions per iteration
    assert run.icount > 5 * 200000


@pytest.fixture(scope="module")
def fast_and_slow():
    prog = firmware("memhog")
    fast = boot(prog, ["32M", "2"], mem=128 << 20, name="memhog")
    slow = boot(prog, ["32M", "2"], mem=128 << 20, name="memhog", cmdline="nofastfault")
    return fast, slow


def test_fast_fault_path_changes_nothing_but_speed(fast_and_slow):
    fast, slow = fast_and_slow
    assert fast.code == slow.code == 0
    assert fast.output == slow.output == b"memhog: 33554432 bytes, 2 passes, 8192 pages verified\n"
    assert fast.vmstat["pgfault"] == slow.vmstat["pgfault"]
    assert fast.vmstat["nr_free_pages"] == slow.vmstat["nr_free_pages"]
    assert fast.pcp_count == slow.pcp_count
    assert fast.vmstat == slow.vmstat


def test_fast_fault_path_keeps_the_instruction_count(fast_and_slow):
    fast, slow = fast_and_slow
    assert fast.icount == slow.icount


BUILD_UNDER_BALLOON = """
[machine]
mem = "32M"
root = "builtin"
balloon = { features = ["MUST_TELL_HOST"] }

[[step]]
balloon_mib = 24

[[step]]
wait = "balloon"
timeout_s = 60

[[step]]
run = ["/bin/mixed", "/src", "3"]
timeout_s = 600

[[step]]
snapshot = "end"
"""


def test_a_build_under_a_squeezing_balloon_repeats_in_another_process(tmp_path):
    """Writeback and reclaim under pressure, each run in its own process (so objects land at other
    addresses): the guest's counters and clock repeat. The flusher's list was once a set of objects,
    iterated in address order."""
    import json
    import subprocess
    import sys
    scenario = tmp_path / "build.toml"
    scenario.write_text(BUILD_UNDER_BALLOON)
    guest = []
    for n in range(2):
        out = tmp_path / f"run{n}.json"
        subprocess.run([sys.executable, "-m", "vmm.cli", "scenario", str(scenario), "--json", str(out)],
                       check=True, capture_output=True, cwd=tmp_path)
        guest.append(_without_host_measurements(json.loads(out.read_text())))
    assert guest[0]["snapshots"]["end"]["vmstat"]["pgsteal_kswapd"] > 0      # it did reclaim
    assert guest[0] == guest[1]


def _without_host_measurements(value):
    """The result less what the host process measures of itself (its RSS, wall time)."""
    if isinstance(value, dict):
        return {k: _without_host_measurements(v) for k, v in value.items() if k not in ("rss_bytes", "wall_s")}
    if isinstance(value, list):
        return [_without_host_measurements(v) for v in value]
    return value
