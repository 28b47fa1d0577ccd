"""The pytest plugin, run by pytest itself (pytester): the README's example test file verbatim,
the fixtures' options, and errors in them."""
import importlib.metadata
import re
import tomllib

import vmm.scenario  # noqa: F401  loaded here: pytester drops the modules a run imports, unicorn cannot load twice
from ballast_testlib import REPO

pytest_plugins = ["pytester"]

README = REPO / "README.md"


def readme_block(first_line: str, lang: str) -> str:
    """The README's fenced block that starts with first_line (so README and tests cannot drift)."""
    text = README.read_text()
    m = re.search(rf"```{lang}\n({re.escape(first_line)}.*?)```", text, re.S)
    assert m, f"README has no {lang} block starting with {first_line!r}"
    return m.group(1)


def plugin_args() -> list:
    """Installed, the entry point loads the plugin; from a bare checkout, name it."""
    names = {ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    return [] if "vmm.pytest_plugin" in names else ["-p", "vmm.pytest_plugin"]


def run(pytester, source: str, *args):
    pytester.makepyfile(test_user=source)
    return pytester.runpytest_inprocess(*plugin_args(), "-p", "no:cacheprovider", *args)


def test_the_readme_example_passes(pytester):
    result = run(pytester, readme_block("# test_balloon.py", "python"), "-q")
    result.assert_outcomes(passed=4)


def test_the_readme_scenario_is_the_shipped_example():
    assert readme_block("# Squeeze a guest", "toml") == (REPO / "examples" / "balloon.toml").read_text()


def test_the_entry_point_is_declared():
    with open(REPO / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["entry-points"]["pytest11"] == {"ballast": "vmm.pytest_plugin"}


def test_fixture_options_and_teardown(pytester):
    result = run(pytester, '''
import os
import pytest

GUESTS = []
SWAP = []

def test_options(ballast_vm):
    vm = ballast_vm(mem="64M", balloon=None, swap="4M", cmdline="vm.swappiness=100")
    GUESTS.append(vm)
    SWAP.append(vm.machine.disks[1][0].path)
    assert os.path.exists(SWAP[0])
    assert vm.machine.balloon is None
    assert vm.meminfo()["SwapTotal"] >= 3 * 1024
    assert vm.run_ok(["/bin/hello"]) == "Hello from the Ballast guest!\\n"
    other = ballast_vm(mem="64M", balloon=["REPORTING", "PAGE_POISON"], host_memory="80M")
    GUESTS.append(other)
    assert other.balloon.features == (1 << 5) | (1 << 4)
    assert other.machine.host.cache.capacity_pages == 16 * 256
    assert set(other.snapshot()) == {"guest", "vmstat", "balloon", "host", "time", "oracle", "policy",
                                     "ram", "disk"}

def test_closed_after_the_test():
    assert len(GUESTS) == 2 and all(g._guest.dead for g in GUESTS)
    assert not os.path.exists(SWAP[0])

@pytest.mark.ballast(mem="64M", balloon=["STATS_VQ"], stats_interval_s=1)
def test_marker(balloon_vm):
    assert balloon_vm.machine.config.mem == 64 << 20
    assert balloon_vm.balloon.stats_interval_s == 1
    assert balloon_vm.resize_balloon(8) and balloon_vm.balloon_mib() == 8
    balloon_vm.advance(2)
    assert "free-memory" in balloon_vm.balloon.latest_stats

def test_run_ok_fails_on_a_failing_program(balloon_vm):
    with pytest.raises(AssertionError, match="exited 3"):
        balloon_vm.run_ok(["/bin/hello", "3"])
''', "-q")
    result.assert_outcomes(passed=4)


def test_bad_options_fail_the_test_in_one_line(pytester):
    result = run(pytester, '''
import pytest

def test_feature(ballast_vm):
    ballast_vm(balloon=["NOPE"])

def test_option(ballast_vm):
    ballast_vm(memory="1G")

@pytest.mark.ballast(mem="lots")
def test_marker(balloon_vm):
    pass
''', "-q")
    result.assert_outcomes(failed=2, errors=1)
    out = result.stdout.str()
    assert "ballast: features: unknown balloon feature 'NOPE'" in out
    assert "ballast_vm: unknown option 'memory'" in out
    assert "ballast: mem: cannot read 'lots' as a size" in out
    assert "Traceback" not in out


def test_the_plugin_is_quiet_when_unused(pytester):
    result = run(pytester, "def test_nothing():\n    pass\n", "-q")
    result.assert_outcomes(passed=1)
    marks = pytester.runpytest_inprocess(*plugin_args(), "--markers").stdout.str()
    assert "@pytest.mark.ballast(**options)" in marks


def test_importing_the_plugin_loads_nothing_of_ballast():
    import subprocess
    import sys
    code = "import sys, vmm.pytest_plugin; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('vmm', 'devices', 'guestos', 'unicorn', 'greenlet')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['vmm', 'vmm.pytest_plugin']"
