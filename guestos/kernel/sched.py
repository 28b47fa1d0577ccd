"""Tasks and the scheduler: round robin with a quantum of virtual time, counted
in retired instructions so that preemption is deterministic (kernel/sched.c)."""
from collections import deque
from dataclasses import dataclass, field

from ..arch import vcpu_exits as X

TASK_RUNNING = "R"
TASK_ZOMBIE = "Z"

# instructions per quantum: 4 ms at 2 GHz and CPI 1
DEFAULT_QUANTUM = 8_000_000


@dataclass(eq=False)
class Task:
    pid: int
    comm: str
    mm: object = None
    files: object = None
    exe_path: str = ""
    regs: dict = field(default_factory=dict)
    state: str = TASK_RUNNING
    exit_code: int = 0                 # wait status: code << 8, or the killing signal
    sigactions: dict = field(default_factory=dict)
    sigmask: int = 0
    clear_child_tid: int = 0
    robust_list: int = 0
    rseq: int = 0
    min_flt: int = 0
    maj_flt: int = 0
    instructions: int = 0

    @property
    def exited(self) -> bool:
        return self.state == TASK_ZOMBIE


class Scheduler:
    def __init__(self, kernel, quantum: int = DEFAULT_QUANTUM):
        self.k = kernel
        self.quantum = quantum
        self.runqueue = deque()
        self.current = None
        self.nr_switches = 0
        self.preemptions = 0

    def wake_up_new_task(self, task: Task) -> None:
        self.runqueue.append(task)

    def switch_to(self, task: Task) -> None:
        cpu = self.k.hw.cpu
        prev = self.current
        if prev is task:
            return
        if prev is not None and not prev.exited:
            prev.regs = cpu.regs()
        self.current = task
        self.nr_switches += 1
        cpu.set_regs(task.regs)
        self.k.switch_mm(task.mm)

    def run(self) -> None:
        """Run until no task is left."""
        k = self.k
        cpu = k.hw.cpu
        while self.runqueue:
            task = self.runqueue.popleft()
            self.switch_to(task)
            start = cpu.icount
            cpu.set_deadline(start + self.quantum)
            while not task.exited:
                exit = cpu.run()
                k.lru_add_drain()
                k.do_IRQ()
                reason = exit.reason
                if reason == X.EXIT_SYSCALL:
                    k.do_syscall(task)
                elif reason == X.EXIT_PAGE_FAULT:
                    k.do_page_fault(task, exit)
                elif reason == X.EXIT_QUANTUM:
                    self.preemptions += 1
                    break
                elif reason == X.EXIT_INTERRUPT:
                    pass
                else:
                    k.do_trap(task, exit)
                if cpu.icount >= start + self.quantum:
                    self.preemptions += 1
                    break
            task.instructions += cpu.icount - start
            if not task.exited:
                self.runqueue.append(task)
