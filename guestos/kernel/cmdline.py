"""The kernel command line: `key=value` and flags, then `--` and init's arguments.

Values may be double-quoted to hold spaces, as Linux's next_arg() allows.

Every option the kernel reads is declared once in KERNEL_PARAMS with its type and range. The kernel
checks its command line against it at boot (check_params) and the host calls the same check
before it builds a machine, so a value the kernel cannot take is refused up front."""
import shlex
from typing import NamedTuple

from .costs import CostModel

SIZE_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
INT_MAX = (1 << 31) - 1                 # a sysctl is a C int (proc_dointvec)
U64_MAX = (1 << 64) - 1


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
    """key -> last value, as most options read them; getall() for repeatable ones.
    After check_params(), `checked` holds each declared option's value, parsed."""

    def __init__(self):
        super().__init__()
        self.pairs = []
        self.checked = {}

    def getall(self, key: str) -> list:
        return [v for k, v in self.pairs if k == key]

    def value(self, key: str):
        """A declared option's parsed value, or its default when it is not given."""
        if key in self.checked:
            return self.checked[key]
        return KERNEL_PARAMS[key].default


class ParamError(ValueError):
    """A command-line option the kernel cannot take; the text names it: 'loglevel=x: not an integer'."""


def parse_cmdline(cmdline: str):
    """-> (params, init argv tail). ParamError for unbalanced quotes."""
    try:
        words = shlex.split(cmdline, posix=True)
    except ValueError as e:                 # "No closing quotation", "No escaped character"
        raise ParamError(f"cannot split the command line: {str(e).lower()}") from None
    params, init_args = KernelParams(), []
    for i, w in enumerate(words):
        if w == "--":
            init_args = words[i + 1:]
            break
        key, sep, value = w.partition("=")
        params[key] = value if sep else True
        params.pairs.append((key, params[key]))
    return params, init_args


# --- the declaration --------------------------------------------------------------------------------
# A kind with fields is an immutable record (a NamedTuple: nothing is compiled for it at import, as a
# dataclass's methods are); a kind without fields is a plain class.

class Integer(NamedTuple):
    """A decimal (or 0x) integer in [minimum, maximum]; maximum may depend on the guest's RAM."""
    minimum: int
    maximum: object                     # an int, or ram_bytes -> int
    what: str = "an integer"

    def parse(self, text, ram_bytes: int):
        if text is True:
            raise ParamError(f"needs a value ({self.what})")
        try:
            value = self._read(text)
        except ValueError:
            raise ParamError(f"not {self.what}") from None
        maximum = self.maximum(ram_bytes) if callable(self.maximum) else self.maximum
        if not self.minimum <= value <= maximum:
            bound = f" for {ram_bytes >> 20} MiB of RAM" if callable(self.maximum) else ""
            raise ParamError(f"out of range ({self.minimum} to {maximum}{bound})")
        return value

    def _read(self, text: str) -> int:
        t = text.strip()
        if "_" in t:                    # Python's int() takes 1_000; kstrtoint() does not
            raise ValueError(text)
        return int(t, 16) if t.lstrip("+-")[:2].lower() == "0x" else int(t, 10)


class Size(Integer):
    """A size in bytes as memparse() reads it (512M, 1G)."""
    __slots__ = ()

    def __new__(cls, minimum: int, maximum, what: str = "a size (e.g. 512M)"):
        return super().__new__(cls, minimum, maximum, what)

    def _read(self, text: str) -> int:
        return memparse(text)


class Flag:
    """Present or not; a value is read as kstrtobool() does (1/y/on, 0/n/off)."""
    def parse(self, text, ram_bytes: int) -> bool:
        if text is True:
            return True
        t = text.strip().lower()
        if t in ("1", "y", "yes", "on", "true"):
            return True
        if t in ("0", "n", "no", "off", "false"):
            return False
        raise ParamError("not a boolean (1, y, on or 0, n, off)")


class Choice(NamedTuple):
    """One of a few words; `bare` is what the option alone (no `=`) means."""
    choices: tuple
    bare: str = None

    def parse(self, text, ram_bytes: int) -> str:
        if text is True:
            if self.bare is None:
                raise ParamError(f"needs a value (one of {', '.join(self.choices)})")
            return self.bare
        if text not in self.choices:
            raise ParamError(f"not one of {', '.join(c or repr(c) for c in self.choices)}")
        return text


class PolicyWord(NamedTuple):
    """A word of the registered reclaim policies selected by one sysctl knob (guestos/mm/reclaim_policy.py):
    `unmapped_page_control=rfc`; `bare` is the word the option alone means. Parsed to the policy's name."""
    knob: str
    bare: str

    def words(self) -> dict:
        from ..mm import reclaim_policy
        return reclaim_policy.cmdline_words(self.knob)

    def parse(self, text, ram_bytes: int) -> str:
        words = self.words()
        word = self.bare if text is True else text
        if word not in words:
            raise ParamError(f"not one of {', '.join(c or repr(c) for c in words)}")
        return words[word]


class PolicyNames:
    """Comma-separated names of registered reclaim policies (guestos/mm/reclaim_policy.py)."""
    def parse(self, text, ram_bytes: int) -> tuple:
        from ..mm import reclaim_policy
        if text is True:
            raise ParamError(f"needs a value (one or more of {', '.join(reclaim_policy.names())})")
        chosen = tuple(dict.fromkeys(name for name in text.split(",") if name))
        knobs = {}
        for name in chosen:
            try:
                policy = reclaim_policy.lookup(name)
            except reclaim_policy.UnknownPolicy as e:
                raise ParamError(str(e)) from None
            if policy.sysctl is not None:
                other = knobs.setdefault(policy.sysctl[0], name)
                if other != name:
                    raise ParamError(f"{other} and {name} are both vm.{policy.sysctl[0]}: choose one")
        return chosen


class Text:
    """Any string (a path, a device name), resolved where it is used, as Linux does."""
    def parse(self, text, ram_bytes: int) -> str:
        if text is True:
            raise ParamError("needs a value")
        return text


class MmioDevice:
    """virtio_mmio.device=SIZE@BASE:IRQ (Linux's vm_cmdline_set)."""
    def parse(self, text, ram_bytes: int) -> tuple:
        if text is True:
            raise ParamError("needs a value (SIZE@BASE:IRQ)")
        size, at, rest = text.partition("@")
        base, colon, irq = rest.partition(":")
        try:
            if not at or not colon:
                raise ValueError(text)
            value = memparse(size), int(base, 0), int(irq, 0)
        except ValueError:
            raise ParamError("not SIZE@BASE:IRQ (e.g. 4K@0xd0000000:5)") from None
        if value[0] == 0 or value[1] < 0 or value[1] + value[0] > 1 << 52 or not 0 <= value[2] < 256:
            raise ParamError("out of range (a size above 0, a physical address, an irq below 256)")
        return value


class Param(NamedTuple):
    """A kernel command-line parameter: its name, type, default and whether it may repeat."""
    name: str
    kind: object
    default: object
    repeatable: bool = False


SYSCTL_VM_RANGES = {
    # /proc/sys/vm: Linux 2.6.35's extra1/extra2 (proc_dointvec_minmax); plain proc_dointvec ones
    # take any non-negative int here. min_free_kbytes: Linux takes any value and then runs out of
    # memory at boot; above a quarter of RAM our kernel cannot unpack init, so that is the limit.
    "swappiness": (0, 100), "min_free_kbytes": (0, lambda ram: (ram >> 10) // 4),
    "dirty_ratio": (0, 100), "dirty_background_ratio": (0, 100),
    "dirty_expire_centisecs": (0, INT_MAX), "dirty_writeback_centisecs": (0, INT_MAX),
    "vfs_cache_pressure": (0, INT_MAX), "drop_caches": (0, 3), "overcommit_memory": (0, 2),
    "page-cluster": (0, 31), "min_unmapped_ratio": (0, 100), "max_unmapped_ratio": (0, 100),
    "unmapped_page_control": (0, 3), "pagecache_dedup": (0, 1),
}

# Namespaces that are ours alone: a name in one of them that is not declared is a mistake. Other
# unknown words are let through with a warning, as Linux passes them on to user space.
OWN_PREFIXES = ("vm.", "virtio_blk.", "virtio_balloon.", "virtio_mmio.", "random.", "cost.")
MAX_COST_NS = 10**12                    # a single charge of more than 1000 s of guest time is a typo

KERNEL_PARAMS = {p.name: p for p in (
    Param("console", Text(), None),
    Param("loglevel", Integer(0, 15), None),                 # 8 and above show KERN_DEBUG too
    Param("mem", Size(16 << 20, U64_MAX), None),             # less than 16M leaves no room to boot
    Param("root", Text(), None),
    Param("ro", Flag(), False),
    Param("rw", Flag(), False),
    Param("init", Text(), "/init"),
    Param("rdinit", Text(), None),
    Param("swap", Text(), None),
    Param("sched_quantum", Integer(1000, 1 << 40), 8_000_000),      # instructions per time slice
    Param("nofastfault", Flag(), False),
    Param("unmapped_page_control", PolicyWord("unmapped_page_control", bare="v4"), None),
    Param("pagecache_dedup", Flag(), False),
    Param("reclaim_policy", PolicyNames(), ()),                     # registered policies by name, at boot
    Param("strace", Flag(), False),                                 # trace every system call
    Param("vdso", Flag(), True),                                    # vdso=0: no vDSO, as Linux
    Param("random.seed", Integer(0, U64_MAX), None),
    Param("virtio_mmio.device", MmioDevice(), None, repeatable=True),
    Param("virtio_blk.max_sectors_kb", Integer(4, 32768), 512),     # 2.6.35's BLK_DEF_MAX_SECTORS
    Param("virtio_balloon.bug", Choice(("", "reuse", "early-free")), ""),
    Param("virtio_balloon.cache_first", Flag(), False),
    *(Param(f"vm.{name}", Integer(lo, hi), None) for name, (lo, hi) in SYSCTL_VM_RANGES.items()),
    # the kernel's costs in ns (guestos/kernel/costs.py); unset, the machine's cost model stands
    *(Param(f"cost.{name}", Integer(0, MAX_COST_NS, "a whole number of nanoseconds"), None)
      for name in CostModel.kernel_names()),
)}


def check_sysctl_vm(name: str, value: int, ram_bytes: int) -> None:
    """A value for /proc/sys/vm/NAME, at boot or written later; ParamError when out of range."""
    Integer(*SYSCTL_VM_RANGES[name]).parse(str(value), ram_bytes)


def check_params(params: KernelParams, ram_bytes: int) -> list:
    """Parse every declared option into params.checked; ParamError naming the first bad one.
    ram_bytes: the machine's RAM (mem= lowers it). Returns the unknown words, for a warning."""
    unknown = []
    mem = params.get("mem")
    if mem is not None:
        ram_bytes = min(ram_bytes, _parse_one(KERNEL_PARAMS["mem"], mem, ram_bytes))
    for key, raw in params.pairs:
        param = KERNEL_PARAMS.get(key)
        if param is None:
            if key.startswith(OWN_PREFIXES):
                family = key.split(".", 1)[0] + "."
                known = sorted(n[len(family):] for n in KERNEL_PARAMS if n.startswith(family))
                word = key if raw is True else f"{key}={raw}"
                raise ParamError(f"{word}: unknown option (known {family}*: {', '.join(known)})")
            unknown.append(key if raw is True else f"{key}={raw}")
            continue
        value = _parse_one(param, raw, ram_bytes)
        if param.repeatable:
            params.checked.setdefault(key, []).append(value)
        else:
            params.checked[key] = value
    return unknown


def _parse_one(param: Param, raw, ram_bytes: int):
    try:
        return param.kind.parse(raw, ram_bytes)
    except ParamError as e:
        word = param.name if raw is True else f"{param.name}={raw}"
        raise ParamError(f"{word}: {e}") from None


def check_cmdline(cmdline: str, ram_bytes: int) -> list:
    """The host's up-front check of a command line: ParamError naming the bad option. Returns the
    words the kernel does not know (it lets them through)."""
    params, _ = parse_cmdline(cmdline)
    return check_params(params, ram_bytes)
