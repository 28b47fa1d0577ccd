"""Start-up: a run loads only what it uses. `from vmm import scenario` and a guest booted without
`strace` leave the system call tracer, the tracepoints, the debuggers, the sweep, the CLI, the scenario
schema, run and summary, construct (a run reads its layouts through the generated `struct` views),
hashlib (OpenSSL: the kernel's SHA-256 is guestos/sha256.py's) and the plot and table libraries unloaded,
and dispatch makes the typed entry of a system call at its first use only, without compiling anything."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ONLY_WHEN_ASKED = ("guestos.kernel.strace", "guestos.kernel.tracepoint", "vmm.cli", "vmm.debugger",
                   "vmm.debug_views", "vmm.gdbstub", "vmm.trace", "vmm.sweep", "vmm.sweep_report", "vmm.demo",
                   "vmm.watch", "vmm.mkdisk", "vmm.scenario_file", "vmm.scenario_run", "vmm.summary",
                   "construct", "hashlib", "rich", "matplotlib", "dask", "pandas", "pyarrow", "textual", "tomllib")

PROBE = """
import json, os, sys
sys.path.insert(0, {repo!r})
from vmm import scenario
from vmm import firmware
from vmm.machine import Machine, MachineConfig
from guestos.kernel import syscall_64

def loaded():
    return sorted(name for name in {names!r} if name in sys.modules)

at_import = dict(loaded=loaded(), entries=len(syscall_64.SYSCALL_ENTRIES))
compiled = []                       # source compiled at run time (exec, compile), by file name
# (not a module's own file: a fresh checkout without bytecode compiles what it imports late)
sys.addaudithook(lambda event, args: event == "compile" and not os.path.isfile(str(args[1]))
                 and compiled.append(str(args[1])))
machine = Machine(MachineConfig(mem=64 << 20, cmdline={cmdline!r}))
machine.load(firmware.read_program("hello"), "/bin/hello", [])
status = machine.boot()
machine.close()
print(json.dumps(dict(at_import=at_import, status=status, loaded=loaded(), compiled=compiled,
                      entries=sorted(syscall_64.SYSCALL_ENTRIES))))
"""


def probe(cmdline: str) -> dict:
    child = subprocess.run([sys.executable, "-c", PROBE.format(repo=REPO, names=ONLY_WHEN_ASKED, cmdline=cmdline)],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    return json.loads(child.stdout.splitlines()[-1])


def test_a_plain_run_loads_none_of_what_only_some_runs_use():
    run = probe("")
    assert run["at_import"] == dict(loaded=[], entries=0)
    assert run["status"] == 0 and run["loaded"] == []
    # the calls hello made (write, exit_group...) and no others
    assert 1 in run["entries"] and 231 in run["entries"] and len(run["entries"]) < 20
    # and making them compiles nothing: a typed entry is a closure, not generated source
    assert run["compiled"] == []


def test_strace_loads_the_tracer_when_asked():
    run = probe("strace")
    assert run["status"] == 0 and run["loaded"] == ["guestos.kernel.strace"]


def test_the_scenario_facade_loads_the_schema_run_and_summary_at_first_use():
    code = """
import sys
from vmm import scenario
before = [m in sys.modules for m in ("vmm.scenario_file", "vmm.scenario_run", "vmm.summary")]
from vmm.scenario import Step, run
from vmm import scenario_file, scenario_run, summary
assert Step is scenario_file.Step and run is scenario_run.run and scenario.exit_text is summary.exit_text
assert "summary_table" in dir(scenario)
print(before)
"""
    child = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["[False,", "False,", "False]"]


def test_the_kernels_sha256_is_sha256():
    import hashlib
    from guestos.sha256 import sha256
    for data in (b"", b"ballast", bytes(range(256)) * 100):
        assert sha256(data).digest() == hashlib.sha256(data).digest()
    h = sha256(b"stat-note-1\0")
    h.update(b"more")
    assert h.hexdigest() == hashlib.sha256(b"stat-note-1\0more").hexdigest()
