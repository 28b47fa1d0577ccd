"""The pytest plugin, run by pytest itself (pytester): the README's example test file verbatim,
the fixtures' options and errors in them, the failure report, guest-time timeouts, roots and xdist."""
import importlib.metadata
import re
import shutil
import tomllib

import vmm.scenario  # noqa: F401  loaded here: pytester drops the modules a run imports, unicorn cannot load twice
from ballast_testlib import FIRMWARE, REPO

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


def test_the_readme_example_is_the_shipped_example():
    assert readme_block("# test_balloon.py", "python") == (REPO / "examples" / "test_balloon.py").read_text()


def test_the_readme_states_the_fixtures_defaults():
    from vmm.pytest_plugin import DEFAULTS
    text = " ".join(README.read_text().split())
    shown = ", ".join(f"{name}={value!r}".replace("'", '"') for name, value in DEFAULTS.items())
    assert f"`ballast_vm({shown})`" in text


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
    assert set(other.snapshot()) == {"guest", "vmstat", "balloon", "host", "time", "oracle", "policy", "cpu",
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


def test_a_failing_test_shows_the_guest_in_its_report(pytester):
    result = run(pytester, '''
def test_balloon_too_small(balloon_vm):
    balloon_vm.run_ok(["/bin/hello"])
    assert balloon_vm.resize_balloon(32)
    balloon_vm.set_balloon_mib(48)                      # not waited for: the report shows it unreached
    assert balloon_vm.balloon_mib() == 48

def test_passing(balloon_vm):
    balloon_vm.run_ok(["/bin/hello"])
''', "-q", "-rA")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    failure = out[out.index("_ test_balloon_too_small _"):out.index("short test summary")]
    section = failure[failure.index("- ballast guest -"):]
    assert "128 MiB guest" in section
    assert "features MUST_TELL_HOST+STATS_VQ" in section
    assert "target 12288 pages (48.0 MiB), actual 8192 pages (32.0 MiB)  <- not reached" in section
    assert "violations 0" in section
    assert re.search(r"^MemTotal: +\d+ kB$", section, re.M) and re.search(r"^Cached: +\d+ kB$", section, re.M)
    assert "console (last 20 lines):" in section
    assert "Hello from the Ballast guest!" in section.split("console (last 20 lines):")[1]
    assert out.count("- ballast guest -") == 1                 # the passing test has none


def test_timeouts_are_in_guest_time(pytester):
    result = run(pytester, '''
import pytest
from vmm.errors import BallastError

def stopped_at(vm):
    with pytest.raises(BallastError, match="did not finish within 0.05 s of guest time"):
        vm.run(["/bin/compute", "30000000"])           # 0.2 s of guest time to the end
    return vm.virtual_ns()

@pytest.mark.ballast(timeout_s=0.05, balloon=None)
def test_timeout(ballast_vm):
    first, second = ballast_vm(), ballast_vm(mem="64M")
    started = first.virtual_ns()
    assert stopped_at(first) == stopped_at(second)      # the same guest time, whatever the wall clock did
    assert 0.05e9 <= first.virtual_ns() - started <= 0.07e9
    assert first.wait_timeout_s == 0.05

def test_bad_timeout(ballast_vm):
    ballast_vm(timeout_s=-1)
''', "-q")
    result.assert_outcomes(passed=1, failed=1)
    assert "ballast: timeout_s: must be a positive number of guest seconds, not -1" in result.stdout.str()


def test_the_marker_selects_the_root(pytester, tmp_path):
    from vmm.mkdisk import mkdisk
    tree = pytester.path / "sub" / "guestroot" / "bin"
    tree.mkdir(parents=True)
    shutil.copy(FIRMWARE / "hello", tree / "hi")
    image_tree = tmp_path / "imageroot" / "bin"
    image_tree.mkdir(parents=True)
    shutil.copy(FIRMWARE / "hello", image_tree / "hi-from-image")
    mkdisk(str(image_tree.parent), str(pytester.path / "sub" / "root.img"))
    source = '''
import pytest

@pytest.mark.ballast(root="guestroot")                  # a directory beside this file
def test_directory(balloon_vm):
    assert balloon_vm.run_ok(["/bin/hi"]).startswith("Hello")
    assert balloon_vm.run(["/bin/seqread", "/data/stream.bin"]).status != 0

@pytest.mark.ballast(root="root.img")                   # an ext2 image
def test_image(ballast_vm):
    assert ballast_vm().run_ok(["/bin/hi-from-image"]).startswith("Hello")

@pytest.mark.ballast(root="builtin")
def test_builtin(balloon_vm):
    assert "67108864 bytes" in balloon_vm.run_ok(["/bin/seqread", "/data/stream.bin"])

@pytest.mark.ballast(root="nowhere")
def test_missing(balloon_vm):
    pass
'''
    (pytester.path / "sub" / "test_roots.py").write_text(source)
    # run from the directory above: relative roots are relative to the test file, not to the working directory
    result = pytester.runpytest_inprocess(*plugin_args(), "-p", "no:cacheprovider", "-q", "sub")
    result.assert_outcomes(passed=3, errors=1)
    assert re.search(r"ballast: root: \S*nowhere does not exist", result.stdout.str())


def test_under_xdist_each_worker_boots_its_own_guests(pytester):
    log = pytester.path / "guests.log"
    pytester.makepyfile(test_user=f'''
import os
import pytest

@pytest.mark.parametrize("n", range(4))
def test_guest(balloon_vm, n):
    assert balloon_vm.resize_balloon(16 + n)
    balloon_vm.run_ok(["/bin/memhog", "8M"])
    with open({str(log)!r}, "a") as f:
        f.write(f"{{os.environ['PYTEST_XDIST_WORKER']}} {{os.getpid()}} {{id(balloon_vm)}}\\n")
''')
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "-n", "2", "-q")
    result.assert_outcomes(passed=4)
    rows = [line.split() for line in log.read_text().splitlines()]
    assert len(rows) == 4
    workers = {worker: pid for worker, pid, _ in rows}
    assert sorted(workers) == ["gw0", "gw1"] and len(set(workers.values())) == 2    # two processes ran guests
