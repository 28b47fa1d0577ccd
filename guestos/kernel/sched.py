"""Tasks and the scheduler: round robin with a quantum of virtual time, counted
in retired instructions so that preemption is deterministic (kernel/sched.c).

Kernel threads (kswapd, the balloon's, the flusher) are tasks too: a KernelThread's body is a
generator that yields at Linux's natural preemption points (a reclaim batch, a balloon batch, a
writeback chunk): None to go on if its time slice allows, or a condition to sleep on until it
holds. They share the CPU with user tasks in virtual time, at the same quantum; a kernel thread
that wakes preempts the running user task at its next exit (check_preempt_wakeup).

Time is accounted per task: user time is retired instructions (CPL 3), system time the costs the
kernel charged while the task (or kernel thread) was current; what is charged with the CPU idle is
idle time, and what no task ran is the idle task's (swapper).

A system call that must wait raises WouldBlock: the task sleeps with its
`syscall` instruction rewound, and runs it again once woken (as Linux restarts
a call interrupted before it did anything). A signal for a handler wakes it
too; the call then returns EINTR or runs again after the handler, as its
restart rule and SA_RESTART say (signal.py: handle_signal_restart)."""
from collections import deque
from dataclasses import dataclass, field

from ..arch import vcpu_exits as X

TASK_RUNNING = "R"
TASK_INTERRUPTIBLE = "S"
TASK_STOPPED = "T"                                 # job control: off every queue until SIGCONT
TASK_ZOMBIE = "Z"
TASK_DEAD = "X"

# instructions per quantum: 4 ms at 2 GHz and CPI 1
DEFAULT_QUANTUM = 8_000_000
SYSCALL_INSN_LEN = 2


# what an interrupted sleeping call returns to a handler (include/linux/errno.h's restart codes)
ERESTARTSYS = "ERESTARTSYS"                       # EINTR, or run again under SA_RESTART (read, wait4)
ERESTARTNOINTR = "ERESTARTNOINTR"                 # always run again
ERESTARTNOHAND = "ERESTARTNOHAND"                 # EINTR after a handler (select, pause, sigsuspend)
ERESTART_RESTARTBLOCK = "ERESTART_RESTARTBLOCK"   # EINTR after a handler; else go on with what is left
                                                  # (nanosleep, poll: task.restart_block)


class WouldBlock(Exception):
    """Raised by a system call that cannot finish yet; `ready()` says when to retry.

    restart: the call's rule when a signal interrupts it; expires: the virtual time (ns) at which
    ready() turns true by itself (a timer wakes the machine then); interrupted(): run when the call
    returns EINTR (nanosleep writes the time left)."""

    def __init__(self, ready, restart: str = ERESTARTSYS, expires: int = None, interrupted=None):
        super().__init__("would block")
        self.ready = ready
        self.restart = restart
        self.expires = expires
        self.interrupted = interrupted


class SignalStruct:
    """signal_struct: what the threads of one process share (CLONE_THREAD): the shared pending set
    of process-directed signals, the thread list (thread_group, leader first), how many threads
    still live, and the group exit (SIGNAL_GROUP_EXIT with its wait status)."""

    def __init__(self):
        self.shared_pending = {}                    # signal -> siginfo
        self.threads = []
        self.live = 0
        self.group_exit = False
        self.group_exit_code = 0                    # a wait status
        self.group_stopped = False                  # job control: stopped until SIGCONT (SIGNAL_STOP_STOPPED)


@dataclass(eq=False)
class Task:
    """Linux's task_struct, the parts this kernel keeps: ids, mm, files, registers, signals and state."""
    pid: int
    comm: str
    mm: object = None
    files: object = None
    exe_path: str = ""
    regs: dict = field(default_factory=dict)   # registers to load before it first runs
    context: object = None                      # saved CPU state while it is off the CPU
    state: str = TASK_RUNNING
    exit_code: int = 0                          # wait status: code << 8, or the killing signal
    parent: "Task" = None
    children: list = field(default_factory=list)
    sigactions: dict = field(default_factory=dict)
    sigmask: int = 0
    pending: dict = field(default_factory=dict)     # signal -> siginfo, waiting for a handler
    sigframes: list = field(default_factory=list)   # (ucontext address, saved CPU state) per handler
    clear_child_tid: int = 0
    robust_list: int = 0
    rlimits: dict = field(default_factory=dict)  # resource -> (soft, hard) set by this task or inherited
    pgid: int = 0                               # process group: init starts in the kernel's, 0
    rseq: int = 0
    exit_signal: int = 17                       # sent to the parent at exit (clone's CSIGNAL bits)
    rseq_len: int = 0
    rseq_sig: int = 0
    vfork_parent: "Task" = None                 # released when this child execs or exits
    wait_ready: object = None                   # while sleeping: the condition to wake on
    cwd: str = "/"
    cwd_ino: int = 2                            # the root directory's inode on ext2
    min_flt: int = 0
    maj_flt: int = 0
    instructions: int = 0
    sid: int = 0                                # session: init starts in the kernel's, 0
    did_exec: bool = False                      # not PF_FORKNOEXEC: setpgid by the parent is EACCES
    umask: int = 0o022                          # init_fs's
    restart: str = None                         # asleep in a rewound call: its restart rule
    restart_block: tuple = None                 # what a call keeps across its re-runs (a deadline)
    interrupted: object = None                  # the sleeping call's EINTR hook
    woken_by_signal: bool = False
    saved_sigmask: int = None                   # sigsuspend/ppoll/pselect6: the mask to restore
    cinstructions: int = 0                      # retired by reaped children (and theirs): RUSAGE_CHILDREN
    cmin_flt: int = 0
    cmaj_flt: int = 0
    start_time_ns: int = 0                      # virtual time of fork, for /proc/PID/stat
    cmdline: bytes = b""                        # argv and envp as exec laid them out (/proc/PID/cmdline)
    environ: bytes = b""
    alarm_expires_ns: int = 0                   # alarm(2): when SIGALRM is due (0: none)
    sas_ss_sp: int = 0                          # sigaltstack(2): the alternate signal stack
    sas_ss_size: int = 0
    sas_ss_flags: int = 0                       # SS_AUTODISARM as given
    trap_nr: int = 0                            # the last CPU trap (thread.trap_nr, error_code, cr2):
    error_code: int = 0                         # what a signal frame's sigcontext shows
    cr2: int = 0
    stime_ns: int = 0                           # system time: kernel costs charged while it ran
    cstime_ns: int = 0                          # of reaped children (and theirs): RUSAGE_CHILDREN
    kthread: bool = False                       # PF_KTHREAD: no mm, no user context
    stop_signal: int = 0                        # job control: the signal that stopped the task,
    stop_reported: bool = True                  # whether a wait has seen that stop yet,
    continued: bool = False                     # and a SIGCONT not yet reported (WCONTINUED)
    nice: int = 0                               # setpriority(2): -20..19, inherited at fork
    groups: tuple = ()                          # setgroups(2): supplementary group ids
    it_real_incr_ns: int = 0                    # setitimer(ITIMER_REAL): the interval (alarm_expires_ns: the value)
    it_virt: tuple = (0, 0)                     # ITIMER_VIRTUAL and ITIMER_PROF: (expires, interval) in
    it_prof: tuple = (0, 0)                     # the task's own CPU time (ns), 0 when off
    tgid: int = 0                               # the thread group (process) id; getpid()
    group_leader: "Task" = None
    signal: SignalStruct = None                 # shared by the threads of a process
    robust_list_len: int = 0

    def __post_init__(self):
        if not self.tgid:
            self.tgid = self.pid
        if self.group_leader is None:
            self.group_leader = self
        if self.signal is None:
            self.signal = SignalStruct()
        self.signal.threads.append(self)
        self.signal.live += 1

    @property
    def exited(self) -> bool:
        return self.state in (TASK_ZOMBIE, TASK_DEAD)


# kernel/sched.c: the load weight of each nice level, -20 to 19
SCHED_PRIO_TO_WEIGHT = (88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916, 9548, 7620, 6100,
                        4904, 3906, 3121, 2501, 1991, 1586, 1277, 1024, 820, 655, 526, 423, 335, 272, 215, 172,
                        137, 110, 87, 70, 56, 45, 36, 29, 23, 18, 15)


class FsStruct:
    """fs_struct: the working directory and umask, shared by the tasks cloned with CLONE_FS."""

    def __init__(self):
        self.cwd, self.cwd_ino, self.umask = "/", 2, 0o022


def _fs_field(name: str) -> property:
    """Task.cwd, cwd_ino and umask live in task.fs (made at the first assignment, in __init__)."""
    def fget(task):
        return getattr(task.fs, name)

    def fset(task, value):
        fs = task.__dict__.get("fs")
        if fs is None:
            fs = task.__dict__["fs"] = FsStruct()
        setattr(fs, name, value)
    return property(fget, fset)


for _name in ("cwd", "cwd_ino", "umask"):
    setattr(Task, _name, _fs_field(_name))


@dataclass(eq=False)
class KernelThread(Task):
    """A kernel thread (kthread_run): `body` is the generator it runs."""
    body: object = None
    kthread: bool = True


def signal_pending(task) -> bool:
    """A pending signal, its own or its process's, the task does not block (blocked ones wait;
    ignored ones never queue)."""
    mask = task.sigmask
    return any(not mask >> (sig - 1) & 1 for sig in task.pending) or \
        any(not mask >> (sig - 1) & 1 for sig in task.signal.shared_pending)


def _timer_wakeup() -> None:
    """A sleeper's timer: the interrupt itself is the point (the scheduler looks at ready())."""


def run_to_completion(k, steps):
    """Drive a kernel thread's steps outside a kernel thread (from a notifier or a timer): a
    condition it yields is waited for with the CPU idle (wait_event); returns its result."""
    while True:
        try:
            wait = next(steps)
        except StopIteration as done:
            return done.value
        if wait is not None:
            k.wait_event(wait)


class Scheduler:
    def __init__(self, kernel, quantum: int = DEFAULT_QUANTUM):
        self.k = kernel
        self.quantum = quantum
        self.runqueue = deque()
        self.sleeping = []
        self.current = None
        self.nr_switches = 0
        self.preemptions = 0
        self.kthreads = []                  # every kernel thread, asleep or not
        self.need_resched = False           # a woken kernel thread or sched_yield: end the slice
        self.swapper = Task(pid=0, comm="swapper")      # the idle task: time no task ran
        self.running = self.swapper         # whose account system time goes to
        self.stime_mark = 0                 # the clock's busy system time when last accounted

    @property
    def quantum_ns(self) -> int:
        costs = self.k.costs
        return int(self.quantum * costs.cpi / costs.cpu_ghz)

    def account(self, next_task=None) -> None:
        """Charge the system time since the last call to the task that was running; from now on
        to next_task (when given). The clock's idle time is nobody's."""
        clock = self.k.hw.clock
        system = clock.charged_ns - clock.idle_ns
        self.running.stime_ns += system - self.stime_mark
        self.stime_mark = system
        if next_task is not None:
            self.running = next_task

    def kthread_run(self, body, comm: str) -> KernelThread:
        """kthread_run(): a kernel thread that starts runnable; its body is a generator."""
        thread = KernelThread(pid=self.k.alloc_pid(), comm=comm, body=body,
                              start_time_ns=self.k.hw.clock.now_ns())
        self.kthreads.append(thread)
        self.runqueue.append(thread)
        return thread

    def wake_kthreads(self) -> bool:
        """Wake sleeping kernel threads whose condition holds; True if one woke (then the
        running user task gives up the CPU at this exit)."""
        woke = False
        for thread in self.kthreads:
            if thread.state == TASK_INTERRUPTIBLE and thread.wait_ready():
                self.sleeping.remove(thread)
                thread.state = TASK_RUNNING
                thread.wait_ready = None
                self.runqueue.appendleft(thread)
                woke = True
        return woke

    def run_kthread(self, thread: KernelThread) -> None:
        """Run a kernel thread's body until it sleeps or its time slice is used up."""
        k = self.k
        clock = k.hw.clock
        end = clock.busy_ns() + self.quantum_ns
        while True:
            try:
                wait = next(thread.body)
            except StopIteration:
                thread.state = TASK_DEAD
                return
            if clock._events and clock.next_event_ns() <= clock.now_ns():
                clock.run_due()                # device completions fall due as kernel work takes time
            k.do_IRQ()
            if wait is not None and not wait():
                thread.state = TASK_INTERRUPTIBLE
                thread.wait_ready = wait
                self.sleeping.append(thread)
                return
            if clock.busy_ns() >= end:
                self.preemptions += 1
                self.runqueue.append(thread)
                return

    def timeslice(self, task: Task) -> int:
        """The quantum scaled by the task's load weight (sched_prio_to_weight[nice + 20] / 1024), as
        CFS gives a nicer task a smaller share."""
        return max(self.quantum * SCHED_PRIO_TO_WEIGHT[task.nice + 20] // 1024, 1)

    def wake_up_new_task(self, task: Task) -> None:
        self.runqueue.append(task)

    def sleep_on(self, task: Task, ready, restart: str = ERESTARTSYS, expires: int = None,
                 interrupted=None) -> None:
        """The task waits in its system call; it will run the call again once ready() holds, or
        a signal for a handler wakes it (then signal.handle_signal_restart decides)."""
        cpu = self.k.hw.cpu
        cpu.set_reg("rip", cpu.reg("rip") - SYSCALL_INSN_LEN)
        cpu.set_reg("rax", self.k.current_syscall_nr)
        task.state = TASK_INTERRUPTIBLE
        task.wait_ready = ready
        task.restart = restart
        task.interrupted = interrupted
        if expires is not None:
            delay = expires - self.k.hw.clock.now_ns()
            if delay > 0:
                self.k.timers.add_timer(delay, _timer_wakeup)      # hrtimer: the idle CPU wakes then
        self.sleeping.append(task)

    def sleep_after_return(self, task: Task, ready) -> None:
        """The task's call is complete, but it may not run again until ready() (vfork)."""
        task.state = TASK_INTERRUPTIBLE
        task.wait_ready = ready
        self.sleeping.append(task)

    def wake_sleepers(self) -> None:
        for task in list(self.sleeping):
            if task.exited:
                self.sleeping.remove(task)
            elif task.wait_ready() or task.restart is not None and signal_pending(task):
                self.sleeping.remove(task)
                task.woken_by_signal = not task.wait_ready()
                task.state = TASK_RUNNING
                task.wait_ready = None
                self.runqueue.append(task)

    def switch_to(self, task: Task) -> None:
        k = self.k
        cpu = k.hw.cpu
        prev = self.current
        if prev is task:
            self.account(task)
            return
        k.charge(k.costs.context_switch_ns)          # schedule(), paid by the task leaving
        self.account(task)
        if prev is not None and not prev.exited and not prev.kthread:
            prev.context = cpu.save_context()
        self.current = task
        self.nr_switches += 1
        if task.kthread:                             # lazy TLB: a kernel thread borrows the last mm
            return
        if task.context is not None:
            cpu.restore_context(task.context)
            task.context = None
        if task.regs:
            cpu.set_regs(task.regs)
            task.regs = {}
        k.switch_mm(task.mm)

    def run(self) -> None:
        """Run until init is gone."""
        k = self.k
        cpu = k.hw.cpu
        while k.init_task.signal.live:             # init's thread group: until its last thread is gone
            self.wake_sleepers()
            if not self.runqueue:
                if not self.sleeping:
                    stopped = [t for t in k.tasks.values() if t.state == TASK_STOPPED]
                    if stopped:                    # only stopped tasks are left: no SIGCONT can come
                        k.deadlock(stopped)
                        continue
                    return
                if all(t.kthread for t in self.sleeping):
                    return                             # only kernel threads are left: init is gone
                self.account(self.swapper)
                if not k.hw.idle():
                    k.deadlock([t for t in self.sleeping if not t.kthread])
                    continue
                k.do_IRQ()
                continue
            task = self.runqueue.popleft()
            if task.exited:
                continue                           # killed while it waited for the CPU
            self.switch_to(task)
            if task.kthread:
                self.run_kthread(task)
                continue
            if (task.pending or task.signal.shared_pending) and (task.restart is None or task.woken_by_signal):
                k.do_signal(task)                  # before it runs: a sleeping call may return EINTR
                if task.state != TASK_RUNNING:
                    continue
            start = cpu.icount
            timeslice = self.timeslice(task)             # instructions, scaled by nice
            cpu.set_deadline(start + timeslice)
            clock = k.hw.clock
            costs = k.costs
            # the slice is virtual time, user and system
            end = clock.busy_ns() + int(timeslice * costs.cpi / costs.cpu_ghz)
            self.need_resched = False
            while task.state == TASK_RUNNING:
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
                if (task.pending or task.signal.shared_pending) and task.state == TASK_RUNNING:
                    k.do_signal(task)
                if self.kthreads and self.wake_kthreads():
                    self.need_resched = True       # check_preempt_wakeup: the kernel thread runs now
                left = end - clock.busy_ns()
                if left <= 0 or self.need_resched:
                    self.preemptions += 1
                    break
                if self.current is not task:       # the call switched tasks (vfork, exec of another)
                    break
                cpu.set_deadline(cpu.icount + max(1, int(left * costs.cpu_ghz / costs.cpi)))
            task.instructions += cpu.icount - start
            if task.it_virt[0] or task.it_prof[0]:
                k.itimer_tick(task)                # ITIMER_VIRTUAL/PROF: checked as the slice ends
            if task.state == TASK_RUNNING:
                self.runqueue.append(task)
