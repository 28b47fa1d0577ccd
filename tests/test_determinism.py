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
