"""The guest's virtual clock: retired instructions x CPI plus modelled costs.

Nothing here reads the host's time, so the same inputs give the same clock on
any machine. Wall time is measured beside it and never steers the guest.
"""
import heapq
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class CostModel:
    """Published defaults; a scenario may override any of them (nanoseconds)."""
    cpu_ghz: float = 2.0          # guest core clock
    cpi: float = 1.0              # cycles per retired instruction
    syscall_ns: int = 100         # user -> kernel -> user round trip
    page_fault_ns: int = 1_000    # exception entry, fault handling, return
    page_zero_ns: int = 250       # clearing one 4 KiB frame
    copy_ns_per_kib: int = 60     # copy_{to,from}_user
    vm_exit_ns: int = 3_000       # a trap to the VMM (MMIO, port I/O)

    @classmethod
    def names(cls):
        return [f.name for f in fields(cls)]


@dataclass
class VirtualClock:
    costs: CostModel = field(default_factory=CostModel)
    charged_ns: int = 0           # modelled costs so far
    instructions: int = 0         # retired instructions (mirrored from the vCPU)

    def charge(self, ns: int) -> None:
        self.charged_ns += int(ns)

    def instructions_ns(self) -> int:
        return int(self.instructions * self.costs.cpi / self.costs.cpu_ghz)

    def now_ns(self) -> int:
        return self.instructions_ns() + self.charged_ns

    # --- events: device completions and timers, ordered by (time, sequence) ---
    _events: list = field(default_factory=list, repr=False)
    _sequence: int = 0

    def schedule(self, delay_ns: int, callback) -> None:
        """Run callback() once the clock reaches now + delay_ns."""
        self._sequence += 1
        heapq.heappush(self._events, (self.now_ns() + max(0, int(delay_ns)), self._sequence, callback))

    def next_event_ns(self):
        return self._events[0][0] if self._events else None

    def run_due(self) -> int:
        """Run every event whose time has come; returns how many ran."""
        ran = 0
        now = self.now_ns()
        while self._events and self._events[0][0] <= now:
            _, _, callback = heapq.heappop(self._events)
            callback()
            ran += 1
        return ran

    def idle_until_next_event(self) -> bool:
        """An idle machine jumps to its next event (and runs it). False when there is none."""
        at = self.next_event_ns()
        if at is None:
            return False
        now = self.now_ns()
        if at > now:
            self.charged_ns += at - now
        self.run_due()
        return True
