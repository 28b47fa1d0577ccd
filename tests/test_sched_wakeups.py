"""The scheduler's wake-ups (guestos/kernel/sched.py) on a stand-in kernel whose idle runs scripted
events: who is woken, in which order, and at which pass. The passes run at every disk wait, so they
are written for speed; these tests pin what they must keep doing (the whole-guest tests in
test_sleep_in_kernel.py compare the switch order and counters of real runs)."""
from guestos.kernel.sched import (ERESTARTSYS, TASK_INTERRUPTIBLE, TASK_RUNNING, TASK_UNINTERRUPTIBLE,
                                  TASK_ZOMBIE, KernelThread, Scheduler, Task)

SIGUSR1 = 10


class Clock:
    def __init__(self):
        self.charged_ns = self.idle_ns = 0

    def now_ns(self) -> int:
        return self.charged_ns

    def busy_ns(self) -> int:
        return self.charged_ns - self.idle_ns


class Hardware:
    """hlt: the clock jumps 1000 ns and the next scripted event runs (a completion, a timer)."""

    def __init__(self):
        self.clock = Clock()
        self.events = []
        self.idles = 0

    def idle(self) -> bool:
        if not self.events:
            return False
        self.idles += 1
        self.clock.charged_ns += 1000
        self.clock.idle_ns += 1000
        self.events.pop(0)()
        return True


class Kernel:
    def __init__(self):
        self.hw = Hardware()
        self.init_task = Task(pid=1, comm="init")

    def do_IRQ(self) -> None:
        pass


class Flag:
    """A wait condition: a flag an event raises; counts how often it is asked."""

    def __init__(self):
        self.up = False
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.up

    def raise_(self) -> None:
        self.up = True


def user(pid, state, ready):
    return Task(pid=pid, comm=f"t{pid}", state=state, wait_ready=ready)


def kthread(pid, ready):
    return KernelThread(iter(()), pid=pid, comm=f"k{pid}", state=TASK_INTERRUPTIBLE, wait_ready=ready)


def scheduler():
    return Scheduler(Kernel())


def test_wake_blocked_puts_the_ready_first_in_the_order_they_slept_and_leaves_the_rest():
    s = scheduler()
    queued = user(9, TASK_RUNNING, None)
    a, b, c = (user(pid, TASK_UNINTERRUPTIBLE, lambda up=up: up) for pid, up in ((2, True), (3, False), (4, True)))
    s.runqueue.append(queued)
    s.blocked[:] = [a, b, c]
    assert s.wake_blocked() is True
    assert list(s.runqueue) == [a, c, queued]
    assert s.blocked == [b]
    assert (a.state, a.wait_ready, c.state, c.wait_ready) == (TASK_RUNNING, None, TASK_RUNNING, None)
    assert b.state == TASK_UNINTERRUPTIBLE and b.wait_ready is not None
    assert s.wake_blocked() is False                  # nothing ready: nothing moves
    assert list(s.runqueue) == [a, c, queued] and s.blocked == [b]


def test_wake_sleepers_wakes_in_sleep_order_drops_the_exited_then_wakes_the_blocked_first():
    s = scheduler()
    ready_thread = kthread(2, lambda: True)
    signalled = user(3, TASK_INTERRUPTIBLE, lambda: False)
    signalled.restart = ERESTARTSYS
    signalled.pending[SIGUSR1] = None                  # not blocked: a rewound call wakes for it
    masked = user(4, TASK_INTERRUPTIBLE, lambda: False)
    masked.restart = ERESTARTSYS
    masked.pending[SIGUSR1] = None
    masked.sigmask = 1 << (SIGUSR1 - 1)                # blocked: it sleeps on
    dead = user(5, TASK_ZOMBIE, lambda: True)
    idle_thread = kthread(6, lambda: False)
    in_kernel = user(7, TASK_UNINTERRUPTIBLE, lambda: True)
    s.sleeping[:] = [ready_thread, signalled, masked, dead, idle_thread]
    s.blocked[:] = [in_kernel]
    s.wake_sleepers()
    assert list(s.runqueue) == [in_kernel, ready_thread, signalled]
    assert s.sleeping == [masked, idle_thread]
    assert s.blocked == []
    assert signalled.woken_by_signal and not ready_thread.woken_by_signal
    assert dead.state == TASK_ZOMBIE


def test_only_kthreads_wait_sees_a_user_task_on_either_list():
    s = scheduler()
    s.sleeping[:] = [kthread(2, lambda: False)]
    s.blocked[:] = [kthread(3, lambda: False)]
    assert s.only_kthreads_wait()
    s.sleeping.append(user(4, TASK_INTERRUPTIBLE, lambda: False))
    assert not s.only_kthreads_wait()
    s.sleeping.pop()
    s.blocked.append(user(5, TASK_UNINTERRUPTIBLE, lambda: False))
    assert not s.only_kthreads_wait()


def sleep_in_kernel(s, task, condition):
    """What io_schedule does before idle_in_place: the task is current and blocked on condition."""
    s.current = s.running = task
    task.state, task.wait_ready = TASK_UNINTERRUPTIBLE, condition
    s.blocked.append(task)


def test_a_lone_sleeper_idles_until_its_own_condition_and_is_picked_again_in_place():
    s = scheduler()
    hw = s.k.hw
    done = Flag()
    other = Flag()
    task = user(2, TASK_RUNNING, None)
    s.sleeping.append(kthread(3, other))
    sleep_in_kernel(s, task, done)
    hw.events = [lambda: None, done.raise_, other.raise_]      # an unrelated event, then its completion
    assert s.idle_in_place(task) is True
    assert hw.idles == 2 and hw.events == [other.raise_]        # woken at the idle that completed it
    assert s.current is task and not s.runqueue and not s.blocked
    assert task.state == TASK_RUNNING and not s.woken_in_place
    assert other.asked == 3                           # the sleepers were asked at every pass
    assert s.iowait_ns == 2000                        # both idles were iowait


def test_a_sleeper_ready_before_the_wait_leaves_the_cpu_without_an_idle():
    s = scheduler()
    hw = s.k.hw
    done = Flag()
    woken = kthread(3, lambda: True)                  # e.g. kswapd, woken by this task's allocation
    task = user(2, TASK_RUNNING, None)
    s.sleeping.append(woken)
    sleep_in_kernel(s, task, done)
    hw.events = [done.raise_]
    assert s.idle_in_place(task) is False
    assert hw.idles == 0 and list(s.runqueue) == [woken] and s.blocked == [task]
    assert s.woken_in_place                           # this pass's wake-ups are done


def test_a_sleeper_woken_with_the_completion_runs_after_the_waiting_task_on_the_scheduler_stack():
    s = scheduler()
    hw = s.k.hw
    done, other = Flag(), Flag()
    thread = kthread(3, other)
    task = user(2, TASK_RUNNING, None)
    s.sleeping.append(thread)
    sleep_in_kernel(s, task, done)

    def completion_and_timer():
        done.raise_()
        other.raise_()
    hw.events = [completion_and_timer]
    assert s.idle_in_place(task) is False
    assert list(s.runqueue) == [task, thread]          # the I/O sleeper first, as wake_blocked puts it
    assert s.woken_in_place and hw.idles == 1


def test_a_kernel_thread_waiting_with_only_kernel_threads_asleep_ends_the_loop_without_idling():
    s = scheduler()
    hw = s.k.hw
    s.k.init_task.signal.live = 1
    thread = kthread(2, None)
    s.sleeping.append(kthread(3, lambda: False))
    sleep_in_kernel(s, thread, Flag())
    hw.events = [lambda: None]
    assert s.idle_in_place(thread) is False
    assert hw.idles == 0 and s.woken_in_place
    # a user task waiting the same way idles on (it can still be woken)
    s2 = scheduler()
    task = user(2, TASK_RUNNING, None)
    done = Flag()
    s2.sleeping.append(kthread(3, lambda: False))
    sleep_in_kernel(s2, task, done)
    s2.k.hw.events = [done.raise_]
    assert s2.idle_in_place(task) is True and s2.k.hw.idles == 1
