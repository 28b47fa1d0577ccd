"""Scripted experiments: `ballast scenario FILE.toml` boots the guests a file describes, runs its
[[step]]s one after another and takes snapshots of guest, balloon and host memory.

Its parts live in their own modules; this one gathers their names (as `vmm.scenario.*` always offered):
  vmm.machine_spec   MachineSpec, HostSpec, assemble() and boot(): the one way to boot a guest
  vmm.lab            LabSession, the guest a scenario step or a pytest test drives
  vmm.scenario_file  the TOML schema and its validation: load(), parse(), Scenario, Step
  vmm.scenario_run   run(): the steps, the time series and how the run ended
  vmm.snapshot       what a snapshot records
  vmm.summary        the summary table and the exit line
  vmm.units          sizes and numbers as a user writes them"""
from . import loading_modules

with loading_modules():
    from devices.virtio_balloon import FEATURES_BY_NAME as FEATURES

    from .lab import DEFAULT_RUN_TIMEOUT_S, DEFAULT_WAIT_TIMEOUT_S, LabSession
    from .machine_spec import HostSpec, MachineSpec, Resources, assemble, boot
    from .scenario_file import ACTIONS, END_SNAPSHOT, WAITS, Scenario, Step, load, parse
    from .scenario_run import run
    from .snapshot import POLICY_COUNTERS, STATS_TIMEOUT_S, snapshot, snapshot_all, without_host_noise
    from .summary import SUMMARY_ROWS, exit_text, summary_table
    from .units import PAGE_SIZE

__all__ = ["FEATURES", "DEFAULT_RUN_TIMEOUT_S", "DEFAULT_WAIT_TIMEOUT_S", "LabSession", "HostSpec", "MachineSpec",
           "Resources", "assemble", "boot", "ACTIONS", "END_SNAPSHOT", "WAITS", "Scenario", "Step", "load", "parse",
           "run", "POLICY_COUNTERS", "STATS_TIMEOUT_S", "snapshot", "snapshot_all", "without_host_noise",
           "SUMMARY_ROWS", "exit_text", "summary_table", "PAGE_SIZE"]
