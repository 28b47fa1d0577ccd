"""tools/singh_2010_table.py, which makes docs/singh-2010.md's tables and figure from the cells of
`ballast demo --paper` run one per process: it merges them in balloon then policy order (linux, the
RFC, v4), puts v4 beside the RFC, takes each cell's CPU and wall time from its results table, and
draws every cell's time series."""
import csv
import importlib.util
import json
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "singh_2010_table.py"
spec = importlib.util.spec_from_file_location("singh_2010_table", TOOL)
table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table)


def cell(policy, mb, cached_pages):
    series = [(t * 10**9, 100.0 + t, 50.0, cached_pages * 4096 / 2**20) for t in range(1, 6)]
    return {"policy": policy, "workload": f"balloon {mb} MB", "runtime_ns": 174 * 10**9 + mb,
            "guest_free_pages": 2500, "guest_cached_pages": cached_pages, "duplicated_pages": cached_pages // 2,
            "host_memory_pages": 200_000, "host_hits_pages": 300, "disk_reads_pages": 794_000, "series": series}


def write_cell(tmp_path, policy, mb, cached_pages, cpu):
    name = tmp_path / f"b{mb}-{policy}"
    Path(f"{name}.json").write_text(json.dumps({"config": {"mem_mib": 2048}, "cells": [cell(policy, mb, cached_pages)]}))
    with open(f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["cell", "policy", "workload", "wall_s", "cpu_s", "end.cpu.system_ns", "error"])
        w.writeheader()
        w.writerow({"cell": 0, "policy": policy, "workload": f"balloon {mb} MB", "wall_s": cpu + 50, "cpu_s": cpu,
                    "end.cpu.system_ns": 1_500_000_000 + cached_pages, "error": ""})
    return f"{name}.json", f"{name}.csv"


def test_cells_run_apart_make_one_table_and_figure(tmp_path, capsys):
    inputs, results = [], []
    for mb in (1000, 500):                       # read out of order
        for policy, cached, cpu in (("unmapped-2011-01", 20_000, 250), ("linux", 250_000, 240),
                                    ("unmapped-2010-06", 70_000, 245)):
            j, c = write_cell(tmp_path, policy, mb, cached, cpu + mb // 100)
            inputs.append(j)
            results += ["--results", c]
    png, merged, merged_csv = tmp_path / "f.png", tmp_path / "all.json", tmp_path / "all.csv"
    assert table.main(inputs + results + ["--over-time", "balloon 500 MB", "--png", str(png), "--save", str(merged),
                                          "--save-results", str(merged_csv)]) == 0
    out = capsys.readouterr().out
    assert "| Ballast with v4 (unmapped-2011-01) |" in out.splitlines()[0]
    rows = [line for line in out.splitlines() if line.startswith(("| 500 MB |", "| 1000 MB |"))]
    assert [r.split(" | ")[1] for r in rows] == ["linux", "unmapped-2010-06", "unmapped-2011-01"] * 2
    assert rows[0].endswith("| 1.50 | 245 | 295 |")      # guest system s, CPU s and wall s of (500 MB, linux)
    assert "| Cached MiB unmapped-2011-01 |" in out       # the over-time table has all three policies
    assert png.stat().st_size > 20_000
    data = json.loads(merged.read_text())
    assert [(c["workload"], c["policy"]) for c in data["cells"]][:3] == \
        [("balloon 500 MB", "linux"), ("balloon 500 MB", "unmapped-2010-06"), ("balloon 500 MB", "unmapped-2011-01")]
    assert data["config"]["mem_mib"] == 2048 and len(data["config"]["workloads"]) == 2
    with open(merged_csv, newline="") as f:
        assert len(list(csv.DictReader(f))) == 6
