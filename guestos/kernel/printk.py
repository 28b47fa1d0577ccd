"""printk: the kernel log buffer, and the console for messages above the loglevel."""

KERN_EMERG, KERN_ALERT, KERN_CRIT, KERN_ERR, KERN_WARNING, KERN_NOTICE, KERN_INFO, KERN_DEBUG = range(8)
DEFAULT_CONSOLE_LOGLEVEL = 4          # like `quiet`: errors and worse reach the console


class Printk:
    def __init__(self, clock_ns, console=None, loglevel: int = DEFAULT_CONSOLE_LOGLEVEL):
        self.clock_ns = clock_ns
        self.console = console
        self.console_loglevel = loglevel
        self.log = []                 # (level, virtual ns, text): dmesg

    def __call__(self, level: int, text: str) -> None:
        now = self.clock_ns()
        self.log.append((level, now, text))
        if self.console is not None and level < self.console_loglevel:
            line = "[%5d.%06d] %s\n" % (now // 1_000_000_000, now // 1000 % 1_000_000, text)
            self.console.write(line.encode("utf-8", "surrogateescape"))    # names keep their bytes

    def dmesg(self) -> str:
        return "".join("[%5d.%06d] %s\n" % (t // 1_000_000_000, t // 1000 % 1_000_000, s) for _, t, s in self.log)
