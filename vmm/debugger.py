"""A debugger for the guest kernel driven by its tracepoints (guestos/kernel/tracepoint.py).

The debugger is a tracepoint sink. When an event matches a breakpoint (or a `step` or `finish` is
under way) the guest stops: the sink runs the command loop (or the Python `on_stop` callback)
synchronously, then returns and the kernel goes on exactly where it was. Looking is read-only, so
a run with breakpoints computes what it computes without them (tests/test_debugger.py checks it).

    dbg = machine.debugger
    dbg.break_on("mm_vmscan_writepage", "pfn == 123")
    dbg.on_stop = lambda dbg, stop: print(dbg.execute("page"))     # returns: the guest goes on
    machine.boot()

Commands (`ballast debug`, `--commands FILE`): see HELP below.
"""
import ast
import collections
import fnmatch
import sys
from dataclasses import dataclass, field

from guestos.kernel import tracepoint

from . import debug_views as views

PROMPT = "(ballast) "
HISTORY = 100_000                   # events `trace N` can show
PASS_END = "mm_vmscan_reclaim_pass_end"          # `finish` runs to the end of the current pass


HELP = """\
break EVENT [if CONDITION]  stop at a tracepoint (b); EVENT may be a pattern (mm_vmscan_*); CONDITION is
                            a Python expression over the event's fields (pfn, decision, reason, priority,
                            policy, pass_nr, comm, pid, ...) plus file (the page's path; `path` where the
                            event has a `file` field of its own) and process, e.g.
                            break mm_vmscan_page_decision if decision == 'reclaimed' and file == '/data/x'
delete [N]                  delete breakpoint N (d), or all of them
info breakpoints            list the breakpoints (i b)
step [N]                    run to the next event of any name, or the N-th (s)
continue                    run to the next breakpoint (c)
finish                      run to the end of this reclaim pass (fin: mm_vmscan_reclaim_pass_end)
quit                        stop the guest and end the session (q)
page [PFN]                  a page: flags, LRU place, file and offset or its mappers' PTEs, host cache, last decision
lru                         the LRU lists: sizes and the pages reclaim scans next
zone                        watermarks, free blocks and the reclaim counters
meminfo                     /proc/meminfo
ps                          the guest's tasks
trace [N]                   the last N events (default 10)
balloon                     the balloon: target, actual, pages held
host                        host RSS, host page cache, pages cached in both guest and host
event                       the current event, all its fields
py                          pdb at the kernel's frame (uncompiled: BALLAST_PURE=1)
help                        this text"""

ALIASES = {"b": "break", "br": "break", "d": "delete", "i": "info", "s": "step", "c": "continue", "cont": "continue",
           "fin": "finish", "q": "quit", "h": "help", "ev": "event"}
RESUMING = ("step", "continue", "finish", "quit")


class DebuggerQuit(BaseException):
    """`quit`: the run ends here. Not a MachineStopped (a scenario would go on to its next step) and no
    Exception (no `except Exception` in the kernel may take it): it leaves machine.boot() and the scenario."""


class DebuggerError(Exception):
    """A user mistake (bad command, condition, event name or PFN): one line, and the session goes on."""


# --- conditions: a Python expression over the event's fields, no calls, no attributes, no builtins ---

_ALLOWED = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Invert,
            ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.BitAnd, ast.BitOr,
            ast.BitXor, ast.LShift, ast.RShift, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
            ast.In, ast.NotIn, ast.Is, ast.IsNot, ast.Name, ast.Load, ast.Constant, ast.Tuple, ast.List, ast.Set,
            ast.IfExp)


class Condition:
    def __init__(self, text: str):
        self.text = text.strip()
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as e:
            raise DebuggerError(f"bad condition '{self.text}': {e.msg}") from None
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED):
                raise DebuggerError(f"bad condition '{self.text}': {type(node).__name__.lower()} is not allowed "
                                    f"(fields, constants, comparisons, and/or/not, arithmetic)")
        self.names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        self.code = compile(tree, "<condition>", "eval")

    def __call__(self, scope) -> bool:
        return bool(eval(self.code, {"__builtins__": {}}, scope))


DERIVED = ("file", "path", "process")          # names a condition may use besides the event's own fields


class _MissingField(Exception):
    """A condition names a field this event lacks (a pattern's other events have it): no match."""


class _Scope(dict):
    """An event's fields for a condition, with `file` and `process` worked out when asked."""

    def __init__(self, debugger, machine, event):
        super().__init__(event)
        self.debugger, self.machine = debugger, machine

    def __missing__(self, name):
        if name == "process":
            return self["comm"]
        if name in ("file", "path"):      # an event's own `file` field (writepage's flag) comes first
            return self.debugger.file_of(self.machine, self.get("pfn"), self.get("mapping"))
        raise _MissingField(name)


@dataclass
class Breakpoint:
    number: int
    event: str
    condition: Condition = None
    enabled: bool = True
    hits: int = 0

    def matches_name(self, name: str) -> bool:
        return name == self.event or fnmatch.fnmatchcase(name, self.event)

    @property
    def what(self) -> str:
        return self.event + (f" if {self.condition.text}" if self.condition else "")


@dataclass
class Stop:
    machine: object
    event: dict
    breakpoint: Breakpoint = None
    why: str = ""                   # breakpoint, step, finish, pause, condition error


@dataclass
class Debugger:
    out: object = None              # where the command loop writes (default: stdout)
    commands: object = None         # a file-like command source (default: stdin)
    on_stop: object = None          # fn(debugger, stop) instead of the command loop; returns or calls step()...
    echo: bool = None               # echo each command read (default: when commands are not a terminal)
    breakpoints: list = field(default_factory=list)
    history: collections.deque = field(default_factory=lambda: collections.deque(maxlen=HISTORY))
    machines: list = field(default_factory=list)

    def __post_init__(self):
        self._next_number = 1
        self.mode = "continue"      # what the guest does until the next stop
        self.detached = False       # the command source ran out: the guest runs on without stopping
        self.stop = None            # the current Stop while stopped
        self.last_decision = {}     # (vm id, pfn) -> the last event that decided about that page
        self.pause_requested = False
        self.events_seen = 0
        self.on_event = None        # fn(machine, event) for every event (the live view), read only
        self._last_command = None
        self.mode_set_by_command = False
        self._steps_left = 1
        self.started = False        # False while the session's first prompt runs, before the guest starts
        self.quitted = False
        self._known = set(tracepoint.EVENTS)
        self._removed = {}          # (vm id, pfn) -> the mapping a page just left (its decision comes next)
        self._finish_pass = None

    # --- attaching ---
    def attach(self, machine) -> None:
        """Watch this machine's kernel from its first event (now, or when it boots)."""
        if machine in self.machines:
            return
        self.machines.append(machine)
        machine.add_trace_sink(lambda event: self._event(machine, event))

    # --- the programmatic face ---
    def break_on(self, event: str, condition: str = None) -> Breakpoint:
        event = event.strip()
        if not event:
            raise DebuggerError("break: which event? (help lists them; 'break mm_vmscan_*' takes a family)")
        if any(c in event for c in "*?[") and not any(fnmatch.fnmatchcase(n, event) for n in self._known):
            raise DebuggerError(f"break: no event matches '{event}'")
        if not any(c in event for c in "*?[") and event not in self._known:
            near = [n for n in sorted(self._known) if event.split("_")[-1] in n][:3]
            raise DebuggerError(f"break: unknown event '{event}'" + (f" (did you mean {', '.join(near)}?)"
                                                                     if near else ""))
        cond = Condition(condition) if condition else None
        if cond is not None:
            self._check_fields(event, cond)
        bp = Breakpoint(self._next_number, event, cond)
        self._next_number += 1
        self.breakpoints.append(bp)
        return bp

    def _check_fields(self, event: str, cond: Condition) -> None:
        """Every name in a condition is a field of the event (of one of them, for a pattern)."""
        names = [n for n in sorted(self._known) if n == event or fnmatch.fnmatchcase(n, event)]
        fields = set(tracepoint.COMMON_FIELDS) | set(DERIVED)
        for name in names:
            fields |= set(tracepoint.EVENTS[name].fields)
        unknown = sorted(cond.names - fields)
        if unknown:
            what = event if len(names) == 1 else f"any event matching {event}"
            raise DebuggerError(f"break: '{unknown[0]}' is not a field of {what} (fields: "
                                f"{', '.join(sorted(fields - set(DERIVED)))}; and {', '.join(DERIVED)})")

    def delete(self, number: int = None) -> None:
        if number is None:
            self.breakpoints.clear()
            return
        for bp in self.breakpoints:
            if bp.number == number:
                self.breakpoints.remove(bp)
                return
        raise DebuggerError(f"No breakpoint number {number}.")

    def step(self, count: int = 1) -> None:
        """Stop at the count-th next event."""
        self.mode = "step"
        self._steps_left = count

    def cont(self) -> None:
        self.mode = "continue"

    def finish(self) -> None:
        """Run to the end of the reclaim pass the current event belongs to (or of the next pass)."""
        self.mode = "finish"
        pass_nr = self.stop.event.get("pass_nr") if self.stop is not None else None
        self._finish_pass = pass_nr or None

    def quit(self) -> None:
        self.mode = "quit"
        self.quitted = True

    def start(self) -> None:
        """The session's first prompt, before the guest runs: set breakpoints, then `continue`
        (or `step`: stop at the first event)."""
        self._print("Ballast kernel debugger. 'break EVENT [if CONDITION]', then 'continue'; 'help' lists the commands.")
        self.interact()
        self.started = True

    def pause(self) -> None:
        """Stop at the next event (the live view's pause key); safe from another thread."""
        self.pause_requested = True

    def file_of(self, machine, pfn: int = None, mapping: int = None):
        """The path of a page's file: the event's mapping, the page's, or the one it has just left."""
        kernel = machine.kernel
        if mapping is None and pfn is not None and 0 <= pfn < kernel.max_pfn:
            mapping = kernel.mem_map.mapping(pfn) or self._removed.get((machine.vm_id, pfn))
        return views.file_name(kernel, mapping) if mapping else None

    # --- events ---
    def _event(self, machine, event: dict) -> None:
        self.history.append((machine, event))
        self.events_seen += 1
        name = event["name"]
        if "pfn" in event:
            key = (machine.vm_id, event["pfn"])
            if "decision" in event:
                self.last_decision[key] = event
            elif name == "mm_filemap_delete_from_page_cache":
                self._removed[key] = event["mapping"]
            elif name == "mm_filemap_add_to_page_cache":
                self._removed.pop(key, None)
        if self.on_event is not None:
            self.on_event(machine, event)
        if self.detached:
            return
        stop = self._should_stop(machine, event)
        if stop is not None:
            self._stopped(stop)

    def _should_stop(self, machine, event):
        name = event["name"]
        if self.pause_requested:
            self.pause_requested = False
            return Stop(machine, event, why="pause")
        if self.mode == "step":
            self._steps_left -= 1
            if self._steps_left <= 0:
                return Stop(machine, event, why="step")
        hit = None
        for bp in self.breakpoints:
            if not bp.enabled or not bp.matches_name(name):
                continue
            if bp.condition is not None:
                try:
                    if not bp.condition(_Scope(self, machine, event)):
                        continue
                except _MissingField:
                    continue
                except Exception as e:            # 1 / 0, 'a' < 1: gdb stops and says so
                    self._print(f"Error in testing condition for breakpoint {bp.number}: "
                                f"{type(e).__name__}: {e}")
            bp.hits += 1
            hit = hit or bp
        if hit is not None:
            return Stop(machine, event, hit, "breakpoint")
        if self.mode == "finish" and name == PASS_END and self._finish_pass in (None, event.get("pass_nr")):
            return Stop(machine, event, why="finish")
        return None

    def _stopped(self, stop: Stop) -> None:
        self.stop = stop
        self.mode = "continue"
        try:
            if self.on_stop is not None:
                self.on_stop(self, stop)
            else:
                self._print(self.stop_line(stop))
                self.interact()
        finally:
            self.stop = None
        if self.mode == "quit":
            for m in self.machines:
                m.stop_reason = "quit (debugger)"
            raise DebuggerQuit()

    def stop_line(self, stop: Stop) -> str:
        e = stop.event
        where = f"at {e['ts'] / 1e9:.9f} s in {e['comm']}[{e['pid']}]"
        if len(self.machines) > 1:
            where += f" on vm {stop.machine.vm_id}"
        text = f"{e['name']} ({views.describe_event(e)}) {where}"
        if stop.why == "breakpoint":
            return f"\nBreakpoint {stop.breakpoint.number}, {text}"
        if stop.why == "finish":
            return f"Run till end of reclaim pass: {text}"
        if stop.why == "pause":
            return f"Paused: {text}"
        return text

    # --- the command loop ---
    def interact(self) -> None:
        """Read and run commands until one lets the guest go on. At the end of the commands the
        guest runs on to its end without stopping again."""
        source = self.commands if self.commands is not None else sys.stdin
        echo = self.echo if self.echo is not None else not _isatty(source)
        interactive = source is sys.stdin and _isatty(source) and _isatty(self.out or sys.stdout)
        if interactive:
            try:
                import readline  # noqa: F401  (line editing and history for input())
            except ImportError:
                pass
        while True:
            if interactive:
                try:
                    line = input(PROMPT) + "\n"
                except EOFError:
                    line = ""
            else:
                if not echo:
                    self._write(PROMPT)
                line = source.readline()
            if not line:
                self.detached = True
                self.mode = "continue"
                return
            line = line.strip()
            if echo and line and not line.startswith("#"):
                self._print(PROMPT + line)
            if not line or line.startswith("#"):
                if line or echo or self._last_command not in ("step", "continue", "finish"):
                    continue
                line = self._last_command          # Enter repeats a step at a terminal, as gdb
            try:
                text = self.execute(line)
            except DebuggerError as e:
                self._print(str(e))
                continue
            if text:
                self._print(text)
            if self.mode_set_by_command:
                return

    def execute(self, line: str) -> str:
        """Run one command; returns what it shows. step/continue/finish/quit set how the guest goes on."""
        self.mode_set_by_command = False
        word, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        command = ALIASES.get(word, word)
        self._last_command = command
        if command in RESUMING:
            count = 1
            if rest and command == "step":
                try:
                    count = int(rest)
                except ValueError:
                    raise DebuggerError(f"step: '{rest}' is not a number of events") from None
                if count < 1:
                    raise DebuggerError("step: a number of events, 1 or more")
            elif rest:
                raise DebuggerError(f"{command} takes no argument")
            if self.stop is None and self.started and command != "quit":
                raise DebuggerError(f"{command}: the guest is not stopped")
            getattr(self, "cont" if command == "continue" else command)()
            self._steps_left = count
            self.mode_set_by_command = True
            return ""
        handler = getattr(self, f"_cmd_{command}", None) if command.isidentifier() else None
        if handler is None:
            raise DebuggerError(f'Undefined command: "{word}".  Try "help".')
        return handler(rest)

    def _cmd_help(self, rest):
        return HELP

    def _cmd_break(self, rest):
        event, sep, condition = rest.partition(" if ")
        if not sep and rest.endswith(" if"):
            raise DebuggerError("break: a condition after 'if', please")
        bp = self.break_on(event, condition if sep else None)
        return f"Breakpoint {bp.number} at {bp.what}"

    def _cmd_delete(self, rest):
        if not rest:
            self.delete()
            return ""
        try:
            numbers = [int(n) for n in rest.split()]
        except ValueError:
            raise DebuggerError(f"delete: '{rest}' is not a breakpoint number") from None
        for n in numbers:
            self.delete(n)
        return ""

    def _cmd_info(self, rest):
        if rest not in ("breakpoints", "break", "b", "br"):
            raise DebuggerError('info: "info breakpoints" (i b) is what there is')
        if not self.breakpoints:
            return "No breakpoints."
        lines = ["Num     Type           Disp Enb What"]
        for bp in self.breakpoints:
            lines.append(f"{bp.number:<7} tracepoint     keep {'y' if bp.enabled else 'n'}   {bp.what}")
            if bp.hits:
                lines.append(f"\tbreakpoint already hit {bp.hits} time{'s' * (bp.hits != 1)}")
        return "\n".join(lines)

    def _stopped_machine(self, what: str):
        if self.stop is None:
            raise DebuggerError(f"{what}: the guest is not stopped" if self.started else
                                f"{what}: the guest has not started yet ('step' stops at its first event)")
        machine = self.stop.machine
        if machine.kernel is None:
            raise DebuggerError(f"{what}: the kernel has not booted yet")
        return machine

    def _cmd_page(self, rest):
        machine = self._stopped_machine("page")
        if rest:
            try:
                pfn = views.parse_pfn(rest, machine.kernel)
            except views.ViewError as e:
                raise DebuggerError(str(e)) from None
        else:
            pfn = self.stop.event.get("pfn")
            if pfn is None:
                raise DebuggerError(f"page: {self.stop.event['name']} names no page; give a PFN")
        return views.page(machine, pfn, self.last_decision.get((machine.vm_id, pfn)))

    def _cmd_lru(self, rest):
        return views.lru(self._stopped_machine("lru"))

    def _cmd_zone(self, rest):
        return views.zone(self._stopped_machine("zone"))

    def _cmd_meminfo(self, rest):
        return views.meminfo(self._stopped_machine("meminfo"))

    def _cmd_ps(self, rest):
        return views.ps(self._stopped_machine("ps"))

    def _cmd_balloon(self, rest):
        return views.balloon(self._stopped_machine("balloon"))

    def _cmd_host(self, rest):
        return views.host(self._stopped_machine("host"))

    def _cmd_event(self, rest):
        if self.stop is None:
            raise DebuggerError("event: the guest is not stopped")
        return "\n".join(f"  {k} = {views._value(v)}" for k, v in self.stop.event.items())

    def _cmd_trace(self, rest):
        try:
            n = int(rest) if rest else 10
        except ValueError:
            raise DebuggerError(f"trace: '{rest}' is not a number of events") from None
        if n < 0:
            raise DebuggerError("trace: a number of events, 0 or more")
        events = list(self.history)[-n:] if n else []
        if not events:
            return "No events yet."
        several = len(self.machines) > 1
        return "\n".join((f"vm{m.vm_id} " if several else "") + ftrace_line(e) for m, e in events)

    def _cmd_py(self, rest):
        import cython_ext
        if not cython_ext.PURE:
            return ("py: the kernel's hot paths are compiled here; run with BALLAST_PURE=1 to step through "
                    "them in pdb")
        frame = _kernel_frame()
        if frame is None:
            raise DebuggerError("py: no kernel frame to show")
        self._pdb(frame)
        return ""

    def _pdb(self, frame) -> None:
        """pdb at the frame that emitted the event; `c` comes back here, the guest still stopped."""
        import pdb
        cython_ext_teach_pdb()
        source = self.commands if self.commands is not None else sys.stdin
        debugger = pdb.Pdb(stdin=source, stdout=self.out or sys.stdout,
                           skip=["vmm.debugger", "guestos.kernel.tracepoint"])
        if source is not sys.stdin:
            debugger.use_rawinput = False
        debugger.reset()
        bottom = frame
        while bottom.f_back is not None:        # `where` shows the kernel's whole call chain
            bottom = bottom.f_back
        debugger.botframe = bottom
        debugger.interaction(frame, None)
        sys.settrace(None)
        f = frame
        while f is not None:
            f.f_trace = None
            f = f.f_back

    # --- output ---
    def _write(self, text: str) -> None:
        out = self.out or sys.stdout
        out.write(text)
        out.flush()

    def _print(self, text: str) -> None:
        self._write(text + "\n")


def ftrace_line(event: dict) -> str:
    """An event as ftrace prints it: task-pid [cpu] timestamp: name: fields."""
    return (f"{event['comm']:>16}-{event['pid']:<5} [000] {event['ts'] / 1e9:12.6f}: {event['name']}: "
            + " ".join(f"{k}={v}" for k, v in event.items() if k not in ("name", "ts", "pid", "comm")))


def _tracing_helpers() -> set:
    """The code of the functions that only turn kernel work into events (vmscan's trace helpers)."""
    from guestos.mm import vmscan
    helpers = {tracepoint.Tracepoints.emit}
    helpers |= {getattr(vmscan, name) for name in ("trace", "trace_pass_begin", "trace_pass_end")
                if hasattr(vmscan, name)}
    ops = getattr(vmscan, "ReclaimOps", None)          # what the hot path calls; its trace_* only trace
    if ops is not None:
        helpers |= {getattr(f, "__func__", f) for name, f in vars(ops).items() if name.startswith("trace")}
    return {getattr(f, "__code__", None) for f in helpers} - {None}


def _kernel_frame():
    """The kernel's frame that emitted the current event: the first caller past the tracing helpers."""
    helpers = _tracing_helpers()
    f = sys._getframe()
    while f is not None and f.f_code is not tracepoint.Tracepoints.emit.__code__:
        f = f.f_back
    while f is not None and f.f_code in helpers:
        f = f.f_back
    return f


def cython_ext_teach_pdb():
    import cython_ext
    teach = getattr(cython_ext, "teach_pdb", None)
    if teach is not None:
        teach()


def _isatty(source) -> bool:
    try:
        return source.isatty()
    except (AttributeError, ValueError):
        return False
