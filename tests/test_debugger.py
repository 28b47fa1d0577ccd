"""The kernel debugger (vmm/debugger.py, `ballast debug`): breakpoints on tracepoints with conditions,
step/finish/continue/quit, the views at a stop, one-line mistakes, `machine.debugger` from Python; the
same events compiled and uncompiled; stopping and looking never change what the guest computes; and
pdb finds the uncompiled modules by their own names (BALLAST_PURE=1)."""
import io
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from ballast_testlib import REPO
from guestos.mm.lru import LRU_INACTIVE_FILE
from vmm.debugger import Debugger, DebuggerError
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.rootfs import builtin_root

MiB = 1 << 20
# a 32 MiB guest streams a 64 MiB file: reclaim of the file LRU from about 0.14 s of guest time
PROGRAM = ["/bin/seqread", "/data/stream.bin"]
RUN = ["run", "--mem", "32M", "--root", "builtin", *PROGRAM]


@pytest.fixture(scope="module")
def root():
    return builtin_root()


def machine(root):
    m = Machine(MachineConfig(mem=32 * MiB, disks=[DiskConfig(root, snapshot=True)]))
    m.load(None, PROGRAM[0], PROGRAM[1:], root_device="/dev/vda")
    return m


def outcome(m, status):
    return (status, bytes(m.console_output), m.clock.now_ns(), m.cpu.icount, m.kernel.vmstat_snapshot(),
            m.kernel.meminfo())


def ballast(args, stdin="", env=None):
    return subprocess.run([sys.executable, "-m", "vmm.cli", *args], input=stdin, capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=300)


def test_break_with_condition_stops_at_that_page_and_shows_it(root):
    m = machine(root)
    dbg = m.debugger
    stops = []

    def on_stop(d, stop):
        stops.append((stop.event, d.execute("page"), stop.breakpoint and stop.breakpoint.number))
        if len(stops) == 1:
            d.step()                              # the next event: the decision about this page
    dbg.on_stop = on_stop
    bp = dbg.break_on("mm_filemap_delete_from_page_cache", "file == '/data/stream.bin' and index == 300")
    assert m.boot() == 0
    assert len(stops) == 2 and bp.hits == 1
    event, page, number = stops[0]
    assert number == bp.number and event["index"] == 300
    pfn = event["pfn"]
    assert f"page {pfn:#x}" in page
    assert "file: /data/stream.bin offset 0x12c000 (page 300)" in page
    assert "lru: inactive_file, " in page and "from the tail" in page
    assert "host cache: holds this disk page too" in page
    decision, page_after, _ = stops[1]
    assert decision["name"] == "mm_vmscan_page_decision" and decision["pfn"] == pfn
    assert decision["decision"] == "reclaimed" and decision["reason"] == "clean"
    assert "last decision: reclaimed (clean)" in page_after and "[buddy]" in page_after


def test_finish_runs_to_the_end_of_the_reclaim_pass(root):
    m = machine(root)
    dbg = m.debugger
    seen = []

    def on_stop(d, stop):
        seen.append(stop)
        if stop.why == "breakpoint":
            d.finish()              # a breakpoint on the way ends a finish, as in gdb: finish again
    dbg.on_stop = on_stop
    dbg.break_on("mm_vmscan_page_decision", "pass_nr == 3")
    m.boot()
    first = seen[0]
    end = next(s for s in seen[1:] if s.why == "finish")
    assert first.why == "breakpoint" and first.event["pass_nr"] == 3
    assert end.event["name"] == "mm_vmscan_reclaim_pass_end" and end.event["pass_nr"] == 3
    # every stop between was the breakpoint (pass 3's own decisions), none of another pass
    assert all(s.why == "breakpoint" and s.event["pass_nr"] == 3 for s in seen[1:seen.index(end)])
    names = [(e["name"], e.get("pass_nr")) for _, e in dbg.history]
    assert names.index(("mm_vmscan_reclaim_pass_end", 3)) > names.index(("mm_vmscan_page_decision", 3))


def test_mistakes_are_one_line_and_the_session_goes_on():
    dbg = Debugger(out=io.StringIO())
    for bad, says in [("break mm_vmscan_nosuch", "unknown event"), ("break", "which event"),
                      ("break mm_vmscan_writepage if pfn ==", "bad condition"),
                      ("break mm_vmscan_writepage if __import__('os')", "call is not allowed"),
                      ("break mm_vmscan_writepage if pfn.real", "attribute is not allowed"),
                      ("break mm_zzz_*", "no event matches"),
                      ("break mm_vmscan_writepage if nr_scanned > 3", "'nr_scanned' is not a field of mm_vmscan_writepage"),
                      ("break mm_swap_* if decision", "not a field of any event matching mm_swap_"), ("frobnicate", 'Undefined command: "frobnicate"'),
                      ("delete 7", "No breakpoint number 7"), ("delete x", "not a breakpoint number"),
                      ("page 12", "not started"), ("trace x", "not a number"), ("info frames", "info breakpoints")]:
        with pytest.raises(DebuggerError, match=says) as e:
            dbg.execute(bad)
        assert "\n" not in str(e.value)
    assert dbg.execute("break mm_vmscan_writepage if pfn == 123").startswith("Breakpoint 1 at")
    assert "1       tracepoint     keep y   mm_vmscan_writepage if pfn == 123" in dbg.execute("info breakpoints")


def test_ballast_debug_run_from_a_commands_file(tmp_path, root):
    commands = tmp_path / "cmds"
    commands.write_text(textwrap.dedent("""\
        break mm_vmscan_page_decision if decision == 'reclaimed' and file == '/data/stream.bin'
        bogus
        continue
        page 0x99999999
        page
        trace 2
        zone
        lru
        host
        ps
        meminfo
        info breakpoints
        delete 1
        continue
        """))
    r = ballast(["debug", "--commands", str(commands), *RUN])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Breakpoint 1, mm_vmscan_page_decision (pfn=" in out
    assert 'Undefined command: "bogus".  Try "help".' in out
    assert "page: no frame 0x99999999" in out
    assert "last decision: reclaimed (clean)" in out
    assert "mm_filemap_delete_from_page_cache: pfn=" in out         # trace 2: the removal, then the decision
    assert "mm_vmscan_page_decision: pfn=" in out
    assert "        min      " in out and "inactive_file" in out and "host cache" in out
    assert "MemFree:" in out and "seqread" in out
    assert "breakpoint already hit 1 time" in out
    assert "checksum 4b58145d56b52a00" in out                        # the program ran to its end


def test_quit_ends_the_run_and_bad_commands_file_is_one_line(tmp_path):
    r = ballast(["debug", *RUN], stdin="break mm_vmscan_lru_shrink_inactive\ncontinue\nquit\n")
    assert r.returncode == 0 and "Breakpoint 1, mm_vmscan_lru_shrink_inactive" in r.stdout
    assert "checksum" not in r.stdout and r.stderr == ""
    for path in ("/nonexistent/cmds", str(tmp_path)):
        r = ballast(["debug", "--commands", path, *RUN])
        assert r.returncode == 2 and r.stderr.startswith("ballast: --commands") and r.stderr.count("\n") == 1
    r = ballast(["debug"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_stopping_and_looking_change_nothing_the_guest_computes(root):
    m = machine(root)
    plain = outcome(m, m.boot())
    m.close()
    m = machine(root)
    dbg = m.debugger
    views = []

    def on_stop(d, stop):
        kernel = stop.machine.kernel
        # the mapped pages reclaim scans next: `page` reads their PTEs' accessed bits (and must not clear them)
        for pfn in itertools.islice(kernel.lru.from_tail(LRU_INACTIVE_FILE), 64):
            if kernel.mem_map.mapcount(pfn):
                views.append(d.execute(f"page {pfn:#x}"))
        for command in ("page" if "pfn" in stop.event else "page 0x200", "lru", "zone", "meminfo", "ps", "trace 5", "host", "balloon"):
            views.append(d.execute(command))
        d.step() if len(views) < 200 else d.cont()
    dbg.on_stop = on_stop
    dbg.break_on("mm_filemap_delete_from_page_cache", "index % 50 == 0")
    dbg.break_on("mm_vmscan_page_decision", "mapped")          # pages with PTEs: page shows their A/D bits
    debugged = outcome(m, m.boot())
    m.close()
    assert len(views) >= 200 and any("mapped by:" in v and "accessed 1" in v for v in views)
    assert debugged == plain


EVENTS = """
import json, sys
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.rootfs import builtin_root
m = Machine(MachineConfig(mem=32 << 20, disks=[DiskConfig(builtin_root(), snapshot=True)]))
m.load(None, "/bin/seqread", ["/data/stream.bin"], root_device="/dev/vda")
events = []
m.debugger.on_event = lambda machine, e: events.append(e)
status = m.boot()
json.dump({"status": status, "ns": m.clock.now_ns(), "events": events}, sys.stdout)
"""


def test_same_events_compiled_and_uncompiled():
    runs = []
    for pure in ("0", "1"):
        r = subprocess.run([sys.executable, "-c", EVENTS], capture_output=True, text=True, cwd=REPO, timeout=300,
                           env={**os.environ, "BALLAST_PURE": pure})
        assert r.returncode == 0, r.stderr
        runs.append(json.loads(r.stdout))
    compiled, pure = runs
    assert len(compiled["events"]) > 1000
    assert {e["name"] for e in compiled["events"]} >= {"mm_vmscan_page_decision", "mm_vmscan_lru_shrink_inactive",
                                                       "mm_filemap_delete_from_page_cache"}
    assert compiled == pure


PDB_SCRIPT = """
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.rootfs import builtin_root
m = Machine(MachineConfig(mem=32 << 20, disks=[DiskConfig(builtin_root(), snapshot=True)]))
m.load(None, "/bin/seqread", ["/data/stream.bin"], root_device="/dev/vda")
print("status", m.boot())
"""


def test_pdb_breaks_in_uncompiled_modules_by_their_names(tmp_path):
    """BALLAST_PURE=1: cython_ext.reclaim is cython_ext/reclaim.py under its own name, so pdb's
    `b cython_ext.reclaim:LINE` and `b guestos.mm.vmscan.FUNCTION` stop there; shrink_page_list, Linux's
    name in Linux's file, stops at every batch the scans isolate."""
    script = tmp_path / "run.py"
    script.write_text(PDB_SCRIPT)
    source = (REPO / "cython_ext" / "reclaim.py").read_text().splitlines()
    line = next(n for n, text in enumerate(source, 1) if "del pages[index]" in text)
    commands = "\n".join([
        "import cython_ext",            # the program imports it anyway; Python < 3.13's pdb learns module names
        f"b cython_ext.reclaim:{line}",
        "c", "p ('HIT1', __name__, pfn == isolated[j])", "cl 1",
        "b guestos.mm.vmscan.shrink_zone",
        "c", "p ('HIT2', __name__, type(sc).__name__)", "cl 2",
        "b guestos.mm.vmscan.shrink_page_list",
        "c", "p ('HIT3', __name__, len(hot.isolated_pfns(nr_taken)) == nr_taken > 0)",
        "c", "p ('HIT4', __name__, len(hot.isolated_pfns(nr_taken)) == nr_taken > 0)", "cl 3",
        "c", "q", ""])
    r = subprocess.run([sys.executable, "-m", "pdb", str(script)], input=commands, capture_output=True, text=True,
                       cwd=REPO, timeout=300, env={**os.environ, "BALLAST_PURE": "1"})
    out = r.stdout
    assert f"Breakpoint 1 at {REPO / 'cython_ext' / 'reclaim.py'}:{line}" in out, out[-3000:]
    assert "('HIT1', 'cython_ext.reclaim', True)" in out, out[-3000:]
    assert "('HIT2', 'guestos.mm.vmscan', 'ScanControl')" in out, out[-3000:]
    assert "('HIT3', 'guestos.mm.vmscan', True)" in out and "('HIT4', 'guestos.mm.vmscan', True)" in out, out[-3000:]
    assert "status 0" in out


def test_py_opens_pdb_at_the_kernel_frame_uncompiled_and_says_why_not_compiled():
    commands = "break mm_filemap_delete_from_page_cache if index == 300\ncontinue\npy\np ('AT', pfn, index)\nc\n" \
               "quit\n"
    r = ballast(["debug", *RUN], stdin=commands, env={"BALLAST_PURE": "1"})
    assert r.returncode == 0, r.stderr
    assert "cython_ext/reclaim.py" in r.stdout and "('AT', " in r.stdout and ", 300)" in r.stdout
    r = ballast(["debug", *RUN], stdin=commands, env={"BALLAST_PURE": "0"})
    assert r.returncode == 0
    assert "py: the kernel's hot paths are compiled here; run with BALLAST_PURE=1" in r.stdout
    assert "(Pdb)" not in r.stdout and 'Undefined command: "p"' in r.stdout


def test_the_tutorials_transcript_is_what_the_debugger_prints():
    """docs/tutorial-why-evicted.md shows `ballast debug --commands examples/why-evicted.cmds` with its
    real output: run it and compare (host RSS, which is this process's, excepted)."""
    doc = (REPO / "docs" / "tutorial-why-evicted.md").read_text()
    command = "$ ballast debug --commands examples/why-evicted.cmds scenario examples/why-evicted.toml\n"
    shown = doc[doc.index(command) + len(command):].split("```", 1)[0].rstrip("\n").splitlines()
    r = ballast(["debug", "--commands", "examples/why-evicted.cmds", "scenario", "examples/why-evicted.toml"],
                env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    actual = r.stdout.rstrip("\n").splitlines()
    assert len(actual) == len(shown)
    def steady(line):               # guest time moves by a few ns whenever the kernel's code changes
        return re.sub(r"\b\d+\.\d{6,9}(?=:| s\b)", "T", line)
    for want, got in zip(shown, actual):
        if "RSS" not in want:
            assert steady(got) == steady(want)
    assert "  host cache: holds this disk page too (duplicated)" in shown
    assert any("decision='reclaimed', reason='clean'" in line for line in shown)
    assert any(line.startswith("Run till end of reclaim pass: mm_vmscan_reclaim_pass_end") for line in shown)


def test_ctrl_c_pauses_the_running_guest_at_its_next_event():
    import signal
    p = subprocess.Popen([sys.executable, "-m", "vmm.cli", "debug", "run", "--mem", "32M", "--root", "builtin",
                          "/bin/seqread", "/data/stream.bin", "1000"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        p.stdin.write("continue\n")
        p.stdin.flush()
        while "(ballast) continue" not in p.stdout.readline():      # echoed when read: the guest runs now
            pass
        p.send_signal(signal.SIGINT)
        assert p.stdout.readline().startswith("Paused: ")
        p.stdin.write("event\nquit\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 0 and "  name = 'mm_" in out and "pausing at the next kernel event" in err
    assert "checksum" not in out                                      # quit: the program never finished
