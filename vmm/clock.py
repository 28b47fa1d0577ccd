"""The guest's virtual clock: retired instructions x CPI plus modelled costs.

Nothing here reads the host's time, so the same inputs give the same clock on
any machine. Wall time is measured beside it and never steers the guest.
"""
from heapq import heappop, heappush

from guestos.kernel.costs import CostModel      # the one table of costs, with their sources


class VirtualClock:
    """The guest's virtual clock: retired instructions at the cost model's CPI plus charged costs, and the events
    due on it. (A plain class, not a dataclass: one per machine, and nothing compares clocks.)"""

    def __init__(self, costs: CostModel = None, charged_ns: int = 0, instructions: int = 0, idle_ns: int = 0):
        self.costs = CostModel() if costs is None else costs
        self.charged_ns = charged_ns        # modelled costs so far
        self.instructions = instructions    # retired instructions (mirrored from the vCPU)
        self.idle_ns = idle_ns              # the part of charged_ns that passed with the CPU idle
        self._events = []                   # device completions and timers: (time, sequence, callback, deferrable)
        self._sequence = 0

    def __repr__(self) -> str:
        return (f"VirtualClock(costs={self.costs!r}, charged_ns={self.charged_ns}, instructions={self.instructions}, "
                f"idle_ns={self.idle_ns})")

    def charge(self, ns: int) -> None:
        self.charged_ns += int(ns)

    def instructions_ns(self) -> int:
        return int(self.instructions * self.costs.cpi / self.costs.cpu_ghz)

    def busy_ns(self) -> int:
        """Time the CPU spent running (user and system): the clock less its idle time."""
        return self.now_ns() - self.idle_ns

    def now_ns(self) -> int:
        # instructions_ns() inline: asked several times per guest I/O
        return int(self.instructions * self.costs.cpi / self.costs.cpu_ghz) + self.charged_ns

    # --- events: device completions and timers, ordered by (time, sequence) ---
    def schedule(self, delay_ns: int, callback, deferrable: bool = False) -> None:
        """Run callback() once the clock reaches now + delay_ns. A deferrable event (Linux's
        deferrable timers) runs when time gets there but never wakes an idle machine."""
        self._sequence += 1
        at = self.now_ns() + max(0, int(delay_ns))
        heappush(self._events, (at, self._sequence, callback, deferrable))

    def schedule_at(self, at_ns: int, callback) -> None:
        """schedule() for a time already known, not before now (a device's completion time)."""
        self._sequence += 1
        heappush(self._events, (at_ns, self._sequence, callback, False))

    def next_event_ns(self):
        return self._events[0][0] if self._events else None

    def next_wakeup_ns(self):
        """The next event that wakes an idle machine (deferrable ones do not)."""
        events = self._events
        if events and not events[0][3]:     # the earliest event is not deferrable: no scan
            return events[0][0]
        return min((at for at, _, _, deferrable in events if not deferrable), default=None)

    def advance_to(self, at_ns: int) -> None:
        """Idle time passes up to at_ns; whatever falls due runs."""
        now = self.now_ns()
        if at_ns > now:
            self.charged_ns += at_ns - now
            self.idle_ns += at_ns - now
            now = at_ns
        self.run_due(now)

    def run_due(self, now: int = None) -> int:
        """Run every event whose time has come (by now, the clock's time when the caller knows it);
        returns how many ran."""
        ran = 0
        if now is None:
            now = self.now_ns()
        events = self._events
        while events and events[0][0] <= now:
            callback = heappop(events)[2]
            callback()
            ran += 1
        return ran

    def idle_until_next_event(self) -> bool:
        """An idle machine jumps to its next wake-up (and runs what is due). False when none will come."""
        events = self._events
        if events and not events[0][3]:     # next_wakeup_ns() without a scan
            at = events[0][0]
        else:
            at = self.next_wakeup_ns()
            if at is None:
                return False
        self.advance_to(at)
        return True
