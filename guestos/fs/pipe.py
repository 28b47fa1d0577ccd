"""Pipes (fs/pipe.c): a 16-page ring of bytes between a read end and a write end."""
from ..kernel.errno import EAGAIN, EPIPE, SyscallError
from ..kernel.sched import WouldBlock
from .file import POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM, File

SIGPIPE = 13

PIPE_BUF_SIZE = 16 * 4096             # Linux's default pipe capacity
S_IFIFO = 0o010000
O_NONBLOCK = 0o4000


class Pipe:
    def __init__(self):
        self.buffer = bytearray()
        self.readers = 0
        self.writers = 0
        self.r_counter = 0              # opens for reading so far (a FIFO's partner waits on it)
        self.wakeups = 0                # writes so far: what an edge-triggered epoll sees as an event
        self.w_counter = 0


class PipeEnd(File):
    mode = S_IFIFO | 0o600
    stream = True

    def __init__(self, pipe: Pipe, writer: bool):
        super().__init__("pipe:[write]" if writer else "pipe:[read]")
        self.pipe = pipe
        self.writer = writer
        self.flags = 0
        if writer:
            pipe.writers += 1
            pipe.w_counter += 1
        else:
            pipe.readers += 1
            pipe.r_counter += 1

    def read(self, task, length: int) -> bytes:
        if self.writer:
            return super().read(task, length)
        data = self.peek(task, length)
        del self.pipe.buffer[:len(data)]
        return data

    @property
    def readable(self) -> bool:
        return not self.writer

    @property
    def writable(self) -> bool:
        return self.writer

    def read_user(self, k, task, buf: int, count: int, pos: int) -> int:
        """pipe_read(): the bytes leave the pipe only once they reached the user; a copy that
        faults leaves them in the pipe and returns EFAULT."""
        data = self.peek(task, count)
        if data:
            k.mm.copy_to_user(task, buf, data)
            del self.pipe.buffer[:len(data)]
        return len(data)

    def peek(self, task, length: int) -> bytes:
        """What a read of length would return, without taking it (or EAGAIN / WouldBlock)."""
        pipe = self.pipe
        if not pipe.buffer:
            if pipe.writers == 0:
                return b""                                      # end of file
            if self.flags & O_NONBLOCK:
                raise SyscallError(EAGAIN)
            raise WouldBlock(lambda: pipe.buffer or pipe.writers == 0)
        return bytes(pipe.buffer[:length])

    def room(self, k, task) -> int:
        """pipe_write()'s checks before it copies: no reader is SIGPIPE and EPIPE, a full pipe EAGAIN
        or a sleep."""
        pipe = self.pipe
        if pipe.readers == 0:
            from ..kernel.signal import send_sig
            send_sig(k, task, SIGPIPE)                          # fatal unless caught, ignored or blocked
            raise SyscallError(EPIPE)
        room = PIPE_BUF_SIZE - len(pipe.buffer)
        if room == 0:
            if self.flags & O_NONBLOCK:
                raise SyscallError(EAGAIN)
            raise WouldBlock(lambda: len(pipe.buffer) < PIPE_BUF_SIZE or pipe.readers == 0)
        return room

    def splice_write(self, k, task, data: bytes, pos: int) -> int:
        if not self.writer:
            raise SyscallError(9)                               # EBADF
        room = self.room(k, task)
        self.pipe.buffer += data[:room]
        self.pipe.wakeups += 1
        return min(room, len(data))

    def poll(self, task) -> int:
        """pipe_poll(): readable with data or with no writer left (POLLHUP), writable with room,
        POLLERR for a writer with no reader."""
        pipe, mask = self.pipe, 0
        if not self.writer:
            if pipe.buffer:
                mask |= POLLIN | POLLRDNORM
            if pipe.writers == 0:
                mask |= POLLHUP
        else:
            if len(pipe.buffer) < PIPE_BUF_SIZE:
                mask |= POLLOUT | POLLWRNORM
            if pipe.readers == 0:
                mask |= POLLERR
        return mask

    def write_user(self, k, task, buf: int, count: int, pos: int) -> int:
        """Only what was copied enters the pipe; a copy that faults adds nothing (EFAULT)."""
        if not count:
            return 0
        data = k.mm.copy_from_user(task, buf, min(self.room(k, task), count))
        self.pipe.buffer += data
        self.pipe.wakeups += 1
        return len(data)

    @property
    def size(self) -> int:
        return len(self.pipe.buffer)

    @property
    def poll_generation(self) -> int:
        return self.pipe.wakeups

    def release(self) -> None:
        if self.writer:
            self.pipe.writers -= 1
        else:
            self.pipe.readers -= 1


O_ACCMODE, O_RDONLY, O_WRONLY, O_RDWR = 3, 0, 1, 2


class FifoReadWrite(PipeEnd):
    """A FIFO opened O_RDWR: a reader and a writer in one open file (Linux allows it)."""

    def __init__(self, pipe: Pipe):
        super().__init__(pipe, writer=True)
        pipe.readers += 1
        pipe.r_counter += 1

    readable = True
    writable = True

    def read(self, task, length: int) -> bytes:
        data = self.peek(task, length)
        del self.pipe.buffer[:len(data)]
        return data

    def poll(self, task) -> int:
        pipe, mask = self.pipe, 0
        if pipe.buffer:
            mask |= POLLIN | POLLRDNORM
        if len(pipe.buffer) < PIPE_BUF_SIZE:
            mask |= POLLOUT | POLLWRNORM
        return mask

    def release(self) -> None:
        self.pipe.readers -= 1
        self.pipe.writers -= 1


def fifo_open(k, task, vfs, inode, flags: int) -> PipeEnd:
    """fifo_open(): every opener of a FIFO shares one pipe; a blocking open for reading waits for a
    writer and one for writing for a reader (wait_for_partner); O_NONBLOCK for writing with no
    reader is ENXIO. The end made before the wait is kept across the call's re-runs."""
    from ..kernel.errno import EINVAL, ENXIO
    pipe = vfs.fifos.get(inode.ino)
    if pipe is None or pipe.readers == pipe.writers == 0:
        pipe = vfs.fifos[inode.ino] = Pipe()
    accmode = flags & O_ACCMODE
    if accmode == O_RDWR:
        end = FifoReadWrite(pipe)                    # both ends at once: never waits
        end.flags = flags & O_NONBLOCK
        return end
    if accmode != O_RDONLY and accmode != O_WRONLY:
        raise SyscallError(EINVAL)
    writer = accmode == O_WRONLY
    if task.restart_block is not None and task.restart_block[0] == "fifo":
        end, partner_seen = task.restart_block[1], task.restart_block[2]
    else:
        if writer and flags & O_NONBLOCK and pipe.readers == 0:
            raise SyscallError(ENXIO)
        end = PipeEnd(pipe, writer)
        partner_seen = pipe.r_counter if writer else pipe.w_counter
    end.flags = flags & O_NONBLOCK
    partners = pipe.readers if writer else pipe.writers
    if partners or flags & O_NONBLOCK:
        return end

    def partner_came():
        return (pipe.r_counter if writer else pipe.w_counter) != partner_seen

    if partner_came():
        return end
    task.restart_block = ("fifo", end, partner_seen)
    raise WouldBlock(partner_came, interrupted=end.release)
