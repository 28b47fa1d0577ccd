"""A guest the host drives step by step: programs run to completion through the guest agent,
balloon targets are set and waited for, and guest and host memory are read between steps.

The guest runs on a greenlet of its own. It hands the host its turn whenever the host's
condition holds, when a deadline in virtual time passes, or when it sits idle with nothing left
that could wake it. Host and guest strictly take turns, so a session is as deterministic as a
plain run: the same steps give the same guest, bit for bit."""
from dataclasses import dataclass
import greenlet

from .errors import BallastError
from .firmware import read_program
from .machine import Machine, MachineConfig, root_disk
from .memory import process_rss_bytes
from . import oracle

AGENT_PATH = "/sbin/ballast-agent"
AGENT_PROGRAM = "ballast-agent"          # in firmware/bin
POLL_NS = 10_000_000            # how often a busy guest checks whether the host's wait is over
NS = 1_000_000_000

DONE, TIMEOUT, STUCK, EXITED = "done", "timeout", "stuck", "exited"


@dataclass
class RunResult:
    """A guest program's wait status and console output."""
    status: int                 # the wait status
    output: str                 # what the program wrote to the console

    @property
    def exit_code(self) -> int:
        return oracle.decode_wait_status(self.status)["code"]

    @property
    def signaled(self) -> bool:
        return oracle.decode_wait_status(self.status)["signaled"]


class GuestSession:
    def __init__(self, config: MachineConfig, root: str = None, host=None, console_sink=None,
                 initramfs: dict = None, root_read_only: bool = False, root_cache: str = "writeback"):
        """`root` an ext2 image (attached as the first disk, vda); `host` a devices.host.Host to share;
        `initramfs` more files for the initramfs ({guest path: bytes}), e.g. programs without a root.
        The root runs as a private snapshot, or read-only (then guests on one host share its cache)."""
        if root is not None:
            config.disks.insert(0, root_disk(root, cache=root_cache, read_only=root_read_only))
        self.machine = Machine(config, console_sink=console_sink, host=host)
        self.machine.controller = self
        self.root = root
        self.initramfs = dict(initramfs or {})
        self._guest = None
        self._host = None
        self._guest_turn = None         # the guest greenlet that handed over (a task's kernel stack)
        self._wait = None               # (predicate, deadline_ns) while the host waits
        self._poll_armed = False
        self._running = None            # (argv, agent reply offset, console offset) of a spawned program
        self._samplers = []             # [interval_ns, next_ns, fn]: read-only looks while the guest runs
        self.finished = False

    # --- lifecycle ---
    def start(self, timeout_s: float = 60) -> "GuestSession":
        if self._guest is not None:
            raise BallastError("this session has already started")
        agent = read_program(AGENT_PROGRAM)
        m = self.machine
        # the agent runs from the initramfs even with a root disk (rdinit=, as Linux does)
        m.config.cmdline = f"{m.config.cmdline} rdinit={AGENT_PATH}".strip()
        m.load(None, AGENT_PATH, [], root_device="/dev/vda" if self.root else None,
               initramfs={**self.initramfs, AGENT_PATH: agent})
        self._guest = greenlet.greenlet(self._guest_main)
        if self._resume(lambda: b"READY\n" in m.agent_output, timeout_s) != DONE:
            raise BallastError(f"the guest agent did not start: {self.console_tail()}")
        return self

    def close(self) -> None:
        if self._guest is not None and not self._guest.dead:
            self._guest.throw(greenlet.GreenletExit)
        self.machine.close()
        ram = self.machine.ram
        if not ram._map.closed:
            ram.discard(0, ram.nr_frames)       # powered off: the host has all of it back now

    def __enter__(self):
        return self if self._guest is not None else self.start()

    def __exit__(self, *exc):
        self.close()

    # --- the host's steps ---
    def run(self, argv, timeout_s: float = 3600) -> RunResult:
        """Run a guest program to completion; its console output and wait status."""
        self.spawn(argv)
        return self.wait_program(timeout_s)

    def spawn(self, argv) -> None:
        """Start a guest program and return at once (the guest has not run yet); wait_program()
        collects it. One program at a time: the agent serves one request after another."""
        m = self.machine
        argv = [str(a) for a in argv]
        if not argv or any("\x1f" in a or "\n" in a or "\0" in a for a in argv):
            raise BallastError(f"cannot run {argv!r} in the guest")
        if self._running is not None:
            raise BallastError(f"{self._running[0][0]} is still running in the guest")
        self._running = (argv, len(m.agent_output), len(m.console_output))
        m.serial2.receive(("\x1f".join(["RUN"] + argv) + "\n").encode())

    def wait_program(self, timeout_s: float = 3600) -> RunResult:
        if self._running is None:
            raise BallastError("no guest program is running")
        m = self.machine
        argv, reply_from, console_from = self._running
        # find(), not `in` on a slice: asked at every idle of the guest, without a copy
        why = self._resume(lambda: m.agent_output.find(b"\n", reply_from) >= 0, timeout_s)
        output = bytes(m.console_output[console_from:]).decode(errors="replace")
        if why == STUCK:
            raise BallastError(f"{argv[0]} is waiting for something that will never come: {self.console_tail()}")
        if why != DONE:
            raise BallastError(f"{argv[0]} did not finish within {timeout_s:g} s of guest time ({why})")
        self._running = None
        reply = bytes(m.agent_output[reply_from:]).split(b"\n", 1)[0].decode()
        word, _, value = reply.partition(" ")
        if word != "EXIT":
            raise BallastError(f"the guest agent could not run {argv[0]}: {reply}")
        return RunResult(int(value), output)

    def wait_output(self, text: str, timeout_s: float = 60) -> bool:
        """Run the guest until `text` appears on the console (after the running program started)."""
        m = self.machine
        start = self._running[2] if self._running is not None else 0
        needle = text.encode()
        return self.wait_until(lambda: m.console_output.find(needle, start) >= 0, timeout_s)

    def advance(self, seconds: float) -> None:
        """Let guest time pass (the guest runs or idles meanwhile)."""
        self._resume(_never, seconds)

    def wait_until(self, predicate, timeout_s: float) -> bool:
        """Run the guest until predicate() holds (checked as the guest goes); False on timeout
        or when the guest is idle and nothing can change any more."""
        return self._resume(predicate, timeout_s) == DONE

    # --- balloon ---
    @property
    def balloon(self):
        if self.machine.balloon is None:
            raise BallastError("this machine has no balloon (give it balloon features)")
        return self.machine.balloon

    def set_balloon_mib(self, mib: float, hint: str = None) -> None:
        """Firecracker's view: the balloon's size (hint="cache": unmapped cache first)."""
        self.balloon.set_target_pages(int(mib * 256), hint=hint)

    def set_guest_mib(self, mib: float, hint: str = None) -> None:
        """QEMU's view: the guest's size."""
        self.balloon.set_guest_size(int(mib * (1 << 20)), hint=hint)

    def wait_balloon(self, timeout_s: float = 60) -> bool:
        """Until the driver reports actual == target."""
        b = self.balloon
        return self.wait_until(lambda: b.actual_pages == b.target_pages, timeout_s)

    def balloon_stats(self, timeout_s: float = 5) -> dict:
        """Ask the driver for fresh statistics and wait for them (Linux's names)."""
        b = self.balloon
        before = b.counters.stats_updates
        if b.request_stats():
            self.wait_until(lambda: b.counters.stats_updates > before, timeout_s)
        return dict(b.latest_stats)

    # --- what the oracle sees ---
    def meminfo(self) -> dict:
        return self.machine.kernel.meminfo()

    def vmstat(self) -> dict:
        return self.machine.kernel.vmstat_snapshot()

    @staticmethod
    def host_rss_bytes() -> int:
        return process_rss_bytes()

    def virtual_ns(self) -> int:
        return self.machine.clock.now_ns()

    def console_tail(self, lines: int = 5) -> str:
        text = bytes(self.machine.console_output).decode(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no console output)"

    # --- taking turns ---
    def _guest_main(self):
        status = self.machine.boot()
        self.finished = True
        return EXITED, status

    def _resume(self, predicate, timeout_s: float) -> str:
        if self.finished or self._guest is None:
            return EXITED
        from .hostinput import guest_seconds
        guest_seconds(timeout_s, "timeout_s", allow_zero=True)    # finite, bounded: the deadline is whole ns
        clock = self.machine.clock
        self._wait = (predicate, clock.now_ns() + int(timeout_s * NS))
        self._host = greenlet.getcurrent()
        if not self._poll_armed:
            self._arm_poll()
        # the guest goes on where it handed over: on a task's kernel stack, or its main one
        turn, self._guest_turn = self._guest_turn, None
        why = (turn if turn is not None and not turn.dead else self._guest).switch()
        self._wait = None
        if isinstance(why, tuple):          # the guest powered off
            return EXITED
        return why

    def _arm_poll(self) -> None:
        self._poll_armed = True

        def poll():
            self._poll_armed = False
            if self._wait is not None:
                self._sample()
                self._checkpoint()
                self._arm_poll()
        self.machine.clock.schedule(POLL_NS, poll, deferrable=True)

    def add_sampler(self, fn, interval_s: float) -> None:
        """Call fn() about every interval_s of guest time while the host waits, at points the
        session stops at anyway (its polls and the host's turns), and once now. fn must only look."""
        interval = max(POLL_NS, int(interval_s * NS))
        self._samplers.append([interval, self.machine.clock.now_ns() + interval, fn])
        fn()

    def _sample(self) -> None:
        now = self.machine.clock.now_ns()
        for sampler in self._samplers:
            if now >= sampler[1]:
                sampler[1] = now + sampler[0]
                sampler[2]()

    def _yield(self, why: str) -> None:
        self._sample()
        self._wait = None
        self._guest_turn = greenlet.getcurrent()
        self._host.switch(why)              # back here when the host has its next wait

    def _checkpoint(self) -> bool:
        """On the guest's side: hand over if the host's wait is over."""
        if self._wait is None:
            return False
        predicate, deadline = self._wait
        if predicate():
            self._yield(DONE)
            return True
        if self.machine.clock.now_ns() >= deadline:
            self._yield(TIMEOUT)
            return True
        return False

    def guest_idle(self) -> bool:
        """The machine's idle: the host's turn, or time jumps to the next wake-up."""
        m = self.machine
        clock = m.clock
        while True:
            if m.irq_pending:
                return True
            if self._checkpoint():
                continue
            if self._wait is None:          # not reachable: the host always leaves a wait
                return clock.idle_until_next_event()
            predicate, deadline = self._wait
            at = clock.next_wakeup_ns()
            if at is None and predicate is not _never:
                self._yield(STUCK)          # nothing can change any more: say so, do not jump
            elif at is None or at > deadline:
                clock.advance_to(deadline)  # the deadline comes first; the next pass hands over
            else:
                clock.advance_to(at)
                return True


def _never() -> bool:
    return False
