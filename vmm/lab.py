"""The guest a test or a scenario drives: a GuestSession with helpers for balloon tests (run_ok,
resize_balloon, snapshot, ...). machine_spec.boot() makes one from a MachineSpec; the pytest plugin
hands it to tests."""
import time

from devices.virtio_balloon import FEATURES_BY_NAME

from .session import GuestSession
from .snapshot import snapshot
from .units import MiB, PAGE_SIZE

DEFAULT_RUN_TIMEOUT_S = 3600         # guest seconds; a program that never ends is an error
DEFAULT_WAIT_TIMEOUT_S = 60


class LabSession(GuestSession):
    """A GuestSession booted from a MachineSpec; close() also releases what boot made for it (its swap
    disk, its host)."""

    def __init__(self, config, root, resources, **kw):
        # the root disk is already config.disks[0], attached as the spec asks
        super().__init__(config, root=None, **kw)
        self.root = root
        self._resources = resources
        self._started = time.perf_counter()
        self.run_timeout_s = DEFAULT_RUN_TIMEOUT_S      # guest seconds, for run()/run_ok() without timeout_s
        self.wait_timeout_s = DEFAULT_WAIT_TIMEOUT_S    # for wait_balloon()/resize_balloon() without one

    def start(self, timeout_s: float = 60) -> "LabSession":
        self._started = time.perf_counter()
        return super().start(timeout_s)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._resources.release()

    def run(self, argv, timeout_s: float = None):
        """Run a guest program to completion (at most timeout_s of guest time); a RunResult."""
        return super().run(argv, self.run_timeout_s if timeout_s is None else timeout_s)

    def wait_balloon(self, timeout_s: float = None) -> bool:
        """Run the guest until the driver reports actual == target, at most timeout_s of guest time."""
        return super().wait_balloon(self.wait_timeout_s if timeout_s is None else timeout_s)

    def run_ok(self, argv, timeout_s: float = None) -> str:
        """Run a guest program that must exit 0; its console output."""
        r = self.run(argv, timeout_s)
        if r.status != 0:
            how = f"was killed by signal {r.status & 0x7F}" if r.signaled else f"exited {r.exit_code}"
            raise AssertionError(f"{' '.join(map(str, argv))} {how}: {r.output.strip()[-500:]}")
        return r.output

    def resize_balloon(self, mib: float, timeout_s: float = None) -> bool:
        """Set the balloon's size and wait (in guest time) until the driver reaches it."""
        self.set_balloon_mib(mib)
        return self.wait_balloon(timeout_s)

    def balloon_mib(self) -> float:
        """The balloon's actual size, as the driver reports it."""
        return self.balloon.actual_pages * PAGE_SIZE / MiB

    @property
    def violations(self) -> list:
        """Guest accesses to frames that were in the balloon (vmm.machine.BalloonViolation)."""
        return self.machine.violations

    def snapshot(self) -> dict:
        """What a scenario's snapshot records (guest, vmstat, balloon, host, time)."""
        return snapshot(self, time.perf_counter() - self._started)

    def report(self, console_lines: int = 20) -> str:
        """The guest's state for a failure report: time, balloon, /proc/meminfo and the console's last lines.
        It only looks, and says so where a part cannot be read (a guest that powered off, say)."""
        m = self.machine
        parts = [f"{m.config.mem >> 20} MiB guest, {self.virtual_ns() / 1e9:.3f} s of guest time"
                 + (", powered off" if self.finished else "")]
        parts.append(_described("balloon", lambda: _balloon_text(self)))
        parts.append(_described("/proc/meminfo", lambda: "\n".join(
            f"{name + ':':<16}{value:>10} kB" for name, value in self.meminfo().items())))
        text = bytes(m.console_output).decode(errors="replace").rstrip("\n").splitlines()[-console_lines:]
        parts.append(f"console (last {console_lines} lines):\n" + ("\n".join(text) or "(no output)"))
        return "\n\n".join(parts)


def _described(title: str, make) -> str:
    try:
        return f"{title}:\n{make()}"
    except Exception as e:          # a report must never hide the test's own failure
        return f"{title}: cannot be read ({type(e).__name__}: {e})"


def _balloon_text(session) -> str:
    b = session.machine.balloon
    if b is None:
        return "none (this guest has no balloon device)"
    features = [name for name, bit in FEATURES_BY_NAME.items() if b.features & bit]
    mib = PAGE_SIZE / MiB
    lines = [f"features {'+'.join(features) or '(none)'}",
             f"target {b.target_pages} pages ({b.target_pages * mib:.1f} MiB), "
             f"actual {b.actual_pages} pages ({b.actual_pages * mib:.1f} MiB)"
             + ("" if b.target_pages == b.actual_pages else "  <- not reached"),
             f"violations {len(session.machine.violations)}"
             + "".join(f"\n  {v}" for v in session.machine.violations[:5]),
             "counters " + ", ".join(f"{k} {v}" for k, v in b.counters.as_dict().items() if v)]
    if b.latest_stats:
        import textwrap                 # a failure report only: not at every start
        lines.append(textwrap.fill("latest stats " + ", ".join(f"{k} {v}" for k, v in b.latest_stats.items()),
                                   width=100, subsequent_indent="  "))
    return "\n".join(lines)
