"""Fast user-space mutexes (kernel/futex.c): a waiter sleeps on a key for its futex word, a waker
wakes waiters of the same key. The key of a private futex (or one in private anonymous memory) is
the address space and the address; in a shared mapping it is the object and the page offset in it,
so processes that map it at different addresses meet (get_futex_key). Waits block in virtual time;
the robust list is walked when a thread exits (exit_robust_list)."""
import struct

from ..mm.memory import FaultError, access_ok
from ..mm.mmap import VM_SHARED
from .errno import EAGAIN, EFAULT, EINVAL, ENOSYS, ETIMEDOUT, SyscallError
from .sched import ERESTART_RESTARTBLOCK, ERESTARTSYS, WouldBlock

FUTEX_WAIT, FUTEX_WAKE, FUTEX_FD, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 2, 3, 4, 5
FUTEX_LOCK_PI, FUTEX_UNLOCK_PI, FUTEX_TRYLOCK_PI, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 6, 7, 8, 9, 10
FUTEX_WAIT_REQUEUE_PI, FUTEX_CMP_REQUEUE_PI, FUTEX_LOCK_PI2 = 11, 12, 13
FUTEX_PRIVATE_FLAG = 128
FUTEX_CLOCK_REALTIME = 256
FUTEX_CMD_MASK = ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
FUTEX_BITSET_MATCH_ANY = 0xFFFFFFFF

FUTEX_WAITERS = 0x80000000
FUTEX_OWNER_DIED = 0x40000000
FUTEX_TID_MASK = 0x3FFFFFFF
ROBUST_LIST_LIMIT = 2048

FUTEX_OP_SET, FUTEX_OP_ADD, FUTEX_OP_OR, FUTEX_OP_ANDN, FUTEX_OP_XOR = 0, 1, 2, 3, 4
FUTEX_OP_OPARG_SHIFT = 8

_U32 = struct.Struct("<I")


class FutexQ:
    """futex_q: one waiter on a key; `woken` once futex_wake (or a requeue's wake) took it."""
    __slots__ = ("task", "key", "bitset", "expires", "woken")

    def __init__(self, task, key, bitset: int, expires):
        self.task, self.key, self.bitset, self.expires, self.woken = task, key, bitset, expires, False


class FutexHash:
    """futex_queues: key -> waiters in the order they came (one priority here, so FIFO)."""

    def __init__(self):
        self.queues = {}

    def queue(self, q: FutexQ) -> None:
        self.queues.setdefault(q.key, []).append(q)

    def unqueue(self, q: FutexQ) -> None:
        waiters = self.queues.get(q.key)
        if waiters is not None and q in waiters:
            waiters.remove(q)
            if not waiters:
                del self.queues[q.key]

    def waiters(self, key) -> list:
        """The live waiters of key (a waiter killed in its sleep is dropped here)."""
        waiters = self.queues.get(key, [])
        for q in [q for q in waiters if q.task.exited]:
            self.unqueue(q)
        return list(self.queues.get(key, []))

    def wake(self, q: FutexQ) -> None:
        """wake_futex(): off the queue; the sleeper's ready() turns true."""
        self.unqueue(q)
        q.woken = True


def futex_hash(k) -> FutexHash:
    h = getattr(k, "futex_queues", None)
    if h is None:
        h = k.futex_queues = FutexHash()
    return h


def get_futex_key(k, task, uaddr: int, private: bool):
    """Private: (mm, address). Shared: a shared mapping's object and the offset in it; in private
    anonymous memory mm and address, marked shared (FUT_OFF_MMSHARED): a private waiter is not
    woken by a shared wake of the same word, as on Linux."""
    if uaddr & 3:
        raise SyscallError(EINVAL)                  # a futex word is 32-bit aligned
    if not access_ok(uaddr, 4):
        raise SyscallError(EFAULT)
    mm = task.mm
    if not private:
        vma = mm.find_vma(uaddr)
        if vma is None or vma.vm_start > uaddr:
            raise SyscallError(EFAULT)
        if vma.vm_flags & VM_SHARED:
            f = vma.vm_file                         # the file's address_space: one per inode, whoever maps it
            obj = ("anon", vma.anon_id) if f is None else ("inode", getattr(f, "mapping_id", None) or id(f))
            return ("shared", obj, vma.vm_pgoff + ((uaddr - vma.vm_start) >> 12), uaddr & 0xFFF)
        return ("mmshared", mm, uaddr)
    return ("private", mm, uaddr)


def _in_mm(k, task, fn):
    """Run fn with task's address space on the CPU (a thread killed by another process exits from
    that process's context)."""
    current = k.current_mm
    if task.mm is current or task.mm is None:
        return fn()
    k.switch_mm(task.mm)
    try:
        return fn()
    finally:
        if current is not None:
            k.switch_mm(current)


def get_futex_value(k, task, uaddr: int) -> int:
    return _U32.unpack(k.mm.copy_from_user(task, uaddr, 4))[0]


def put_futex_value(k, task, uaddr: int, value: int) -> None:
    k.mm.copy_to_user(task, uaddr, _U32.pack(value & 0xFFFFFFFF))


def futex_wait(k, task, uaddr: int, private: bool, val: int, expires, bitset: int) -> int:
    """Sleep if *uaddr still holds val (EAGAIN otherwise) until a wake for our key and bitset, the
    deadline (ETIMEDOUT) or a signal (ERESTARTSYS without a timeout, else EINTR after a handler).
    The sleeping call is re-run by the scheduler; its futex_q is kept in task.restart_block."""
    h = futex_hash(k)
    clock = k.hw.clock
    rb = task.restart_block
    if rb is not None and rb[0] == "futex":
        q = rb[1]
        if q.woken:
            return 0
        if q.expires is not None and clock.now_ns() >= q.expires:
            h.unqueue(q)
            raise SyscallError(ETIMEDOUT)
        raise _sleep(h, task, q, clock)            # woken for nothing (a signal for another thread)
    if not bitset:
        raise SyscallError(EINVAL)
    key = get_futex_key(k, task, uaddr, private)
    if get_futex_value(k, task, uaddr) != val & 0xFFFFFFFF:
        raise SyscallError(EAGAIN)                  # futex_wait_setup(): it changed, do not sleep
    if expires is not None and clock.now_ns() >= expires:
        raise SyscallError(ETIMEDOUT)
    q = FutexQ(task, key, bitset, expires)
    h.queue(q)
    task.restart_block = ("futex", q)
    raise _sleep(h, task, q, clock)


def _sleep(h, task, q, clock) -> WouldBlock:
    expires = q.expires
    if expires is None:
        ready = lambda: q.woken                                     # noqa: E731
    else:
        ready = lambda: q.woken or clock.now_ns() >= expires        # noqa: E731
    return WouldBlock(ready, restart=ERESTARTSYS if expires is None else ERESTART_RESTARTBLOCK,
                      expires=expires, interrupted=lambda: h.unqueue(q))


def futex_wake(k, task, uaddr: int, private: bool, nr_wake: int, bitset: int) -> int:
    """Wake up to nr_wake waiters whose bitset meets ours (at least one, as Linux counts)."""
    if not bitset:
        raise SyscallError(EINVAL)
    key = get_futex_key(k, task, uaddr, private)
    return _wake_key(futex_hash(k), key, nr_wake, bitset)


def _wake_key(h, key, nr_wake: int, bitset: int = FUTEX_BITSET_MATCH_ANY) -> int:
    woken = 0
    for q in h.waiters(key):
        if q.bitset & bitset:
            h.wake(q)
            woken += 1
            if woken >= nr_wake:
                break
    return woken


def futex_requeue(k, task, uaddr1: int, uaddr2: int, private: bool, nr_wake: int, nr_requeue: int,
                  cmpval) -> int:
    """Wake nr_wake waiters of uaddr1 and move up to nr_requeue others to uaddr2 (CMP_REQUEUE first
    checks *uaddr1 == cmpval: EAGAIN). Returns how many were woken or moved."""
    if nr_wake < 0 or nr_requeue < 0:
        raise SyscallError(EINVAL)
    key1 = get_futex_key(k, task, uaddr1, private)
    key2 = get_futex_key(k, task, uaddr2, private)
    if cmpval is not None and get_futex_value(k, task, uaddr1) != cmpval & 0xFFFFFFFF:
        raise SyscallError(EAGAIN)
    h = futex_hash(k)
    count = 0
    requeued = 0
    for q in h.waiters(key1):
        if count < nr_wake:
            h.wake(q)
            count += 1
        elif requeued < nr_requeue and key1 != key2:
            h.unqueue(q)
            q.key = key2
            h.queue(q)
            requeued += 1
        elif requeued < nr_requeue:
            requeued += 1                          # same key: it stays where it is
    return count + requeued


def _sign_extend(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def futex_wake_op(k, task, uaddr1: int, uaddr2: int, private: bool, nr_wake: int, nr_wake2: int,
                  encoded_op: int) -> int:
    """*uaddr2 = *uaddr2 OP oparg; wake nr_wake on uaddr1 and, if the old *uaddr2 CMP cmparg holds,
    nr_wake2 on uaddr2 (what glibc's condvars used before 2.25)."""
    op = (encoded_op >> 28) & 7
    cmp = (encoded_op >> 24) & 15
    oparg = _sign_extend(encoded_op >> 12, 12)
    cmparg = _sign_extend(encoded_op, 12)
    if encoded_op & (FUTEX_OP_OPARG_SHIFT << 28):
        oparg = 1 << (oparg & 31)                   # Linux warns about a shift out of range and masks it
        op &= ~FUTEX_OP_OPARG_SHIFT
    if op > FUTEX_OP_XOR or cmp > 5:
        raise SyscallError(ENOSYS)
    key1 = get_futex_key(k, task, uaddr1, private)
    key2 = get_futex_key(k, task, uaddr2, private)
    if uaddr2 & 3:
        raise SyscallError(EINVAL)
    old = get_futex_value(k, task, uaddr2)
    new = (oparg, old + oparg, old | oparg, old & ~oparg, old ^ oparg)[op]
    put_futex_value(k, task, uaddr2, new)
    h = futex_hash(k)
    woken = _wake_key(h, key1, nr_wake)
    old_s, arg = _sign_extend(old, 32), cmparg
    if (old_s == arg, old_s != arg, old_s < arg, old_s <= arg, old_s > arg, old_s >= arg)[cmp]:
        woken += _wake_key(h, key2, nr_wake2)
    return woken


def _timeout(k, task, utime: int, cmd: int, realtime: bool):
    """The deadline in virtual ns: FUTEX_WAIT's timespec is relative, WAIT_BITSET's absolute on
    CLOCK_MONOTONIC (CLOCK_REALTIME with FUTEX_CLOCK_REALTIME). NULL: no deadline."""
    if not utime:
        return None
    sec, nsec = struct.unpack("<qq", k.mm.copy_from_user(task, utime, 16))
    if sec < 0 or not 0 <= nsec < 10**9:
        raise SyscallError(EINVAL)
    from .sys import KTIME_MAX, REALTIME_EPOCH_NS
    t = min(sec * 10**9 + nsec, KTIME_MAX)
    if cmd == FUTEX_WAIT:
        return min(k.hw.clock.now_ns() + t, KTIME_MAX)
    return t - REALTIME_EPOCH_NS if realtime else t


def sys_futex(k, task, uaddr, op, val, utime, uaddr2, val3, *_):
    """do_futex(): the command and its flags; PI futexes are not implemented (ENOSYS)."""
    cmd = op & FUTEX_CMD_MASK & 0xFFFFFFFF
    private = bool(op & FUTEX_PRIVATE_FLAG)
    realtime = bool(op & FUTEX_CLOCK_REALTIME)
    if realtime and cmd not in (FUTEX_WAIT_BITSET, FUTEX_WAIT_REQUEUE_PI, FUTEX_LOCK_PI2):
        raise SyscallError(ENOSYS)                  # (plain FUTEX_WAIT too: checked natively, Linux 6.x)
    val2 = _sign_extend(utime, 32)                  # the timeout slot carries an int for these
    nr = _sign_extend(val, 32)                      # a count is an int (-1 wakes one, as Linux counts)
    val3 &= 0xFFFFFFFF
    if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        bitset = FUTEX_BITSET_MATCH_ANY if cmd == FUTEX_WAIT else val3
        restarted = task.restart_block is not None and task.restart_block[0] == "futex"
        expires = None if restarted else _timeout(k, task, utime, cmd, realtime)
        return futex_wait(k, task, uaddr, private, val, expires, bitset)
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        return futex_wake(k, task, uaddr, private, nr, FUTEX_BITSET_MATCH_ANY if cmd == FUTEX_WAKE else val3)
    if cmd == FUTEX_REQUEUE:
        return futex_requeue(k, task, uaddr, uaddr2, private, nr, val2, None)
    if cmd == FUTEX_CMP_REQUEUE:
        return futex_requeue(k, task, uaddr, uaddr2, private, nr, val2, val3)
    if cmd == FUTEX_WAKE_OP:
        return futex_wake_op(k, task, uaddr, uaddr2, private, nr, val2, val3)
    raise SyscallError(ENOSYS)


# --- thread exit (kernel/futex.c exit_robust_list, kernel/fork.c mm_release) ---

def sys_set_robust_list(k, task, head, length, *_):
    if length != 24:                                # sizeof(struct robust_list_head)
        raise SyscallError(EINVAL)
    task.robust_list = head
    task.robust_list_len = length
    return 0


def sys_get_robust_list(k, task, pid, head_ptr, len_ptr, *_):
    from .errno import ESRCH
    target = task if pid == 0 else k.find_task(pid)
    if target is None or target.exited:
        raise SyscallError(ESRCH)
    k.mm.copy_to_user(task, len_ptr, struct.pack("<Q", 24))
    k.mm.copy_to_user(task, head_ptr, struct.pack("<Q", target.robust_list))
    return 0


def handle_futex_death(k, task, uaddr: int, pi: bool, pending_op: bool) -> None:
    """A robust futex its owner left locked: mark FUTEX_OWNER_DIED (keeping FUTEX_WAITERS) and wake
    one waiter, who gets EOWNERDEAD from pthread_mutex_lock."""
    if uaddr & 3:
        return
    try:
        uval = get_futex_value(k, task, uaddr)
    except SyscallError:
        return
    h = futex_hash(k)
    if pending_op and not pi and not uval:
        _wake_key(h, get_futex_key(k, task, uaddr, False), 1)     # it died between unlock and wake
        return
    if uval & FUTEX_TID_MASK != task.pid:
        return
    mval = (uval & FUTEX_WAITERS) | FUTEX_OWNER_DIED
    put_futex_value(k, task, uaddr, mval)
    if not pi and mval & FUTEX_WAITERS:
        _wake_key(h, get_futex_key(k, task, uaddr, False), 1)


def exit_robust_list(k, task) -> None:
    """Walk the user's list of held robust mutexes (at most ROBUST_LIST_LIMIT), then the one the
    thread was taking or releasing (list_op_pending)."""
    head = task.robust_list
    if not head:
        return
    try:
        entry, futex_offset, pending = struct.unpack("<QqQ", k.mm.copy_from_user(task, head, 24))
    except SyscallError:
        return
    pip, pending = pending & 1, pending & ~1
    limit = ROBUST_LIST_LIMIT
    while entry & ~1 != head:
        pi, addr = entry & 1, entry & ~1
        try:
            next_entry = struct.unpack("<Q", k.mm.copy_from_user(task, addr, 8))[0]
        except SyscallError:
            return
        if addr != pending:
            handle_futex_death(k, task, (addr + futex_offset) & 0xFFFFFFFFFFFFFFFF, bool(pi), False)
        entry = next_entry
        limit -= 1
        if not limit:
            break
    if pending:
        handle_futex_death(k, task, (pending + futex_offset) & 0xFFFFFFFFFFFFFFFF, bool(pip), True)


def mm_release(k, task) -> None:
    """At exit (and exec): the robust list, then CLONE_CHILD_CLEARTID: zero the tid word and wake
    one waiter on it (pthread_join), if another thread may be looking."""
    mm = task.mm
    if mm is None:
        return

    def release():
        exit_robust_list(k, task)
        task.robust_list = 0
        tidptr = task.clear_child_tid
        if tidptr and mm.users > 1:
            task.clear_child_tid = 0
            try:
                put_futex_value(k, task, tidptr, 0)
                futex_wake(k, task, tidptr, False, 1, FUTEX_BITSET_MATCH_ANY)
            except SyscallError:
                pass
    try:
        _in_mm(k, task, release)
    except FaultError:
        pass                                        # no memory to fault the list in: the exit goes on
