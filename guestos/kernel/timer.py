"""Kernel timers (kernel/timer.c): functions to run at a virtual time, multiplexed on the
one-shot timer interrupt (IRQ 0), which is armed once per timer added."""
import heapq


class TimerList:
    def __init__(self, k):
        self.k = k
        self.pending = []           # (expires_ns, sequence, function)
        self.sequence = 0

    def add_timer(self, delay_ns: int, function) -> None:
        """function() runs from the timer interrupt once delay_ns of virtual time has passed."""
        self.sequence += 1
        heapq.heappush(self.pending, (self.k.hw.clock.now_ns() + delay_ns, self.sequence, function))
        self.k.hw.arm_timer(delay_ns)

    def run_timers(self) -> None:
        """The timer interrupt: every expired timer, in order."""
        now = self.k.hw.clock.now_ns()
        while self.pending and self.pending[0][0] <= now:
            heapq.heappop(self.pending)[2]()
