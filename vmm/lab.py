"""The guest a test or a scenario drives: a GuestSession with helpers for balloon tests (run_ok,
resize_balloon, snapshot, ...). machine_spec.boot() makes one from a MachineSpec; the pytest plugin
hands it to tests."""
import time

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

    def start(self, timeout_s: float = 60) -> "LabSession":
        self._started = time.perf_counter()
        return super().start(timeout_s)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._resources.release()

    def run_ok(self, argv, timeout_s: float = DEFAULT_RUN_TIMEOUT_S) -> str:
        """Run a guest program that must exit 0; its console output."""
        r = self.run(argv, timeout_s)
        if r.status != 0:
            how = f"was killed by signal {r.status & 0x7F}" if r.signaled else f"exited {r.exit_code}"
            raise AssertionError(f"{' '.join(map(str, argv))} {how}: {r.output.strip()[-500:]}")
        return r.output

    def resize_balloon(self, mib: float, timeout_s: float = DEFAULT_WAIT_TIMEOUT_S) -> bool:
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
