"""`ballast sweep-report RESULTS`: a summary table of a sweep's results and PNG plots of a metric
against an axis, a line per policy (or per value of the axis given with --by)."""
import json
import os
import re

from .errors import BallastError
from .sweep import read_table

# what the summary and the plots show by default, per snapshot (the last one taken)
DEFAULT_METRICS = ("guest.MemFree", "guest.Cached", "oracle.duplicated_pages", "host.cache_pages",
                   "ram.resident_pages")
RUN_METRICS = ("exit.runs_virtual_ns", "exit.virtual_ns")


def axes_of(frame) -> list:
    """The axis columns: those between the cell's identity and its outcome, as run() writes them."""
    columns = list(frame.columns)
    if "cell_key" not in columns or "error" not in columns:
        raise BallastError("not a sweep's results (no cell_key or error column)")
    keys = [json.loads(k) for k in frame["cell_key"]]
    return list(keys[0]) if keys else []


def snapshot_names(frame) -> list:
    names = []
    for column in frame.columns:
        m = re.match(r"(.+)\.guest\.MemFree$", column)
        if m and not m.group(1).startswith("machines."):
            names.append(m.group(1))
        m = re.match(r"(.+)\.machines\.[^.]+\.guest\.MemFree$", column)
        if m and m.group(1) not in names:
            names.append(m.group(1))
    return names


def default_metrics(frame) -> list:
    snaps = snapshot_names(frame)
    last = snaps[-1] if snaps else None
    metrics = [f"{last}.{m}" for m in DEFAULT_METRICS if last and f"{last}.{m}" in frame.columns]
    return metrics + [m for m in RUN_METRICS if m in frame.columns][:1]


def load(path: str, metrics=None):
    frame = read_table(path)
    try:
        axes = axes_of(frame)
    except BallastError as e:
        raise BallastError(f"{path}: {e}") from None
    if metrics:
        unknown = [m for m in metrics if m not in frame.columns]
        if unknown:
            close = [c for c in frame.columns if unknown[0].split(".")[-1] == c.split(".")[-1]][:3]
            raise BallastError(f"--metric {unknown[0]}: no such column in {path}"
                               + (f" (did you mean {', '.join(close)}?)" if close else ""))
    else:
        metrics = default_metrics(frame)
    return frame, axes, list(metrics)


def _number(value):
    return value if isinstance(value, (int, float)) and value == value else None


def _fmt(value) -> str:
    if value is None or value != value:
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.3f}"
    if isinstance(value, (int, float)):
        return f"{int(value):,}"
    return str(value)


def summary_table(frame, axes: list, metrics: list, title: str):
    """A row per cell: its axis values, the metrics and its error (if any). Metrics of one snapshot
    are headed without its name, which goes in the title."""
    from rich.table import Table
    snaps = {m.split(".")[0] for m in metrics if m.split(".")[0] in snapshot_names(frame)}
    shared = next(iter(snaps)) if len(snaps) == 1 else None
    if shared:
        title += f" (metrics at snapshot '{shared}')"
    table = Table(title=title, title_justify="left")
    for axis in axes:
        table.add_column(axis)
    for metric in metrics:
        table.add_column(metric.removeprefix(f"{shared}.") if shared else metric, justify="right")
    table.add_column("wall s", justify="right")
    table.add_column("error", no_wrap=True)
    for record in frame.sort_values("cell").to_dict("records"):
        error = record.get("error")
        table.add_row(*(_fmt(record.get(a)) for a in axes), *(_fmt(record.get(m)) for m in metrics),
                      _fmt(record.get("wall_s")), "" if not isinstance(error, str) else error[:80])
    return table


def plot_axes(frame, axes: list, by: str | None) -> list:
    """The axes worth a plot: every axis with several values except the one that makes the lines."""
    return [a for a in axes if a != by and frame[a].nunique(dropna=False) > 1]


def write_plots(frame, axes: list, metrics: list, by: str | None, out_dir: str, stem: str) -> list:
    """A PNG per (x axis, metric): the metric against x, a line per value of `by`, a panel per
    combination of the other axes. Returns the paths written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = frame[frame["error"].fillna("") == ""] if "error" in frame.columns else frame
    written = []
    for x in plot_axes(frame, axes, by):
        others = [a for a in axes if a not in (x, by) and frame[a].nunique(dropna=False) > 1]
        xs = list(dict.fromkeys(frame[x].tolist()))              # the grid's order
        panels = list(dict.fromkeys(tuple(r[a] for a in others) for r in frame.to_dict("records")))[:12]
        lines = list(dict.fromkeys(frame[by].tolist())) if by else [None]
        for metric in metrics:
            cols = min(3, len(panels))
            rows = (len(panels) + cols - 1) // cols
            fig, grid = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
            for i, panel in enumerate(panels):
                ax = grid[i // cols][i % cols]
                part = ok
                for a, v in zip(others, panel):
                    part = part[part[a] == v]
                for line in lines:
                    sub = part if line is None else part[part[by] == line]
                    ys = []
                    for xv in xs:
                        values = [_number(v) for v in sub[sub[x] == xv][metric].tolist()]
                        values = [v for v in values if v is not None]
                        ys.append(sum(values) / len(values) if values else float("nan"))
                    ax.plot(range(len(xs)), ys, marker="o", linewidth=1.2, label=None if line is None else str(line))
                ax.set_xticks(range(len(xs)), [str(v) for v in xs])
                ax.set_xlabel(x)
                ax.set_ylabel(metric.split(".")[-1])
                ax.set_title(", ".join(f"{a}={v}" for a, v in zip(others, panel)) or metric, fontsize=9)
                if by:
                    ax.legend(fontsize=7, title=by, title_fontsize=7)
            for j in range(len(panels), rows * cols):
                grid[j // cols][j % cols].set_visible(False)
            fig.suptitle(f"{metric} against {x}")
            fig.tight_layout()
            path = os.path.join(out_dir, f"{stem}.{_slug(metric)}.by-{_slug(x)}.png")
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    return written


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
