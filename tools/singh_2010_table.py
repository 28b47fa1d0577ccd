"""Markdown tables for docs/singh-2010.md from `ballast demo --paper --json FILE` (and, for the wall
and CPU time of each cell, the results table of `--out FILE.csv`): our figures beside Singh's, the end
of each run per balloon size and policy, host memory and duplication over guest time, and (--png) a
figure of the time series of every balloon size and policy.

    python tools/singh_2010_table.py singh-2010.json [more.json | results.csv ...] [--results singh-2010.csv]
        [--over-time "balloon 1000 MB"] [--points 10] [--png singh-2010.png]
"""
import argparse
import csv
import json
import re
import sys

PAGE_MIB = 4096 / (1 << 20)
SERIES_NAME = "unmapped-2010-06"
V4_NAME = "unmapped-2011-01"
# Singh, LKML 8 June 2010: patch 1/2's table (MemFree, Cached, host), patch 2/2's kernbench (elapsed
# seconds, mean (std deviation) of his runs, balloon swung 500..1500 MB), and 15 June 2010 (the 60%)
HIS = {"MemFree": ("about 18 MB (17,540-19,900 KB)", "about 240 MB (235,880-244,824 KB)"),
       "Cached": ("about 295 MB (292,912-296,660 KB)", "about 80 MB (74,828-83,044 KB)"),
       "build": ("225.526 s (2.93) (kernbench, patch 2/2)", "223.86 s (1.53) (ditto)"),
       "dup": ("up to 60% of the page cache (his estimate)", ""),
       "host": ("RSS 2,788,664 KB + host cache 781,884 KB", "RSS 2,700,184 KB + host cache 958,012 KB")}


def mib(pages) -> str:
    return f"{pages * PAGE_MIB:,.1f}"


def wall_times(path) -> dict:
    """(policy, workload) -> (wall seconds, CPU seconds, guest system seconds; None where absent) of the
    cell, from the sweep's results table."""
    if not path:
        return {}

    def number(r, key, scale=1):
        return float(r[key]) / scale if r.get(key) else None
    with open(path, newline="") as f:
        return {(r["policy"], r["workload"]): (float(r["wall_s"]), number(r, "cpu_s"),
                                               number(r, "end.cpu.system_ns", 1e9))
                for r in csv.DictReader(f) if r.get("wall_s")}


def span(values, fmt) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}-{fmt(hi)}"


def beside_his(data) -> list:
    by = {}
    for c in data["cells"]:
        by.setdefault(c["policy"], []).append(c)
    plain, series, v4 = by.get("linux", []), by.get(SERIES_NAME, []), by.get(V4_NAME, [])
    if not plain or not series:
        raise SystemExit("singh_2010_table: need the linux and unmapped-2010-06 cells")

    def ours(cells, what):
        if what == "MemFree":
            return span([c["guest_free_pages"] for c in cells], mib) + " MiB"
        if what == "Cached":
            return span([c["guest_cached_pages"] for c in cells], mib) + " MiB"
        if what == "build":
            return span([c["runtime_ns"] / 1e9 for c in cells], lambda v: f"{v:.1f}") + " s"
        if what == "dup":
            shares = [c["duplicated_pages"] / c["guest_cached_pages"] for c in cells if c["guest_cached_pages"]]
            return (span([c["duplicated_pages"] for c in cells], mib) + " MiB at the end (" +
                    span(shares, lambda v: f"{v:.0%}") + " of guest Cached)")
        return span([c["host_memory_pages"] for c in cells], mib) + " MiB (frames + cache) at the end"
    names = {"MemFree": "guest MemFree", "Cached": "guest Cached", "build": "the build (guest time)",
             "dup": "duplication (host cache holds the guest's page)", "host": "host memory for the guest"}
    head = "| | Singh without | Singh with | Ballast without (linux) | Ballast with (unmapped-2010-06) |"
    rule = "|---|---|---|---|---|"
    if v4:
        head, rule = head + " Ballast with v4 (unmapped-2011-01) |", rule + "---|"
    lines = [head, rule]
    for key, name in names.items():
        lines.append(f"| {name} | {HIS[key][0]} | {HIS[key][1]} | {ours(plain, key)} | {ours(series, key)} |"
                     + (f" {ours(v4, key)} |" if v4 else ""))
    return lines


def end_table(data, walls) -> list:
    lines = ["| balloon | policy | guest MemFree MiB | guest Cached MiB | build s (guest) | dup MiB | "
             "host MiB (frames + cache) | host cache hits MiB | disk reads MiB | guest system s | CPU s | wall s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def shown(value, fmt):
        return "" if value is None else fmt.format(value)
    for c in data["cells"]:
        wall, cpu, system = walls.get((c["policy"], c["workload"]), (None, None, None))
        lines.append(f"| {c['workload'].removeprefix('balloon ')} | {c['policy']} | {mib(c['guest_free_pages'])} | "
                     f"{mib(c['guest_cached_pages'])} | {c['runtime_ns'] / 1e9:.3f} | {mib(c['duplicated_pages'])} | "
                     f"{mib(c['host_memory_pages'])} | {mib(c['host_hits_pages'])} | {mib(c['disk_reads_pages'])} | "
                     f"{shown(system, '{:.2f}')} | {shown(cpu, '{:.0f}')} | {shown(wall, '{:.0f}')} |")
    return lines


def at(series, t_ns):
    """The last point at or before t_ns (the first one before any)."""
    best = series[0]
    for point in series:
        if point[0] > t_ns:
            break
        best = point
    return best


def over_time(data, workload: str, points: int) -> list:
    cells = [c for c in data["cells"] if c["workload"] == workload]
    if not cells:
        raise SystemExit(f"singh_2010_table: no cells for {workload!r}")
    end = max(c["series"][-1][0] for c in cells)
    names = [c["policy"] for c in cells]
    head = "| guest s | " + " | ".join(f"host MiB {n}" for n in names) + " | " + \
        " | ".join(f"dup MiB {n}" for n in names) + " | " + " | ".join(f"Cached MiB {n}" for n in names) + " |"
    lines = [head, "|---:|" + "---:|" * (3 * len(names))]
    for i in range(1, points + 1):
        t = end * i // points
        row = [at(c["series"], t) for c in cells]
        lines.append(f"| {t / 1e9:.1f} | " + " | ".join(f"{p[1]:,.1f}" for p in row) + " | " +
                     " | ".join(f"{p[2]:,.1f}" for p in row) + " | " + " | ".join(f"{p[3]:,.1f}" for p in row) + " |")
    return lines


def write_png(data, path) -> None:
    """Host memory, pages held twice and guest Cached over guest time: a column per balloon size,
    a line per policy (every cell that has a time series)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cells = [c for c in data["cells"] if c["series"]]
    workloads = list(dict.fromkeys(c["workload"] for c in cells))
    if not workloads:
        raise SystemExit("singh_2010_table: --png: no cell has a time series")
    rows = ((1, "host memory (guest frames + host cache)"), (2, "pages both caches hold"), (3, "guest Cached"))
    fig, axes = plt.subplots(len(rows), len(workloads), figsize=(3.6 * len(workloads), 8.5), squeeze=False,
                             sharex=True, sharey="row")
    for col, workload in enumerate(workloads):
        for c in (c for c in cells if c["workload"] == workload):
            t = [p[0] / 1e9 for p in c["series"]]
            for row, (i, _) in enumerate(rows):
                axes[row][col].plot(t, [p[i] for p in c["series"]], label=c["policy"], linewidth=1.1)
        axes[0][col].set_title(workload, fontsize=10)
        axes[-1][col].set_xlabel("guest time (s)")
    for row, (_, name) in enumerate(rows):
        axes[row][0].set_ylabel(f"{name}, MiB", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cells_from_results(path) -> dict:
    """The demo JSON's cells rebuilt from the sweep's results table alone (no time series): for a
    run stopped before its last cell, whose JSON was never written."""
    cells = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["error"] or not r.get("end.guest.MemFree"):
                continue
            cells.append({"policy": r["policy"], "workload": r["workload"],
                          "runtime_ns": int(r["exit.runs_virtual_ns"]),
                          "guest_free_pages": int(r["end.guest.MemFree"]) // 4,
                          "guest_cached_pages": int(r["end.guest.Cached"]) // 4,
                          "duplicated_pages": int(r["end.oracle.duplicated_pages"]),
                          "host_memory_pages": int(r["end.ram.resident_pages"]) + int(r["end.host.cache_pages"]),
                          "host_hits_pages": int(r["end.disk.host_hits_pages"]),
                          "disk_reads_pages": int(r["end.disk.reads_pages"]), "series": []})
    return {"cells": cells}


def merge_results(paths, out) -> None:
    """Sweep results tables (CSV) as one, rows in the order read, columns the union in order seen."""
    rows, columns = [], {}
    for path in paths:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                rows.append(r)
                columns.update(dict.fromkeys(r))
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        w.writerows(rows)


def balloon_mb(workload: str) -> float:
    """The balloon's size from a workload name ("balloon 1000 MB", "balloon 16 MiB (his 1000 MB)")."""
    number = re.search(r"\d+(\.\d+)?", workload)
    return float(number.group()) if number else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", metavar="JSON|CSV",
                    help="demo JSON files and sweep results tables (cells without a time series); later wins")
    ap.add_argument("--results", action="append", default=[], metavar="CSV",
                    help="a sweep results table (--out) for the wall times of a JSON's cells (repeatable)")
    ap.add_argument("--over-time", default="balloon 1000 MB", metavar="WORKLOAD")
    ap.add_argument("--points", type=int, default=10)
    ap.add_argument("--png", metavar="FILE", help="also draw every cell's time series (a column per balloon size)")
    ap.add_argument("--save", metavar="JSON", help="also write the cells read, merged, as one demo JSON")
    ap.add_argument("--save-results", metavar="CSV", help="also write the --results tables merged into one")
    opts = ap.parse_args(argv)
    cells, walls, config = {}, {}, None
    for path in opts.inputs:
        if path.endswith(".csv"):
            data = cells_from_results(path)
            opts.results.append(path)
        else:
            with open(path) as f:
                data = json.load(f)
        config = config or data.get("config")
        cells.update({(c["workload"], c["policy"]): c for c in data["cells"]})
    for path in opts.results:
        walls.update(wall_times(path))
    order = {"linux": 0, SERIES_NAME: 1, V4_NAME: 2}
    data = {"cells": sorted(cells.values(), key=lambda c: (balloon_mb(c["workload"]), order.get(c["policy"], 3)))}
    if opts.save:
        merged = dict(config or {}, workloads=list(dict.fromkeys(c["workload"] for c in data["cells"])),
                      policies=list(dict.fromkeys(c["policy"] for c in data["cells"])))
        with open(opts.save, "w") as f:
            json.dump({"config": merged, "cells": data["cells"]}, f, indent=1)
            f.write("\n")
    if opts.save_results:
        merge_results(opts.results, opts.save_results)
    print("\n".join(beside_his(data)))
    print()
    print("\n".join(end_table(data, walls)))
    if any(c["series"] for c in data["cells"] if c["workload"] == opts.over_time):
        print()
        print("\n".join(over_time(data, opts.over_time, opts.points)))
    if opts.png:
        write_png(data, opts.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
