"""Pipes (fs/pipe.c): a 16-page ring of bytes between a read end and a write end."""
from ..kernel.errno import EAGAIN, EPIPE, SyscallError
from ..kernel.sched import WouldBlock
from .file import File

PIPE_BUF_SIZE = 16 * 4096             # Linux's default pipe capacity
S_IFIFO = 0o010000
O_NONBLOCK = 0o4000


class Pipe:
    def __init__(self):
        self.buffer = bytearray()
        self.readers = 0
        self.writers = 0


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
        else:
            pipe.readers += 1

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

    def room(self) -> int:
        """pipe_write()'s checks before it copies: no reader is EPIPE, a full pipe EAGAIN or a sleep."""
        pipe = self.pipe
        if pipe.readers == 0:
            raise SyscallError(EPIPE)                           # (SIGPIPE is sent by the caller)
        room = PIPE_BUF_SIZE - len(pipe.buffer)
        if room == 0:
            if self.flags & O_NONBLOCK:
                raise SyscallError(EAGAIN)
            raise WouldBlock(lambda: len(pipe.buffer) < PIPE_BUF_SIZE or pipe.readers == 0)
        return room

    def write(self, task, data: bytes) -> int:
        if not self.writer:
            return super().write(task, data)
        room = self.room()
        self.pipe.buffer += data[:room]
        return min(room, len(data))

    def write_user(self, k, task, buf: int, count: int, pos: int) -> int:
        """Only what was copied enters the pipe; a copy that faults adds nothing (EFAULT)."""
        if not count:
            return 0
        data = k.mm.copy_from_user(task, buf, min(self.room(), count))
        self.pipe.buffer += data
        return len(data)

    @property
    def size(self) -> int:
        return len(self.pipe.buffer)

    def release(self) -> None:
        if self.writer:
            self.pipe.writers -= 1
        else:
            self.pipe.readers -= 1
