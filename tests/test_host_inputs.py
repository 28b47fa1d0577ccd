"""Host-side inputs (issue 11 point 4): every mistake in an option, a kernel command-line value, a
scenario key or an input file is refused before anything boots, in one line naming the option or
key, with a non-zero exit; never `internal error`, a traceback or a hang. And `ballast run
--timeout` ends a runaway program (exit 124)."""
import datetime
import json
import math
import os
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ballast_testlib import FIRMWARE, REPO
from guestos.kernel.cmdline import KERNEL_PARAMS, ParamError, check_cmdline
from vmm import cli
from vmm import scenario as sc
from vmm.errors import BallastError, one_line
from vmm.hostinput import MAX_DISKS, MAX_GUEST_SECONDS
from vmm.machine import Machine, MachineConfig

HELLO = FIRMWARE / "hello"
HELLO_TEXT = "Hello from the Ballast guest!\n"


def run_cli(capfd, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return code, out, err


def one_error_line(code, err, exit_code=2) -> str:
    assert code == exit_code, err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ballast: "), err
    return lines[0]


# --- the kernel command line: refused up front, naming the option ------------------------------------

BAD_CMDLINES = [
    ("loglevel=x", "--cmdline: loglevel=x: not an integer"),
    ("loglevel=16", "--cmdline: loglevel=16: out of range (0 to 15)"),
    ("loglevel", "--cmdline: loglevel: needs a value"),
    ("mem=abc", "--cmdline: mem=abc: not a size"),
    ("mem=1M", "--cmdline: mem=1M: out of range"),
    ("sched_quantum=-1", "--cmdline: sched_quantum=-1: out of range"),
    ("sched_quantum=0", "--cmdline: sched_quantum=0: out of range"),
    ("sched_quantum=1_000", "--cmdline: sched_quantum=1_000: not an integer"),
    ("vm.swappiness=abc", "--cmdline: vm.swappiness=abc: not an integer"),
    ("vm.swappiness=101", "--cmdline: vm.swappiness=101: out of range (0 to 100)"),
    ("vm.min_free_kbytes=999999999", "--cmdline: vm.min_free_kbytes=999999999: out of range (0 to 16384 for 64 MiB"),
    ("vm.dirty_ratio=-5", "--cmdline: vm.dirty_ratio=-5: out of range"),
    ("vm.overcommit_memory=3", "--cmdline: vm.overcommit_memory=3: out of range"),
    ("vm.nosuch=1", "--cmdline: vm.nosuch=1: unknown option (known vm.*: "),
    ("virtio_blk.max_sectors_kb=0", "--cmdline: virtio_blk.max_sectors_kb=0: out of range (4 to 32768)"),
    ("virtio_blk.queue_depth=4", "--cmdline: virtio_blk.queue_depth=4: unknown option"),
    ("virtio_balloon.bug=typo", "--cmdline: virtio_balloon.bug=typo: not one of"),
    ("virtio_balloon.cache_first=maybe", "--cmdline: virtio_balloon.cache_first=maybe: not a boolean"),
    ("virtio_mmio.device=4K", "--cmdline: virtio_mmio.device=4K: not SIZE@BASE:IRQ"),
    ("random.seed=x", "--cmdline: random.seed=x: not an integer"),
    ("random.seed=-1", "--cmdline: random.seed=-1: out of range"),
    ("sched_quantum=many", "--cmdline: sched_quantum=many: not an integer"),
    ("unmapped_page_control=always", "--cmdline: unmapped_page_control=always: not one of"),
    ("init", "--cmdline: init: needs a value"),
    ("nofastfault=perhaps", "--cmdline: nofastfault=perhaps: not a boolean"),
    ("vdso=2", "--cmdline: vdso=2: not a boolean"),
    ('loglevel="7', "--cmdline: cannot split the command line: no closing quotation"),
    ("loglevel=7 -- x", "--cmdline: '--' ends the kernel's options"),
]


@pytest.mark.parametrize("cmdline, message", BAD_CMDLINES, ids=[c for c, _ in BAD_CMDLINES])
def test_a_bad_kernel_option_is_refused_before_boot(capfd, cmdline, message):
    code, out, err = run_cli(capfd, "run", "--mem", "64M", "--cmdline", cmdline, HELLO)
    line = one_error_line(code, err)
    assert line.startswith(f"ballast: {message}"), line
    assert out == ""                    # nothing booted: the program never printed


def test_good_kernel_options_still_boot(capfd):
    cmdline = ("loglevel=3 sched_quantum=0x100000 vm.swappiness=100 vm.min_free_kbytes=4096 random.seed=7 "
               "virtio_blk.max_sectors_kb=64 unmapped_page_control nofastfault=0 vdso=1 quiet some_linux_option=1")
    code, out, err = run_cli(capfd, "run", "--mem", "64M", "--cmdline", cmdline, HELLO)
    assert (code, out, err) == (0, HELLO_TEXT, "")


def test_the_kernel_itself_refuses_a_bad_option_the_same_way():
    """Past the host's check (an API user building a Machine by hand): the kernel's own check of the
    same declaration stops the boot with a panic naming the option, not a host exception."""
    m = Machine(MachineConfig(mem=64 << 20))
    try:
        m.config.cmdline = "vm.swappiness=abc"         # after Machine's check, as a buggy caller might
        m.load(HELLO.read_bytes(), "/bin/hello", [])
        m.boot()
        assert m.kernel.panic_message == "command line: vm.swappiness=abc: not an integer"
        assert b"Hello" not in m.console_output
    finally:
        m.close()


def test_a_machine_refuses_a_bad_command_line_before_it_builds_anything():
    with pytest.raises(BallastError, match=r"^cmdline: mem=abc: not a size"):
        Machine(MachineConfig(mem=64 << 20, cmdline="mem=abc"))


def test_a_sysctl_write_in_the_guest_uses_the_boot_options_range():
    from guestos.kernel.cmdline import check_sysctl_vm
    check_sysctl_vm("swappiness", 100, 64 << 20)
    for name, value in (("swappiness", 101), ("swappiness", -1), ("min_free_kbytes", 1 << 30)):
        with pytest.raises(ParamError):
            check_sysctl_vm(name, value, 64 << 20)


def test_every_sysctl_has_a_declared_range_that_holds_its_default():
    """proc.py keeps the defaults, cmdline.py the ranges: the same names, each default in range."""
    from guestos.fs.proc import SYSCTL_VM_DEFAULTS
    from guestos.kernel.cmdline import SYSCTL_VM_RANGES, check_sysctl_vm
    assert set(SYSCTL_VM_RANGES) == set(SYSCTL_VM_DEFAULTS)
    for name, value in SYSCTL_VM_DEFAULTS.items():
        check_sysctl_vm(name, value, 64 << 20)


SYSCTL_WRITER = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void put(const char *v) {
    int fd = open("/proc/sys/vm/swappiness", O_WRONLY);
    long n = write(fd, v, strlen(v));
    printf("%s -> %ld %s\n", v, n, n < 0 ? strerror(errno) : "ok");
    close(fd);
}
int main(void) {
    char buf[32] = {0};
    put("101"); put("-1"); put("100");
    int fd = open("/proc/sys/vm/swappiness", O_RDONLY);
    read(fd, buf, sizeof buf - 1);
    printf("now %s", buf);
    return 0;
}
"""


def test_a_program_writing_a_sysctl_meets_the_same_range(capfd, compile_c):
    """Linux 2.6.35's proc_dointvec_minmax: swappiness is 0..100, anything else EINVAL and unchanged."""
    exe = compile_c(SYSCTL_WRITER, "sysctl_writer")
    code, out, err = run_cli(capfd, "run", "--mem", "64M", "--cmdline", "vm.swappiness=7", exe)
    assert (code, err) == (0, "")
    assert out == "101 -> -1 Invalid argument\n-1 -> -1 Invalid argument\n100 -> 3 ok\nnow 100\n"


_WORDS = st.sampled_from(sorted(KERNEL_PARAMS) + ["vm.bogus", "virtio_blk.x", "quiet", "--", "x"])
_VALUES = st.one_of(st.none(), st.text(max_size=12), st.integers(-2**70, 2**70).map(str),
                    st.sampled_from(["0x", "0x10", "1K", "16M", "1e3", "nan", "-0", " 5", "y", "off", "4K@0x0:5"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_WORDS, _VALUES), max_size=6))
def test_any_command_line_is_checked_or_refused_with_a_param_error(words):
    cmdline = " ".join(w if v is None else f'{w}="{v}"' if " " in v else f"{w}={v}" for w, v in words)
    try:
        check_cmdline(cmdline, 64 << 20)
    except ParamError as e:
        assert "\n" not in str(e)


# --- files that are not regular files, outputs, disks, arguments ------------------------------------

@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("where", ["PROGRAM", "--root", "--disk"])
def test_a_fifo_is_refused_not_waited_on(capfd, fifo, where):
    argv = {"PROGRAM": ["run", fifo], "--root": ["run", "--root", fifo, "/bin/hello"],
            "--disk": ["run", "--disk", fifo, HELLO]}[where]
    code, out, err = run_cli(capfd, *argv)
    line = one_error_line(code, err)
    assert line == f"ballast: {where}: {fifo}: is a FIFO, not a regular file" + \
        (" or a directory" if where == "--root" else "")


def test_mkdisk_into_a_fifo_is_refused(tmp_path, capfd, fifo):
    (tmp_path / "tree").mkdir()
    code, out, err = run_cli(capfd, "mkdisk", tmp_path / "tree", fifo)
    assert one_error_line(code, err) == f"ballast: IMG: {fifo}: is a FIFO, not a regular file"


@pytest.mark.parametrize("where, device", [("PROGRAM", "/dev/zero"), ("--disk", "/dev/null")])
def test_a_device_is_refused(capfd, where, device):
    argv = ["run", device] if where == "PROGRAM" else ["run", "--disk", device, HELLO]
    code, out, err = run_cli(capfd, *argv)
    assert one_error_line(code, err) == f"ballast: {where}: {device}: is a character device, not a regular file"


def test_a_fifo_in_subprocess_ends_at_once(fifo):
    """The real command: a FIFO nobody writes to must not block (the timeout would fire)."""
    proc = subprocess.run([sys.executable, "-m", "vmm.cli", "run", str(fifo)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == f"ballast: PROGRAM: {fifo}: is a FIFO, not a regular file\n"


def test_a_fifo_as_scenario_root_or_file(tmp_path, capfd, fifo):
    path = tmp_path / "s.toml"
    path.write_text(f'[machine]\nmem = "64M"\nroot = "{fifo}"\n[[step]]\nrun = ["/bin/hello"]\n')
    code, out, err = run_cli(capfd, "scenario", path)
    assert one_error_line(code, err) == \
        f"ballast: {path}: machine.root: {fifo}: is a FIFO, not a regular file or a directory"
    code, out, err = run_cli(capfd, "scenario", fifo)
    assert one_error_line(code, err) == f"ballast: FILE.toml: {fifo}: is a FIFO, not a regular file"


def test_a_fifo_or_deep_nesting_as_sweep_file(tmp_path, capfd, fifo):
    """The sweep reads its files through the scenario's reader: the same one-line refusals."""
    code, out, err = run_cli(capfd, "sweep", fifo, "--out", tmp_path / "r.csv", "--dry-run")
    assert one_error_line(code, err) == f"ballast: FILE.toml: {fifo}: is a FIFO, not a regular file"
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    code, out, err = run_cli(capfd, "sweep", deep, "--out", tmp_path / "r.csv", "--dry-run")
    assert one_error_line(code, err) == f"ballast: {deep}: not valid TOML: arrays or tables nested too deeply"


@pytest.mark.parametrize("option", ["--json", "--trace"])
def test_an_output_into_a_missing_directory_is_refused_before_running(tmp_path, capfd, option):
    code, out, err = run_cli(capfd, "run", option, tmp_path / "no" / "x.json", HELLO)
    assert one_error_line(code, err) == f"ballast: {option}: directory '{tmp_path / 'no'}' does not exist"
    assert out == ""                    # refused up front: the program did not run


def test_an_output_that_is_a_directory_is_refused(tmp_path, capfd):
    code, out, err = run_cli(capfd, "run", "--json", tmp_path, HELLO)
    assert one_error_line(code, err) == f"ballast: --json: '{tmp_path}' is a directory"
    assert out == ""


def test_a_27th_disk_is_refused(tmp_path, capfd):
    image = tmp_path / "d.img"
    image.write_bytes(bytes(1 << 16))
    argv = ["run"] + [f"--disk={image},ro"] * (MAX_DISKS + 1) + [HELLO]
    code, out, err = run_cli(capfd, *argv)
    assert one_error_line(code, err) == "ballast: --disk: 27 disks, at most 26 (vda to vdz)"
    # 26 of them with --swap (a disk too) is also one too many
    argv = ["run", "--swap", "1M"] + [f"--disk={image},ro"] * MAX_DISKS + [HELLO]
    code, out, err = run_cli(capfd, *argv)
    assert one_error_line(code, err) == "ballast: --disk: 27 disks, at most 26 (vda to vdz)"


def test_26_disks_boot_and_the_last_is_vdz(tmp_path, capfd):
    image = tmp_path / "d.img"
    image.write_bytes(bytes(1 << 16))
    argv = ["run", "--mem", "64M", "--cmdline", "loglevel=7"] + [f"--disk={image},ro"] * MAX_DISKS + [HELLO]
    code, out, err = run_cli(capfd, *argv)
    assert code == 0, err
    assert "[vdz]" in out and out.endswith(HELLO_TEXT)


@pytest.mark.parametrize("name", ["a b", 'a"b', "h\udcffllo", "back\\slash"])
def test_a_program_with_an_awkward_name_runs(tmp_path, capfd, name):
    """The name travels on the kernel command line (init=): spaces, quotes and bytes that are not UTF-8."""
    exe = tmp_path / name
    exe.write_bytes(HELLO.read_bytes())
    code, out, err = run_cli(capfd, "run", "--mem", "64M", exe, "3")
    assert (code, out, err) == (3, HELLO_TEXT, "")


def test_a_program_larger_than_ram_is_refused_before_it_is_read(tmp_path, capfd):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(65 << 20)                # sparse: nothing is written
    code, out, err = run_cli(capfd, "run", "--mem", "64M", big)
    assert one_error_line(code, err) == f"ballast: PROGRAM: {big}: 65 MiB does not fit in 64 MiB of RAM"


def test_a_session_refuses_an_unbounded_timeout():
    from vmm.session import GuestSession
    session = GuestSession(MachineConfig(mem=64 << 20)).start()
    try:
        for value, message in ((1e300, "at most 1000000 s"), (math.nan, "finite"), (-1, "at least 0")):
            with pytest.raises(BallastError, match=f"^timeout_s: .*{message}"):
                session.advance(value)
            with pytest.raises(BallastError, match=f"^timeout_s: .*{message}"):
                session.wait_until(lambda: False, value)
        before = session.virtual_ns()
        session.advance(0.5)
        assert session.virtual_ns() - before >= 500_000_000
    finally:
        session.close()


def test_a_guest_names_its_27th_disk_as_linux_does():
    from guestos.drivers.virtio_blk import virtblk_name_format
    assert [virtblk_name_format(i) for i in (0, 25, 26, 27, 701, 702)] == \
        ["vda", "vdz", "vdaa", "vdab", "vdzz", "vdaaa"]


def test_an_argument_that_is_not_utf8_is_one_line(capfd):
    code, out, err = run_cli(capfd, "run", HELLO, "ok", "bad\udcff")
    assert one_error_line(code, err) == r"ballast: ARGS: bad\udcff: not UTF-8 text"


@pytest.mark.parametrize("value, message", [
    ("0", "must be positive, not 0"), ("-1", "must be positive, not -1"),
    ("nan", "must be a finite number of seconds, not nan"), ("inf", "must be a finite number of seconds, not inf"),
    ("1e300", f"at most {MAX_GUEST_SECONDS} s of guest time, not 1e+300"), ("soon", "'soon' is not a number of seconds"),
])
def test_bad_timeouts(capfd, value, message):
    code, out, err = run_cli(capfd, "run", f"--timeout={value}", HELLO)
    assert one_error_line(code, err) == f"ballast: --timeout: {message}"


_OPTION_VALUES = st.one_of(st.text(max_size=12), st.sampled_from(
    ["", "-", "0", "-1", "64M", "1e300", "nan", "inf", "1T", "x,ro", ",", "a,cache=", "a,profile=", "/dev/null",
     "/nonexistent/x", "loglevel=x", 'a="b', "--", "\udcff"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["--mem", "--cmdline", "--timeout", "--swap", "--disk", "--json",
                                           "--trace", "--trace-format", "--cache"]), _OPTION_VALUES), max_size=4))
def test_any_run_options_are_checked_before_the_program_is_read(capfd, options):
    """Whatever the options, nothing boots (PROGRAM does not exist): the answer is one line, exit 2."""
    argv = ["run"] + [f"{name}={value}" for name, value in options] + ["/nonexistent/program"]
    code, out, err = run_cli(capfd, *argv)
    one_error_line(code, err)
    assert out == ""


@pytest.mark.parametrize("argv", [["run", "--mem=--", "x"], ["run", "--disk=--", "x"], ["demo", "--png=--"]])
def test_a_double_dash_as_an_option_value_is_one_line(capfd, argv):
    """argparse drops a value of exactly '--' and leaves an empty list (it was an internal error)."""
    code, out, err = run_cli(capfd, *argv)
    assert one_error_line(code, err) == f"ballast: {argv[1].split('=')[0]}: '--' is not a value"


# --- ballast run --timeout ---------------------------------------------------------------------------

SPIN = "int main(void) { volatile unsigned long i = 0; for (;;) i++; }\n"
SLEEPER = "#include <unistd.h>\nint main(void) { sleep(1000); return 3; }\n"


@pytest.mark.parametrize("name, source", [("spin", SPIN), ("sleeper", SLEEPER)])
def test_timeout_ends_a_runaway_program_with_124(capfd, compile_c, tmp_path, name, source):
    exe = compile_c(source, name)
    out_json = tmp_path / "m.json"
    code, out, err = run_cli(capfd, "run", "--mem", "64M", "--timeout", "0.02", "--json", out_json, exe)
    assert code == 124
    assert err == f"ballast: {exe}: timed out after 0.02 s of guest time\n"
    data = json.loads(out_json.read_text())
    assert data["exit"] == {"stopped": "timeout"}
    assert data["virtual_ns"] >= 20_000_000             # guest time, not wall time
    if name == "spin":                                  # preempted at the deadline
        assert data["virtual_ns"] < 21_000_000
    # (nanosleep() charges its whole sleep at once in our kernel: the sleeper is stopped after it)


def test_a_program_that_ends_in_time_is_not_touched(capfd):
    code, out, err = run_cli(capfd, "run", "--mem", "64M", "--timeout", "5", HELLO, "7")
    assert (code, out, err) == (7, HELLO_TEXT, "")


# --- scenario files: random values at every key -----------------------------------------------------

VALID = {
    "description": "d",
    "machine": {"mem": "64M", "cmdline": "", "root": "builtin", "swap": "1M", "cache": "writeback",
                "balloon": {"features": ["MUST_TELL_HOST", "STATS_VQ"], "stats_interval_s": 1,
                            "on_violation": "record"},
                "root_read_only": False},
    "host": {"memory": "256M", "exclusive": False},
    "series": {"interval_s": 0.05},
    "step": [{"run": ["/bin/hello"], "timeout_s": 5}, {"balloon_mib": 8}, {"wait": "balloon", "timeout_s": 2},
             {"guest_mib": 32}, {"sleep": 0.5}, {"snapshot": "end"}],
}


def _key_paths(node, path=()):
    """Every key of VALID (and every list item), as a path of keys and indexes."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + (k,)
            yield from _key_paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield path + (i,)
            yield from _key_paths(v, path + (i,))


KEY_PATHS = list(_key_paths(VALID))

_SCALARS = st.one_of(
    st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e300, -1e300, 2**63, 2**64, "", "64M", "0", "-5M", "1e300", "builtin", "record",
                     "balloon", "/bin/hello", "loglevel=x", "vm.swappiness=abc", "STATS_VQ", "a\nb", "\x1f"]),
    st.text(max_size=20),
    st.just(datetime.datetime(1979, 5, 27, 7, 32)), st.just(datetime.date(1979, 5, 27)), st.just(datetime.time(7, 32)),
)
TOML_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=12)


def _with(data, path, value):
    import copy
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def _check_valid(spec):
    """What a spec that parses promises: a bootable machine and bounded, finite times."""
    from vmm.machine import MAX_MEM, MIN_MEM
    for m in spec.machines.values():
        assert MIN_MEM <= m.mem <= MAX_MEM
        check_cmdline(m.cmdline, m.mem)
        assert 0 <= m.stats_interval_s <= MAX_GUEST_SECONDS
    assert 0 <= spec.series_interval_s <= MAX_GUEST_SECONDS
    for step in spec.steps:
        assert step.timeout_s is None or 0 < step.timeout_s <= MAX_GUEST_SECONDS
        if step.action in ("sleep", "balloon_mib", "guest_mib"):
            assert math.isfinite(step.value) and 0 <= step.value <= MAX_GUEST_SECONDS


def test_the_valid_base_parses():
    _check_valid(sc.parse(VALID, "s.toml"))


@pytest.mark.parametrize("path", KEY_PATHS, ids=[".".join(map(str, p)) for p in KEY_PATHS])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(value=TOML_VALUES)
def test_any_value_at_any_scenario_key_is_a_one_line_error_or_a_valid_spec(tmp_path_factory, path, value):
    data = _with(VALID, path, value)
    try:
        spec = sc.parse(data, "s.toml", base_dir=str(tmp_path_factory.getbasetemp()))
    except BallastError as e:
        assert str(e).startswith("s.toml: "), e
        return
    _check_valid(spec)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["machine", "host", "series", "step", "description", "machines"]),
                       TOML_VALUES, max_size=4))
def test_any_top_level_shape_is_a_one_line_error_or_a_valid_spec(data):
    try:
        spec = sc.parse(data, "s.toml")
    except BallastError:
        return
    _check_valid(spec)


@pytest.mark.parametrize("text, message", [
    ('balloon = { features = [{a=1}] }', "machine.balloon.features: unknown balloon feature 'a table'"),
    ('cmdline = "loglevel=x"', "machine.cmdline: loglevel=x: not an integer"),
    ('cmdline = "vm.min_free_kbytes=999999999"', "machine.cmdline: vm.min_free_kbytes=999999999: out of range"),
    ('swap = "1T"', "machine.swap: at most 64 GiB"),
    ('balloon = { features = ["STATS_VQ"], stats_interval_s = 1e300 }',
     "machine.balloon.stats_interval_s: must be at most 1000000, not 1e+300"),
    ('balloon = { on_violation = ["stop"] }', "machine.balloon.on_violation: must be 'record' or 'stop'"),
    ('balloon = { features = ["STATS_VQ"], stats_interval_s = 1e-9 }',
     "machine.balloon.stats_interval_s: at least 0.01 s of guest time (or 0: off)"),
])
def test_bad_machine_values_in_a_scenario_file(tmp_path, capfd, text, message):
    path = tmp_path / "s.toml"
    path.write_text(f'[machine]\nmem = "64M"\n{text}\n[[step]]\nrun = ["/bin/hello"]\n')
    code, out, err = run_cli(capfd, "scenario", path)
    line = one_error_line(code, err)
    assert line.startswith(f"ballast: {path}: {message}"), line
    assert out == ""


@pytest.mark.parametrize("step, message", [
    ("timeout_s = 1e300", "step 1: timeout_s: must be at most 1000000, not 1e+300"),
    ("timeout_s = -1", "step 1: timeout_s: must be at least 0, not -1"),
    ("timeout_s = nan", "step 1: timeout_s: must be a finite number, not nan"),
    ("timeout_s = inf", "step 1: timeout_s: must be a finite number, not inf"),
])
def test_bad_timeouts_in_a_scenario_file(tmp_path, capfd, step, message):
    path = tmp_path / "s.toml"
    path.write_text(f'[machine]\nmem = "64M"\n[[step]]\nrun = ["/bin/hello"]\n{step}\n')
    code, out, err = run_cli(capfd, "scenario", path)
    assert one_error_line(code, err) == f"ballast: {path}: {message}"


def test_a_key_or_value_with_a_newline_is_shown_escaped_on_one_line(tmp_path, capfd):
    path = tmp_path / "s.toml"
    path.write_text('[machine]\nmem = "64M"\ncache = "fast\\nslow"\n"bad\\nkey" = 1\n[[step]]\nrun = ["/bin/hello"]\n')
    code, out, err = run_cli(capfd, "scenario", path)
    assert one_error_line(code, err) == f"ballast: {path}: machine: unknown key 'bad\\nkey' " \
                                        "(expected one of mem, cmdline, root, swap, cache, balloon, root_read_only)"
    assert one_line("a\nb\x1f\udcff é") == "a\\nb\\x1f\\udcff é"


def test_a_nul_in_a_program_argument_is_refused(tmp_path, capfd):
    path = tmp_path / "s.toml"
    path.write_text('[machine]\nmem = "64M"\n[[step]]\nrun = ["/bin/hello", "a\\u0000b"]\n')
    code, out, err = run_cli(capfd, "scenario", path)
    assert one_error_line(code, err) == \
        f"ballast: {path}: step 1: run: 'a\\x00b': arguments cannot hold newlines, NUL or 0x1f"


def test_deeply_nested_arrays_are_one_line(tmp_path, capfd):
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    code, out, err = run_cli(capfd, "scenario", path)
    assert one_error_line(code, err) == f"ballast: {path}: not valid TOML: arrays or tables nested too deeply"


def test_scenario_json_into_a_missing_directory_is_refused_first(tmp_path, capfd):
    code, out, err = run_cli(capfd, "scenario", tmp_path / "missing.toml", "--json", tmp_path / "no" / "o.json")
    assert one_error_line(code, err) == f"ballast: --json: directory '{tmp_path / 'no'}' does not exist"
