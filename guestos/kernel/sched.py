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

Every task has a kernel stack of its own (a greenlet, as Linux gives each task one): its kernel work
(system calls, page faults, signal delivery; a kernel thread's body) runs there, and the scheduler
switches stacks. Kernel code that must wait for a device, a write or a nap (Kernel.wait_event) puts
the task to sleep uninterruptibly (TASK_UNINTERRUPTIBLE, io_schedule) and switches back to the
scheduler, which runs other tasks meanwhile; once the condition holds the task goes on from where
it waited. With nothing else to run it idles on its own stack instead, doing the scheduler's passes
there (idle_in_place). The idle time while such a task waits is iowait.

A system call that must wait for another task (a pipe, a child, a futex) raises WouldBlock instead:
the task sleeps interruptibly with its `syscall` instruction rewound, and runs it again once woken
(as Linux restarts a call interrupted before it did anything). A signal for a handler wakes it
too; the call then returns EINTR or runs again after the handler, as its
restart rule and SA_RESTART say (signal.py: handle_signal_restart)."""
from collections import deque

import greenlet

from ..arch import vcpu_exits as X

TASK_RUNNING = "R"
TASK_INTERRUPTIBLE = "S"
TASK_UNINTERRUPTIBLE = "D"                         # asleep inside the kernel until its condition holds
TASK_STOPPED = "T"                                 # job control: off every queue until SIGCONT
TASK_ZOMBIE = "Z"
TASK_DEAD = "X"
EXITED_STATES = frozenset((TASK_ZOMBIE, TASK_DEAD))      # a set: asked of every sleeper at every pass

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


class _Fresh:
    """The default of a Task attribute that each task gets a new one of (its own dict or list)."""

    def __init__(self, make):
        self.make = make


class Task:
    """Linux's task_struct, the parts this kernel keeps: ids, mm, files, registers, signals and state.

    Task(pid=..., comm=..., NAME=value...) for any attribute below; the others take their defaults.
    A plain class: a dataclass would compile a 72-argument __init__ and __repr__ at every start."""
    pid: int
    comm: str
    mm: object = None
    files: object = None
    exe_path: str = ""
    regs: dict = _Fresh(dict)                   # registers to load before it first runs
    context: object = None                      # saved CPU state while it is off the CPU
    state: str = TASK_RUNNING
    exit_code: int = 0                          # wait status: code << 8, or the killing signal
    parent: "Task" = None
    children: list = _Fresh(list)
    sigactions: dict = _Fresh(dict)
    sigmask: int = 0
    pending: dict = _Fresh(dict)                # signal -> siginfo, waiting for a handler
    sigframes: list = _Fresh(list)              # (ucontext address, saved CPU state) per handler
    clear_child_tid: int = 0
    robust_list: int = 0
    rlimits: dict = _Fresh(dict)                # resource -> (soft, hard) set by this task or inherited
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
    it_virt: tuple = (0, 0)                     # ITIMER_VIRTUAL and ITIMER_PROF: (expires, interval) in the
    it_prof: tuple = (0, 0)                     # process's CPU time (ns), 0 when off; the leader's count
    tgid: int = 0                               # the thread group (process) id; getpid()
    group_leader: "Task" = None
    signal: SignalStruct = None                 # shared by the threads of a process
    robust_list_len: int = 0
    kstack: object = None                       # the greenlet its kernel work runs on (its kernel stack)
    slice_icount: int = 0                       # the vCPU's icount when its instructions were last credited
    slice_end_ns: int = 0                       # the busy time at which its slice ends
    nr_uninterruptible_sleeps: int = 0          # waits inside the kernel (io_schedule) so far
    in_kernel_sleep: bool = False               # its kernel stack is suspended inside a wait (until it resumes)
    exiting: bool = False                       # PF_EXITING: its exit has begun

    def __init__(self, pid: int, comm: str, **given):
        self.pid = pid
        self.comm = comm
        for name, default in _TASK_DEFAULTS:            # every attribute, in the order declared
            if name in given:
                setattr(self, name, given.pop(name))
            else:
                setattr(self, name, default.make() if type(default) is _Fresh else default)
        if given:
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {next(iter(given))!r}")
        if not self.tgid:
            self.tgid = self.pid
        if self.group_leader is None:
            self.group_leader = self
        if self.signal is None:
            self.signal = SignalStruct()
        self.signal.threads.append(self)
        self.signal.live += 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pid={self.pid}, comm={self.comm!r}, state={self.state!r})"

    @property
    def exited(self) -> bool:
        return self.state in EXITED_STATES


_TASK_DEFAULTS = tuple((name, getattr(Task, name)) for name in Task.__annotations__ if name not in ("pid", "comm"))


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


class KernelThread(Task):
    """A kernel thread (kthread_run): `body` is the generator it runs."""

    def __init__(self, body, **task_fields):
        super().__init__(kthread=True, **task_fields)
        self.body = body


def signal_pending(task) -> bool:
    """A pending signal, its own or its process's, the task does not block (blocked ones wait;
    ignored ones never queue)."""
    pending, shared = task.pending, task.signal.shared_pending
    if not pending and not shared:
        return False                        # the common case, asked at every scheduler pass
    mask = task.sigmask
    return any(not mask >> (sig - 1) & 1 for sig in pending) or \
        any(not mask >> (sig - 1) & 1 for sig in shared)


def _timer_wakeup() -> None:
    """A sleeper's timer: the interrupt itself is the point (the scheduler looks at ready())."""


def run_to_completion(k, steps):
    """Drive a kernel thread's steps outside a kernel thread (from a notifier or a timer): a
    condition it yields is waited for with wait_event (the calling task sleeps, or with no task
    the CPU idles); returns its result."""
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
        self.clock = kernel.hw.clock        # the machine's virtual clock, asked at every switch and slice
        self.quantum = quantum
        self.runqueue = deque()
        self.sleeping = []                  # TASK_INTERRUPTIBLE: a rewound call, a kernel thread's yield
        self.blocked = []                   # TASK_UNINTERRUPTIBLE: asleep inside the kernel (wait_event)
        self.current = None
        self.nr_switches = 0
        self.preemptions = 0
        self.kthreads = []                  # every kernel thread, asleep or not
        self.need_resched = False           # a woken kernel thread or sched_yield: end the slice
        self.swapper = Task(pid=0, comm="swapper")      # the idle task: time no task ran
        self.running = self.swapper         # whose account system time goes to
        self.stime_mark = 0                 # the clock's busy system time when last accounted
        self.scheduler_stack = None         # the greenlet schedule() runs on (the boot stack)
        self.iowait_ns = 0                  # idle time while a task slept inside the kernel
        self.idling_in_place = False        # the CPU idles on a sleeping task's stack (idle_in_place)
        self.woken_in_place = False         # idle_in_place did this pass's wake-ups
        self.slice_ns = {}                  # nice level (None: a kernel thread) -> a slice in virtual ns

    @property
    def quantum_ns(self) -> int:
        costs = self.k.costs
        return int(self.quantum * costs.cpi / costs.cpu_ghz)

    def account(self, next_task=None) -> None:
        """Charge the system time since the last call to the task that was running; from now on
        to next_task (when given). The clock's idle time is nobody's."""
        clock = self.clock
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
        """Wake sleeping kernel threads whose condition holds, and tasks asleep inside the kernel
        whose wait is over; True if one woke (then the running user task gives up the CPU at this
        exit: check_preempt_wakeup)."""
        woke = False
        for thread in self.kthreads:
            if thread.state == TASK_INTERRUPTIBLE and thread.wait_ready():
                self.sleeping.remove(thread)
                thread.state = TASK_RUNNING
                thread.wait_ready = None
                self.runqueue.appendleft(thread)
                woke = True
        if self.blocked:
            woke = self.wake_blocked() or woke
        return woke

    def wake_blocked(self) -> bool:
        """Tasks asleep inside the kernel whose condition holds run next, in the order they slept
        (an I/O sleeper preempts a CPU-bound task, as CFS's sleeper credit makes it)."""
        woken = []
        for task in self.blocked:                   # a loop, not a comprehension: no frame of its own
            if task.wait_ready():
                woken.append(task)
        if not woken:
            return False
        for task in reversed(woken):
            self.blocked.remove(task)
            task.state = TASK_RUNNING
            task.wait_ready = None
            self.runqueue.appendleft(task)
        return True

    # --- kernel stacks ---
    def in_task_context(self) -> bool:
        """Is this the current task's own kernel stack (so that it may sleep here)? Not while the
        CPU idles on it (idle_in_place): that is the scheduler's work, borrowed."""
        task = self.current
        return task is not None and task.kstack is not None and greenlet.getcurrent() is task.kstack \
            and not self.idling_in_place

    def io_schedule(self, condition) -> None:
        """The current task sleeps inside the kernel (TASK_UNINTERRUPTIBLE) until condition() holds;
        other tasks and kernel threads run meanwhile. It goes on from here, with a new slice."""
        k = self.k
        task = self.current
        cpu = k.hw.cpu
        if not task.kthread:
            task.instructions += cpu.icount - task.slice_icount
        saved = k.save_syscall_state()
        task.state = TASK_UNINTERRUPTIBLE
        task.wait_ready = condition
        task.nr_uninterruptible_sleeps += 1
        task.in_kernel_sleep = True
        self.blocked.append(task)
        while True:
            if self.idle_in_place(task):
                break                              # woken in place: condition() held just now
            self.scheduler_stack.switch()
            if condition():
                break
            task.state = TASK_UNINTERRUPTIBLE      # woken too early: sleep again
            task.wait_ready = condition
            self.blocked.append(task)
        task.in_kernel_sleep = False
        k.restore_syscall_state(saved)
        task.slice_icount = cpu.icount
        self.start_slice(task)
        self.need_resched = False              # whatever ended the last slice was for the task before

    def idle_in_place(self, task) -> bool:
        """schedule_loop's passes for a task that just slept inside the kernel, run on its own stack
        while nothing else can run: wake sleepers, idle (iowait) until an event, until the task is
        the only one woken; then it is picked again (switch_to) and True is returned, without the
        trip to the scheduler's stack and back. False, and the scheduler's stack takes over, as soon
        as a pass would do anything else: another task to run, or the loop about to end (this pass's
        wake-ups done: woken_in_place). What a pass raises (a panic, a stopped machine) is raised on
        the scheduler's stack, where schedule_loop would have raised it."""
        runqueue = self.runqueue
        if runqueue:
            return False
        k = self.k
        try:
            while k.init_task.signal.live:
                self.wake_sleepers()
                if runqueue:
                    if len(runqueue) == 1 and runqueue[0] is task and task.state not in EXITED_STATES:
                        runqueue.popleft()
                        self.switch_to(task)
                        return True
                    break
                # a user task asleep here (blocked, not woken) is one only_kthreads_wait would find
                if task.kthread and self.only_kthreads_wait():
                    break                              # the loop ends: init is gone
                self.idling_in_place = True
                try:
                    self.idle()
                finally:
                    self.idling_in_place = False
            else:
                return False
        except greenlet.GreenletExit:
            raise                                      # the machine stops: this stack unwinds
        except BaseException as e:
            self.scheduler_stack.throw(type(e), e, e.__traceback__)
            raise AssertionError("a stack the scheduler gave up on was resumed") from None
        self.woken_in_place = True
        return False

    def start_slice(self, task) -> None:
        """A new slice of virtual time (user and system) for the task."""
        level = None if task.kthread else task.nice
        length = self.slice_ns.get(level)
        if length is None:                  # quantum and costs are fixed at boot: once per level
            costs = self.k.costs
            timeslice = self.quantum if level is None else self.timeslice(task)
            length = self.slice_ns[level] = int(timeslice * costs.cpi / costs.cpu_ghz)
        task.slice_end_ns = self.clock.busy_ns() + length

    def run_on_kstack(self, task) -> None:
        """Switch to the task's kernel stack (made at its first run) until it gives the CPU back."""
        stack = task.kstack
        if stack is None:
            stack = task.kstack = greenlet.greenlet(self.kthread_main if task.kthread else self.task_main)
        stack.switch(task)
        if stack.dead:
            task.kstack = None

    def release_stack(self, task) -> None:
        """Unwind a kernel stack nobody will resume (GreenletExit), now rather than whenever the
        garbage collector finds it. Called from the scheduler's stack, their parent."""
        stack, task.kstack = task.kstack, None
        if stack is not None and not stack.dead and stack is not greenlet.getcurrent():
            stack.parent = greenlet.getcurrent()
            stack.throw(greenlet.GreenletExit)

    def release_stacks(self) -> None:
        """The machine stops: every kernel stack still suspended, in pid order."""
        tasks = {t.pid: t for t in list(self.k.tasks.values()) + self.kthreads + self.blocked + self.sleeping}
        for pid in sorted(tasks):
            self.release_stack(tasks[pid])

    def kthread_main(self, thread: KernelThread) -> None:
        """A kernel thread's stack: run its body until it sleeps or its time slice is used up, then
        give the CPU back; a condition it waits for inside (wait_event) sleeps on this stack."""
        k = self.k
        clock = k.hw.clock
        while True:
            self.start_slice(thread)
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
                    break
                if clock.busy_ns() >= thread.slice_end_ns:
                    self.preemptions += 1
                    self.runqueue.append(thread)
                    break
            self.scheduler_stack.switch()

    def task_main(self, task: Task) -> None:
        """A user task's kernel stack: its slices, with the system calls, faults and signals in
        them, until it exits."""
        while not task.exited:
            self.run_slice(task)
            if task.exited:
                return
            self.scheduler_stack.switch()

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
            if task.state in EXITED_STATES:
                self.sleeping.remove(task)
                self.release_stack(task)
            elif task.wait_ready() or task.restart is not None and signal_pending(task):
                self.sleeping.remove(task)
                task.woken_by_signal = not task.wait_ready()
                task.state = TASK_RUNNING
                task.wait_ready = None
                self.runqueue.append(task)
        if self.blocked:
            self.wake_blocked()

    def switch_to(self, task: Task) -> None:
        prev = self.current
        if prev is task:
            self.account(task)
            return
        k = self.k
        cpu = k.hw.cpu
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

    def idle(self) -> None:
        """Nothing to run: the CPU idles until the next event. Idle time while a task sleeps inside
        the kernel is iowait. A task asleep in the kernel that nothing can wake is a kernel bug."""
        k = self.k
        clock = self.clock
        self.account(self.swapper)
        idle_before = clock.idle_ns
        if not k.hw.idle():
            if any(not t.exited for t in self.blocked):
                from .main import KernelPanic
                raise KernelPanic("waiting for an event that can never come")
            k.deadlock([t for t in self.sleeping if not t.kthread])
            return
        if self.blocked:
            self.iowait_ns += clock.idle_ns - idle_before
        k.do_IRQ()

    def run(self) -> None:
        """Run until init is gone."""
        self.scheduler_stack = greenlet.getcurrent()
        try:
            self.schedule_loop()
        finally:
            self.release_stacks()

    def only_kthreads_wait(self) -> bool:
        """Every task asleep is a kernel thread: no user task is left to wake, schedule_loop ends."""
        for waiting in (self.blocked, self.sleeping):     # blocked first: mostly a user task's I/O wait
            for task in waiting:
                if not task.kthread:
                    return False
        return True

    def schedule_loop(self) -> None:
        k = self.k
        while k.init_task.signal.live:             # init's thread group: until its last thread is gone
            if self.woken_in_place:
                self.woken_in_place = False
            else:
                self.wake_sleepers()
            if not self.runqueue:
                if not self.sleeping and not self.blocked:
                    stopped = [t for t in k.tasks.values() if t.state == TASK_STOPPED]
                    if stopped:                    # only stopped tasks are left: no SIGCONT can come
                        k.deadlock(stopped)
                        continue
                    return
                if self.only_kthreads_wait():
                    return                             # only kernel threads are left: init is gone
                self.idle()
                continue
            task = self.runqueue.popleft()
            if task.exited:
                self.release_stack(task)
                continue                           # killed while it waited for the CPU
            if task.exiting and not task.in_kernel_sleep:
                continue                           # another task is taking it down

            self.switch_to(task)
            self.run_on_kstack(task)

    def run_slice(self, task: Task) -> None:
        """One slice of a user task, on its kernel stack: user code until an exit, the kernel's
        answer to it, again until the slice ends or the task sleeps."""
        k = self.k
        cpu = k.hw.cpu
        if (task.pending or task.signal.shared_pending) and (task.restart is None or task.woken_by_signal):
            k.do_signal(task)                  # before it runs: a sleeping call may return EINTR
        if task.state != TASK_RUNNING:
            return
        task.slice_icount = cpu.icount
        self.start_slice(task)
        clock = k.hw.clock
        costs = k.costs
        cpu.set_deadline(cpu.icount + self.timeslice(task))
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
            if task.signal.group_exit and not task.exited:
                k.do_group_exit(task, 0, signaled=True)     # killed while it slept in the kernel
            if (task.pending or task.signal.shared_pending) and task.state == TASK_RUNNING:
                k.do_signal(task)
            if (self.kthreads or self.blocked) and self.wake_kthreads():
                self.need_resched = True       # check_preempt_wakeup: the woken task runs now
            left = task.slice_end_ns - clock.busy_ns()
            if left <= 0 or self.need_resched:
                self.preemptions += 1
                break
            if self.current is not task:       # the call switched tasks (vfork, exec of another)
                break
            cpu.set_deadline(cpu.icount + max(1, int(left * costs.cpu_ghz / costs.cpi)))
        task.instructions += cpu.icount - task.slice_icount
        task.slice_icount = cpu.icount
        leader = task.group_leader
        if leader.it_virt[0] or leader.it_prof[0]:
            k.itimer_tick(task)                # ITIMER_VIRTUAL/PROF: checked as the slice ends
        if task.state == TASK_RUNNING:
            self.runqueue.append(task)
