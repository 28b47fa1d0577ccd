"""Scripted experiments: `ballast scenario FILE.toml` boots the guests a file describes, runs its
[[step]]s one after another and takes snapshots of guest, balloon and host memory.

Its parts live in their own modules; this one gathers their names (as `vmm.scenario.*` always offered):
  vmm.machine_spec   MachineSpec, HostSpec, assemble() and boot(): the one way to boot a guest
  vmm.lab            LabSession, the guest a scenario step or a pytest test drives
  vmm.scenario_file  the TOML schema and its validation: load(), parse(), Scenario, Step
  vmm.scenario_run   run(): the steps, the time series and how the run ended
  vmm.snapshot       what a snapshot records
  vmm.summary        the summary table and the exit line
  vmm.units          sizes and numbers as a user writes them

The schema, run() and the summary load at their first use (a module __getattr__): a test that boots a
guest through boot() and drives it needs none of them."""
from importlib import import_module

from . import loading_modules

with loading_modules():
    from devices.virtio_balloon import FEATURES_BY_NAME as FEATURES

    from .lab import DEFAULT_RUN_TIMEOUT_S, DEFAULT_WAIT_TIMEOUT_S, LabSession
    from .machine_spec import HostSpec, MachineSpec, Resources, assemble, boot
    from .snapshot import POLICY_COUNTERS, STATS_TIMEOUT_S, snapshot, snapshot_all, without_host_noise
    from .units import PAGE_SIZE

_AT_FIRST_USE = {name: module for module, names in (
    ("scenario_file", ("ACTIONS", "END_SNAPSHOT", "WAITS", "Scenario", "Step", "load", "parse")),
    ("scenario_run", ("run",)),
    ("summary", ("SUMMARY_ROWS", "exit_text", "summary_table"))) for name in names}


def __getattr__(name: str):
    module = _AT_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with loading_modules():
        value = globals()[name] = getattr(import_module(f".{module}", __package__), name)
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_AT_FIRST_USE))


__all__ = ["FEATURES", "DEFAULT_RUN_TIMEOUT_S", "DEFAULT_WAIT_TIMEOUT_S", "LabSession", "HostSpec", "MachineSpec",
           "Resources", "assemble", "boot", "ACTIONS", "END_SNAPSHOT", "WAITS", "Scenario", "Step", "load", "parse",
           "run", "POLICY_COUNTERS", "STATS_TIMEOUT_S", "snapshot", "snapshot_all", "without_host_noise",
           "SUMMARY_ROWS", "exit_text", "summary_table", "PAGE_SIZE"]
