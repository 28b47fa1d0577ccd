"""Scripted experiments: `ballast scenario FILE.toml` boots a guest described by [machine] and
[host], runs its [[step]]s one after another through a GuestSession and takes snapshots of
guest, balloon and host memory.

Everything a snapshot holds except the host's RSS and wall time comes from the virtual machine,
so the same file gives the same numbers on any machine. Every mistake in a file is a
BallastError naming the key, raised before the guest boots."""
import math
import os
import time
from dataclasses import dataclass, field

from .errors import BallastError
from .hostinput import MAX_GUEST_SECONDS, kernel_cmdline, regular_file
from .session import GuestSession

PAGE_SIZE = 4096
FEATURES = {"MUST_TELL_HOST": 1 << 0, "STATS_VQ": 1 << 1, "DEFLATE_ON_OOM": 1 << 2,
            "FREE_PAGE_HINT": 1 << 3, "PAGE_POISON": 1 << 4, "REPORTING": 1 << 5,
            "RECLAIM_CACHE_FIRST": 1 << 16}   # ours, experimental: the host's per-target "cache first" hint
ACTIONS = ("run", "balloon_mib", "guest_mib", "wait", "sleep", "snapshot")
WAITS = ("balloon",)
DEFAULT_RUN_TIMEOUT_S = 3600         # virtual seconds; a program that never ends is an error
DEFAULT_WAIT_TIMEOUT_S = 60
STATS_TIMEOUT_S = 5
AGENT_MAX_ARGS = 63                  # the agent's request holds the program and 63 arguments
AGENT_MAX_LINE = 4000                # its request line is at most 4096 bytes
END_SNAPSHOT = "end"


# --- the machine: shared by scenarios and the pytest plugin ----------------------------------------

@dataclass
class MachineSpec:
    """A guest to boot, checked: sizes in bytes, features as the device's bitmask (None: no balloon)."""
    mem: int = 128 << 20
    cmdline: str = ""
    root: str | None = "builtin"     # "builtin", a directory, an ext2 image, or None (the agent only)
    swap: int | None = None
    cache: str = "writeback"
    balloon_features: int | None = FEATURES["MUST_TELL_HOST"] | FEATURES["STATS_VQ"]
    stats_interval_s: float = 0
    on_violation: str = "record"
    host_memory: int | None = None   # guest RSS + host page cache
    root_read_only: bool = False     # attach the root read-only: guests on one host then share its cache

    @classmethod
    def from_options(cls, mem="128M", cmdline="", root="builtin", swap=None, cache="writeback",
                     balloon=("MUST_TELL_HOST", "STATS_VQ"), stats_interval_s=0, on_violation="record",
                     host_memory=None, base_dir=".", where=None) -> "MachineSpec":
        """Check options given as a user writes them ("256M", feature names) and name the bad one.
        `where(key)` says how to name a key in errors; `base_dir` anchors a relative root."""
        where = where or (lambda key: key)
        spec = cls()
        spec.mem = _size(mem, where("mem"))
        from .machine import MAX_MEM, MIN_MEM
        if spec.mem < MIN_MEM:
            raise BallastError(f"{where('mem')}: {_mib(spec.mem)} is too small (a guest needs at least "
                               f"{MIN_MEM >> 20} MiB)")
        if spec.mem > MAX_MEM:
            raise BallastError(f"{where('mem')}: {_mib(spec.mem)} is too large (at most {MAX_MEM >> 20} MiB)")
        if spec.mem % PAGE_SIZE:
            raise BallastError(f"{where('mem')}: must be a multiple of 4K")
        spec.cmdline = _typed(cmdline, str, where("cmdline"), "a string")
        kernel_cmdline(spec.cmdline, spec.mem, where("cmdline"))
        if root is not None:
            root = _typed(root, str, where("root"), "a string")
            if root != "builtin":
                root = os.path.join(base_dir, os.path.expanduser(root))
                if not os.path.exists(root):
                    raise BallastError(f"{where('root')}: {root} does not exist "
                                       "(give 'builtin', a directory or an ext2 image)")
                regular_file(root, where("root"), allow_dir=True)
        spec.root = root
        if swap is not None:
            spec.swap = _size(swap, where("swap"))
            from .swapdisk import MAX_SWAP, MIN_SWAP
            if spec.swap < MIN_SWAP or spec.swap % PAGE_SIZE:
                raise BallastError(f"{where('swap')}: must be a multiple of 4K and at least {MIN_SWAP >> 10}K")
            if spec.swap > MAX_SWAP:
                raise BallastError(f"{where('swap')}: at most {MAX_SWAP >> 30} GiB")
        from .machine import CACHE_MODES
        spec.cache = _typed(cache, str, where("cache"), "a string")
        if spec.cache not in CACHE_MODES:
            raise BallastError(f"{where('cache')}: unknown cache mode '{spec.cache}' "
                               f"(one of {', '.join(CACHE_MODES)})")
        if balloon is None:
            spec.balloon_features = None
        else:
            if isinstance(balloon, str) or not isinstance(balloon, (list, tuple)):
                raise BallastError(f"{where('features')}: must be a list of feature names "
                                   f"(of {', '.join(FEATURES)})")
            bits = 0
            for name in balloon:
                if not isinstance(name, str) or name not in FEATURES:     # a table is not hashable
                    shown = name if isinstance(name, str) else \
                        _short(name) if isinstance(name, (int, float)) else _toml_type(name)
                    raise BallastError(f"{where('features')}: unknown balloon feature '{shown}' "
                                       f"(one of {', '.join(FEATURES)})")
                bits |= FEATURES[name]
            spec.balloon_features = bits
        spec.stats_interval_s = _number(stats_interval_s, where("stats_interval_s"), minimum=0,
                                        maximum=MAX_GUEST_SECONDS)
        if 0 < spec.stats_interval_s < 0.01:           # an event per nanosecond would stall the run
            raise BallastError(f"{where('stats_interval_s')}: at least 0.01 s of guest time (or 0: off)")
        if spec.stats_interval_s and not (spec.balloon_features or 0) & FEATURES["STATS_VQ"]:
            raise BallastError(f"{where('stats_interval_s')}: needs a balloon with the STATS_VQ feature")
        if not isinstance(on_violation, str) or on_violation not in ("record", "stop"):
            raise BallastError(f"{where('on_violation')}: must be 'record' or 'stop', not {on_violation!r}")
        spec.on_violation = on_violation
        if host_memory is not None:
            spec.host_memory = _size(host_memory, where("host_memory"))
            if spec.host_memory - spec.mem < PAGE_SIZE:
                raise BallastError(f"{where('host_memory')}: {_mib(spec.host_memory)} leaves no host page cache "
                                   f"beside the guest's {_mib(spec.mem)} (it bounds guest RSS + host page cache)")
        return spec

    def features_text(self) -> str:
        if self.balloon_features is None:
            return "no balloon"
        names = [n for n, bit in FEATURES.items() if self.balloon_features & bit]
        return "balloon " + ("+".join(names) if names else "(no features)")


@dataclass
class HostSpec:
    memory: int | None = None        # every guest's RSS + the host page cache
    exclusive: bool = False          # the host keeps only pages several guests read


class LabSession(GuestSession):
    """A GuestSession booted from a MachineSpec, with a few helpers for tests; close() also removes
    its swap disk and its host."""

    def __init__(self, config, root, resources: dict, **kw):
        # the root disk is already config.disks[0], with the cache mode asked for
        super().__init__(config, root=None, **kw)
        self.root = root
        self._resources = resources
        self._started = time.perf_counter()

    def start(self, timeout_s: float = 60) -> "LabSession":
        self._started = time.perf_counter()
        return super().start(timeout_s)

    def close(self) -> None:
        try:
            super().close()
        finally:
            _release(self._resources)

    def run_ok(self, argv, timeout_s: float = DEFAULT_RUN_TIMEOUT_S) -> str:
        """Run a guest program that must exit 0; its console output."""
        r = self.run(argv, timeout_s)
        if r.status != 0:
            how = f"was killed by signal {r.status & 0x7F}" if r.signaled else f"exited {r.exit_code}"
            raise AssertionError(f"{' '.join(map(str, argv))} {how}: {r.output.strip()[-500:]}")
        return r.output

    def resize_balloon(self, mib: float, timeout_s: float = DEFAULT_WAIT_TIMEOUT_S) -> bool:
        """Set the balloon's size and wait (in guest time) until the driver reaches it."""
        self.set_balloon_mib(mib)
        return self.wait_balloon(timeout_s)

    def balloon_mib(self) -> float:
        """The balloon's actual size, as the driver reports it."""
        return self.balloon.actual_pages * PAGE_SIZE / (1 << 20)

    @property
    def violations(self) -> list:
        """Guest accesses to frames that were in the balloon (vmm.machine.BalloonViolation)."""
        return self.machine.violations

    def snapshot(self) -> dict:
        """What a scenario's snapshot records (guest, vmstat, balloon, host, time)."""
        return snapshot(self, time.perf_counter() - self._started)


def boot(spec: MachineSpec, console_sink=None, start_timeout_s: float = 60, host=None) -> LabSession:
    """A started LabSession for spec; on `host` (shared with other guests, not closed with it)
    or on a host of its own."""
    from devices.host import Host
    from .machine import DiskConfig, MachineConfig
    from .rootfs import root_image

    resources = {}
    try:
        root = root_image(spec.root) if spec.root is not None else None
        cmdline = spec.cmdline
        # runs never change the root image: writes go to a private overlay, or it is read-only
        if root is None:
            disks = []
        elif spec.root_read_only:
            disks = [DiskConfig(root, cache=spec.cache, read_only=True)]
        else:
            disks = [DiskConfig(root, cache=spec.cache, snapshot=True)]
        if spec.swap is not None:
            from .swapdisk import make_swap_image
            resources["swap"] = make_swap_image(spec.swap)
            disks.append(DiskConfig(resources["swap"]))
            cmdline = f"{cmdline} swap=/dev/vd{'abcdefghijklmnopqrstuvwxyz'[len(disks) - 1]}".strip()
        if host is None and spec.host_memory is not None:
            host = resources["host"] = Host(memory_budget_bytes=spec.host_memory,
                                            cache_capacity=(spec.host_memory - spec.mem) // PAGE_SIZE)
        config = MachineConfig(mem=spec.mem, cmdline=cmdline, disks=disks,
                               balloon_features=spec.balloon_features,
                               balloon_stats_interval_s=spec.stats_interval_s, on_violation=spec.on_violation)
        session = LabSession(config, root, resources, host=host, console_sink=console_sink)
    except BaseException:
        _release(resources)
        raise
    try:
        return session.start(start_timeout_s)
    except BaseException:
        session.close()
        raise


def _release(resources: dict) -> None:
    host = resources.pop("host", None)
    if host is not None:
        host.close()
    swap = resources.pop("swap", None)
    if swap is not None:
        try:
            os.unlink(swap)
        except FileNotFoundError:
            pass


# --- the file ---------------------------------------------------------------------------------------

@dataclass
class Step:
    number: int                      # 1-based, as the user counts [[step]] tables
    action: str
    value: object
    timeout_s: float | None = None
    on: str | None = None            # the machine it acts on (None: the only one)
    hint: str | None = None          # balloon_mib / guest_mib: "cache" asks for unmapped cache first

    def describe(self) -> str:
        text = self._describe()
        return f"{self.on}: {text}" if self.on else text

    def _describe(self) -> str:
        if self.action == "run":
            return "run " + " ".join(self.value)
        if self.action == "wait":
            return f"wait {self.value}"
        if self.action == "sleep":
            return f"sleep {self.value:g} s"
        if self.action == "snapshot":
            return f"snapshot {self.value}"
        return f"{self.action} = {self.value:g}" + (f" (hint {self.hint})" if self.hint else "")


@dataclass
class Scenario:
    machine: MachineSpec                                 # the first (or only) machine
    steps: list = field(default_factory=list)
    source: str = "scenario"
    description: str = ""
    machines: dict = field(default_factory=dict)         # name -> MachineSpec, in file order
    host: HostSpec = field(default_factory=HostSpec)
    series_interval_s: float = 0                         # 0: no time series

    @property
    def several(self) -> bool:
        return len(self.machines) > 1

    @property
    def snapshot_names(self) -> list:
        names = [s.value for s in self.steps if s.action == "snapshot"]
        return names or [END_SNAPSHOT]


def load(path: str) -> Scenario:
    import tomllib                      # only scenario files need it
    try:
        regular_file(path, "FILE.toml")          # a FIFO would block the read forever
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise BallastError(f"{path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise BallastError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise BallastError(f"{path}: not valid TOML: not UTF-8 text") from None
    except RecursionError:
        raise BallastError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    return parse(data, source=path, base_dir=os.path.dirname(os.path.abspath(path)))


def parse(data: dict, source: str = "scenario", base_dir: str = ".") -> Scenario:
    def fail(text):
        raise BallastError(f"{source}: {text}")

    _known(data, ("machine", "machines", "host", "step", "description", "series"), "", fail, "top-level key")
    description = data.get("description", "")
    if not isinstance(description, str):
        fail("description: must be a string")
    host = data.get("host", {})
    if not isinstance(host, dict):
        fail("host: must be a table ([host])")
    _known(host, ("memory", "exclusive"), "host", fail)
    exclusive = host.get("exclusive", False)
    if not isinstance(exclusive, bool):
        fail(f"host.exclusive: must be true or false, not {_toml_type(exclusive)}")
    if "machine" in data and "machines" in data:
        fail("both [machine] and [machines.NAME]: describe one guest with [machine], several with [machines.NAME]")
    if "machines" in data:
        tables = data["machines"]
        if not isinstance(tables, dict) or not tables:
            fail("machines: must hold one table per guest ([machines.NAME])")
        named = [(name, table, f"machines.{name}") for name, table in tables.items()]
    elif "machine" in data:
        named = [("guest", data["machine"], "machine")]
    else:
        fail("no [machine] table (it needs at least mem)")
    machines = {}
    for name, table, where in named:
        machines[name] = _parse_machine(table, where, host, fail, base_dir)
    host_spec = HostSpec(exclusive=exclusive)
    if host.get("memory") is not None:
        host_spec.memory = next(iter(machines.values())).host_memory
        total = sum(m.mem for m in machines.values())
        if host_spec.memory - total < PAGE_SIZE:
            fail(f"host.memory: {_mib(host_spec.memory)} leaves no host page cache beside the guests' "
                 f"{_mib(total)} (it bounds guest RSS + host page cache)")
    series = data.get("series", {})
    if not isinstance(series, dict):
        fail("series: must be a table ([series] interval_s = 0.05)")
    _known(series, ("interval_s",), "series", fail)
    interval = _checked(lambda: _number(series.get("interval_s", 0), "series.interval_s", minimum=0,
                                        maximum=MAX_GUEST_SECONDS), fail)
    if 0 < interval < 0.01:
        fail("series.interval_s: at least 0.01 s of guest time")

    raw_steps = data.get("step")
    if raw_steps is None:
        fail("no steps: add [[step]] tables (run, balloon_mib, guest_mib, wait, sleep, snapshot)")
    if not isinstance(raw_steps, list):
        fail("step: must be an array of tables: write [[step]], not [step]")
    steps = [_parse_step(raw, i + 1, machines, fail) for i, raw in enumerate(raw_steps)]
    seen = set()
    for step in steps:
        if step.action == "snapshot":
            if step.value in seen:
                fail(f"step {step.number}: snapshot: the name '{step.value}' is already taken")
            seen.add(step.value)
    return Scenario(next(iter(machines.values())), steps, source, description, machines, host_spec, interval)


def _parse_machine(machine, where: str, host: dict, fail, base_dir: str) -> MachineSpec:
    if not isinstance(machine, dict):
        fail(f"{where}: must be a table ([{where}])")
    _known(machine, ("mem", "cmdline", "root", "swap", "cache", "balloon", "root_read_only"), where, fail)
    if "mem" not in machine:
        fail(f"{where}.mem: missing (the guest's RAM, e.g. \"256M\")")
    balloon = machine.get("balloon")
    options = {}
    if balloon is not None:
        if not isinstance(balloon, dict):
            fail(f"{where}.balloon: must be a table, e.g. {{ features = [\"MUST_TELL_HOST\"] }}")
        _known(balloon, ("features", "stats_interval_s", "on_violation"), f"{where}.balloon", fail)
        options = {"balloon": balloon.get("features", []),
                   "stats_interval_s": balloon.get("stats_interval_s", 0),
                   "on_violation": balloon.get("on_violation", "record")}
    else:
        options["balloon"] = None
    names = {"features": f"{where}.balloon.features", "stats_interval_s": f"{where}.balloon.stats_interval_s",
             "on_violation": f"{where}.balloon.on_violation", "host_memory": "host.memory"}
    try:
        spec = MachineSpec.from_options(
            mem=machine["mem"], cmdline=machine.get("cmdline", ""), root=machine.get("root", "builtin"),
            swap=machine.get("swap"), cache=machine.get("cache", "writeback"), host_memory=host.get("memory"),
            base_dir=base_dir, where=lambda key: names.get(key, f"{where}.{key}"), **options)
    except BallastError as e:
        fail(str(e))
    read_only = machine.get("root_read_only", False)
    if not isinstance(read_only, bool):
        fail(f"{where}.root_read_only: must be true or false, not {_toml_type(read_only)}")
    spec.root_read_only = read_only
    return spec


def _parse_step(raw, number: int, machines: dict, fail) -> Step:
    where = f"step {number}"
    if not isinstance(raw, dict):
        fail(f"{where}: must be a table ([[step]])")
    unknown = [k for k in raw if k not in ACTIONS + ("timeout_s", "on", "hint")]
    if unknown:
        fail(f"{where}: unknown key '{unknown[0]}' (a step is one of {', '.join(ACTIONS)}; "
             "run and wait take timeout_s; balloon_mib and guest_mib take hint; on names the machine)")
    on = raw.get("on")
    if on is not None and (not isinstance(on, str) or on not in machines or len(machines) == 1):
        if len(machines) == 1:
            fail(f"{where}: on: there is only one machine; leave on out")
        fail(f"{where}: on: unknown machine {on!r} (one of {', '.join(machines)})")
    if on is None and len(machines) > 1 and "snapshot" not in raw:
        fail(f"{where}: on: which machine? (one of {', '.join(machines)})")
    spec = machines[on] if on is not None else next(iter(machines.values()))
    actions = [k for k in raw if k in ACTIONS]
    if not actions:
        fail(f"{where}: no action (one of {', '.join(ACTIONS)})")
    if len(actions) > 1:
        fail(f"{where}: has both {actions[0]} and {actions[1]}: one action per step")
    action = actions[0]
    value = raw[action]
    key = f"{where}: {action}"
    timeout_s = None
    if "timeout_s" in raw:
        if action not in ("run", "wait"):
            fail(f"{where}: timeout_s: only run and wait steps take a timeout")
        timeout_s = _checked(lambda: _number(raw["timeout_s"], f"{where}: timeout_s", minimum=0,
                                             maximum=MAX_GUEST_SECONDS), fail)
        if timeout_s == 0:
            fail(f"{where}: timeout_s: must be positive")
    if action == "run":
        if not isinstance(value, list) or not value:
            fail(f"{key}: must be a non-empty list of strings, e.g. [\"/bin/memhog\", \"64M\"]")
        for item in value:
            if not isinstance(item, str):
                fail(f"{key}: every item must be a string, not {_toml_type(item)} ({item!r})")
            if "\n" in item or "\x1f" in item or "\0" in item:
                fail(f"{key}: {_short(item)}: arguments cannot hold newlines, NUL or 0x1f")
        if not value[0].startswith("/"):
            fail(f"{key}: the program must be an absolute path in the guest (e.g. /bin/{value[0]})")
        if len(value) > AGENT_MAX_ARGS:
            fail(f"{key}: too many arguments (at most {AGENT_MAX_ARGS - 1})")
        if len("\x1f".join(["RUN"] + value).encode()) > AGENT_MAX_LINE:
            fail(f"{key}: the command is too long (at most {AGENT_MAX_LINE} bytes)")
        value = list(value)
    elif action in ("balloon_mib", "guest_mib"):
        if spec.balloon_features is None:
            fail(f"{key}: this machine has no balloon: add machine.balloon = {{ features = [...] }}")
        mem_mib = spec.mem / (1 << 20)
        value = _checked(lambda: _number(value, key, minimum=0), fail)
        if action == "balloon_mib" and value > mem_mib:
            fail(f"{key}: a balloon of {value:g} MiB is bigger than the guest ({mem_mib:g} MiB)")
        if action == "guest_mib" and not 0 < value <= mem_mib:
            fail(f"{key}: must be more than 0 and at most the guest's {mem_mib:g} MiB, not {value:g}")
    hint = raw.get("hint")
    if hint is not None:
        if action not in ("balloon_mib", "guest_mib"):
            fail(f"{where}: hint: only balloon_mib and guest_mib steps take a hint")
        if hint != "cache":
            fail(f"{where}: hint: unknown hint {hint!r} (only 'cache')")
        if not spec.balloon_features & FEATURES["RECLAIM_CACHE_FIRST"]:
            fail(f"{where}: hint: needs the balloon feature RECLAIM_CACHE_FIRST")
    if action == "wait":
        if value not in WAITS:
            fail(f"{key}: unknown wait {value!r} (one of {', '.join(repr(w) for w in WAITS)})")
        if spec.balloon_features is None:
            fail(f"{key}: this machine has no balloon to wait for")
    elif action == "sleep":
        value = _checked(lambda: _number(value, key, minimum=0, maximum=MAX_GUEST_SECONDS), fail)
    elif action == "snapshot":
        if not isinstance(value, str) or not value.strip():
            fail(f"{key}: must be a non-empty name (a string)")
        if on is not None:
            fail(f"{where}: on: a snapshot takes every machine")
    return Step(number, action, value, timeout_s, on, hint)


def _known(table: dict, allowed, where: str, fail, noun: str = "key") -> None:
    for key in table:
        if key not in allowed:
            at = f"{where}: " if where else ""
            fail(f"{at}unknown {noun} '{key}' (expected one of {', '.join(allowed)})")


def _checked(make, fail):
    try:
        return make()
    except BallastError as e:
        fail(str(e))


def _size(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BallastError(f"{what}: must be a size such as \"256M\", not {_toml_type(value)}")
    if isinstance(value, int):
        size = value
    else:
        from .cli import parse_size
        size = parse_size(value.strip(), what)
    if size <= 0:
        raise BallastError(f"{what}: must be positive, not {value!r}")
    return size


def _number(value, what: str, minimum=None, maximum=None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BallastError(f"{what}: must be a number, not {_toml_type(value)} ({_short(value)})")
    if not math.isfinite(value):
        raise BallastError(f"{what}: must be a finite number, not {value}")
    if minimum is not None and value < minimum:
        raise BallastError(f"{what}: must be at least {minimum}, not {value:g}")
    if maximum is not None and value > maximum:
        raise BallastError(f"{what}: must be at most {maximum}, not {value:g}")
    return value


def _short(value) -> str:
    """A value for a one-line message: repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _typed(value, kind, what: str, noun: str):
    if not isinstance(value, kind):
        raise BallastError(f"{what}: must be {noun}, not {_toml_type(value)}")
    return value


def _toml_type(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


# --- running ----------------------------------------------------------------------------------------

def _machine_part(session) -> dict:
    """What a snapshot records of one guest; with STATS_VQ it asks the driver for fresh statistics."""
    balloon = session.machine.balloon
    ballooned = {}
    if balloon is not None:
        stats = session.balloon_stats(STATS_TIMEOUT_S) if balloon.features & FEATURES["STATS_VQ"] else {}
        ballooned = {"target_pages": balloon.target_pages, "actual_pages": balloon.actual_pages,
                     "stats": dict(stats)}
    vmstat = dict(session.vmstat())
    kernel = session.machine.kernel
    policy = {"unmapped_page_control": kernel.unmapped_policy, "pagecache_dedup": kernel.pagecache_dedup,
              **{name: vmstat[name] for name in POLICY_COUNTERS}}
    out = {"guest": dict(session.meminfo()), "vmstat": vmstat, "balloon": ballooned, "policy": policy,
           "ram": {"resident_pages": session.machine.ram.resident_pages()}}   # frames the host holds (mincore)
    if session.machine.disks:
        backend = session.machine.disks[0][1]
        stats = backend.stats
        # pages the root disk read from its image (a miss of the host cache, or every read without one)
        reads = stats.host_misses if backend.mode.host_cache else stats.bytes_read // PAGE_SIZE
        out["disk"] = {"reads_pages": reads, "host_hits_pages": stats.host_hits}
    return out


POLICY_COUNTERS = ("unmapped_wakeups", "unmapped_balance_runs", "pgscan_unmapped", "pgsteal_unmapped",
                   "balloon_cache_first_calls", "pgsteal_cache_first", "host_cache_queries", "pgsteal_dedup")


def _host_part(sessions: dict, host) -> dict:
    from . import oracle
    cache = host.cache
    report = oracle.duplication(host, [s.machine for s in sessions.values()])
    return {"rss_bytes": LabSession.host_rss_bytes(), "cache_pages": cache.nr_pages,
            "cache_capacity_pages": cache.capacity_pages, "duplicated_pages": report["duplicated_pages"],
            "pages_in_several_guests": report["host_pages_in_several_guests"],
            "demoted_pages": cache.demoted}, report


def snapshot(session, wall_s: float) -> dict:
    """One guest's snapshot (the format of a single-machine scenario)."""
    out = _machine_part(session)
    out["host"], report = _host_part({"guest": session}, session.machine.host)
    vm = report["vms"][session.machine.vm_id]
    out["oracle"] = {k: vm[k] for k in ("duplicated_pages", "estimated_duplicated_pages", "files")}
    out["time"] = {"virtual_ns": session.virtual_ns(), "wall_s": round(wall_s, 3)}
    return out


def snapshot_all(sessions: dict, host, wall_s: float) -> dict:
    """Every guest of a multi-machine scenario, and the host they share."""
    machines = {}
    host_part, report = _host_part(sessions, host)
    for name, session in sessions.items():
        part = _machine_part(session)
        vm = report["vms"][session.machine.vm_id]
        part["oracle"] = {k: vm[k] for k in ("duplicated_pages", "estimated_duplicated_pages", "files")}
        part["time"] = {"virtual_ns": session.virtual_ns()}
        machines[name] = part
    return {"machines": machines, "host": host_part, "time": {"wall_s": round(wall_s, 3)}}


def run(scenario: Scenario, on_step=None, console_sink=None) -> dict:
    """Run every step; returns {"snapshots": ..., "exit": ...} (and "series" with [series]).
    on_step(step, None) is called before each step and on_step(step, outcome) after it (outcome a
    short text). A BallastError mid-run is raised with the result so far attached as its `result`."""
    from devices.host import Host
    started = time.perf_counter()
    result = {"snapshots": {}, "exit": {}}
    runs, waits = [], []
    exit_info = result["exit"]
    exit_info.update(ok=None, steps=len(scenario.steps), steps_run=0, runs=runs, last_run=None, waits=waits,
                     waits_met=True, violations=0, error=None, virtual_ns=0)
    sessions = {}
    host = None
    shared_host = scenario.several or scenario.host.exclusive
    try:
        if shared_host:
            memory = scenario.host.memory
            cache_pages = None if memory is None else \
                (memory - sum(m.mem for m in scenario.machines.values())) // PAGE_SIZE
            host = Host(memory_budget_bytes=memory, cache_capacity=cache_pages,
                        exclusive_cache=scenario.host.exclusive)
        for name, spec in scenario.machines.items():
            sessions[name] = boot(spec, console_sink=console_sink, host=host)
        if host is None:
            host = next(iter(sessions.values())).machine.host
        if scenario.series_interval_s:
            result["series"] = []
            for name, session in sessions.items():
                session.add_sampler(_sampler(name, session, sessions, host, result["series"]),
                                    scenario.series_interval_s)

        def take(name):
            wall = time.perf_counter() - started
            if scenario.several:
                result["snapshots"][name] = snapshot_all(sessions, host, wall)
            else:
                result["snapshots"][name] = snapshot(next(iter(sessions.values())), wall)
        for step in scenario.steps:
            if on_step is not None:
                on_step(step, None)
            session = sessions[step.on] if step.on is not None else next(iter(sessions.values()))
            outcome = _do(session, step, result, runs, waits, take)
            exit_info["steps_run"] += 1
            if on_step is not None:
                on_step(step, outcome)
        if not any(s.action == "snapshot" for s in scenario.steps):
            take(END_SNAPSHOT)
    except BallastError as e:
        exit_info["error"] = str(e)
        e.result = result
        raise
    finally:
        for session in sessions.values():
            exit_info["violations"] += len(session.machine.violations)
            exit_info["virtual_ns"] = max(exit_info["virtual_ns"], session.virtual_ns())
            session.close()
        if shared_host and host is not None:
            host.close()
        exit_info["waits_met"] = all(w["met"] for w in waits)
        exit_info["ok"] = exit_info["error"] is None and exit_info["waits_met"] and not exit_info["violations"]
    return result


def _sampler(name, session, sessions, host, series):
    """A time-series point as `name` runs: its guest's memory and the host's view of duplication."""
    from . import oracle

    def sample():
        meminfo = session.meminfo()
        report = oracle.duplication(host, [s.machine for s in sessions.values()])
        series.append({"machine": name, "virtual_ns": session.virtual_ns(), "MemFree": meminfo["MemFree"],
                       "Cached": meminfo["Cached"], "host_cache_pages": host.cache.nr_pages,
                       "duplicated_pages": report["duplicated_pages"],
                       "resident_pages": session.machine.ram.resident_pages(),
                       "balloon_pages": session.machine.balloon.actual_pages if session.machine.balloon else 0})
    return sample


def _do(session, step: Step, result: dict, runs: list, waits: list, take) -> str:
    if step.action == "run":
        started = session.virtual_ns()
        r = session.run(step.value, step.timeout_s or DEFAULT_RUN_TIMEOUT_S)
        from .oracle import decode_wait_status
        status = decode_wait_status(r.status)
        entry = {"step": step.number, "argv": step.value, "status": r.status, "exit_code": status["code"],
                 "signaled": status["signaled"], "signal": None, "output": r.output,
                 "virtual_ns": session.virtual_ns() - started}
        if step.on is not None:
            entry["machine"] = step.on
        if status["signaled"]:
            from guestos.kernel.signal import signal_name
            entry["signal"] = signal_name(status["signal"])
        runs.append(entry)
        result["exit"]["last_run"] = entry
        said = r.output.strip().splitlines()[-1:] or [""]
        how = f"killed by {entry['signal']}" if entry["signaled"] else f"exit {entry['exit_code']}"
        return f"{how}: {said[0][:70]}" if said[0] else how
    if step.action == "balloon_mib":
        session.set_balloon_mib(step.value, hint=step.hint)
        return f"target {session.balloon.target_pages} pages"
    if step.action == "guest_mib":
        session.set_guest_mib(step.value, hint=step.hint)
        return f"target {session.balloon.target_pages} pages"
    if step.action == "wait":
        before = session.virtual_ns()
        timeout_s = step.timeout_s or DEFAULT_WAIT_TIMEOUT_S
        met = session.wait_balloon(timeout_s)
        took = session.virtual_ns() - before
        waits.append({"step": step.number, "for": step.value, "met": met, "virtual_ns": took})
        b = session.balloon
        if met:
            return f"met after {took / 1e9:.3f} s"
        return f"NOT met within {timeout_s:g} s: actual {b.actual_pages} of {b.target_pages} pages"
    if step.action == "sleep":
        session.advance(step.value)
        return ""
    if step.action == "snapshot":
        take(step.value)
        return ""
    raise AssertionError(step.action)


def without_host_noise(result: dict) -> dict:
    """The result without what depends on the host machine (RSS and wall time): what must repeat."""
    import copy
    clean = copy.deepcopy(result)
    for snap in clean["snapshots"].values():
        snap["host"].pop("rss_bytes", None)
        snap["time"].pop("wall_s", None)
    return clean


# --- the summary --------------------------------------------------------------------------------------

def _kib(value) -> str:
    return "" if value is None else f"{value / 1024:,.1f} MiB"


def _pages(value) -> str:
    return "" if value is None else f"{value * PAGE_SIZE / (1 << 20):,.1f} MiB"


def _bytes(value) -> str:
    return "" if value is None else f"{value / (1 << 20):,.1f} MiB"


def _count(value) -> str:
    return "" if value is None else f"{value:,}"


SUMMARY_ROWS = (
    # (group, label, where in a snapshot, format); rows empty in every snapshot are left out
    ("guest", "MemTotal", ("guest", "MemTotal"), _kib),
    ("guest", "MemFree", ("guest", "MemFree"), _kib),
    ("guest", "MemAvailable", ("guest", "MemAvailable"), _kib),
    ("guest", "Cached", ("guest", "Cached"), _kib),
    ("guest", "AnonPages", ("guest", "AnonPages"), _kib),
    ("guest", "SwapFree", ("guest", "SwapFree"), _kib),
    ("vmstat", "pgfault", ("vmstat", "pgfault"), _count),
    ("vmstat", "pgmajfault", ("vmstat", "pgmajfault"), _count),
    ("vmstat", "pswpout", ("vmstat", "pswpout"), _count),
    ("vmstat", "oom_kill", ("vmstat", "oom_kill"), _count),
    ("balloon", "target", ("balloon", "target_pages"), _pages),
    ("balloon", "actual", ("balloon", "actual_pages"), _pages),
    ("balloon", "free-memory", ("balloon", "stats", "free-memory"), _bytes),
    ("balloon", "available-memory", ("balloon", "stats", "available-memory"), _bytes),
    ("policy", "unmapped reclaimed", ("policy", "pgsteal_unmapped"), _pages),
    ("policy", "dedup reclaimed", ("policy", "pgsteal_dedup"), _pages),
    ("oracle", "duplicated", ("oracle", "duplicated_pages"), _pages),
    ("oracle", "host's estimate", ("oracle", "estimated_duplicated_pages"), _pages),
    ("host", "RSS", ("host", "rss_bytes"), _bytes),
    ("host", "page cache", ("host", "cache_pages"), _pages),
    ("host", "duplicated", ("host", "duplicated_pages"), _pages),
    ("host", "in several guests", ("host", "pages_in_several_guests"), _pages),
    ("time", "virtual", ("time", "virtual_ns"), lambda ns: f"{ns / 1e9:.3f} s"),
    ("time", "wall", ("time", "wall_s"), lambda s: f"{s:.2f} s"),
)


def _dig(snap: dict, path):
    for key in path:
        if not isinstance(snap, dict) or key not in snap:
            return None
        snap = snap[key]
    return snap


def _rows(snaps: dict):
    """(group, label, values, fmt) per row; a multi-machine scenario gets a block per machine."""
    first = next(iter(snaps.values()))
    if "machines" not in first:
        for group, label, path, fmt in SUMMARY_ROWS:
            yield group, label, [_dig(s, path) for s in snaps.values()], fmt
        return
    for machine in first["machines"]:
        for group, label, path, fmt in SUMMARY_ROWS:
            if group in ("host",) or (group == "time" and label == "wall"):
                continue
            yield f"{machine} {group}", label, [_dig(s, ("machines", machine) + path) for s in snaps.values()], fmt
    for group, label, path, fmt in SUMMARY_ROWS:
        if group == "host" or (group == "time" and label == "wall"):
            yield group, label, [_dig(s, path) for s in snaps.values()], fmt


def summary_table(result: dict):
    """One rich table: a row per measurement, a column per snapshot."""
    from rich.table import Table
    snaps = result["snapshots"]
    table = Table(title="snapshots", title_justify="left")
    table.add_column("")
    table.add_column("")
    for name in snaps:
        table.add_column(name, justify="right")
    last_group = None
    for group, label, values, fmt in _rows(snaps):
        if all(v is None for v in values):
            continue
        if label == "SwapFree" and all(v == 0 or v is None for v in values):
            continue
        table.add_row(group if group != last_group else "", label, *(fmt(v) if v is not None else "" for v in values),
                      end_section=False)
        last_group = group
    return table


def exit_text(result: dict) -> str:
    e = result["exit"]
    parts = [f"{e['steps_run']} of {e['steps']} steps"]
    runs = e["runs"]
    if runs:
        failed = [r for r in runs if r["signaled"] or r["exit_code"]]
        parts.append(f"{len(runs)} program{'s' * (len(runs) != 1)}"
                     + (f" ({len(failed)} failed)" if failed else " (all exited 0)"))
    if e["waits"]:
        unmet = [str(w["step"]) for w in e["waits"] if not w["met"]]
        parts.append("waits met" if not unmet else f"wait NOT met (step {', '.join(unmet)})")
    parts.append(f"{e['violations']} balloon violation{'s' * (e['violations'] != 1)}")
    parts.append(f"{e['virtual_ns'] / 1e9:.3f} s of guest time")
    return ", ".join(parts)
