"""vmm.loading_modules: the collector waits while the kernel, the devices and their libraries load (its
passes there find nothing to free), and is back on afterwards, as the caller had it."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import gc, json, sys
sys.path.insert(0, {repo!r})
passes = []
gc.callbacks.append(lambda phase, info: passes.append(info["generation"]) if phase == "start" else None)
if {disabled}:
    gc.disable()
from vmm import scenario
print(json.dumps(dict(passes=len(passes), enabled=gc.isenabled(), frozen=gc.get_freeze_count())))
"""


def probe(disabled: bool) -> dict:
    child = subprocess.run([sys.executable, "-c", PROBE.format(repo=REPO, disabled=disabled)],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    return json.loads(child.stdout.splitlines()[-1])


def test_no_collection_while_the_kernel_and_devices_load_and_the_collector_is_back_after():
    loaded = probe(disabled=False)
    assert loaded["passes"] <= 3                 # the interpreter's own start-up may run one or two
    assert loaded["enabled"]
    assert loaded["frozen"] > 10_000             # what they built is out of the collector's way


def test_a_collector_the_caller_turned_off_stays_off():
    assert probe(disabled=True)["enabled"] is False


FREED = """
import gc, json, sys, weakref
sys.path.insert(0, {repo!r})
from vmm.machine import Machine, MachineConfig
from vmm import firmware


def run_one():
    machine = Machine(MachineConfig(mem=64 << 20))
    machine.load(firmware.read_program("hello"), "/bin/hello", [])
    status = machine.boot()
    machine.close()
    return status, weakref.ref(machine), weakref.ref(machine.kernel)


results = [run_one() for _ in range(2)]
gc.collect()
print(json.dumps(dict(status=[s for s, _, _ in results], alive=[m() is not None or k() is not None
                                                               for _, m, k in results])))
"""


def test_a_machine_that_has_run_is_freed():
    """A pytest session runs guest after guest in one process: each machine, its kernel and its RAM mapping
    must go once the test lets go of it (a frozen closure cell once kept every one alive)."""
    child = subprocess.run([sys.executable, "-c", FREED.format(repo=REPO)], capture_output=True, text=True,
                           timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    out = json.loads(child.stdout.splitlines()[-1])
    assert out == dict(status=[0, 0], alive=[False, False])
