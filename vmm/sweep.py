"""`ballast sweep`: one scenario over a grid of settings, a Dask task per cell.

A sweep file names a scenario (a file, or an inline [scenario] table) and axes: dotted paths into
the scenario with the values to try ("machine.mem" = ["128M", "192M"]; a step is "step.N", counted
from 1 as scenario errors count it), or named axes whose values each set several paths at once
([axes.policy] unmapped = { "machine.cmdline" = "unmapped_page_control" }). The grid is the product
of the axes, first axis slowest. Every cell is checked by the scenario parser before anything runs.

Ballast runs are deterministic, so a cell gives the same numbers on any worker: cells are plain Dask
tasks on a `distributed.LocalCluster` (a worker process per core) or on an existing cluster. A worker
runs each cell in a forked child, so a cell that overruns its wall-time limit or crashes is killed
and recorded without taking the worker down. A worker that dies is Dask's business: the scheduler
gives its cell to another. The results table (a row per cell: the axis values, every snapshot's
metrics flattened as `SNAPSHOT.group.name`, how the run ended, wall time, the error if it failed) is
rewritten as each cell finishes, so a killed sweep loses only the cells in flight; `resume` skips the
cells already done."""
import copy
import itertools
import json
import os
import time
from dataclasses import dataclass, field

from .errors import BallastError
from .scenario_file import read_toml

FORMATS = (".csv", ".parquet")
# columns that are not a cell's measurements (a wall time or a place differs from run to run)
ID_COLUMNS = ("cell", "cell_key")
RUN_COLUMNS = ("error", "wall_s", "cpu_s", "worker")
SKIPPED = {("oracle", "files"), ("host", "rss_bytes")}   # per-file detail; the worker process's RSS


@dataclass
class Axis:
    name: str               # the column: a dotted path, or the named axis's name
    labels: list            # a value per grid point, as recorded in the table
    sets: list              # per value: {dotted path: value} applied to the scenario


@dataclass
class Cell:
    index: int
    point: dict             # axis name -> label
    scenario: dict          # the scenario with this cell's values applied

    @property
    def key(self) -> str:
        """The cell's identity in a results table: its axis values, canonical JSON."""
        return json.dumps(self.point, separators=(",", ":"))      # axes in the file's order

    def describe(self) -> str:
        return ", ".join(f"{k}={_text(v)}" for k, v in self.point.items()) or "the scenario as written"


@dataclass
class Sweep:
    source: str
    base_dir: str           # where the scenario's relative paths start
    template: dict
    axes: list
    cells: list = field(default_factory=list)
    description: str = ""
    cell_timeout_s: float | None = None


# --- the file -----------------------------------------------------------------------------------

def load(path: str) -> Sweep:
    data = read_toml(path, path)
    return parse(data, source=path, base_dir=os.path.dirname(os.path.realpath(path)))


def parse(data: dict, source: str = "sweep", base_dir: str = ".") -> Sweep:
    """Check the file and every cell of its grid; a mistake is one BallastError naming it."""
    def fail(text):
        raise BallastError(f"{source}: {text}")

    for key in data:
        if key not in ("sweep", "scenario", "axes"):
            fail(f"unknown top-level key '{key}' (expected sweep, scenario, axes)")
    head = data.get("sweep", {})
    if not isinstance(head, dict):
        fail("sweep: must be a table ([sweep])")
    for key in head:
        if key not in ("scenario", "description", "cell_timeout_s"):
            fail(f"sweep: unknown key '{key}' (expected scenario, description, cell_timeout_s)")
    description = head.get("description", "")
    if not isinstance(description, str):
        fail("sweep.description: must be a string")
    timeout = head.get("cell_timeout_s")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        fail(f"sweep.cell_timeout_s: must be a positive number of seconds, not {timeout!r}")
    if ("scenario" in head) == ("scenario" in data):
        fail("give the scenario once: [sweep] scenario = \"FILE.toml\" or an inline [scenario] table")
    if "scenario" in head:
        name = head["scenario"]
        if not isinstance(name, str) or not name:
            fail("sweep.scenario: must be a file name (relative to the sweep file)")
        path = os.path.join(base_dir, os.path.expanduser(name))
        template = read_toml(path, f"{source}: sweep.scenario {name}")
        scenario_dir = os.path.dirname(os.path.realpath(path))
    else:
        template = data["scenario"]
        if not isinstance(template, dict):
            fail("scenario: must be a table ([scenario])")
        scenario_dir = base_dir
    try:
        _check(template, scenario_dir)
    except BallastError as e:
        fail(f"{head.get('scenario', 'scenario')}: {e}")

    raw_axes = data.get("axes", {})
    if not isinstance(raw_axes, dict):
        fail("axes: must be a table ([axes] \"machine.mem\" = [\"128M\", \"192M\"])")
    axes = [_parse_axis(name, values, fail) for name, values in raw_axes.items()]
    _no_overlap(axes, fail)
    sweep = Sweep(source, scenario_dir, template, axes, description=description, cell_timeout_s=timeout)
    # each value alone first, so that an error names the axis and its value ...
    for axis in axes:
        for label, sets in zip(axis.labels, axis.sets):
            scenario = _apply(template, sets, lambda text: fail(f"axis '{axis.name}' = {_text(label)}: {text}"))
            try:
                _check(scenario, scenario_dir)
            except BallastError as e:
                fail(f"axis '{axis.name}' = {_text(label)}: {e}")
    # ... then every combination
    for index, choice in enumerate(itertools.product(*(range(len(a.labels)) for a in axes))):
        point, sets = {}, {}
        for axis, i in zip(axes, choice):
            point[axis.name] = axis.labels[i]
            sets.update(axis.sets[i])
        cell = Cell(index, point, None)
        cell.scenario = _apply(template, sets, lambda text: fail(f"cell {index} ({cell.describe()}): {text}"))
        try:
            _check(cell.scenario, scenario_dir)
        except BallastError as e:
            fail(f"cell {index} ({cell.describe()}): {e}")
        sweep.cells.append(cell)
    return sweep


def _check(scenario: dict, base_dir: str) -> None:
    """The scenario parser's verdict on a cell (its error without the parser's "scenario: ")."""
    from . import scenario as sc
    try:
        sc.parse(copy.deepcopy(scenario), source="scenario", base_dir=base_dir)
    except BallastError as e:
        raise BallastError(str(e).removeprefix("scenario: ")) from None


def _parse_axis(name: str, values, fail) -> Axis:
    if not name or name in ID_COLUMNS + RUN_COLUMNS:
        fail(f"axes: '{name}' cannot name an axis")
    if isinstance(values, list):
        if not values:
            fail(f"axis '{name}' is empty: give it at least one value")
        _segments(name, lambda text: fail(f"axis '{name}': {text}"))
        return Axis(name, list(values), [{name: v} for v in values])
    if isinstance(values, dict):
        if not values:
            fail(f"axis '{name}' is empty: give it at least one named value")
        labels, sets = [], []
        for label, table in values.items():
            if not isinstance(table, dict):
                fail(f"axis '{name}' = {label}: must be a table of dotted paths, e.g. "
                     f"{{ \"machine.cmdline\" = \"unmapped_page_control\" }}")
            flat = dict(_flatten_paths(table))
            for path in flat:
                _segments(path, lambda text: fail(f"axis '{name}' = {label}: '{path}': {text}"))
            labels.append(label)
            sets.append(flat)
        return Axis(name, labels, sets)
    fail(f"axis '{name}': must be a list of values, or a table of named values")


def _no_overlap(axes: list, fail) -> None:
    """Two axes that set one path (or one inside the other) would silently override each other."""
    owner = {}
    for axis in axes:
        for path in {p for sets in axis.sets for p in sets}:
            for other, by in owner.items():
                if by != axis.name and (path == other or path.startswith(other + ".") or other.startswith(path + ".")):
                    fail(f"axes '{by}' and '{axis.name}' both set {min(path, other, key=len)}")
            owner.setdefault(path, axis.name)


def _flatten_paths(table: dict, prefix: str = ""):
    """{"machine": {"cmdline": x}} and {"machine.cmdline": x} both set the path machine.cmdline: a
    named value sets leaves and keeps the rest of the template's tables."""
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _flatten_paths(value, path + ".")
        else:
            yield path, value


def _segments(path: str, fail) -> list:
    parts = path.split(".")
    if any(not p for p in parts):
        fail("a dotted path needs a name between the dots")
    return parts


def _apply(template: dict, sets: dict, fail) -> dict:
    """A copy of template with each dotted path set; a list is indexed from 1 ("step.2.run")."""
    scenario = copy.deepcopy(template)
    for path, value in sets.items():
        parts = _segments(path, fail)
        node = scenario
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[:depth]) or "the scenario"
            if isinstance(node, list):
                if not part.isdigit() or not 1 <= int(part) <= len(node):
                    fail(f"'{path}': {where} has {len(node)} entries: '{part}' is not one of 1..{len(node)}")
                key = int(part) - 1
            elif isinstance(node, dict):
                key = part
                if not last and key not in node:
                    node[key] = {}
            else:
                fail(f"'{path}': {where} is a value, not a table")
            if last:
                node[key] = copy.deepcopy(value)
            else:
                node = node[key]
    return scenario


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# --- one cell -----------------------------------------------------------------------------------

def run_cell(scenario: dict, base_dir: str) -> dict:
    """Run one cell here; {"result": the scenario's result (partial if it failed), "error": text or None}."""
    from . import scenario as sc
    spec = sc.parse(copy.deepcopy(scenario), source="scenario", base_dir=base_dir)
    try:
        return {"result": sc.run(spec), "error": None}
    except BallastError as e:
        return {"result": getattr(e, "result", None), "error": str(e)}


def execute_cell(scenario: dict, base_dir: str, timeout_s: float | None = None) -> dict:
    """The Dask task: run_cell in a forked child, killed after timeout_s of wall time. Adds wall_s
    and the worker's address."""
    _warm_imports()
    started = time.perf_counter()
    out = _forked(run_cell, (scenario, base_dir), timeout_s)
    out["wall_s"] = round(time.perf_counter() - started, 3)
    try:
        from distributed import get_worker
        out["worker"] = get_worker().address
    except (ImportError, ValueError):
        out["worker"] = f"pid {os.getpid()}"
    return out


# What a cell imports: imported once per worker, so that each forked cell starts warm.
CELL_MODULES = ("devices.host", "guestos.kernel.signal", "vmm.machine", "vmm.oracle", "vmm.rootfs", "vmm.scenario",
                "vmm.swapdisk")


def _warm_imports() -> None:
    import importlib
    for name in CELL_MODULES:
        importlib.import_module(name)


def _forked(fn, args, timeout_s):
    import gc
    import pickle
    import select
    import signal
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:                                       # the child: run, send the answer, leave
        status = 0
        try:
            os.close(reader)
            _die_with_parent()
            # The worker's own objects (Dask, pandas: hundreds of thousands) are not the cell's: left
            # to the collector, every full collection in the cell walks them (measured: 20% slower).
            gc.freeze()
            try:
                answer = fn(*args)
            except BaseException as e:                 # anything: the parent records it, the sweep goes on
                answer = {"result": None, "error": f"{type(e).__name__}: {e}"}
            data = pickle.dumps(answer)
            view = memoryview(data)
            while view:
                view = view[os.write(writer, view):]
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(writer)
    chunks, deadline = [], None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([reader], [], [], wait)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return {"result": None, "error": f"timed out after {timeout_s:g} s of wall time"}
            chunk = os.read(reader, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(reader)
    _, status, usage = os.wait4(pid, 0)
    if chunks:
        answer = pickle.loads(b"".join(chunks))
    elif os.WIFSIGNALED(status):
        answer = {"result": None, "error": f"the cell's process died of signal {os.WTERMSIG(status)}"}
    else:
        answer = {"result": None, "error": f"the cell's process exited {os.WEXITSTATUS(status)} without an answer"}
    answer["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
    return answer


def _die_with_parent() -> None:
    """A cell must not outlive its worker (a killed worker's cell runs again elsewhere)."""
    import ctypes
    import signal
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os._exit(1)


# --- a row of the table ---------------------------------------------------------------------------

def row(cell: Cell, outcome: dict) -> dict:
    """The table's row for a finished cell."""
    out = {"cell": cell.index, "cell_key": cell.key}
    for name, value in cell.point.items():
        out[name] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
    out["error"] = outcome.get("error") or ""
    out["wall_s"] = outcome.get("wall_s")
    out["cpu_s"] = outcome.get("cpu_s")
    out["worker"] = outcome.get("worker", "")
    result = outcome.get("result")
    if result:
        out.update(metrics(result))
    return out


def metrics(result: dict) -> dict:
    """A scenario result flattened: SNAPSHOT.group.name for every snapshot, exit.* for how it ended,
    step.N.* for each program run."""
    out = {}
    for name, snap in result.get("snapshots", {}).items():
        _flatten(snap, (name,), out)
    end = result.get("exit", {})
    for key in ("ok", "steps_run", "violations", "waits_met", "virtual_ns"):
        if key in end:
            out[f"exit.{key}"] = end[key]
    runs = end.get("runs", [])
    out["exit.runs_failed"] = sum(1 for r in runs if r["signaled"] or r["exit_code"])
    out["exit.runs_virtual_ns"] = sum(r.get("virtual_ns", 0) for r in runs)
    for r in runs:
        out[f"step.{r['step']}.exit_code"] = r["exit_code"]
        if "virtual_ns" in r:
            out[f"step.{r['step']}.virtual_ns"] = r["virtual_ns"]
    return out


def _flatten(node, path: tuple, out: dict) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if path[-1:] + (key,) in SKIPPED:
                continue
            _flatten(value, path + (str(key),), out)
    elif isinstance(node, (list, tuple)):
        out[".".join(path)] = json.dumps(node)
    else:
        out[".".join(path)] = node


def is_measurement(column: str) -> bool:
    """Columns that must repeat exactly when a cell runs again anywhere (not wall time, not where)."""
    return column not in RUN_COLUMNS and not column.endswith("wall_s")


# --- the table ----------------------------------------------------------------------------------------

def check_out(path: str) -> None:
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise BallastError(f"--out {path}: the extension chooses the format: {' or '.join(FORMATS)}")
    if not os.path.isdir(os.path.dirname(path) or "."):
        raise BallastError(f"--out {path}: no such directory")


def read_table(path: str):
    import pandas as pd
    try:
        if path.lower().endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"cell_key": str, "error": str, "worker": str}, keep_default_na=False,
                           na_values=[""])
    except FileNotFoundError:
        raise BallastError(f"{path}: no such file") from None
    except Exception as e:  # pandas and pyarrow raise many kinds for a file that is not a table
        raise BallastError(f"{path}: not a results table ({type(e).__name__}: {str(e).splitlines()[0][:120]})") \
            from None


def write_table(rows: list, path: str) -> None:
    """Every row so far, written whole to a temporary file and renamed over path: a reader (or a
    kill) never sees half a table."""
    import pandas as pd
    frame = pd.DataFrame(rows)
    if len(frame):
        # the cell, its axes, how it ran, then its metrics as first seen
        front = list(ID_COLUMNS) + list(json.loads(rows[0]["cell_key"])) + list(RUN_COLUMNS)
        frame = frame[[c for c in front if c in frame.columns] + [c for c in frame.columns if c not in front]]
        frame = frame.sort_values("cell", kind="stable").reset_index(drop=True)
        for column in frame.columns:        # one type per column (parquet needs it; csv readers like it)
            kinds = {type(v) for v in frame[column] if v is not None and v == v}
            if len(kinds) > 1 and not kinds <= {int, float, bool}:
                frame[column] = [None if v is None or v != v else str(v) for v in frame[column]]
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        if path.lower().endswith(".parquet"):
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except OSError as e:
        raise BallastError(f"{path}: {e.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def done_rows(sweep: Sweep, path: str) -> list:
    """For --resume: the rows of RESULTS whose cells finished without an error (failed cells run again)."""
    if not os.path.exists(path):
        return []
    frame = read_table(path)
    if "cell_key" not in frame.columns:
        raise BallastError(f"{path}: not a sweep's results (no cell_key column)")
    keys = {c.key for c in sweep.cells}
    foreign = [k for k in frame["cell_key"] if k not in keys]
    if foreign:
        raise BallastError(f"{path}: {len(foreign)} row(s) are not cells of {sweep.source} "
                           f"(another sweep's results? first: {foreign[0]})")
    rows = []
    for record in frame.to_dict("records"):
        record = {k: v for k, v in record.items() if not (v is None or v != v)}     # drop NaN (absent)
        if not record.get("error"):
            record["error"] = ""
            rows.append(record)
    return rows


# --- running ------------------------------------------------------------------------------------------

def check_scheduler(address: str) -> None:
    """A refused or unroutable tcp:// address fails at once (Dask's client would retry for its timeout)."""
    import socket
    from urllib.parse import urlsplit
    if not address.startswith("tcp://"):
        return
    try:
        parts = urlsplit(address)
        host, port = parts.hostname, parts.port
    except ValueError as e:
        raise BallastError(f"--scheduler {address}: {e}") from None
    if not host or port is None:
        raise BallastError(f"--scheduler {address}: give an address like tcp://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as e:
        raise BallastError(f"--scheduler {address}: cannot reach the Dask scheduler ({e.strerror or e})") from None


class Cluster:
    """A Dask client: on a LocalCluster of n_workers processes (one per core by default) that it owns,
    or on an existing scheduler."""

    def __init__(self, scheduler: str | None = None, n_workers: int | None = None):
        import logging

        from distributed import Client, LocalCluster
        self.cluster = None
        try:
            if scheduler:
                check_scheduler(scheduler)
                self.client = Client(scheduler, timeout="10s")
            else:
                import dask
                from distributed.utils import get_mp_context
                # Workers forked from one server that has imported Dask and Ballast once, rather than
                # each spawned and importing both (seconds of a sweep on a small machine).
                with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
                    get_mp_context().set_forkserver_preload(["distributed", "vmm.sweep", *CELL_MODULES])
                    # loopback only; no dashboard, and its HTTP routes on a free port rather than 8787
                    self.cluster = LocalCluster(n_workers=n_workers or len(os.sched_getaffinity(0)),
                                                threads_per_worker=1, processes=True, host="127.0.0.1",
                                                dashboard_address=None,
                                                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                                silence_logs=logging.ERROR)
                self.client = Client(self.cluster)
        except OSError as e:
            self.close()
            raise BallastError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({e})") from None

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def installed_version() -> str:
    from importlib.metadata import version
    return version("ballast")


def check_workers(client) -> None:
    """Every worker of the cluster has this version of Ballast (a cell is a call into it there)."""
    from importlib.metadata import version
    mine = installed_version()
    theirs = client.run(version, "ballast", on_error="return")
    for address, v in sorted(theirs.items()):
        if isinstance(v, BaseException):
            raise BallastError(f"Dask worker {address} has no Ballast installed ({type(v).__name__}); install "
                               "it on every worker (pip install ballast, or this repository)")
        if v != mine:
            raise BallastError(f"Dask worker {address} has Ballast {v}, this is {mine}: install the same version")


def _build_builtin_roots(cells) -> None:
    """Build the cells' built-in root images here, once, before the workers start: with a
    multi-GB /tree ("builtin:3G") every worker would otherwise build the same image at once."""
    from .rootfs import builtin_spec, root_image
    specs = set()
    for cell in cells:
        machines = [cell.scenario.get("machine") or {}] + list((cell.scenario.get("machines") or {}).values())
        specs.update(m.get("root", "builtin") for m in machines if isinstance(m, dict))
    for spec in sorted(s for s in specs if isinstance(s, str) and builtin_spec(s)):
        root_image(spec)


def run(sweep: Sweep, out: str | None = None, client=None, scheduler: str | None = None,
        n_workers: int | None = None, resume: bool = False, cell_timeout_s: float | None = None,
        on_cell=None, progress=None) -> list:
    """Run the cells (all, or with resume those not done in `out`) on Dask; returns every row, in
    cell order. on_cell(cell, outcome, row) as each finishes (outcome holds the full result, with any
    time series); progress(done, failed, total) before the first and after each."""
    from distributed import as_completed
    if out is not None:
        check_out(out)
    rows = done_rows(sweep, out) if resume and out is not None else []
    done = {r["cell_key"] for r in rows}
    todo = [c for c in sweep.cells if c.key not in done]
    timeout = cell_timeout_s if cell_timeout_s is not None else sweep.cell_timeout_s
    failed = 0
    if progress is not None:
        progress(len(rows), failed, len(sweep.cells))
    if not todo:
        if out is not None:
            write_table(rows, out)
        return rows
    _build_builtin_roots(todo)
    own = None
    if client is None:
        own = Cluster(scheduler, n_workers)
        client = own.client
    try:
        check_workers(client)
        futures = {}
        for cell in todo:
            future = client.submit(execute_cell, cell.scenario, sweep.base_dir, timeout, pure=False,
                                   key=f"ballast-cell-{cell.index}-{os.urandom(4).hex()}")
            futures[future] = cell
        for future in as_completed(futures):
            cell = futures.pop(future)
            try:
                outcome = future.result()
            except Exception as e:     # KilledWorker (it killed every worker it ran on), a lost cluster...
                outcome = {"result": None, "error": f"{type(e).__name__}: {e}", "wall_s": None, "worker": ""}
            r = row(cell, outcome)
            failed += bool(r["error"])
            rows.append(r)
            if out is not None:
                write_table(rows, out)
            if on_cell is not None:
                on_cell(cell, outcome, r)
            if progress is not None:
                progress(len(rows), failed, len(sweep.cells))
    finally:
        if own is not None:
            own.close()
    return sorted(rows, key=lambda r: r["cell"])
