"""The `ballast` command."""
import argparse
import importlib.metadata
import dataclasses
import json
import os
import sys

from .errors import BallastError, one_line
from .units import parse_size

TIMEOUT_REASON = "timeout"
TIMEOUT_EXIT = 124                  # as coreutils timeout(1)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise BallastError(message)

    def parse_args(self, args=None, namespace=None):
        opts = super().parse_args(args, namespace)
        # argparse drops a value of exactly '--' (`--mem=--`) and leaves an empty list behind
        for name, value in vars(opts).items():
            if (value == [] and name not in ("args", "disk", "cost", "what", "breaks")) or \
                    (isinstance(value, list) and any(not isinstance(v, str) for v in value)):
                raise BallastError(f"--{name.replace('_', '-')}: '--' is not a value")
        return opts


def version() -> str:
    try:
        return importlib.metadata.version("ballast")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def parse_disk(spec: str):
    from .machine import CACHE_MODES, DiskConfig
    from .hostinput import regular_file
    path, *options = spec.split(",")
    if not path:
        raise BallastError(f"--disk '{spec}': no image path")
    if os.path.lexists(path):           # a missing image: the disk layer says so below
        regular_file(path, "--disk")
    disk = DiskConfig(path)
    for opt in options:
        key, sep, value = opt.partition("=")
        if key == "cache" and value in CACHE_MODES:
            disk.cache = value
        elif key == "cache":
            raise BallastError(f"--disk {path}: unknown cache mode '{value}' (one of {', '.join(CACHE_MODES)})")
        elif key == "ro" and not sep:
            disk.read_only = True
        elif key == "snapshot" and not sep:
            disk.snapshot = True
        elif key == "profile" and value:
            disk.profile = value
        else:
            raise BallastError(f"--disk {path}: unknown option '{opt}' (cache=MODE, ro, snapshot, profile=NAME)")
    return disk


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ballast", description="A hardware-free lab for memory ballooning and page-cache reclaim.")
    p.add_argument("--version", action="version", version=f"ballast {version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="boot a guest and run a static x86-64 Linux program as its init")
    run.add_argument("--mem", default="256M", help="guest RAM (default 256M)")
    run.add_argument("--cmdline", default="", help="extra kernel command line")
    run.add_argument("--disk", action="append", default=[], metavar="IMG[,cache=MODE][,ro][,snapshot][,profile=P]",
                     help="a raw image as a virtio-blk disk (repeatable: vda, vdb, ...); cache modes as QEMU's: "
                          "writeback (default), none, writethrough, directsync, unsafe; profiles nvme, ssd, hdd")
    run.add_argument("--root", metavar="DIR|IMG|builtin",
                     help="an ext2 root: a directory (made into an image, cached), an image, or 'builtin' "
                          "(our workloads and their data); PROGRAM is then a path inside the guest")
    run.add_argument("--cache", default="writeback", help="host cache mode of the root disk (default writeback)")
    run.add_argument("--swap", metavar="SIZE", help="add a swap disk of SIZE (made with mkswap)")
    _trace_options(run)
    run.add_argument("--json", metavar="FILE", help="write run metrics as JSON ('-' for stdout)")
    run.add_argument("--cost", action="append", default=[], metavar="NAME=VALUE",
                     help="set a cost of the model (docs/cost-model.md), e.g. syscall_ns=500 (repeatable)")
    run.add_argument("--timeout", metavar="SECONDS",
                     help="end the program after SECONDS of guest (virtual) time; exit status 124")
    run.add_argument("--strace", action="store_const", const="-",
                     help="trace every guest system call as strace does, to stderr (--strace=FILE: to FILE)")
    run.add_argument("--strace-to", dest="strace", metavar="FILE", help=argparse.SUPPRESS)
    run.add_argument("--gdb", metavar="127.0.0.1:PORT",
                     help="wait for gdb (target remote) before the program's first instruction; loopback only, "
                          "port 0 picks a free one (the address is printed on stderr)")
    run.add_argument("program", metavar="PROGRAM", help="a static x86-64 ELF on the host")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for the program")
    sc = sub.add_parser("scenario", help="run a scripted experiment from a TOML file and summarise it")
    sc.add_argument("file", metavar="FILE.toml", help="the scenario ([machine], [host], [[step]]; see README)")
    sc.add_argument("--json", metavar="OUT", help="write the snapshots and how the run ended as JSON ('-' for stdout)")
    _trace_options(sc)
    demo = sub.add_parser("demo", help="the 2010 debate as an experiment: every page-cache policy on the "
                                       "built-in workloads under a balloon sweep, compared")
    demo.add_argument("--quick", action="store_true", help="a smaller guest, two workloads, two balloon steps")
    demo.add_argument("--paper", action="store_true",
                      help="Singh's June 2010 table in kind: a build under his balloon sweep, with and without the series")
    demo.add_argument("--scale", default="1:1", metavar="1:1|1:64",
                      help="with --paper: his 2 GiB guest (1:1, minutes of wall time per cell) or 32 MiB (1:64, seconds)")
    demo.add_argument("--workloads", metavar="LIST", help="comma-separated subset of stream,hotset,mapped+stream,mixed")
    demo.add_argument("--policies", metavar="LIST",
                      help="comma-separated subset of linux,cache=none,unmapped-2010-06,unmapped-2011-01,shrink_list,cache-first,dedup,exclusive")
    demo.add_argument("--png", metavar="FILE", default="ballast-demo.png",
                      help="memory over time per policy (default ballast-demo.png; '' for none)")
    demo.add_argument("--json", metavar="OUT", help="write every figure and time series as JSON ('-' for stdout)")
    demo.add_argument("--out", metavar="RESULTS", help="also write the sweep's results table (.csv or .parquet)")
    demo.add_argument("--workers", type=int, metavar="N", help="worker processes (default: one per core)")
    sw = sub.add_parser("sweep", help="run a scenario over a grid of settings on Dask and write a table of results")
    sw.add_argument("file", metavar="SWEEP.toml", help="a scenario plus [axes] of dotted paths (see README)")
    sw.add_argument("--out", metavar="RESULTS", help="the results table, written as cells finish: .csv or .parquet")
    sw.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                    help="an existing Dask scheduler (its workers need Ballast installed); default: a local "
                         "cluster, a worker process per core, started and stopped here")
    sw.add_argument("--workers", type=int, metavar="N", help="worker processes of the local cluster (default: cores)")
    sw.add_argument("--resume", action="store_true",
                    help="keep the cells RESULTS already holds without an error; run the others")
    sw.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                    help="a cell's wall-time limit (default: the file's sweep.cell_timeout_s, else none)")
    sw.add_argument("--dry-run", action="store_true", help="print the grid and stop")
    sr = sub.add_parser("sweep-report", help="summarise a sweep's results and plot metrics against its axes")
    sr.add_argument("results", metavar="RESULTS", help="a table written by ballast sweep (.csv or .parquet)")
    sr.add_argument("--metric", action="append", metavar="COLUMN",
                    help="a column to show and plot (repeatable; default: memory, duplication, runtime)")
    sr.add_argument("--by", metavar="AXIS", help="a line per value of this axis (default: 'policy' if there is one)")
    sr.add_argument("--png-dir", metavar="DIR", help="where the PNGs go (default: beside RESULTS; '' for none)")
    dbg = sub.add_parser("debug", help="a run or a scenario under the kernel debugger: break on tracepoints, "
                                       "step, look at pages, lists, zone, balloon and host")
    dbg.add_argument("--commands", metavar="FILE", help="debugger commands from FILE instead of stdin (then the "
                                                      "guest runs on to its end)")
    dbg.add_argument("what", nargs=argparse.REMAINDER, metavar="run ARGS... | scenario FILE.toml",
                     help="what `ballast run` or `ballast scenario` would run")
    wt = sub.add_parser("watch", help="a scenario in a live terminal view: memory bars per guest, the host, the "
                                      "trace; p pause, s step, c continue, q quit (needs textual: ballast[watch])")
    wt.add_argument("file", metavar="FILE.toml", help="the scenario")
    wt.add_argument("--break", dest="breaks", action="append", default=[], metavar="'EVENT [if CONDITION]'",
                    help="stop there as `ballast debug` would (repeatable)")
    mk = sub.add_parser("mkdisk", help="make an ext2 image of a directory (with the real mke2fs -d)")
    mk.add_argument("directory", metavar="DIR")
    mk.add_argument("image", metavar="IMG")
    mk.add_argument("--size", help="image size (default: room for the files and as much again)")
    return p


def _trace_options(parser) -> None:
    parser.add_argument("--trace", metavar="FILE",
                        help="write every kernel trace event to FILE as it happens (schema: docs/trace.md)")
    parser.add_argument("--trace-format", default="jsonl", metavar="jsonl|perfetto",
                        help="jsonl (default: one JSON object per event) or perfetto (open in ui.perfetto.dev)")


def _check_trace_file(path: str) -> None:
    from . import hostinput
    if path == "-":
        raise BallastError("--trace: a file, not '-' (stdout carries the guest's output)")
    hostinput.output_file(path, "--trace")


def _open_trace(opts):
    """The --trace writer (vmm/trace.py), or None; its options checked like every other."""
    from .trace import TraceWriter, check_format
    check_format(opts.trace_format)
    if not opts.trace:
        return None
    _check_trace_file(opts.trace)
    try:
        return TraceWriter(opts.trace, opts.trace_format)
    except OSError as e:
        raise BallastError(f"--trace {opts.trace}: {e.strerror}") from None


def cmd_mkdisk(opts) -> int:
    from .mkdisk import mkdisk
    size = parse_size(opts.size, "--size") if opts.size else None
    size = mkdisk(opts.directory, opts.image, size)
    print(f"{opts.image}: ext2, {size >> 20} MiB, from {opts.directory}")
    return 0


def cmd_run(opts) -> int:
    from guestos.fs.binfmt_elf import ENOEXEC, parse_elf

    from . import hostinput
    from .machine import CACHE_MODES, Machine, check_mem
    from .machine_spec import MachineSpec, Resources, assemble

    # every option is checked before anything is built or boots
    mem = check_mem(parse_size(opts.mem, "--mem"), "--mem")
    hostinput.kernel_cmdline(opts.cmdline, mem, "--cmdline")
    timeout_s = hostinput.guest_seconds(opts.timeout, "--timeout") if opts.timeout is not None else None
    hostinput.output_file(opts.json, "--json")
    costs = hostinput.cost_overrides(opts.cost)
    if opts.trace:
        _check_trace_file(opts.trace)
    from .trace import check_format
    check_format(opts.trace_format)
    hostinput.output_file(opts.strace, "--strace")
    args = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    hostinput.guest_arguments(args)
    hostinput.check_disk_count(len(opts.disk) + bool(opts.root) + bool(opts.swap))
    disks = [parse_disk(spec) for spec in opts.disk]
    gdb_address = None
    if opts.gdb is not None:
        from .gdbstub import parse_address
        gdb_address = parse_address(opts.gdb)
    if opts.root:
        if opts.cache not in CACHE_MODES:
            raise BallastError(f"--cache: unknown mode '{opts.cache}' (one of {', '.join(CACHE_MODES)})")
        if not opts.program.startswith("/"):
            raise BallastError(f"{opts.program}: with --root, PROGRAM is an absolute path inside the guest")
        program, guest_path = None, opts.program
    else:
        program = hostinput.read_regular_file(opts.program, "PROGRAM", max_size=mem)
        try:
            parse_elf(program)
        except ENOEXEC as e:
            raise BallastError(f"{opts.program}: {e}") from None
        # the name travels as UTF-8 text on the kernel command line: bytes that are not become U+FFFD
        name = os.fsencode(os.path.basename(opts.program)).decode("utf-8", "replace")
        guest_path = "/bin/" + (name or "init")

    def sink(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()

    cmdline = opts.cmdline
    strace_out = None
    if opts.strace is not None:
        cmdline = f"{cmdline} strace".strip()
        try:
            strace_out = sys.stderr.buffer if opts.strace == "-" else open(opts.strace, "wb")
        except OSError as e:
            raise BallastError(f"--strace {opts.strace}: {e.strerror}") from None
    # an image we made (from a directory, or the built-in one) is a template: runs never change it
    made = opts.root is not None and (os.path.isdir(opts.root) or opts.root == "builtin")
    spec = MachineSpec(mem=mem, cmdline=cmdline, root=opts.root or None, root_writable=not made, cache=opts.cache,
                       swap=parse_size(opts.swap, "--swap") if opts.swap else None, balloon_features=None,
                       disks=disks)
    resources = Resources()
    trace = None
    try:
        config, _, host = assemble(spec, resources)
        if costs:
            config.costs = dataclasses.replace(config.costs, **costs)
        machine = Machine(config, console_sink=sink, host=host,
                          debugcon_sink=strace_out.write if strace_out is not None else None)
        stub = None
        try:
            trace = _open_trace(opts)
            if trace is not None:
                trace.attach(machine, os.path.basename(opts.program))
            machine.load(program, guest_path, args, root_device="/dev/vda" if opts.root else None)
            if timeout_s is not None:
                machine.stop_at(int(timeout_s * 1e9), TIMEOUT_REASON)
            if gdb_address is not None:
                from .gdbstub import GdbStub
                stub = GdbStub(*gdb_address)
                stub.attach(machine)
            status = machine.boot()
            if stub is not None:
                if status is not None:
                    stub.inferior_exited(status)
                stub.close()
            if status is None and machine.stop_reason != TIMEOUT_REASON:      # a timeout: _report says so
                print(f"ballast: {opts.program}: {machine.stop_reason or 'stopped'}", file=sys.stderr)
                return 128 + 9
            return _report(opts, machine, status)
        finally:
            if stub is not None:
                stub.close()
            if trace is not None:
                trace.close()           # a valid file however the run ended
            machine.close()
    finally:
        resources.release()
        if strace_out is not None and strace_out is not sys.stderr.buffer:
            strace_out.close()


def cmd_demo(opts) -> int:
    from rich.console import Console

    from . import demo

    def names(text):
        return None if text is None else [n.strip() for n in text.split(",") if n.strip()]
    if opts.quick and opts.paper:
        raise BallastError("--quick and --paper: choose one")
    sweep = demo.load(opts.quick, names(opts.workloads), names(opts.policies), paper=opts.paper, scale=opts.scale)
    if opts.workers is not None and opts.workers < 1:
        raise BallastError(f"--workers {opts.workers}: at least 1")
    from .hostinput import output_file
    for path, what in ((opts.png, "--png"), (opts.json, "--json")):
        output_file(path, what)
    if opts.out:
        from .sweep import check_out
        check_out(opts.out)
    stream = sys.stderr if opts.json == "-" else sys.stdout
    # a log or a pipe gets the whole table, not one squeezed to 80 columns
    console = Console(stderr=opts.json == "-", highlight=False, width=None if stream.isatty() else 170)
    with _sweep_progress(console, "demo", len(sweep.cells)) as on_progress:
        cells = demo.run_demo(sweep, progress=on_progress, out=opts.out, n_workers=opts.workers, json_path=opts.json)
    console.print(demo.render_table(cells, demo.Setting.of(sweep)))
    for name in dict.fromkeys(c.policy for c in cells):
        console.print(f"  [bold]{name}[/]: {demo.POLICY_TEXT.get(name, '')}", highlight=False)
    failed = [f for c in cells for f in c.failures]
    for f in failed:
        console.print(f"[red]failed[/]: {f}")
    if opts.png:
        demo.write_png(cells, opts.png)
        console.print(f"wrote {opts.png}")
    if opts.json:
        demo.write_json(cells, sweep, opts.json)
    return 1 if failed else 0


class _sweep_progress:
    """A progress bar for a sweep: cells done of all, failed, time left (of the cells run now)."""

    def __init__(self, console, name: str, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self.name = name
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("[red]{task.fields[failed]} failed"), TextColumn("left"),
                            TimeRemainingColumn(), console=console, transient=True)
        self.task = self.bar.add_task(name, total=total, failed=0)
        self.first = None

    def __enter__(self):
        self.bar.__enter__()
        return self.update

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def update(self, done: int, failed: int, total: int) -> None:
        if self.first is None:
            self.first = done
            self.bar.reset(self.task, completed=done)    # time left counts only the cells run now
        self.bar.update(self.task, completed=done, failed=failed, description=f"{self.name}")


def cmd_sweep(opts) -> int:
    from rich.console import Console
    from rich.markup import escape
    from . import sweep as sw

    spec = sw.load(opts.file)
    if opts.workers is not None and opts.workers < 1:
        raise BallastError(f"--workers {opts.workers}: at least 1")
    if opts.workers is not None and opts.scheduler:
        raise BallastError("--workers sizes the local cluster; with --scheduler the cluster has its own workers")
    if opts.cell_timeout is not None and not opts.cell_timeout > 0:
        raise BallastError(f"--cell-timeout {opts.cell_timeout:g}: must be a positive number of seconds")
    if opts.scheduler and not opts.scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://", "ws://")):
        raise BallastError(f"--scheduler {opts.scheduler}: give an address like tcp://HOST:PORT")
    # lines are not wrapped: a log or a test reads them whole
    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    axes = ", ".join(f"{a.name} ({len(a.labels)})" for a in spec.axes) or "no axes"
    if not opts.dry_run:
        if not opts.out:
            raise BallastError("--out RESULTS is needed (a .csv or .parquet file), or --dry-run")
        sw.check_out(opts.out)
        if not opts.resume and os.path.exists(opts.out):
            raise BallastError(f"--out {opts.out}: already exists (--resume to continue it, or remove it)")
        if opts.resume and os.path.exists(opts.out):
            done = len(sw.done_rows(spec, opts.out))
        if opts.scheduler:
            sw.check_scheduler(opts.scheduler)
    console.print(f"[bold]{escape(opts.file)}[/]: {len(spec.cells)} cell{'s' * (len(spec.cells) != 1)} "
                  f"over {escape(axes)}")
    if spec.description:
        console.print(escape(spec.description), style="italic")
    if opts.dry_run:
        from rich.table import Table
        table = Table(title_justify="left")
        table.add_column("cell", justify="right")
        for a in spec.axes:
            table.add_column(a.name)
        for cell in spec.cells:
            table.add_row(str(cell.index), *(escape(sw._text(v)) for v in cell.point.values()))
        console.print(table)
        return 0
    progress = _sweep_progress(console, "sweep", len(spec.cells))
    if opts.resume and os.path.exists(opts.out):
        console.print(f"{done} cell{'s' * (done != 1)} already in {escape(opts.out)}; running {len(spec.cells) - done}")

    def on_cell(cell, outcome, row):
        if row["error"]:
            console.print(f"[red]cell {cell.index} failed[/] ({escape(cell.describe())}): {escape(row['error'])}")

    with progress as on_progress:
        rows = sw.run(spec, out=opts.out, scheduler=opts.scheduler, n_workers=opts.workers, resume=opts.resume,
                      cell_timeout_s=opts.cell_timeout, on_cell=on_cell, progress=on_progress)
    failed = sum(1 for r in rows if r["error"])
    console.print(f"{len(rows) - failed} of {len(spec.cells)} cells ok"
                  + (f", [red]{failed} failed[/]" if failed else "") + f"; wrote {escape(opts.out)}")
    return 1 if failed else 0


def cmd_sweep_report(opts) -> int:
    from rich.console import Console
    from rich.markup import escape

    from . import sweep_report as rep

    frame, axes, metrics = rep.load(opts.results, opts.metric)
    by = opts.by if opts.by is not None else ("policy" if "policy" in axes else None)
    if by is not None and by not in axes:
        raise BallastError(f"--by {by}: not an axis of {opts.results} (axes: {', '.join(axes) or 'none'})")
    png_dir = os.path.dirname(opts.results) or "." if opts.png_dir is None else opts.png_dir
    if png_dir and not os.path.isdir(png_dir):
        raise BallastError(f"--png-dir {png_dir}: no such directory")
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    failed = int((frame["error"].fillna("") != "").sum())
    console.print(rep.summary_table(frame, axes, metrics, f"{opts.results}: {len(frame)} cells, {failed} failed"))
    if png_dir:
        stem = os.path.splitext(os.path.basename(opts.results))[0]
        written = rep.write_plots(frame, axes, metrics, by, png_dir, stem)
        for path in written:
            console.print(f"wrote {escape(path)}")
        if not written:
            console.print("no plots: no axis" + (f" besides {by}" if by else "") + " has several values")
    return 0


def cmd_scenario(opts) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    from . import scenario as sc

    from .hostinput import output_file
    output_file(opts.json, "--json")
    if opts.trace:
        _check_trace_file(opts.trace)
    spec = sc.load(opts.file)
    trace = _open_trace(opts)
    # with --json - the JSON owns stdout and the summary goes to stderr
    console = Console(stderr=opts.json == "-", highlight=False)
    m = spec.machine
    console.print(f"[bold]{escape(opts.file)}[/]: {m.mem >> 20} MiB guest, {m.features_text()}, "
                  f"root {escape(m.root or 'none')}"
                  + (f", swap {m.swap >> 20} MiB" if m.swap else "")
                  + (f", host memory {m.host_memory >> 20} MiB" if m.host_memory else ""))
    if spec.description:
        console.print(escape(spec.description), style="italic")
    err = Console(stderr=True)
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        console=err, transient=True, disable=not err.is_terminal)
    task = progress.add_task("booting", total=len(spec.steps))

    def on_step(step, outcome):
        if outcome is None:
            progress.update(task, description=escape(f"step {step.number}: {step.describe()}"))
            return
        progress.advance(task)
        console.print(f"  step {step.number:>2}  {escape(step.describe())}"
                      + (f"  [dim]→[/] {escape(outcome)}" if outcome else ""))

    result = None
    try:
        with progress:
            result = sc.run(spec, on_step=on_step, trace=trace)
    except BallastError as e:
        result = getattr(e, "result", None)
        if opts.json and result is not None:
            _write_json(opts.json, result)
        raise
    finally:
        if trace is not None:
            trace.close()
    if opts.json:
        _write_json(opts.json, result)
    if result["snapshots"]:
        console.print(sc.summary_table(result))
    console.print(("[green]ok[/]: " if result["exit"]["ok"] else "[red]not ok[/]: ") + sc.exit_text(result))
    return 0 if result["exit"]["ok"] else 1


def cmd_debug(opts) -> int:
    import signal

    from . import machine as machine_module
    from .debugger import Debugger, DebuggerQuit

    if not opts.what or opts.what[0] not in ("run", "scenario"):
        raise BallastError("debug: what to debug? 'ballast debug [--commands FILE] run PROGRAM ...' or "
                           "'ballast debug [--commands FILE] scenario FILE.toml'")
    inner = build_parser().parse_args(_strace_equals(list(opts.what)))
    commands = None
    if opts.commands is not None:
        from .hostinput import regular_file
        regular_file(opts.commands, "--commands")
        try:
            commands = open(opts.commands, encoding="utf-8", errors="replace")
        except OSError as e:
            raise BallastError(f"--commands {opts.commands}: {e.strerror}") from None
    debugger = Debugger(commands=commands)

    def attach(machine):
        """The first prompt comes with the first machine: every option has been checked by then."""
        debugger.attach(machine)
        if not debugger.started:
            debugger.start()
            if debugger.quitted:
                raise DebuggerQuit()
    def interrupt(signum, frame):
        """Ctrl-C while the guest runs: stop at its next event, as gdb does; a second one ends the run."""
        if debugger.pause_requested or debugger.stop is not None:
            raise KeyboardInterrupt
        debugger.detached = False
        debugger.pause()
        print("(pausing at the next kernel event; Ctrl-C again ends the run)", file=sys.stderr)
    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        machine_module.ON_NEW_MACHINE.append(attach)
        try:
            return {"run": cmd_run, "scenario": cmd_scenario}[inner.command](inner)
        except DebuggerQuit:
            return 0
        finally:
            machine_module.ON_NEW_MACHINE.remove(attach)
            signal.signal(signal.SIGINT, previous)
    finally:
        if commands is not None:
            commands.close()


def cmd_watch(opts) -> int:
    try:
        import textual.app  # noqa: F401  (the live view's library, an extra)
    except ImportError:
        raise BallastError("watch needs textual: pip install 'ballast[watch]' (or pip install textual)") from None
    from . import scenario as sc
    from .watch import WatchApp, check_breaks

    check_breaks(opts.breaks)
    spec = sc.load(opts.file)
    app = WatchApp(spec, opts.breaks, title=opts.file)
    app.run()
    runner = app.runner
    if runner.error:
        raise BallastError(runner.error)
    return 0 if runner.result is None or runner.result["exit"]["ok"] else 1


def _write_json(out: str, result: dict) -> None:
    text = json.dumps(result, indent=2)         # snapshots in the order they were taken
    if out == "-":
        print(text)
        return
    try:
        with open(out, "w") as f:
            f.write(text + "\n")
    except OSError as e:
        raise BallastError(f"--json {out}: {e.strerror}") from None


def _report(opts, machine, status) -> int:
    from .oracle import decode_wait_status, run_metrics
    exit_info = decode_wait_status(status) if status is not None else None
    kernel = machine.kernel
    if opts.json:
        text = json.dumps(run_metrics(machine, opts.program), indent=2, sort_keys=True)
        if opts.json == "-":
            print(text)
        else:
            try:
                with open(opts.json, "w") as f:
                    f.write(text + "\n")
            except OSError as e:
                raise BallastError(f"--json {opts.json}: {e.strerror}") from None
    if machine.stop_reason == TIMEOUT_REASON:
        print(f"ballast: {one_line(opts.program)}: timed out after {float(opts.timeout):g} s of guest time",
              file=sys.stderr)
        return TIMEOUT_EXIT
    if kernel is not None and kernel.last_fatal and kernel.last_fatal[0] == "ENOEXEC":
        raise BallastError(f"{opts.program}: {kernel.last_fatal[1]}")
    if kernel is not None and kernel.panic_message:
        print(f"ballast: guest kernel panic: {kernel.panic_message}", file=sys.stderr)
        return 1
    if exit_info["signaled"]:
        from guestos.kernel.signal import signal_name
        detail = ""
        if kernel is not None and kernel.last_fatal:
            signame, what, rip, insn = kernel.last_fatal
            detail = f": {what}" + (f" at ip {rip:#x} ({insn})" if rip else "")
        print(f"ballast: {opts.program} killed by {signal_name(exit_info['signal'])}{detail}", file=sys.stderr)
    return exit_info["code"]


def _strace_equals(argv: list) -> list:
    """`ballast run --strace=FILE`: argparse cannot give --strace an optional value without it
    swallowing PROGRAM, so the = form is renamed before parsing (only among run's own options)."""
    if argv[:1] != ["run"]:
        return argv
    takes_value = {"--mem", "--cmdline", "--disk", "--root", "--cache", "--swap", "--trace", "--trace-format", "--json",
                   "--cost",
                   "--strace-to", "--gdb"}
    out, i = ["run"], 1
    while i < len(argv):
        a = argv[i]
        if a.startswith("--strace="):
            out.append("--strace-to=" + a[len("--strace="):])
        elif a in takes_value:
            out += argv[i:i + 2]
            i += 2
            continue
        elif not a.startswith("-") or a == "--":
            return out + argv[i:]
        else:
            out.append(a)
        i += 1
    return out


def main(argv=None) -> int:
    parser = build_parser()
    try:
        opts = parser.parse_args(_strace_equals(list(sys.argv[1:] if argv is None else argv)))
        if opts.command is None:
            parser.print_help()
            return 2
        return {"run": cmd_run, "mkdisk": cmd_mkdisk, "scenario": cmd_scenario, "demo": cmd_demo,
                "sweep": cmd_sweep, "sweep-report": cmd_sweep_report, "debug": cmd_debug,
                "watch": cmd_watch}[opts.command](opts)
    except BallastError as e:
        print(f"ballast: {one_line(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (ballast run ... | head): not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 141
    except KeyboardInterrupt:
        print("ballast: interrupted", file=sys.stderr)
        return 130
    except Exception as e:          # never a traceback for a user; BALLAST_DEBUG=1 shows it
        if os.environ.get("BALLAST_DEBUG"):
            raise
        print(f"ballast: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
