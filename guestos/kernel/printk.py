"""printk: the kernel log buffer (a ring of records, read by dmesg through syslog(2)), and the
console for messages above the loglevel (kernel/printk/printk.c)."""
KERN_EMERG, KERN_ALERT, KERN_CRIT, KERN_ERR, KERN_WARNING, KERN_NOTICE, KERN_INFO, KERN_DEBUG = range(8)
DEFAULT_CONSOLE_LOGLEVEL = 4          # like `quiet`: errors and worse reach the console
MINIMUM_CONSOLE_LOGLEVEL = 1
LOG_BUF_LEN = 1 << 17                 # CONFIG_LOG_BUF_SHIFT=17, Debian's


class Printk:
    def __init__(self, clock_ns, console=None, loglevel: int = DEFAULT_CONSOLE_LOGLEVEL):
        self.clock_ns = clock_ns
        self.console = console
        self.console_loglevel = loglevel
        self.saved_console_loglevel = None
        self.log = []                 # (level, virtual ns, text): the records still in the ring
        self.first_seq = 0            # sequence number of log[0]
        self.log_bytes = 0
        self.clear_seq = 0            # SYSLOG_ACTION_CLEAR: READ_ALL starts here
        self.syslog_seq = 0           # SYSLOG_ACTION_READ: the next record to hand out
        self.syslog_partial = 0       # ... and how much of it was handed out already

    def __call__(self, level: int, text: str) -> None:
        now = self.clock_ns()
        self.log.append((level, now, text))
        self.log_bytes += len(text)
        while self.log_bytes > LOG_BUF_LEN and len(self.log) > 1:       # the ring overwrites the oldest
            self.log_bytes -= len(self.log.pop(0)[2])
            self.first_seq += 1
        if self.console is not None and level < self.console_loglevel:
            line = "[%5d.%06d] %s\n" % (now // 1_000_000_000, now // 1000 % 1_000_000, text)
            self.console.write(line.encode("utf-8", "surrogateescape"))    # names keep their bytes

    @property
    def next_seq(self) -> int:
        return self.first_seq + len(self.log)

    def record_text(self, seq: int, prefix: bool = True) -> bytes:
        """record_print_text(): "<level>[seconds.micro] text\\n" (facility 0, the kernel's)."""
        level, t, text = self.log[seq - self.first_seq]
        head = ("<%d>" % level if prefix else "") + "[%5d.%06d] " % (t // 1_000_000_000, t // 1000 % 1_000_000)
        return (head + text + "\n").encode("utf-8", "surrogateescape")

    def dmesg(self) -> str:
        return "".join(self.record_text(seq, False).decode("utf-8", "surrogateescape")
                       for seq in range(self.first_seq, self.next_seq))


SYSLOG_ACTION_CLOSE, SYSLOG_ACTION_OPEN, SYSLOG_ACTION_READ, SYSLOG_ACTION_READ_ALL = 0, 1, 2, 3
SYSLOG_ACTION_READ_CLEAR, SYSLOG_ACTION_CLEAR, SYSLOG_ACTION_CONSOLE_OFF, SYSLOG_ACTION_CONSOLE_ON = 4, 5, 6, 7
SYSLOG_ACTION_CONSOLE_LEVEL, SYSLOG_ACTION_SIZE_UNREAD, SYSLOG_ACTION_SIZE_BUFFER = 8, 9, 10


def sys_syslog(k, task, type, buf, length, *_):
    """do_syslog() for a privileged caller (everyone here is root)."""
    from ..mm.memory import access_ok
    from .errno import EFAULT, EINVAL, SyscallError
    from .sched import WouldBlock
    log = k.printk
    if type in (SYSLOG_ACTION_CLOSE, SYSLOG_ACTION_OPEN):
        return 0
    if type in (SYSLOG_ACTION_READ, SYSLOG_ACTION_READ_ALL, SYSLOG_ACTION_READ_CLEAR):
        if not buf or length < 0:
            raise SyscallError(EINVAL)
        if not length:
            return 0
        if not access_ok(buf, length):
            raise SyscallError(EFAULT)
    if type == SYSLOG_ACTION_READ:
        log.syslog_seq = max(log.syslog_seq, log.first_seq)
        if log.syslog_seq >= log.next_seq:
            raise WouldBlock(lambda: log.syslog_seq < log.next_seq)       # wait for a message
        out = b""
        while log.syslog_seq < log.next_seq:
            text = log.record_text(log.syslog_seq)[log.syslog_partial:]
            if len(out) + len(text) <= length:
                out += text
                log.syslog_seq += 1
                log.syslog_partial = 0
            else:
                if not out:                                # a record longer than the buffer: a piece
                    out = text[:length]
                    log.syslog_partial += length
                break
        k.mm.copy_to_user(task, buf, out)
        return len(out)
    if type in (SYSLOG_ACTION_READ_ALL, SYSLOG_ACTION_READ_CLEAR):
        records = [log.record_text(seq) for seq in range(max(log.clear_seq, log.first_seq), log.next_seq)]
        out, total = [], 0
        for text in reversed(records):                     # the newest that fit, oldest first
            if total + len(text) > length:
                break
            out.append(text)
            total += len(text)
        data = b"".join(reversed(out))
        k.mm.copy_to_user(task, buf, data)
        if type == SYSLOG_ACTION_READ_CLEAR:
            log.clear_seq = log.next_seq
        return len(data)
    if type == SYSLOG_ACTION_CLEAR:
        log.clear_seq = log.next_seq
        return 0
    if type == SYSLOG_ACTION_CONSOLE_OFF:
        if log.saved_console_loglevel is None:
            log.saved_console_loglevel = log.console_loglevel
        log.console_loglevel = MINIMUM_CONSOLE_LOGLEVEL
        return 0
    if type == SYSLOG_ACTION_CONSOLE_ON:
        if log.saved_console_loglevel is not None:
            log.console_loglevel, log.saved_console_loglevel = log.saved_console_loglevel, None
        return 0
    if type == SYSLOG_ACTION_CONSOLE_LEVEL:
        if not 1 <= length <= 8:
            raise SyscallError(EINVAL)
        log.console_loglevel = max(length, MINIMUM_CONSOLE_LOGLEVEL)
        log.saved_console_loglevel = None
        return 0
    if type == SYSLOG_ACTION_SIZE_UNREAD:
        seq = max(log.syslog_seq, log.first_seq)
        return sum(len(log.record_text(s)) for s in range(seq, log.next_seq)) - log.syslog_partial
    if type == SYSLOG_ACTION_SIZE_BUFFER:
        return LOG_BUF_LEN
    raise SyscallError(EINVAL)

