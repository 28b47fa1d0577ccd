"""The summary of a scenario's result: one table (a row per measurement, a column per snapshot)
and one line on how the run ended."""
from .units import MiB, PAGE_SIZE


def _kib(value) -> str:
    return "" if value is None else f"{value / 1024:,.1f} MiB"


def _pages(value) -> str:
    return "" if value is None else f"{value * PAGE_SIZE / MiB:,.1f} MiB"


def _bytes(value) -> str:
    return "" if value is None else f"{value / MiB:,.1f} MiB"


def _count(value) -> str:
    return "" if value is None else f"{value:,}"


SUMMARY_ROWS = (
    # (group, label, where in a snapshot, format); rows empty in every snapshot are left out
    ("guest", "MemTotal", ("guest", "MemTotal"), _kib),
    ("guest", "MemFree", ("guest", "MemFree"), _kib),
    ("guest", "MemAvailable", ("guest", "MemAvailable"), _kib),
    ("guest", "Cached", ("guest", "Cached"), _kib),
    ("guest", "AnonPages", ("guest", "AnonPages"), _kib),
    ("guest", "SwapFree", ("guest", "SwapFree"), _kib),
    ("vmstat", "pgfault", ("vmstat", "pgfault"), _count),
    ("vmstat", "pgmajfault", ("vmstat", "pgmajfault"), _count),
    ("vmstat", "pswpout", ("vmstat", "pswpout"), _count),
    ("vmstat", "oom_kill", ("vmstat", "oom_kill"), _count),
    ("balloon", "target", ("balloon", "target_pages"), _pages),
    ("balloon", "actual", ("balloon", "actual_pages"), _pages),
    ("balloon", "free-memory", ("balloon", "stats", "free-memory"), _bytes),
    ("balloon", "available-memory", ("balloon", "stats", "available-memory"), _bytes),
    ("policy", "unmapped reclaimed", ("policy", "pgsteal_unmapped"), _pages),
    ("policy", "dedup reclaimed", ("policy", "pgsteal_dedup"), _pages),
    ("oracle", "duplicated", ("oracle", "duplicated_pages"), _pages),
    ("oracle", "host's estimate", ("oracle", "estimated_duplicated_pages"), _pages),
    ("host", "RSS", ("host", "rss_bytes"), _bytes),
    ("host", "page cache", ("host", "cache_pages"), _pages),
    ("host", "duplicated", ("host", "duplicated_pages"), _pages),
    ("host", "in several guests", ("host", "pages_in_several_guests"), _pages),
    ("time", "virtual", ("time", "virtual_ns"), lambda ns: f"{ns / 1e9:.3f} s"),
    ("time", "wall", ("time", "wall_s"), lambda s: f"{s:.2f} s"),
)


def _dig(snap: dict, path):
    for key in path:
        if not isinstance(snap, dict) or key not in snap:
            return None
        snap = snap[key]
    return snap


def _rows(snaps: dict):
    """(group, label, values, fmt) per row; a multi-machine scenario gets a block per machine."""
    first = next(iter(snaps.values()))
    if "machines" not in first:
        for group, label, path, fmt in SUMMARY_ROWS:
            yield group, label, [_dig(s, path) for s in snaps.values()], fmt
        return
    for machine in first["machines"]:
        for group, label, path, fmt in SUMMARY_ROWS:
            if group in ("host",) or (group == "time" and label == "wall"):
                continue
            yield f"{machine} {group}", label, [_dig(s, ("machines", machine) + path) for s in snaps.values()], fmt
    for group, label, path, fmt in SUMMARY_ROWS:
        if group == "host" or (group == "time" and label == "wall"):
            yield group, label, [_dig(s, path) for s in snaps.values()], fmt


def summary_table(result: dict):
    """One rich table: a row per measurement, a column per snapshot."""
    from rich.table import Table       # lazily: rich loads only when a table is printed
    snaps = result["snapshots"]
    table = Table(title="snapshots", title_justify="left")
    table.add_column("")
    table.add_column("")
    for name in snaps:
        table.add_column(name, justify="right")
    last_group = None
    for group, label, values, fmt in _rows(snaps):
        if all(v is None for v in values):
            continue
        if label == "SwapFree" and all(v == 0 or v is None for v in values):
            continue
        table.add_row(group if group != last_group else "", label, *(fmt(v) if v is not None else "" for v in values),
                      end_section=False)
        last_group = group
    return table


def exit_text(result: dict) -> str:
    e = result["exit"]
    parts = [f"{e['steps_run']} of {e['steps']} steps"]
    runs = e["runs"]
    if runs:
        failed = [r for r in runs if r["signaled"] or r["exit_code"]]
        parts.append(f"{len(runs)} program{'s' * (len(runs) != 1)}"
                     + (f" ({len(failed)} failed)" if failed else " (all exited 0)"))
    if e["waits"]:
        unmet = [str(w["step"]) for w in e["waits"] if not w["met"]]
        parts.append("waits met" if not unmet else f"wait NOT met (step {', '.join(unmet)})")
    parts.append(f"{e['violations']} balloon violation{'s' * (e['violations'] != 1)}")
    parts.append(f"{e['virtual_ns'] / 1e9:.3f} s of guest time")
    return ", ".join(parts)
