"""epoll (fs/eventpoll.c): an interest list of (descriptor, file) with the events asked for; a wait
reports what each file's poll says, sleeping in virtual time until something is ready or the
timeout passes. Level-triggered by default; EPOLLET reports a file again only once an event it
did not have at the last look appears or it was written to again (a pipe's poll_generation);
EPOLLONESHOT disarms after one report. The Go runtime's
timers and netpoller sleep here."""
import struct

from ..kernel.errno import EBADF, EEXIST, EFAULT, EINVAL, ENOENT, EPERM, SyscallError
from ..kernel.sched import ERESTARTNOHAND
from ..mm.memory import access_ok
from .file import POLLERR, POLLHUP, File
from .select import _deadline, _get_timespec, _set_sigmask, _wait

EPOLL_CLOEXEC = 0o2000000
EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
EPOLLEXCLUSIVE, EPOLLWAKEUP, EPOLLONESHOT, EPOLLET = 1 << 28, 1 << 29, 1 << 30, 1 << 31
EP_PRIVATE_BITS = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE
EP_MAX_EVENTS = 0x7FFFFFFF // 12
_EVENT = struct.Struct("<IQ")           # struct epoll_event is packed on x86-64: 12 bytes


class EpItem:
    __slots__ = ("fd", "file", "events", "data", "seen", "generation")

    def __init__(self, fd, file, events, data):
        self.fd, self.file, self.events, self.data, self.seen = fd, file, events, data, 0
        self.generation = None


class EventPoll(File):
    """The file behind an epoll descriptor."""
    mode = 0o600

    def __init__(self):
        super().__init__("anon_inode:[eventpoll]")
        self.items = {}                     # (fd, file) -> EpItem, in the order they were added

    def ready(self, files, maxevents: int, consume: bool) -> list:
        """ep_send_events(): (events, data) of ready items, at most maxevents."""
        out = []
        for key, item in list(self.items.items()):
            if item.file.refs == 0:
                del self.items[key]          # eventpoll_release(): the file was closed everywhere
                continue
            mask = item.file.poll(None) & (item.events | POLLERR | POLLHUP) & ~EP_PRIVATE_BITS
            if item.events & EPOLLET:
                # an edge: an event the file did not have at the last look, or a new write into it
                generation = getattr(item.file, "poll_generation", None)
                fresh = mask & ~item.seen or generation != item.generation
                if consume:
                    item.seen, item.generation = mask, generation
                mask = mask if fresh else 0
            if not mask or not item.events & ~EP_PRIVATE_BITS:
                continue
            out.append((mask, item.data))
            if consume and item.events & EPOLLONESHOT:
                item.events &= EP_PRIVATE_BITS      # disarmed until EPOLL_CTL_MOD
            if len(out) == maxevents:
                break
        return out

    def poll(self, task) -> int:
        return 0x1 if self.ready(None, 1, consume=False) else 0     # an epoll fd is readable when ready


def _epoll_of(k, task, epfd: int) -> EventPoll:
    f = k.fds_of(task).get(epfd)
    if not isinstance(f, EventPoll):
        raise SyscallError(EINVAL)
    return f


def sys_epoll_create1(k, task, flags, *_):
    if flags & ~EPOLL_CLOEXEC:
        raise SyscallError(EINVAL)
    return k.fds_of(task).install(EventPoll(), cloexec=bool(flags & EPOLL_CLOEXEC))


def sys_epoll_create(k, task, size, *_):
    if size <= 0:
        raise SyscallError(EINVAL)
    return sys_epoll_create1(k, task, 0)


def sys_epoll_ctl(k, task, epfd, op, fd, event, *_):
    """Linux's order: the event read (EFAULT), both descriptors (EBADF), the epoll file and the
    target (EINVAL; a regular file EPERM), then the operation (EEXIST, ENOENT)."""
    raw = None
    if op != EPOLL_CTL_DEL:
        raw = _EVENT.unpack(k.mm.copy_from_user(task, event, _EVENT.size))
    files = k.fds_of(task)
    ep = files.get(epfd)
    target = files.get(fd)
    if not isinstance(ep, EventPoll) or target is ep:
        raise SyscallError(EINVAL)
    if type(target).poll is File.poll:
        raise SyscallError(EPERM)                      # no poll operation: a regular file
    key = (fd, target)
    item = ep.items.get(key)
    if op == EPOLL_CTL_ADD:
        if item is not None:
            raise SyscallError(EEXIST)
        ep.items[key] = EpItem(fd, target, raw[0] | POLLERR | POLLHUP, raw[1])
    elif op == EPOLL_CTL_MOD:
        if item is None:
            raise SyscallError(ENOENT)
        item.events, item.data, item.seen, item.generation = raw[0] | POLLERR | POLLHUP, raw[1], 0, None
    elif op == EPOLL_CTL_DEL:
        if item is None:
            raise SyscallError(ENOENT)
        del ep.items[key]
    else:
        raise SyscallError(EINVAL)
    return 0


def do_epoll_wait(k, task, epfd, events, maxevents, timeout_ns) -> int:
    if maxevents <= 0 or maxevents > EP_MAX_EVENTS:
        raise SyscallError(EINVAL)
    if not access_ok(events, maxevents * _EVENT.size):
        raise SyscallError(EFAULT)
    ep = _epoll_of(k, task, epfd)
    files = k.fds_of(task)
    got = ep.ready(files, maxevents, consume=True)
    if not got:
        deadline = _deadline(k, task, timeout_ns)
        _wait(k, task, deadline, lambda: bool(ep.ready(files, 1, consume=False)), ERESTARTNOHAND)
        return 0                                       # the deadline passed with nothing ready
    k.mm.copy_to_user(task, events, b"".join(_EVENT.pack(m, d) for m, d in got))
    return len(got)


def _ms(timeout: int):
    return None if timeout < 0 else timeout * 1_000_000


def sys_epoll_wait(k, task, epfd, events, maxevents, timeout, *_):
    return do_epoll_wait(k, task, epfd, events, maxevents, _ms(timeout))


def sys_epoll_pwait(k, task, epfd, events, maxevents, timeout, sigmask, sigsetsize, *_):
    _set_sigmask(k, task, sigmask, sigsetsize)
    return do_epoll_wait(k, task, epfd, events, maxevents, _ms(timeout))


def sys_epoll_pwait2(k, task, epfd, events, maxevents, timeout, sigmask, sigsetsize, *_):
    timeout_ns = _get_timespec(k, task, timeout)
    _set_sigmask(k, task, sigmask, sigsetsize)
    return do_epoll_wait(k, task, epfd, events, maxevents, timeout_ns)


__all__ = ["EventPoll", "EBADF"]
