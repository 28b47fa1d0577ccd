"""`ballast demo`: the June 2010 LKML debate run as an experiment.

The same workloads run under every page-cache policy — plain Linux, host cache=none, the series'
unmapped_page_control (the June 2010 RFC and v4 of January 2011), the review's shrink_page_list bias, cache-first balloon pages, our
duplication-aware reclaim and exclusive host caching — while the host squeezes the guest with a
balloon. The oracle measures what no real host can see: exactly which pages both caches hold.

Every figure in the table comes from the virtual clock and the guest's and host's counters, so a
run gives the same table on any machine; wall time and the process's RSS are not in it.

The demo is a sweep (vmm/sweeps/demo.toml and demo-quick.toml, linked from examples/): a workload
axis times a policy axis over one scenario, run as Dask tasks like any `ballast sweep`."""
import json
import os
import tomllib
from dataclasses import dataclass, field

from . import sweep as sw
from .errors import BallastError
from .units import parse_size

MiB = 1 << 20
PAGE = 4096
SWEEPS = {"full": "demo.toml", "quick": "demo-quick.toml", "paper": "singh-2010.toml",   # in vmm/sweeps/,
          "paper 1:64": "singh-2010-1to64.toml"}                                          # linked from examples/
PAPER_SCALES = ("1:1", "1:64")      # his 2 GiB guest (minutes per cell), or 32 MiB (seconds)

# What each value of the sweep's policy axis stands for (its settings live in the sweep file).
POLICY_TEXT = {
    "linux": "plain Linux 2.6.35 reclaim (the baseline)",
    "cache=none": "no host page cache at all (Chinner's question)",
    "unmapped-2010-06": "unmapped_page_control=rfc: the RFC of 8 June 2010 that Kivity reviewed; kswapd trims "
                        "unmapped cache above a fixed 16 x vm.min_unmapped_ratio",
    "unmapped-2011-01": "unmapped_page_control: v4 of 25 January 2011; the same, above its own sysctl "
                        "vm.max_unmapped_ratio (here 4)",
    "shrink_list": "the bias inside shrink_page_list: mapped pages stay while unmapped cache lasts "
                   "(Morton's review of v5, 30 March 2011)",
    "cache-first": "balloon pages taken from unmapped cache first, by host hint (patch 2/2, v3)",
    "dedup": "the guest drops pages the host also caches first (our host cache query)",
    "exclusive": "the host forgets what exactly one guest read (DEMOTE)",
}


def sweep_path(quick: bool, paper: bool = False, scale: str = "1:1") -> str:
    kind = ("paper" if scale == "1:1" else f"paper {scale}") if paper else "quick" if quick else "full"
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "sweeps", SWEEPS[kind])


def load(quick: bool = False, workloads=None, policies=None, paper: bool = False, scale: str = "1:1") -> sw.Sweep:
    """The demo's sweep (or, with paper, Singh's table in kind at his scale or 1:64), limited to
    some workloads and policies (names as the axes give them)."""
    if scale not in PAPER_SCALES:
        raise BallastError(f"--scale {scale}: one of {', '.join(PAPER_SCALES)}")
    if scale != "1:1" and not paper:
        raise BallastError("--scale: only with --paper")
    path = sweep_path(quick, paper, scale)
    with open(path, "rb") as f:
        data = tomllib.load(f)
    for axis, chosen in (("workload", workloads), ("policy", policies)):
        values = data["axes"][axis]
        if chosen is None:
            continue
        unknown = [name for name in chosen if name not in values]
        if unknown:
            raise BallastError(f"unknown {axis} {unknown[0]!r} (one of {', '.join(values)})")
        if not chosen:
            raise BallastError(f"no {axis} chosen (one of {', '.join(values)})")
        data["axes"][axis] = {name: values[name] for name in values if name in chosen}
    return sw.parse(data, source=path, base_dir=os.path.dirname(path))


@dataclass(frozen=True)
class Setting:
    """What every cell shares, read from the sweep's scenario (for the table's title and the JSON)."""
    mem_mib: int
    host_cache_mib: int
    balloon_mib: tuple

    @classmethod
    def of(cls, sweep: sw.Sweep) -> "Setting":
        t = sweep.template
        mem = parse_size(t["machine"]["mem"], "machine.mem")
        host = parse_size(t["host"]["memory"], "host.memory")
        per_row = any(key.endswith(".balloon_mib") for axis in sweep.axes for sets in axis.sets for key in sets)
        return cls(mem >> 20, (host - mem) >> 20,
                   () if per_row else (0,) + tuple(s["balloon_mib"] for s in t["step"] if "balloon_mib" in s))


@dataclass
class Cell:
    policy: str
    workload: str
    runtime_ns: int = 0
    disk_reads_pages: int = 0
    host_hits_pages: int = 0
    majfaults: int = 0
    duplicated_pages: int = 0
    estimated_duplicated_pages: int = 0
    host_memory_pages: int = 0
    guest_cached_pages: int = 0
    guest_free_pages: int = 0
    balloon_reached: bool = True
    failures: list = field(default_factory=list)
    series: list = field(default_factory=list)   # (virtual_ns, host MiB, duplicated MiB, guest Cached MiB)


def demo_cell(cell: sw.Cell, outcome: dict, row: dict) -> Cell:
    """A sweep cell's outcome as the demo reports it. Host memory is what the host spends on the
    guest: the frames it really holds (touched and not given back, by mincore) plus its page cache."""
    c = Cell(cell.point["policy"], cell.point["workload"])
    if row["error"]:
        c.failures.append(row["error"])
    result = outcome.get("result") or {}
    if "end.guest.MemFree" not in row:
        c.balloon_reached = False
        return c
    c.runtime_ns = row["exit.runs_virtual_ns"]
    c.disk_reads_pages = row["end.disk.reads_pages"]
    c.host_hits_pages = row["end.disk.host_hits_pages"]
    c.majfaults = row["end.vmstat.pgmajfault"]
    c.duplicated_pages = row["end.oracle.duplicated_pages"]
    c.estimated_duplicated_pages = row["end.oracle.estimated_duplicated_pages"]
    c.host_memory_pages = row["end.ram.resident_pages"] + row["end.host.cache_pages"]
    c.guest_cached_pages = row["end.guest.Cached"] // 4
    c.guest_free_pages = row["end.guest.MemFree"] // 4
    c.balloon_reached = bool(row["exit.waits_met"])
    for run in result["exit"]["runs"]:
        if run["signaled"] or run["exit_code"]:
            c.failures.append(f"{run['argv'][0]} at step {run['step']}: "
                              + (f"killed by {run['signal']}" if run["signaled"] else f"exit {run['exit_code']}"))
    c.series = [(p["virtual_ns"], (p["resident_pages"] + p["host_cache_pages"]) * PAGE / MiB,
                 p["duplicated_pages"] * PAGE / MiB, p["Cached"] / 1024) for p in result.get("series", [])]
    last = row["end.time.virtual_ns"]
    c.series.append((last, c.host_memory_pages * PAGE / MiB, c.duplicated_pages * PAGE / MiB,
                     row["end.guest.Cached"] / 1024))
    return c


def run_demo(sweep: sw.Sweep, progress=None, out: str = None, client=None, n_workers: int = None,
             json_path: str = None) -> list:
    """Every cell of the demo's sweep, on Dask (see vmm.sweep.run); Cells in the sweep's order.
    progress(done, failed, total) as they finish; `out` also writes the sweep's results table;
    `json_path` is rewritten with the cells done so far as each finishes, so that a sweep stopped
    midway keeps the time series of its finished cells (the results table has no series)."""
    finished = {}

    def on_cell(cell, outcome, row):
        finished[cell.index] = demo_cell(cell, outcome, row)
        if json_path and json_path != "-":
            write_json([finished[c.index] for c in sweep.cells if c.index in finished], sweep, json_path)
    sw.run(sweep, out=out, client=client, n_workers=n_workers, progress=progress, on_cell=on_cell)
    return [finished[cell.index] for cell in sweep.cells]


COLUMNS = (
    ("policy", "policy"), ("workload", "workload"),
    ("host MiB", "host memory at the end: guest frames the host holds + host page cache"),
    ("dup MiB", "pages both caches hold (the oracle, exact)"),
    ("host est. MiB", "what the host would guess from its per-VM cache stat"),
    ("guest Cached", "guest Cached at the end (MiB)"),
    ("guest MemFree", "guest MemFree at the end (MiB)"),
    ("runtime s", "guest virtual time of the workload runs"),
    ("disk reads MiB", "read from the disk image"),
    ("host hits MiB", "served from the host page cache"),
    ("majflt", "guest major faults"),
    ("balloon", "every balloon target reached"),
)


def _mib(pages: int) -> str:
    return f"{pages * PAGE / MiB:,.1f}"


def cell_row(c: Cell) -> list:
    mib = _mib
    return [c.policy, c.workload, mib(c.host_memory_pages), mib(c.duplicated_pages),
            mib(c.estimated_duplicated_pages), mib(c.guest_cached_pages), mib(c.guest_free_pages),
            f"{c.runtime_ns / 1e9:.3f}",
            mib(c.disk_reads_pages), mib(c.host_hits_pages), str(c.majfaults),
            ("yes" if c.balloon_reached else "no") + ("" if not c.failures else " (failed)")]


def render_table(cells, setting: Setting):
    from rich.table import Table
    table = Table(title=f"Ballast demo: {setting.mem_mib} MiB guest, {setting.host_cache_mib} MiB host page cache, "
                        + (f"balloon {' -> '.join(f'{s:g}' for s in setting.balloon_mib)} MiB" if setting.balloon_mib
                           else "balloon as the rows say"), title_justify="left")
    for name, _ in COLUMNS:
        table.add_column(name, justify="left" if name in ("policy", "workload", "balloon") else "right")
    previous = None
    for c in cells:
        if previous is not None and c.workload != previous:
            table.add_section()
        previous = c.workload
        table.add_row(*cell_row(c))
    return table


def write_json(cells, sweep: sw.Sweep, path: str) -> None:
    setting = Setting.of(sweep)
    policies = list(dict.fromkeys(c.policy for c in cells))
    out = {"config": {"sweep": os.path.basename(sweep.source), "mem_mib": setting.mem_mib,
                      "host_cache_mib": setting.host_cache_mib, "balloon_mib": list(setting.balloon_mib),
                      "workloads": list(dict.fromkeys(c.workload for c in cells)), "policies": policies},
           "policies": {p: POLICY_TEXT.get(p, "") for p in policies},
           "cells": [{k: v for k, v in vars(c).items()} for c in cells]}
    text = json.dumps(out, indent=1)
    if path == "-":
        print(text)
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:        # whole or not at all: a sweep may be stopped while it writes
        f.write(text + "\n")
    os.replace(tmp, path)


def write_png(cells, path: str) -> None:
    """Host memory and duplicated memory over guest time, one panel per workload, one line per policy."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    workloads = list(dict.fromkeys(c.workload for c in cells))
    fig, axes = plt.subplots(2, len(workloads), figsize=(5.5 * len(workloads), 7), squeeze=False, sharex="col")
    for col, workload in enumerate(workloads):
        top, bottom = axes[0][col], axes[1][col]
        for c in (c for c in cells if c.workload == workload):
            t = [s[0] / 1e9 for s in c.series]
            top.plot(t, [s[1] for s in c.series], label=c.policy, linewidth=1.2)
            bottom.plot(t, [s[2] for s in c.series], label=c.policy, linewidth=1.2)
        top.set_title(f"{workload}: host memory (guest frames + host cache)")
        top.set_ylabel("MiB")
        bottom.set_title(f"{workload}: pages both caches hold")
        bottom.set_ylabel("MiB")
        bottom.set_xlabel("guest time (s)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
