"""`ballast sweep` on Dask: a sweep gives the same table as its cells run one by one here, a killed
worker's cell runs again elsewhere, --resume after a kill runs only the missing cells, a bad sweep
file is one line before anything starts, and a separately started `dask scheduler` + `dask worker`
run it too. Cells are quick (a 48-64 MiB guest touching a few MiB)."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from vmm import sweep as sw
from vmm.cli import main

QUICK = """
[sweep]
description = "quick cells"

[scenario.machine]
mem = "64M"
balloon = { features = ["MUST_TELL_HOST", "STATS_VQ"] }

[scenario.host]
memory = "80M"

[[scenario.step]]
run = ["/bin/memhog", "8M"]

[[scenario.step]]
balloon_mib = 16

[[scenario.step]]
wait = "balloon"

[[scenario.step]]
snapshot = "after"

[axes]
"machine.mem" = ["48M", "64M"]
"step.1.run" = [["/bin/memhog", "4M"], ["/bin/memhog", "12M", "2"]]

[axes.policy]
linux = {}
unmapped = { "machine.cmdline" = "unmapped_page_control" }
"""


def sweep_file(tmp_path, text=QUICK, name="quick.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def measurements(frame):
    """What must repeat wherever a cell runs: every column but wall times and the worker."""
    columns = [c for c in frame.columns if sw.is_measurement(c)]
    return frame[columns].sort_values("cell").reset_index(drop=True)


@pytest.fixture(scope="module")
def cluster():
    with sw.Cluster(n_workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def one_by_one(tmp_path_factory):
    """The 8 cells run here, one after another, with no Dask, as a table read back from CSV."""
    tmp = tmp_path_factory.mktemp("serial")
    sweep = sw.load(sweep_file(tmp))
    rows = [sw.row(cell, sw.run_cell(cell.scenario, sweep.base_dir)) for cell in sweep.cells]
    sw.write_table(rows, str(tmp / "serial.csv"))
    return sw.read_table(str(tmp / "serial.csv"))


def test_sweep_on_two_workers_equals_the_cells_run_one_by_one(tmp_path, cluster, one_by_one):
    sweep = sw.load(sweep_file(tmp_path))
    assert len(sweep.cells) == 8
    seen = []
    for ext in (".csv", ".parquet"):
        out = str(tmp_path / f"results{ext}")
        rows = sw.run(sweep, out=out, client=cluster.client, progress=lambda *a: seen.append(a))
        assert not any(r["error"] for r in rows)
        table = sw.read_table(out)
        assert len(table) == 8 and table["cell"].tolist() == list(range(8))
        assert table["worker"].nunique() == 2                       # both workers ran cells
        pd.testing.assert_frame_equal(measurements(table), measurements(one_by_one), check_dtype=False)
    assert seen[0] == (0, 0, 8) and seen[-1] == (8, 0, 8)
    # one column per axis and per flattened metric, with the metrics that matter
    for column in ("machine.mem", "step.1.run", "policy", "after.guest.MemFree", "after.oracle.duplicated_pages",
                   "after.policy.pgsteal_unmapped", "after.balloon.actual_pages", "exit.virtual_ns", "error"):
        assert column in table.columns
    assert set(table["policy"]) == {"linux", "unmapped"}
    assert table["after.guest.MemFree"].nunique() > 1                # the axes change the guest
    assert (table["after.balloon.actual_pages"] == 16 * 256).all()


def test_duckdb_reads_both_formats(tmp_path, one_by_one):
    duckdb = pytest.importorskip("duckdb")
    for ext in (".csv", ".parquet"):
        out = str(tmp_path / f"t{ext}")
        sw.write_table(one_by_one.to_dict("records"), out)
        reader = "read_parquet" if ext == ".parquet" else "read_csv_auto"
        query = f"select count(*), sum(\"after.guest.MemFree\") from {reader}('{out}')"
        n, free = duckdb.connect().execute(query).fetchone()
        assert n == 8 and free == one_by_one["after.guest.MemFree"].sum()


def test_a_killed_workers_cell_runs_again_on_another(tmp_path, cluster, one_by_one):
    client = cluster.client
    pids = client.run(os.getpid)                                   # worker address -> its process
    sweep = sw.load(sweep_file(tmp_path))
    out = str(tmp_path / "results.csv")
    done = {}
    runner = threading.Thread(target=lambda: done.setdefault("rows", sw.run(sweep, out=out, client=client)))
    runner.start()
    victim, lost = None, []
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        for address, keys in client.processing().items():
            keys = [k for k in keys if str(k).startswith("ballast-cell-")]
            if keys and address in pids:
                victim, lost = address, keys
                os.kill(pids[address], signal.SIGKILL)
                break
        time.sleep(0.01)
    runner.join(120)
    assert victim is not None and not runner.is_alive()
    table = sw.read_table(out)
    assert not any(table["error"].fillna(""))
    lost_cells = {int(str(k).split("-")[2]) for k in lost}
    assert lost_cells
    # in flight on the victim when it died, so finished elsewhere (one may have finished in the instant
    # between asking the scheduler and the kill; then it was not lost)
    assert any(table.loc[table["cell"] == cell, "worker"].item() != victim for cell in lost_cells)
    pd.testing.assert_frame_equal(measurements(table), measurements(one_by_one), check_dtype=False)


def test_workers_without_this_ballast_are_one_line(tmp_path, cluster, monkeypatch):
    monkeypatch.setattr(sw, "installed_version", lambda: "0.0.0-not-theirs")
    with pytest.raises(sw.BallastError, match=r"^Dask worker tcp://127\.0\.0\.1:\d+ has Ballast .*, this is "
                                              r"0\.0\.0-not-theirs: install the same version$"):
        sw.run(sw.load(sweep_file(tmp_path)), client=cluster.client)


def test_resume_after_a_killed_sweep_runs_only_the_missing_cells(tmp_path):
    path = sweep_file(tmp_path)
    out = str(tmp_path / "results.csv")
    cmd = [sys.executable, "-m", "vmm.cli", "sweep", path, "--out", out, "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if os.path.exists(out) and len(pd.read_csv(out)) >= 2:
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)         # the sweep and its local cluster, mid-sweep
        proc.wait()
    before = sw.read_table(out)
    assert 2 <= len(before) < 8, "the sweep finished before it could be killed"
    result = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{len(before)} cells already in {out}; running {8 - len(before)}" in " ".join(result.stdout.split())
    after = sw.read_table(out)
    assert sorted(after["cell"]) == list(range(8)) and not any(after["error"].fillna(""))
    kept = after[after["cell"].isin(before["cell"])].reset_index(drop=True)
    # the cells done before the kill were not run again: their rows (wall time, worker) are as written then
    pd.testing.assert_frame_equal(kept, before.sort_values("cell").reset_index(drop=True), check_dtype=False)
    new_workers = set(after[~after["cell"].isin(before["cell"])]["worker"])
    assert not new_workers & set(before["worker"])


BAD = [
    ('"machine.mem" = ["48M", "64M"]', '"machine.memory" = ["48M"]', "machine: unknown key 'memory'"),
    ('"machine.mem" = ["48M", "64M"]', '"machine.mem" = []', "axis 'machine.mem' is empty"),
    ('"machine.mem" = ["48M", "64M"]', '"machine.mem" = ["48M", "1M"]',
     "axis 'machine.mem' = 1M: machine.mem: 1 MiB is too small"),
    ('"machine.mem" = ["48M", "64M"]', '"step.9.run" = [["/bin/hello"]]', "'step.9.run': step has 4 entries"),
    ('unmapped = { "machine.cmdline" = "unmapped_page_control" }', 'odd = { "machine.cache" = "sideways" }',
     "axis 'policy' = odd: machine.cache: unknown cache mode 'sideways'"),
    ('"machine.mem" = ["48M", "64M"]', '"machine.mem" = ["16M"]\n"step.2.balloon_mib" = [8, 24]',
     "cell 4 (machine.mem=16M, step.2.balloon_mib=24, step.1.run=[\"/bin/memhog\", \"4M\"], policy=linux): "
     "step 2: balloon_mib: a balloon of 24 MiB is bigger than the guest"),                # fine alone, not together
    ('[axes]', '[axis]', "unknown top-level key 'axis'"),
    ('"machine.mem" = ["48M", "64M"]', '"machine.cmdline" = ["", "pagecache_dedup"]',
     "axes 'machine.cmdline' and 'policy' both set machine.cmdline"),
]


@pytest.mark.parametrize("old,new,message", BAD)
def test_a_bad_sweep_file_is_one_line_before_anything_starts(tmp_path, capsys, monkeypatch, old, new, message):
    started = []
    monkeypatch.setattr(sw, "Cluster", lambda *a, **k: started.append(a))
    assert old in QUICK
    path = sweep_file(tmp_path, QUICK.replace(old, new))
    out = tmp_path / "results.csv"
    assert main(["sweep", path, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ballast: ") and err.count("\n") == 1 and message in err, err
    assert not started and not out.exists()


def test_resume_refuses_another_sweeps_results(tmp_path, capsys, monkeypatch):
    started = []
    monkeypatch.setattr(sw, "Cluster", lambda *a, **k: started.append(a))
    out = tmp_path / "results.csv"
    out.write_text('cell,cell_key,error\n0,"{""machine.mem"":""32M""}",\n')
    assert main(["sweep", sweep_file(tmp_path), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "1 row(s) are not cells of" in err and err.count("\n") == 1 and not started
    assert main(["sweep", sweep_file(tmp_path), "--out", str(out)]) == 2
    assert "already exists (--resume to continue it" in capsys.readouterr().err


def test_dry_run_prints_the_grid(tmp_path, capsys):
    assert main(["sweep", sweep_file(tmp_path), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "8 cells over machine.mem (2), step.1.run (2), policy (2)" in text
    assert text.count("unmapped") == 4 and '["/bin/memhog", "12M", "2"]' in text


def test_failed_and_overrunning_cells_are_recorded_and_the_sweep_goes_on(tmp_path, cluster, capsys):
    text = QUICK.replace('"step.1.run" = [["/bin/memhog", "4M"], ["/bin/memhog", "12M", "2"]]', '''
[axes.program]
memhog = { "step.1.run" = ["/bin/memhog", "4M"] }
endless = { "step.1.run" = ["/bin/compute", "100000000000"] }
slow = { "step.1.run" = ["/bin/compute", "100000000000"], "step.1.timeout_s" = 0.05 }
missing = { "step.1.run" = ["/bin/no-such-program"] }
''').replace('"machine.mem" = ["48M", "64M"]', "")
    sweep = sw.load(sweep_file(tmp_path, text))
    out = str(tmp_path / "results.parquet")
    rows = sw.run(sweep, out=out, client=cluster.client, cell_timeout_s=4)
    table = sw.read_table(out)
    assert len(table) == 8
    errors = dict(zip(zip(table["program"], table["policy"]), table["error"].fillna("")))
    for policy in ("linux", "unmapped"):
        assert errors["endless", policy] == "timed out after 4 s of wall time"        # the wall-time limit
        assert errors["slow", policy] == "/bin/compute did not finish within 0.05 s of guest time (timeout)"
        assert not errors["memhog", policy] and not errors["missing", policy]
    missing = table[table["program"] == "missing"]
    assert (missing["step.1.exit_code"] != 0).all()                # a program's failure is a measurement
    slow = table[table["program"] == "slow"]
    assert (slow["exit.ok"] == False).all()                        # noqa: E712  (the partial result is kept)
    assert sum(bool(r["error"]) for r in rows) == 4
    # the report: a summary of every cell and a plot per metric against the axes, a line per policy
    assert main(["sweep-report", out, "--png-dir", str(tmp_path)]) == 0
    report = capsys.readouterr().out
    assert "8 cells, 4 failed" in report and "timed out" in report
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert "results.after.guest.MemFree.by-program.png" in pngs
    assert all((tmp_path / p).stat().st_size > 10_000 for p in pngs)
    assert main(["sweep-report", out, "--metric", "after.guest.Nope"]) == 2
    assert "no such column" in capsys.readouterr().err


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_separately_started_dask_scheduler_and_worker(tmp_path, one_by_one, capsys):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                       "--nthreads", "1", "--nworkers", "2", "--host", "127.0.0.1",
                                       "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:            # the scheduler listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        out = str(tmp_path / "remote.csv")
        assert main(["sweep", sweep_file(tmp_path), "--out", out, "--scheduler", address]) == 0
        table = sw.read_table(out)
        assert all(w.startswith("tcp://127.0.0.1:") and w != address for w in table["worker"])
        pd.testing.assert_frame_equal(measurements(table), measurements(one_by_one), check_dtype=False)
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert "8 of 8 cells ok" in capsys.readouterr().out


def test_an_unreachable_scheduler_is_one_line(tmp_path, capsys):
    port = _free_port()
    assert main(["sweep", sweep_file(tmp_path), "--out", str(tmp_path / "r.csv"),
                 "--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ballast: --scheduler tcp://127.0.0.1:{port}: cannot reach") and err.count("\n") == 1


def test_the_example_sweeps_are_valid():
    for name in ("demo.toml", "demo-quick.toml", "singh-2010.toml", "singh-2010-1to64.toml",
                 "balloon-sweep.toml"):
        sweep = sw.load(os.path.join(os.path.dirname(__file__), "..", "examples", name))
        assert sweep.cells and json.loads(sweep.cells[0].key)
