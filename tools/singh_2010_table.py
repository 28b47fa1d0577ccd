"""Markdown tables for docs/singh-2010.md from `ballast demo --paper --json FILE`: the end of each
run per balloon size, with and without the series, and host memory and duplication over guest time.

    python tools/singh_2010_table.py singh-2010.json [--over-time "balloon 16 MiB (his 1000 MB)"] [--points 10]
"""
import argparse
import json
import sys

PAGE_MIB = 4096 / (1 << 20)


def mib(pages) -> str:
    return f"{pages * PAGE_MIB:.1f}"


def end_table(data) -> list:
    lines = ["| balloon | policy | guest MemFree MiB | guest Cached MiB | build s (guest) | dup MiB | "
             "host MiB (frames + cache) | host cache hits MiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for c in data["cells"]:
        lines.append(f"| {c['workload'].removeprefix('balloon ')} | {c['policy']} | {mib(c['guest_free_pages'])} | "
                     f"{mib(c['guest_cached_pages'])} | {c['runtime_ns'] / 1e9:.3f} | {mib(c['duplicated_pages'])} | "
                     f"{mib(c['host_memory_pages'])} | {mib(c['host_hits_pages'])} |")
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
        lines.append(f"| {t / 1e9:.3f} | " + " | ".join(f"{p[1]:.1f}" for p in row) + " | " +
                     " | ".join(f"{p[2]:.1f}" for p in row) + " | " + " | ".join(f"{p[3]:.1f}" for p in row) + " |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json")
    ap.add_argument("--over-time", default="balloon 16 MiB (his 1000 MB)", metavar="WORKLOAD")
    ap.add_argument("--points", type=int, default=10)
    opts = ap.parse_args(argv)
    with open(opts.json) as f:
        data = json.load(f)
    print("\n".join(end_table(data)))
    print()
    print("\n".join(over_time(data, opts.over_time, opts.points)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
