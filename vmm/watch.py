"""`ballast watch SCENARIO.toml`: a live view of a scenario for teaching (textual).

Per guest, bars for free memory, the four LRU lists, the balloon and the kernel's own pages; the host's
RSS, page cache and the pages both caches hold; the trace scrolling. The scenario runs in a worker thread
under the kernel debugger (vmm/debugger.py): `p` pauses at the next event, `s` steps to the next one,
`c` continues to the next breakpoint (`--break`), `q` quits. While paused, the debugger's sink waits on a
queue for the key, so the guest is stopped exactly as in `ballast debug`; looking changes nothing.
"""
import queue
import threading
import time

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, RichLog, Static

from . import machine as machine_module
from . import oracle
from .debugger import Debugger, DebuggerError, DebuggerQuit, ftrace_line
from .errors import BallastError
from .memory import process_rss_bytes

SAMPLE_S = 0.2                       # wall seconds between two looks at a running guest (never steers it)
BAR = 36
PAGE = 4096
ROWS = (("free", "MemFree", "green"), ("active anon", "Active(anon)", "red"),
        ("inactive anon", "Inactive(anon)", "magenta"), ("active file", "Active(file)", "blue"),
        ("inactive file", "Inactive(file)", "cyan"))


def guest_rows(machine) -> list:
    """(label, pages, colour) of one guest's memory, in pages of its RAM."""
    kernel = machine.kernel
    if kernel is None or getattr(kernel, "page_alloc", None) is None:
        return []
    m = kernel.meminfo()
    rows = [(label, m[key] // 4, colour) for label, key, colour in ROWS]
    balloon = machine.balloon.actual_pages if machine.balloon is not None else 0
    rows.append(("balloon", balloon, "yellow"))
    # the kernel's own frames: mem_map and what it reserved at boot (balloon pages leave MemTotal, not
    # the boot count), and its page tables
    reserved = machine.ram.nr_frames - kernel.page_alloc.totalram_pages
    rows.append(("kernel", reserved + m["PageTables"] // 4, "white"))
    return rows


def render_guest(name: str, machine) -> Text:
    total = machine.ram.nr_frames
    text = Text(f"{name}  {total * PAGE >> 20} MiB RAM, {machine.clock.now_ns() / 1e9:.6f} s guest time\n",
                style="bold")
    for label, pages, colour in guest_rows(machine):
        filled = min(BAR, round(BAR * pages / total)) if total else 0
        text.append(f"{label:<14}")
        text.append("█" * filled, style=colour)
        text.append("·" * (BAR - filled), style="dim")
        text.append(f" {pages * PAGE / (1 << 20):7.1f} MiB\n")
    return text


def render_host(host, machines) -> Text:
    report = oracle.duplication(host, machines) if machines and all(m.kernel for m in machines) else None
    text = Text("host\n", style="bold")
    text.append(f"RSS            {process_rss_bytes() / (1 << 20):7.1f} MiB\n")
    text.append(f"page cache     {host.cache.nr_pages * PAGE / (1 << 20):7.1f} MiB "
                f"of {host.cache.capacity_pages * PAGE / (1 << 20):.0f}\n")
    if report is not None:
        text.append(f"duplicated     {report['duplicated_pages'] * PAGE / (1 << 20):7.1f} MiB "
                    f"({report['duplicated_pages']} pages in both caches)\n")
    return text


class Runner:
    """The scenario in a worker thread, under a debugger whose stops wait for the UI's keys."""

    def __init__(self, spec, breaks=(), post=None):
        self.spec = spec
        self.post = post or (lambda kind, payload: None)
        self.debugger = Debugger(on_stop=self._on_stop)
        for text in breaks:
            event, sep, condition = text.partition(" if ")
            self.debugger.break_on(event, condition if sep else None)
        self.debugger.on_event = self._on_event
        self.keys = queue.Queue()
        self.machines = {}                  # scenario name -> machine
        self.thread = None
        self.result = None
        self.error = None
        self._pending = []
        self._last_sample = 0.0

    def start(self) -> None:
        self.thread = threading.Thread(target=self._main, name="ballast-watch", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        from . import scenario_run

        names = iter(self.spec.machines)

        def attach(machine):
            self.machines[next(names, f"vm{machine.vm_id}")] = machine
            self.debugger.attach(machine)
        machine_module.ON_NEW_MACHINE.append(attach)
        try:
            self.result = scenario_run.run(self.spec, on_step=self._on_step, console_sink=lambda data: None)
        except DebuggerQuit:
            pass
        except BallastError as e:
            self.error = str(e)
        except BaseException as e:          # shown in the view; the app stays up to read it
            self.error = f"{type(e).__name__}: {e}"
        finally:
            machine_module.ON_NEW_MACHINE.remove(attach)
            self.post("done", (self.result, self.error))

    # --- in the worker thread: read-only looks, posted to the UI ---
    def sample(self) -> dict:
        machines = [m for m in self.machines.values() if m.kernel is not None]
        guests = {name: render_guest(name, m) for name, m in self.machines.items() if m.kernel is not None}
        host = render_host(machines[0].host, machines) if machines else Text("host: not started")
        lines, self._pending = self._pending, []
        return {"guests": guests, "host": host, "trace": lines}

    def _on_event(self, machine, event) -> None:
        self._pending.append(ftrace_line(event))
        del self._pending[:-200]               # the view shows the latest; `trace N` in debug has them all
        now = time.monotonic()
        if now - self._last_sample >= SAMPLE_S:
            self._last_sample = now
            self.post("sample", self.sample())

    def _on_step(self, step, outcome) -> None:
        if outcome is not None:
            self._pending.append(f"--- step {step.number}: {step.describe()} -> {outcome}")
            self.post("sample", self.sample())

    def _on_stop(self, debugger, stop) -> None:
        self.post("sample", self.sample())
        text = debugger.stop_line(stop).strip()
        if "pfn" in stop.event:              # the page the event is about, as `page` shows it
            try:
                text += "\n" + debugger.execute("page")
            except DebuggerError:
                pass
        self.post("stopped", text)
        key = self.keys.get()                  # the guest waits here for the UI
        {"step": debugger.step, "continue": debugger.cont, "quit": debugger.quit}[key]()
        self.post("running", key)

    # --- from the UI thread ---
    def press(self, key: str) -> None:
        if key == "pause":
            self.debugger.pause()
        else:
            self.keys.put(key)


class WatchApp(App):
    TITLE = "ballast watch"
    CSS = """
    #guests { height: auto; }
    .guest { width: 1fr; height: auto; border: round $primary; padding: 0 1; }
    #host { height: auto; border: round $secondary; padding: 0 1; }
    #status { height: auto; padding: 0 1; background: $boost; }
    #trace { height: 1fr; border: round $panel; }
    """
    BINDINGS = [Binding("p", "pause", "pause"), Binding("s", "step", "step"), Binding("c", "continue", "continue"),
                Binding("q", "quit_run", "quit")]

    def __init__(self, spec, breaks=(), title: str = None):
        super().__init__()
        self.runner = Runner(spec, breaks, post=self._post_from_worker)
        self.paused = False
        self.finished = False
        self.status_text = "starting"
        if title:
            self.sub_title = title

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            with Horizontal(id="guests"):
                for name in self.runner.spec.machines:
                    yield Static(f"{name}: booting", classes="guest", id=f"guest-{_css_id(name)}")
            yield Static("host", id="host")
            yield Static(Text(self.status_text), id="status")
            yield RichLog(id="trace", max_lines=2000, wrap=False)
        yield Footer()

    def on_mount(self) -> None:
        self.runner.start()

    def _post_from_worker(self, kind, payload) -> None:
        try:
            self.call_from_thread(self._apply, kind, payload)
        except RuntimeError:               # the app has gone: nothing to show it on
            pass

    def _apply(self, kind, payload) -> None:
        if kind == "sample":
            for name, text in payload["guests"].items():
                self.query_one(f"#guest-{_css_id(name)}", Static).update(text)
            self.query_one("#host", Static).update(payload["host"])
            log = self.query_one("#trace", RichLog)
            for line in payload["trace"]:
                log.write(line)
        elif kind == "stopped":
            self.paused = True
            self._status(f"[paused] {payload}\n  s step   c continue   q quit")
        elif kind == "running":
            self.paused = False
            self._status("running" if payload != "quit" else "quitting")
        elif kind == "done":
            result, error = payload
            self.finished = True
            self.paused = False
            if error:
                self._status(f"ended with an error: {error}\n  q leaves")
            elif result is not None:
                from .scenario import exit_text
                self._status(("ok: " if result["exit"]["ok"] else "not ok: ") + exit_text(result) + "\n  q leaves")
            else:
                self._status("quit")

    def _status(self, text: str) -> None:
        self.status_text = text
        self.query_one("#status", Static).update(Text(text))         # plain: "[paused]" is no markup

    def action_pause(self) -> None:
        if not self.finished and not self.paused:
            self.runner.press("pause")
            self._status("pausing at the next event...")

    def action_step(self) -> None:
        if self.paused:
            self.runner.press("step")

    def action_continue(self) -> None:
        if self.paused:
            self.runner.press("continue")

    def action_quit_run(self) -> None:
        if self.paused:
            self.runner.press("quit")
        elif not self.finished:
            self.runner.debugger.quit()        # the next event stops the guest for good
            self.runner.debugger.pause()
            self.runner.keys.put("quit")
        self.exit()


def _css_id(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def check_breaks(breaks) -> None:
    """--break values as the debugger takes them; a mistake is a BallastError (one line)."""
    probe = Debugger()
    for text in breaks:
        event, sep, condition = text.partition(" if ")
        try:
            probe.break_on(event, condition if sep else None)
        except DebuggerError as e:
            raise BallastError(f"--break '{text}': {e}") from None
