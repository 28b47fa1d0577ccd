"""The kernel trace (docs/trace.md): every event against the declared schema, every kind of event coming
from a scenario that takes every path (plain reclaim, each policy, dedup, the balloon both ways, swap,
readahead, OOM), the perfetto file against the Chrome trace event format, the same file from the same run
and from the compiled and uncompiled reclaim, a valid file when a run times out, and a traced run
computing exactly what an untraced one does."""
import collections
import hashlib
import json
import os
import re

import pytest

import cython_ext
import vmm.scenario  # noqa: F401  loaded here: pytester drops the modules a run imports, unicorn cannot load twice
from ballast_testlib import FIRMWARE, REPO
from guestos.kernel.tracepoint import EVENTS
from vmm import cli
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.swapdisk import make_swap_image
from vmm.trace import check_jsonl_event, schema_table

pytest_plugins = ["pytester"]
MiB = 1 << 20

# two guests on one host: a takes plain reclaim, the series' kswapd pass, cache-first balloon pages, swap,
# an OOM kill and deflate-on-OOM; b drops host-cached pages first (dedup) and deflates on request
EVERY_PATH = """
[machines.a]
mem = "64M"
swap = "16M"
cmdline = "unmapped_page_control virtio_balloon.cache_first=1"
balloon = { features = ["MUST_TELL_HOST", "DEFLATE_ON_OOM"] }

[machines.b]
mem = "64M"
cmdline = "pagecache_dedup"
balloon = { features = ["MUST_TELL_HOST"] }

[host]
memory = "512M"

[[step]]
on = "a"
run = ["/bin/seqread", "/data/mapped.bin"]
[[step]]
on = "a"
balloon_mib = 24
[[step]]
on = "a"
wait = "balloon"
[[step]]
on = "a"
run = ["/bin/memhog", "96M"]
[[step]]
on = "b"
run = ["/bin/seqread", "/data/mapped.bin"]
[[step]]
on = "b"
balloon_mib = 56
[[step]]
on = "b"
wait = "balloon"
[[step]]
on = "b"
balloon_mib = 0
[[step]]
on = "b"
wait = "balloon"
"""


def scenario_trace(tmp_path, fmt: str, name: str) -> bytes:
    toml = tmp_path / "every-path.toml"
    toml.write_text(EVERY_PATH)
    out = tmp_path / name
    assert cli.main(["scenario", str(toml), "--trace", str(out), "--trace-format", fmt]) == 0
    return out.read_bytes()


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """The scenario's trace: jsonl and perfetto, compiled; jsonl uncompiled."""
    tmp = tmp_path_factory.mktemp("trace")
    out = {"jsonl": scenario_trace(tmp, "jsonl", "compiled.jsonl"),
           "perfetto": scenario_trace(tmp, "perfetto", "compiled.json")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cython_ext, "PURE", True)
        out["jsonl pure"] = scenario_trace(tmp, "jsonl", "pure.jsonl")
    return out


def test_the_docs_table_is_the_declared_schema():
    doc = (REPO / "docs" / "trace.md").read_text()
    m = re.search(r"tests/test_trace.py checks it -->\n(.*?)<!-- end of the table -->", doc, re.S)
    assert m and m.group(1) == schema_table(), "docs/trace.md: regenerate the table with python -m vmm.trace"


def test_every_event_follows_the_schema_and_every_path_emits(traces):
    events = [json.loads(line) for line in traces["jsonl"].decode().splitlines()]
    problems = [p for e in events for p in check_jsonl_event(e)]
    assert not problems, problems[:5]
    assert set(EVENTS) == {e["name"] for e in events}             # every declared event came
    assert {e["machine"] for e in events} == {"a", "b"}
    decisions = collections.Counter((e["machine"], e["policy"], e["decision"], e["reason"]) for e in events
                                    if e["name"] == "mm_vmscan_page_decision")
    for expected in (("a", "none", "swapped-out", "cold"), ("a", "unmapped", "reclaimed", "clean"),
                     ("a", "cache_first", "reclaimed", "clean"), ("b", "dedup", "reclaimed", "host-cached"),
                     ("a", "none", "deactivated", "inactive-low")):
        assert decisions[expected], (expected, decisions)
    assert {e["reason"] for e in events if e["name"] == "virtio_balloon_leak"} == {"oom", "target"}
    assert {e["comm"] for e in events if e["name"] == "mm_vmscan_kswapd_wake"} == {"kswapd0"}
    assert {e["comm"] for e in events if e["name"] == "virtio_balloon_fill"} == {"vballoon"}


def test_a_pass_holds_its_decisions_and_counts_them(traces):
    """Between a pass's begin and end every decision of it carries its number and policy (kswapd's
    passes are preemptible: others may run in between), and the decisions that freed a page add up to
    the pass's nr_reclaimed."""
    open_passes = {}                            # (machine, pass_nr) -> [begin event, freed]
    for line in traces["jsonl"].decode().splitlines():
        e = json.loads(line)
        if e["name"] == "mm_vmscan_reclaim_pass_begin":
            open_passes[e["machine"], e["pass_nr"]] = [e, 0]
        elif e["name"] == "mm_vmscan_reclaim_pass_end":
            begin, freed = open_passes.pop((e["machine"], e["pass_nr"]))
            assert (begin["policy"], begin["pid"]) == (e["policy"], e["pid"])
            assert freed == e["nr_reclaimed"], (begin, e)
        elif e["name"] == "mm_vmscan_page_decision":
            begin = open_passes[e["machine"], e["pass_nr"]]
            assert (begin[0]["policy"], begin[0]["pid"]) == (e["policy"], e["pid"])
            begin[1] += e["decision"] in ("reclaimed", "swapped-out")
    assert not open_passes


def check_trace_event_format(data: bytes) -> collections.Counter:
    """The Chrome JSON trace event format as ui.perfetto.dev reads it; returns the phases seen."""
    doc = json.loads(data)
    events = doc["traceEvents"]
    phases = collections.Counter()
    named_processes, named_threads = set(), set()
    last_ts, open_slices = {}, collections.Counter()
    for e in events:
        for key in ("ph", "ts", "pid", "tid", "name"):
            assert key in e, (key, e)
        assert isinstance(e["ts"], (int, float)) and isinstance(e["pid"], int) and isinstance(e["tid"], int)
        ph = e["ph"]
        phases[ph] += 1
        if ph == "M":
            assert e["name"] in ("process_name", "thread_name") and isinstance(e["args"]["name"], str)
            (named_processes if e["name"] == "process_name" else named_threads).add(
                e["pid"] if e["name"] == "process_name" else (e["pid"], e["tid"]))
            continue
        assert e["pid"] in named_processes, e                 # its process was named before
        track = (e["pid"], e["tid"])
        assert e["ts"] >= last_ts.get(track, 0), e            # monotonic per track
        last_ts[track] = e["ts"]
        if ph == "C":
            assert e["args"] and all(type(v) in (int, float) for v in e["args"].values()), e
        else:
            assert ph in ("i", "B", "E") and track in named_threads, e
            assert isinstance(e["args"], dict)
            if ph == "i":
                assert e["s"] == "t"
            open_slices[track] += 1 if ph == "B" else -1 if ph == "E" else 0
            assert open_slices[track] >= 0, e
    assert not +open_slices                                       # every slice ended
    return phases


def test_the_perfetto_file_is_the_trace_event_format(traces):
    phases = check_trace_event_format(traces["perfetto"])
    assert phases["i"] > 1000 and phases["B"] == phases["E"] > 100 and phases["C"] > 100
    events = json.loads(traces["perfetto"])["traceEvents"]
    counters = {e["name"] for e in events if e["ph"] == "C"}
    assert counters == {"nr_free_pages", "file_lru_pages", "anon_lru_pages", "balloon_pages", "host_cache_pages",
                        "duplicated_pages"}
    threads = {e["args"]["name"].split(" [")[0] for e in events if e["name"] == "thread_name"}
    assert {"kswapd0", "vballoon", "seqread", "memhog"} <= threads
    assert {e["args"]["name"] for e in events if e["name"] == "process_name"} == {"a", "b"}
    # the counters follow the guest: the balloon's size rises to 56 MiB in b
    balloon = [e["args"]["pages"] for e in events if e["name"] == "balloon_pages" and e["pid"] == 2]
    assert max(balloon) == 56 * 256
    assert max(e["args"]["pages"] for e in events if e["name"] == "duplicated_pages") > 0


def test_the_same_run_writes_the_same_trace_compiled_or_not(traces):
    assert traces["jsonl"] == traces["jsonl pure"]


def test_a_run_that_times_out_leaves_a_valid_perfetto_file_the_same_each_time(tmp_path, capfd):
    files = []
    for name in ("t.json", "again.json"):
        out = tmp_path / name
        code = cli.main(["run", "--mem", "24M", "--swap", "32M", "--timeout", "0.02", "--trace", str(out),
                         "--trace-format", "perfetto", str(FIRMWARE / "memhog"), "32M", "1000"])
        assert code == 124
        files.append(out.read_bytes())
    phases = check_trace_event_format(files[0])
    assert phases["i"] > 100 and phases["C"]
    assert files[0] == files[1]


@pytest.mark.parametrize("command", ["run", "scenario"])
@pytest.mark.parametrize("options, message", [
    (["--trace-format", "xml"], "--trace-format: unknown format 'xml' (one of jsonl, perfetto)"),
    (["--trace", "-"], "--trace: a file, not '-' (stdout carries the guest's output)"),
    (["--trace", "/nonexistent/t.json"], "--trace: directory '/nonexistent' does not exist")])
def test_a_bad_trace_option_is_one_line_before_anything_runs(tmp_path, capfd, command, options, message):
    target = str(FIRMWARE / "hello") if command == "run" else str(REPO / "examples" / "balloon.toml")
    argv = [command, *options, target]
    if "--trace" not in options:
        argv[1:1] = ["--trace", str(tmp_path / "t")]
    code = cli.main(argv)
    out, err = capfd.readouterr()
    assert code == 2 and err == f"ballast: {message}\n" and "step" not in out
    assert not (tmp_path / "t").exists()


def _swapping_guest(trace: list = None) -> dict:
    swap = make_swap_image(64 * MiB)
    try:
        m = Machine(MachineConfig(mem=24 * MiB, cmdline="swap=/dev/vda", disks=[DiskConfig(swap)]))
        if trace is not None:
            m.add_trace_sink(trace.append)
        m.load((FIRMWARE / "memhog").read_bytes(), "/bin/memhog", ["32M", "1"])
        status = m.boot()
        k = m.kernel
        out = dict(status=status, console=bytes(m.console_output), vmstat=k.vmstat_snapshot(),
                   ns=m.clock.now_ns(), ram=hashlib.sha256(k.ram).hexdigest())
        m.close()
    finally:
        os.unlink(swap)
    return out


def test_tracing_changes_nothing_the_guest_computes():
    trace = []
    assert _swapping_guest(trace) == _swapping_guest()
    assert len(trace) > 1000


def test_the_plugin_traces_a_guest(pytester):
    from test_pytest_plugin import run
    pytester.makeconftest("")
    result = run(pytester, """
def test_squeeze(ballast_vm):
    vm = ballast_vm(mem="64M", trace="guest.json", trace_format="perfetto")
    vm.run(["/bin/seqread", "/data/mapped.bin"])
    vm.set_balloon_mib(56)
    assert vm.wait_balloon()
""", "-q")
    result.assert_outcomes(passed=1)
    data = (pytester.path / "guest.json").read_bytes()
    check_trace_event_format(data)
    names = {e["name"] for e in json.loads(data)["traceEvents"]}
    assert {"virtio_balloon_fill", "mm_filemap_add_to_page_cache", "reclaim pass"} <= names
