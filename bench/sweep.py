"""Benchmark of `ballast sweep`: 16 quick demo cells on a local Dask cluster (a worker process per
core, started and stopped inside the timing) against the same cells run one by one in this process.

    python3 bench/sweep.py             # one serial run and one sweep, interleaved per repetition
    python3 bench/sweep.py --runs 2    # medians of 2 of each
    python3 bench/sweep.py --write     # also append the figures to bench/RESULTS.md

Target: the sweep takes <= 0.6x the wall time of the cells one by one. The ratio is measured in one
run, so it holds across hosts better than the seconds do; the load average (other processes on the
machine) is recorded beside it, because on a shared machine the sweep's second core may be busy."""
import argparse
import datetime
import os
import platform
import statistics
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vmm import demo  # noqa: E402
from vmm import sweep as sw  # noqa: E402

TARGET = 0.6


def bench_sweep() -> sw.Sweep:
    """The quick demo's cells: 2 workloads x 4 policies x 2 balloon sizes = 16."""
    with open(demo.sweep_path(quick=True), "rb") as f:
        data = tomllib.load(f)
    policies = data["axes"]["policy"]
    data["axes"] = {"workload": data["axes"]["workload"],
                    "policy": {p: policies[p] for p in ("linux", "unmapped-2011-01", "dedup", "exclusive")},
                    "step.2.balloon_mib": [64, 80]}
    return sw.parse(data, source="bench 16 quick demo cells", base_dir=str(REPO / "vmm" / "sweeps"))


def cpu_s() -> float:
    """CPU time of this process, of the processes under it now (the cluster's forkserver and workers)
    and of the children each has reaped (the workers' forked cells)."""
    import psutil
    me = psutil.Process()
    total = 0.0
    for p in [me] + me.children(recursive=True):
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def one_by_one(sweep: sw.Sweep) -> tuple[float, float, list]:
    started, cpu = time.perf_counter(), cpu_s()
    rows = [sw.row(cell, sw.run_cell(cell.scenario, sweep.base_dir)) for cell in sweep.cells]
    return time.perf_counter() - started, cpu_s() - cpu, rows


def on_dask(sweep: sw.Sweep, workers: int) -> tuple[float, float, list]:
    started, cpu = time.perf_counter(), cpu_s()
    with sw.Cluster(n_workers=workers) as cluster:   # its start and stop are in the wall time
        rows = sw.run(sweep, client=cluster.client)
        used = cpu_s() - cpu                          # while the workers are there to be asked
    return time.perf_counter() - started, used, rows


def same(a: list, b: list) -> bool:
    def clean(rows):
        return [{k: v for k, v in r.items() if sw.is_measurement(k)} for r in sorted(rows, key=lambda r: r["cell"])]
    return clean(a) == clean(b)


def host_info() -> dict:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cpu": model, "nproc": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "os": f"{platform.system()} {platform.release()}"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1, help="repetitions of each (default 1)")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                   help="local cluster workers (default: cores)")
    p.add_argument("--write", action="store_true", help="append the figures to bench/RESULTS.md")
    args = p.parse_args(argv)
    sweep = bench_sweep()
    assert len(sweep.cells) == 16
    info = host_info()
    print(f"{len(sweep.cells)} cells; {info['cpu']}, nproc {info['nproc']}; {args.workers} workers")
    sw.run_cell(sweep.cells[0].scenario, sweep.base_dir)          # warm: imports, the built-in root image
    serial, dask, loads, cpu_serial, cpu_dask, cells_cpu = [], [], [], [], [], []
    for i in range(args.runs):
        loads.append(os.getloadavg()[0])
        t, cpu, rows_serial = one_by_one(sweep)
        serial.append(t)
        cpu_serial.append(cpu)
        print(f"run {i + 1}: one by one {t:.1f} s, CPU {cpu:.1f} s (load {loads[-1]:.2f})", flush=True)
        loads.append(os.getloadavg()[0])
        t, cpu, rows_dask = on_dask(sweep, args.workers)
        dask.append(t)
        cpu_dask.append(cpu)
        cells_cpu.append(sum(r["cpu_s"] for r in rows_dask))
        print(f"run {i + 1}: sweep      {t:.1f} s, CPU {cpu:.1f} s, of which the cells {cells_cpu[-1]:.1f} s "
              f"(load {loads[-1]:.2f})", flush=True)
        if not same(rows_serial, rows_dask) or any(r["error"] for r in rows_dask):
            print("the sweep's results differ from the cells run one by one", file=sys.stderr)
            return 1
    s, d = statistics.median(serial), statistics.median(dask)
    cs, cd, cc = statistics.median(cpu_serial), statistics.median(cpu_dask), statistics.median(cells_cpu)
    ratio = d / s
    status = "met" if ratio <= TARGET else "MISSED"
    print(f"one by one {s:.1f} s, sweep {d:.1f} s: {ratio:.2f}x (target <= {TARGET}: {status}); "
          f"load average at the starts {min(loads):.2f}..{max(loads):.2f}; CPU {cs:.1f} s one by one, "
          f"{cd:.1f} s sweep ({cc:.1f} s in the cells); results identical")
    if args.write:
        day = datetime.date.today().isoformat()
        text = (f"\n## {day}, sweep: 16 quick demo cells ({args.runs} run{'s' * (args.runs != 1)} of each, "
                f"median)\n\n- CPU: {info['cpu']} (`nproc` {info['nproc']}), Python {info['python']}, {info['os']}\n"
                f"- Load average (1 min) at the start of each timing: "
                f"{', '.join(f'{x:.2f}' for x in loads)}\n\n"
                "| Benchmark | Measure | Value | Ratio | Target | Status | Detail |\n|---|---|---|---|---|---|---|\n"
                f"| sweep | 16 quick demo cells one by one, in one process (baseline) | {s:.1f} s |  |  |  | "
                f"runs: {', '.join(f'{x:.1f}' for x in serial)} s |\n"
                f"| sweep | the same 16 cells, `ballast sweep` on a LocalCluster of {args.workers} workers "
                f"| {d:.1f} s | "
                f"{ratio:.2f}x one by one | <= {TARGET} | {status} | cluster start and stop included; runs: "
                f"{', '.join(f'{x:.1f}' for x in dask)} s; results identical to the one-by-one run |\n"
                f"| sweep | CPU time, one by one / sweep (all processes) | {cs:.1f} s / {cd:.1f} s | "
                f"{cd / cs:.2f}x |  |  | of the sweep's, {cc:.1f} s in the cells' forked processes; the rest is "
                f"the cluster (its start, imports, scheduling) |\n")
        with open(REPO / "bench" / "RESULTS.md", "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
