"""`ballast scenario`: the file format's errors (one line naming the key), running steps,
the JSON it writes, and determinism."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ballast_testlib import REPO
from vmm import cli
from vmm import scenario as sc
from vmm.errors import BallastError

EXAMPLE = REPO / "examples" / "balloon.toml"
BALLOON = 'balloon = { features = ["MUST_TELL_HOST", "STATS_VQ"] }'


def write(tmp_path, text: str, name="s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run_cli(capfd, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return code, out, err


def one_error_line(code, err) -> str:
    assert code == 2
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ballast: "), err
    return lines[0]


# --- mistakes in a file: one line naming the key, before anything boots --------------------------

MACHINE = '[machine]\nmem = "64M"\n' + BALLOON + "\n"
STEP = '[[step]]\nsnapshot = "s"\n'

BAD_FILES = [
    # (file text, what the one line must say)
    ("[machine\nmem = 1", r"not valid TOML.*line 1"),
    ('mem = "64M"\n' + STEP, r"unknown top-level key 'mem'"),
    (STEP, r"no \[machine\] table"),
    ('machine = 3\n' + STEP, r"machine: must be a table"),
    ('[machine]\ncmdline = ""\n' + STEP, r"machine\.mem: missing"),
    ('[machine]\nmem = "lots"\n' + STEP, r"machine\.mem: cannot read 'lots' as a size"),
    ('[machine]\nmem = true\n' + STEP, r"machine\.mem: must be a size .* not a boolean"),
    ('[machine]\nmem = "1M"\n' + STEP, r"machine\.mem: 1 MiB is too small"),
    ('[machine]\nmem = "64G"\n' + STEP, r"machine\.mem: .* too large"),
    ('[machine]\nmem = "65537K"\n' + STEP, r"machine\.mem: must be a multiple of 4K"),
    ('[machine]\nmem = "64M"\nmemory = "1G"\n' + STEP, r"machine: unknown key 'memory'"),
    ('[machine]\nmem = "64M"\ncmdline = 3\n' + STEP, r"machine\.cmdline: must be a string, not an integer"),
    ('[machine]\nmem = "64M"\nroot = "no/such/dir"\n' + STEP, r"machine\.root: .*no/such/dir does not exist"),
    ('[machine]\nmem = "64M"\nroot = ["a"]\n' + STEP, r"machine\.root: must be a string, not an array"),
    ('[machine]\nmem = "64M"\nswap = "1K"\n' + STEP, r"machine\.swap: must be a multiple of 4K and at least"),
    ('[machine]\nmem = "64M"\nswap = "-5M"\n' + STEP, r"machine\.swap: "),
    ('[machine]\nmem = "64M"\ncache = "fast"\n' + STEP, r"machine\.cache: unknown cache mode 'fast'"),
    ('[machine]\nmem = "64M"\nballoon = ["STATS_VQ"]\n' + STEP, r"machine\.balloon: must be a table"),
    ('[machine]\nmem = "64M"\nballoon = { features = ["STATS"] }\n' + STEP,
     r"machine\.balloon\.features: unknown balloon feature 'STATS' \(one of MUST_TELL_HOST"),
    ('[machine]\nmem = "64M"\nballoon = { features = "STATS_VQ" }\n' + STEP,
     r"machine\.balloon\.features: must be a list"),
    ('[machine]\nmem = "64M"\nballoon = { features = [1] }\n' + STEP,
     r"machine\.balloon\.features: unknown balloon feature '1'"),
    ('[machine]\nmem = "64M"\nballoon = { feature = [] }\n' + STEP, r"machine\.balloon: unknown key 'feature'"),
    ('[machine]\nmem = "64M"\nballoon = { features = ["STATS_VQ"], stats_interval_s = -1 }\n' + STEP,
     r"machine\.balloon\.stats_interval_s: must be at least 0"),
    ('[machine]\nmem = "64M"\nballoon = { features = ["STATS_VQ"], stats_interval_s = "1s" }\n' + STEP,
     r"machine\.balloon\.stats_interval_s: must be a number, not a string"),
    ('[machine]\nmem = "64M"\nballoon = { features = [], stats_interval_s = 1 }\n' + STEP,
     r"machine\.balloon\.stats_interval_s: needs a balloon with the STATS_VQ feature"),
    ('[machine]\nmem = "64M"\nballoon = { on_violation = "panic" }\n' + STEP,
     r"machine\.balloon\.on_violation: must be 'record' or 'stop'"),
    (MACHINE + '[host]\nmemory = "32M"\n' + STEP, r"host\.memory: 32 MiB leaves no host page cache"),
    (MACHINE + '[host]\nmemory = "64M"\n' + STEP, r"host\.memory: 64 MiB leaves no host page cache"),
    (MACHINE + '[host]\ncpus = 2\n' + STEP, r"host: unknown key 'cpus'"),
    ('host = "big"\n' + MACHINE + STEP, r"host: must be a table"),
    (MACHINE, r"no steps: add \[\[step\]\]"),
    (MACHINE + '[step]\nsnapshot = "s"\n', r"step: must be an array of tables: write \[\[step\]\]"),
    (MACHINE + '[[step]]\n', r"step 1: no action"),
    (MACHINE + STEP + '[[step]]\nrun = ["/bin/hello"]\nsnapshot = "x"\n', r"step 2: has both run and snapshot"),
    (MACHINE + '[[step]]\nrn = ["/bin/hello"]\n', r"step 1: unknown key 'rn'"),
    (MACHINE + '[[step]]\nrun = "/bin/hello"\n', r"step 1: run: must be a non-empty list of strings"),
    (MACHINE + '[[step]]\nrun = []\n', r"step 1: run: must be a non-empty list"),
    (MACHINE + '[[step]]\nrun = ["/bin/memhog", 64]\n', r"step 1: run: every item must be a string, not an integer"),
    (MACHINE + '[[step]]\nrun = ["memhog"]\n', r"step 1: run: the program must be an absolute path"),
    (MACHINE + '[[step]]\nrun = ["/bin/hello", "a\\nb"]\n', r"step 1: run: .* cannot hold newlines"),
    (MACHINE + '[[step]]\nrun = [' + ", ".join(['"x"'] * 70).replace('"x"', '"/bin/hello"', 1) + ']\n',
     r"step 1: run: too many arguments"),
    (MACHINE + '[[step]]\nrun = ["/bin/hello", "' + "x" * 5000 + '"]\n', r"step 1: run: the command is too long"),
    (MACHINE + '[[step]]\nrun = ["/bin/hello"]\ntimeout_s = 0\n', r"step 1: timeout_s: must be positive"),
    (MACHINE + '[[step]]\nrun = ["/bin/hello"]\ntimeout_s = "1"\n', r"step 1: timeout_s: must be a number"),
    (MACHINE + '[[step]]\nsnapshot = "a"\ntimeout_s = 3\n', r"step 1: timeout_s: only run and wait steps"),
    (MACHINE + '[[step]]\nballoon_mib = 65\n', r"step 1: balloon_mib: a balloon of 65 MiB is bigger than the guest"),
    (MACHINE + '[[step]]\nballoon_mib = 8\nhint = "cache"\n', r"step 1: hint: needs the balloon feature RECLAIM_CACHE_FIRST"),
    (MACHINE + '[[step]]\nsleep = 1\nhint = "cache"\n', r"step 1: hint: only balloon_mib and guest_mib steps take a hint"),
    (MACHINE + '[[step]]\nballoon_mib = 8\nhint = "free"\n', r"step 1: hint: unknown hint 'free' \(only 'cache'\)"),
    (MACHINE + '[[step]]\nballoon_mib = -1\n', r"step 1: balloon_mib: must be at least 0"),
    (MACHINE + '[[step]]\nballoon_mib = "32M"\n', r"step 1: balloon_mib: must be a number, not a string"),
    (MACHINE + '[[step]]\nballoon_mib = true\n', r"step 1: balloon_mib: must be a number, not a boolean"),
    (MACHINE + '[[step]]\nballoon_mib = nan\n', r"step 1: balloon_mib: must be a finite number"),
    (MACHINE + '[[step]]\nguest_mib = 0\n', r"step 1: guest_mib: must be more than 0"),
    (MACHINE + '[[step]]\nguest_mib = 128\n', r"step 1: guest_mib: must be more than 0 and at most the guest's 64"),
    ('[machine]\nmem = "64M"\n[[step]]\nballoon_mib = 8\n', r"step 1: balloon_mib: this machine has no balloon"),
    ('[machine]\nmem = "64M"\n[[step]]\nwait = "balloon"\n', r"step 1: wait: this machine has no balloon"),
    (MACHINE + '[[step]]\nwait = "forever"\n', r"step 1: wait: unknown wait 'forever' \(one of 'balloon'\)"),
    (MACHINE + '[[step]]\nsleep = -2\n', r"step 1: sleep: must be at least 0"),
    (MACHINE + '[[step]]\nsnapshot = ""\n', r"step 1: snapshot: must be a non-empty name"),
    (MACHINE + '[[step]]\nsnapshot = 1\n', r"step 1: snapshot: must be a non-empty name"),
    (MACHINE + STEP + STEP, r"step 2: snapshot: the name 's' is already taken"),
    (MACHINE + 'description = 5\n' + STEP, r"machine: unknown key 'description'"),
    ('description = 5\n' + MACHINE + STEP, r"description: must be a string"),
    (MACHINE + '[[step]]\nsnapshot = "a"\n[[step]]\nbogus = 1\n', r"step 2: unknown key 'bogus'"),
]


@pytest.mark.parametrize("text, message", BAD_FILES, ids=[f"bad{i}" for i in range(len(BAD_FILES))])
def test_a_bad_file_is_one_line_naming_the_key(tmp_path, capfd, text, message):
    path = write(tmp_path, text)
    code, out, err = run_cli(capfd, "scenario", path)
    line = one_error_line(code, err)
    assert re.search(message, line), line
    assert line.startswith(f"ballast: {path}: ")
    assert out == ""


def test_a_missing_file_and_a_directory_and_binary_junk(tmp_path, capfd):
    code, _, err = run_cli(capfd, "scenario", tmp_path / "nope.toml")
    assert "No such file or directory" in one_error_line(code, err)
    code, _, err = run_cli(capfd, "scenario", tmp_path)
    assert "nope" not in one_error_line(code, err)
    junk = tmp_path / "junk.toml"
    junk.write_bytes(b"\xff\xfe\x00 = 1\n")
    code, _, err = run_cli(capfd, "scenario", junk)
    assert "not valid TOML" in one_error_line(code, err)


def test_json_into_a_missing_directory_is_refused_before_running(tmp_path, capfd):
    code, out, err = run_cli(capfd, "scenario", EXAMPLE, "--json", tmp_path / "no" / "out.json")
    assert "--json" in one_error_line(code, err)
    assert out == ""


def test_scenario_needs_a_file(capfd):
    code, _, err = run_cli(capfd, "scenario")
    assert "FILE.toml" in one_error_line(code, err)


def test_parse_keeps_steps_in_order_with_their_numbers():
    spec = sc.parse({"machine": {"mem": "64M", "balloon": {"features": ["STATS_VQ", "REPORTING"]}},
                     "step": [{"run": ["/bin/hello"]}, {"balloon_mib": 16}, {"wait": "balloon", "timeout_s": 5},
                              {"sleep": 1.5}, {"guest_mib": 48}, {"snapshot": "x"}]})
    assert [(s.number, s.action) for s in spec.steps] == [
        (1, "run"), (2, "balloon_mib"), (3, "wait"), (4, "sleep"), (5, "guest_mib"), (6, "snapshot")]
    assert spec.steps[2].timeout_s == 5
    assert spec.machine.balloon_features == (1 << 1) | (1 << 5)
    assert spec.machine.mem == 64 << 20 and spec.machine.root == "builtin"
    assert spec.snapshot_names == ["x"]


def test_a_relative_root_is_relative_to_the_file(tmp_path):
    (tmp_path / "tree").mkdir()
    path = write(tmp_path, '[machine]\nmem = "64M"\nroot = "tree"\n' + STEP)
    assert sc.load(str(path)).machine.root == str(tmp_path / "tree")


# --- running --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def example_results(tmp_path_factory):
    """The shipped example, run twice through the CLI."""
    out = tmp_path_factory.mktemp("example")
    results = []
    for i in range(2):
        assert cli.main(["scenario", str(EXAMPLE), "--json", str(out / f"{i}.json")]) == 0
        results.append(json.loads((out / f"{i}.json").read_text()))
    return results


def test_example_inflates_and_deflates(example_results):
    r = example_results[0]
    assert list(r["snapshots"]) == ["before", "inflated", "deflated"]
    before, inflated, deflated = (r["snapshots"][n] for n in ("before", "inflated", "deflated"))
    assert inflated["balloon"]["target_pages"] == inflated["balloon"]["actual_pages"] == 64 * 256
    assert deflated["balloon"]["actual_pages"] == 0
    assert inflated["guest"]["MemFree"] <= before["guest"]["MemFree"] - 0.85 * 64 * 1024
    assert deflated["guest"]["MemFree"] >= before["guest"]["MemFree"] - 1024
    # DEFLATE_ON_OOM is on: inflated pages stay in MemTotal
    assert inflated["guest"]["MemTotal"] == before["guest"]["MemTotal"]
    assert inflated["balloon"]["stats"]["free-memory"] < before["balloon"]["stats"]["free-memory"]
    assert inflated["host"]["cache_capacity_pages"] == (512 - 128) * 256
    assert deflated["time"]["virtual_ns"] >= inflated["time"]["virtual_ns"] + 2 * 10**9
    e = r["exit"]
    assert e["ok"] and e["error"] is None and e["waits_met"]
    assert e["steps"] == e["steps_run"] == 9
    assert e["violations"] == 0
    assert e["last_run"]["argv"] == ["/bin/memhog", "48M"] and e["last_run"]["exit_code"] == 0
    assert "12288 pages verified" in e["last_run"]["output"]
    assert [w["step"] for w in e["waits"]] == [4, 7]


def test_everything_but_rss_and_wall_time_repeats(example_results):
    first, second = (sc.without_host_noise(r) for r in example_results)
    assert first == second
    assert "rss_bytes" not in json.dumps(first) and "wall_s" not in json.dumps(first)
    assert all("rss_bytes" in s["host"] for s in example_results[0]["snapshots"].values())


def test_another_process_with_another_hash_seed_gets_the_same(example_results, tmp_path):
    out = tmp_path / "r.json"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run([sys.executable, "-m", "vmm.cli", "scenario", str(EXAMPLE), "--json", str(out)],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    assert sc.without_host_noise(json.loads(out.read_text())) == sc.without_host_noise(example_results[0])


def test_summary_lists_steps_and_a_column_per_snapshot(capfd):
    code, out, err = run_cli(capfd, "scenario", EXAMPLE)
    assert code == 0
    assert "step  1  run /bin/memhog 48M" in out and "exit 0" in out
    assert "wait balloon" in out and "met after" in out
    header = next(line for line in out.splitlines() if "before" in line and "inflated" in line)
    assert header.index("before") < header.index("inflated") < header.index("deflated")
    assert "MemFree" in out and "RSS" in out
    assert out.rstrip().splitlines()[-1].startswith("ok: 9 of 9 steps") or "ok: 9 of 9 steps" in out
    assert "Traceback" not in err


def test_json_to_stdout_is_pure_json(capfd):
    code, out, err = run_cli(capfd, "scenario", EXAMPLE, "--json", "-")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"snapshots", "exit"}
    assert set(data["snapshots"]["inflated"]) == {"guest", "vmstat", "balloon", "host", "time", "oracle", "policy", "cpu",
                                                  "ram", "disk"}
    assert "inflated" in err                # the summary went to stderr


def run_text(tmp_path, text: str) -> dict:
    return sc.run(sc.load(str(write(tmp_path, text))))


def test_without_snapshots_there_is_one_at_the_end(tmp_path):
    r = run_text(tmp_path, '[machine]\nmem = "64M"\n[[step]]\nrun = ["/bin/hello", "3"]\n')
    assert list(r["snapshots"]) == ["end"]
    assert r["snapshots"]["end"]["balloon"] == {}
    assert r["exit"]["last_run"]["exit_code"] == 3
    assert r["exit"]["last_run"]["output"] == "Hello from the Ballast guest!\n"
    assert r["exit"]["ok"]                  # a failing program is reported, not a failed scenario


def test_guest_size_and_a_missing_program(tmp_path):
    r = run_text(tmp_path, MACHINE + '[[step]]\nguest_mib = 40\n[[step]]\nwait = "balloon"\n'
                 '[[step]]\nrun = ["/bin/nothing-here"]\n[[step]]\nsnapshot = "s"\n')
    snap = r["snapshots"]["s"]
    assert snap["balloon"]["target_pages"] == snap["balloon"]["actual_pages"] == (64 - 40) * 256
    # without DEFLATE_ON_OOM the balloon leaves MemTotal
    assert snap["guest"]["MemTotal"] <= 40 * 1024
    assert r["exit"]["last_run"]["exit_code"] == 127


def test_a_wait_that_is_not_met_fails_the_scenario(tmp_path, capfd):
    # the whole guest cannot go into its balloon: the driver backs off and the wait times out
    path = write(tmp_path, MACHINE + '[[step]]\nballoon_mib = 64\n[[step]]\nwait = "balloon"\ntimeout_s = 2\n'
                 '[[step]]\nsnapshot = "s"\n')
    code, out, err = run_cli(capfd, "scenario", path, "--json", tmp_path / "r.json")
    assert code == 1
    assert "NOT met within 2 s" in out and "not ok" in out
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["exit"]["waits_met"] is False and r["exit"]["ok"] is False
    assert r["exit"]["waits"][0]["met"] is False
    assert r["exit"]["steps_run"] == 3
    assert r["snapshots"]["s"]["balloon"]["actual_pages"] < 64 * 256


def test_a_program_that_outlives_its_timeout_is_one_line_and_the_json_says_so(tmp_path, capfd):
    path = write(tmp_path, MACHINE + STEP + '[[step]]\nrun = ["/bin/compute", "100000000000"]\ntimeout_s = 0.01\n')
    code, out, err = run_cli(capfd, "scenario", path, "--json", tmp_path / "r.json")
    assert "did not finish within 0.01 s of guest time" in one_error_line(code, err)
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["exit"]["error"] and r["exit"]["steps_run"] == 1 and list(r["snapshots"]) == ["s"]


def test_swap_and_a_host_budget(tmp_path):
    r = run_text(tmp_path, '[machine]\nmem = "64M"\nswap = "8M"\ncache = "none"\n' + BALLOON
                 + '\n[host]\nmemory = "96M"\n[[step]]\nrun = ["/bin/seqread", "/data/mapped.bin"]\n'
                 '[[step]]\nsnapshot = "s"\n')
    snap = r["snapshots"]["s"]
    assert snap["guest"]["SwapTotal"] > 7 * 1024
    assert snap["host"]["cache_capacity_pages"] == 32 * 256
    assert snap["host"]["cache_pages"] <= 32 * 256


def test_stats_are_polled_and_sleep_advances_guest_time(tmp_path):
    r = run_text(tmp_path, '[machine]\nmem = "64M"\nballoon = { features = ["STATS_VQ"], stats_interval_s = 1 }\n'
                 '[[step]]\nsnapshot = "a"\n[[step]]\nsleep = 3\n[[step]]\nsnapshot = "b"\n')
    a, b = r["snapshots"]["a"], r["snapshots"]["b"]
    assert b["time"]["virtual_ns"] - a["time"]["virtual_ns"] >= 3 * 10**9
    assert set(b["balloon"]["stats"]) >= {"swap-in", "free-memory", "available-memory", "oom-kills"}


ISSUE_EXAMPLE = """
[machine]
mem = "512M"
cmdline = ""                 # extra kernel command line
root = "builtin"             # or a directory or an ext2 image
swap = "256M"                # optional
cache = "writeback"          # host cache mode of the root disk
balloon = { features = ["MUST_TELL_HOST", "STATS_VQ", "DEFLATE_ON_OOM"], stats_interval_s = 1 }
[host]
memory = "2G"                # optional host budget: guest RSS + host page cache
[[step]]
run = ["/bin/memhog", "64M"] # runs in the guest to completion
[[step]]
balloon_mib = 128            # balloon size; `guest_mib = N` sets the guest size instead
[[step]]
wait = "balloon"             # until actual == target, bounded in virtual time
[[step]]
snapshot = "inflated"
"""


def test_the_format_as_the_issue_wrote_it(tmp_path):
    r = run_text(tmp_path, ISSUE_EXAMPLE)
    snap = r["snapshots"]["inflated"]
    assert snap["balloon"]["actual_pages"] == 128 * 256
    assert snap["guest"]["SwapTotal"] > 250 * 1024
    assert snap["host"]["cache_capacity_pages"] == (2048 - 512) * 256
    assert r["exit"]["ok"]


def test_boot_errors_name_the_scenario_key():
    with pytest.raises(BallastError, match="features"):
        sc.MachineSpec.from_options(balloon=["NOPE"])


# --- several machines on one host (issue 7) ---

def test_two_guests_share_a_host_and_the_oracle_sees_both():
    spec = sc.load(str(REPO / "examples" / "two-guests.toml"))
    assert list(spec.machines) == ["a", "b"] and spec.several
    result = sc.run(spec)
    assert result["exit"]["ok"]
    both = result["snapshots"]["both-read"]
    assert set(both) == {"machines", "host", "time"}
    a, b = both["machines"]["a"], both["machines"]["b"]
    assert a["oracle"]["files"]["/data/mapped.bin"] == 4096 == b["oracle"]["files"]["/data/mapped.bin"]
    assert both["host"]["pages_in_several_guests"] >= 4096
    assert both["host"]["duplicated_pages"] == a["oracle"]["duplicated_pages"] + b["oracle"]["duplicated_pages"]
    # b read through the host cache a filled: its own cache-stat charge cannot show it
    assert b["oracle"]["estimated_duplicated_pages"] < b["oracle"]["duplicated_pages"]
    assert a["policy"]["unmapped_page_control"] == "kswapd" and b["policy"]["unmapped_page_control"] == "none"
    squeezed = result["snapshots"]["b-squeezed"]["machines"]
    assert squeezed["b"]["balloon"]["actual_pages"] == 96 * 256 and squeezed["a"]["balloon"]["actual_pages"] == 0
    series = result["series"]
    assert {p["machine"] for p in series} == {"a", "b"} and len(series) >= 4
    assert max(p["duplicated_pages"] for p in series) >= 8192


def test_several_machines_errors_name_the_key(tmp_path):
    def check(text, message):
        path = tmp_path / "s.toml"
        path.write_text(text)
        with pytest.raises(BallastError, match=message):
            sc.load(str(path))
    two = '[machines.a]\nmem = "64M"\n[machines.b]\nmem = "64M"\n'
    check(two + '[[step]]\nrun = ["/bin/hello"]\n', r"step 1: on: which machine\? \(one of a, b\)")
    check(two + '[[step]]\non = "c"\nrun = ["/bin/hello"]\n', r"step 1: on: unknown machine 'c'")
    check(two + '[[step]]\non = "a"\nsnapshot = "x"\n', "a snapshot takes every machine")
    check('[machine]\nmem = "64M"\n' + two + '[[step]]\nsnapshot = "x"\n', "both \\[machine\\] and")
    check('[machine]\nmem = "64M"\n[[step]]\non = "guest"\nsnapshot = "x"\n', "only one machine")
    check(two + '[host]\nmemory = "100M"\n[[step]]\nsnapshot = "x"\n', "host.memory: 100 MiB leaves no host page cache")
    check(two + '[host]\nexclusive = "yes"\n[[step]]\nsnapshot = "x"\n', "host.exclusive: must be true or false")
    check('[machines.a]\nmem = "64M"\nroot_read_only = 1\n[[step]]\nsnapshot = "x"\n',
          "machines.a.root_read_only: must be true or false")
    check('[machine]\nmem = "64M"\n[series]\ninterval_s = 0.001\n[[step]]\nsnapshot = "x"\n',
          "series.interval_s: at least 0.01")


def test_exclusive_host_in_a_scenario(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('[machine]\nmem = "96M"\n[host]\nexclusive = true\n'
                    '[[step]]\nrun = ["/bin/seqread", "/data/mapped.bin"]\n[[step]]\nsnapshot = "read"\n')
    snap = sc.run(sc.load(str(path)))["snapshots"]["read"]
    assert snap["host"]["demoted_pages"] >= 4096 and snap["oracle"]["duplicated_pages"] == 0
