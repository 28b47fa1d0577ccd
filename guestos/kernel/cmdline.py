"""The kernel command line: `key=value` and flags, then `--` and init's arguments.

Values may be double-quoted to hold spaces, as Linux's next_arg() allows."""
import shlex

SIZE_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def memparse(text: str) -> int:
    """Linux's memparse(): a number with an optional K/M/G/T suffix."""
    t = text.strip().lower()
    if t and t[-1] in SIZE_SUFFIXES:
        mult, t = SIZE_SUFFIXES[t[-1]], t[:-1]
    elif t.endswith("b") and len(t) > 1 and t[-2] in SIZE_SUFFIXES:
        mult, t = SIZE_SUFFIXES[t[-2]], t[:-2]
    else:
        mult = 1
    value = int(t, 0)
    if value < 0:
        raise ValueError(text)
    return value * mult


class KernelParams(dict):
    """key -> last value, as most options read them; getall() for repeatable ones."""

    def __init__(self):
        super().__init__()
        self.pairs = []

    def getall(self, key: str) -> list:
        return [v for k, v in self.pairs if k == key]


def parse_cmdline(cmdline: str):
    """-> (params, init argv tail)."""
    words = shlex.split(cmdline, posix=True)
    params, init_args = KernelParams(), []
    for i, w in enumerate(words):
        if w == "--":
            init_args = words[i + 1:]
            break
        key, sep, value = w.partition("=")
        params[key] = value if sep else True
        params.pairs.append((key, params[key]))
    return params, init_args
