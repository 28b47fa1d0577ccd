"""Running a scenario: boot its guests (on one host when there are several), perform each step
in turn, take its snapshots and its time series, and say how it ended."""
import time

from devices.host import Host
from guestos.kernel.signal import signal_name

from . import oracle
from .errors import BallastError
from .lab import DEFAULT_RUN_TIMEOUT_S, DEFAULT_WAIT_TIMEOUT_S
from .machine_spec import boot
from .oracle import decode_wait_status
from .scenario_file import END_SNAPSHOT, Scenario, Step
from .snapshot import snapshot, snapshot_all
from .units import PAGE_SIZE


def run(scenario: Scenario, on_step=None, console_sink=None, trace=None) -> dict:
    """Run every step; returns {"snapshots": ..., "exit": ...} (and "series" with [series]).
    on_step(step, None) is called before each step and on_step(step, outcome) after it (outcome a
    short text). A BallastError mid-run is raised with the result so far attached as its `result`.
    `trace` (a vmm.trace.TraceWriter) gets every guest's kernel events from its boot on."""
    started = time.perf_counter()
    result = {"snapshots": {}, "exit": {}}
    runs, waits = [], []
    exit_info = result["exit"]
    exit_info.update(ok=None, steps=len(scenario.steps), steps_run=0, runs=runs, last_run=None, waits=waits,
                     waits_met=True, violations=0, error=None, virtual_ns=0)
    sessions = {}
    host = None
    shared_host = scenario.several or scenario.host.exclusive
    try:
        if shared_host:
            memory = scenario.host.memory
            cache_pages = None if memory is None else \
                (memory - sum(m.mem for m in scenario.machines.values())) // PAGE_SIZE
            host = Host(memory_budget_bytes=memory, cache_capacity=cache_pages,
                        exclusive_cache=scenario.host.exclusive)
        for name, spec in scenario.machines.items():
            sessions[name] = boot(spec, console_sink=console_sink, host=host,
                                  before_start=None if trace is None else
                                  lambda machine, name=name: trace.attach(machine, name, scenario.several))
        if host is None:
            host = next(iter(sessions.values())).machine.host
        if scenario.series_interval_s:
            result["series"] = []
            for name, session in sessions.items():
                session.add_sampler(_sampler(name, session, sessions, host, result["series"]),
                                    scenario.series_interval_s)

        def take(name):
            wall = time.perf_counter() - started
            if scenario.several:
                result["snapshots"][name] = snapshot_all(sessions, host, wall)
            else:
                result["snapshots"][name] = snapshot(next(iter(sessions.values())), wall)
        for step in scenario.steps:
            if on_step is not None:
                on_step(step, None)
            session = sessions[step.on] if step.on is not None else next(iter(sessions.values()))
            outcome = _do(session, step, result, runs, waits, take)
            exit_info["steps_run"] += 1
            if on_step is not None:
                on_step(step, outcome)
        if not any(s.action == "snapshot" for s in scenario.steps):
            take(END_SNAPSHOT)
    except BallastError as e:
        exit_info["error"] = str(e)
        e.result = result
        raise
    finally:
        for session in sessions.values():
            exit_info["violations"] += len(session.machine.violations)
            exit_info["virtual_ns"] = max(exit_info["virtual_ns"], session.virtual_ns())
            session.close()
        if shared_host and host is not None:
            host.close()
        exit_info["waits_met"] = all(w["met"] for w in waits)
        exit_info["ok"] = exit_info["error"] is None and exit_info["waits_met"] and not exit_info["violations"]
    return result


def _sampler(name, session, sessions, host, series):
    """A time-series point as `name` runs: its guest's memory and the host's view of duplication."""
    def sample():
        meminfo = session.meminfo()
        duplicated = oracle.duplicated_pages(host, [s.machine for s in sessions.values()])
        series.append({"machine": name, "virtual_ns": session.virtual_ns(), "MemFree": meminfo["MemFree"],
                       "Cached": meminfo["Cached"], "host_cache_pages": host.cache.nr_pages,
                       "duplicated_pages": duplicated,
                       "resident_pages": session.machine.ram.resident_pages(),
                       "balloon_pages": session.machine.balloon.actual_pages if session.machine.balloon else 0})
    return sample


def _do(session, step: Step, result: dict, runs: list, waits: list, take) -> str:
    if step.action == "run":
        started = session.virtual_ns()
        r = session.run(step.value, step.timeout_s or DEFAULT_RUN_TIMEOUT_S)
        status = decode_wait_status(r.status)
        entry = {"step": step.number, "argv": step.value, "status": r.status, "exit_code": status["code"],
                 "signaled": status["signaled"], "signal": None, "output": r.output,
                 "virtual_ns": session.virtual_ns() - started}
        if step.on is not None:
            entry["machine"] = step.on
        if status["signaled"]:
            entry["signal"] = signal_name(status["signal"])
        runs.append(entry)
        result["exit"]["last_run"] = entry
        said = r.output.strip().splitlines()[-1:] or [""]
        how = f"killed by {entry['signal']}" if entry["signaled"] else f"exit {entry['exit_code']}"
        return f"{how}: {said[0][:70]}" if said[0] else how
    if step.action == "balloon_mib":
        session.set_balloon_mib(step.value, hint=step.hint)
        return f"target {session.balloon.target_pages} pages"
    if step.action == "guest_mib":
        session.set_guest_mib(step.value, hint=step.hint)
        return f"target {session.balloon.target_pages} pages"
    if step.action == "wait":
        before = session.virtual_ns()
        timeout_s = step.timeout_s or DEFAULT_WAIT_TIMEOUT_S
        met = session.wait_balloon(timeout_s)
        took = session.virtual_ns() - before
        waits.append({"step": step.number, "for": step.value, "met": met, "virtual_ns": took})
        b = session.balloon
        if met:
            return f"met after {took / 1e9:.3f} s"
        return f"NOT met within {timeout_s:g} s: actual {b.actual_pages} of {b.target_pages} pages"
    if step.action == "sleep":
        session.advance(step.value)
        return ""
    if step.action == "snapshot":
        take(step.value)
        return ""
    raise AssertionError(step.action)
