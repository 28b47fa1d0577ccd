"""Scenario files: the TOML schema of `ballast scenario` ([machine] or [machines.NAME], [host],
[series], [[step]]) and its validation. Every mistake is a BallastError naming the key, raised
before anything boots."""
import os
from dataclasses import dataclass, field

from .errors import BallastError
from .hostinput import MAX_GUEST_SECONDS, regular_file
from .machine_spec import BALLOON_FEATURES, HostSpec, MachineSpec
from .units import PAGE_SIZE, mib_text, number_value, short_repr, toml_type

ACTIONS = ("run", "balloon_mib", "guest_mib", "wait", "sleep", "snapshot")
WAITS = ("balloon",)
AGENT_MAX_ARGS = 63                  # the agent's request holds the program and 63 arguments
AGENT_MAX_LINE = 4000                # its request line is at most 4096 bytes
END_SNAPSHOT = "end"


@dataclass
class Step:
    """One [[step]] of a scenario file: an action with its value, and the wait or machine it names."""
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
    """A scenario file, checked: its machines, host and steps."""
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


def read_toml(path: str, what: str, argument: str = "FILE.toml") -> dict:
    """A TOML file's data; any problem with it is one line that starts with `what` (or, for a path
    that is not a regular file, with the argument that named it)."""
    import tomllib                      # only scenario and sweep files need it (lazily, for start-up time)
    try:
        regular_file(path, argument)     # a FIFO would block the read forever
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise BallastError(f"{what}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise BallastError(f"{what}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise BallastError(f"{what}: not valid TOML: not UTF-8 text") from None
    except RecursionError:
        raise BallastError(f"{what}: not valid TOML: arrays or tables nested too deeply") from None


def load(path: str) -> Scenario:
    data = read_toml(path, path)
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
        fail(f"host.exclusive: must be true or false, not {toml_type(exclusive)}")
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
            fail(f"host.memory: {mib_text(host_spec.memory)} leaves no host page cache beside the guests' "
                 f"{mib_text(total)} (it bounds guest RSS + host page cache)")
    series = data.get("series", {})
    if not isinstance(series, dict):
        fail("series: must be a table ([series] interval_s = 0.05)")
    _known(series, ("interval_s",), "series", fail)
    interval = _checked(lambda: number_value(series.get("interval_s", 0), "series.interval_s", minimum=0,
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
        fail(f"{where}.root_read_only: must be true or false, not {toml_type(read_only)}")
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
        timeout_s = _checked(lambda: number_value(raw["timeout_s"], f"{where}: timeout_s", minimum=0,
                                                  maximum=MAX_GUEST_SECONDS), fail)
        if timeout_s == 0:
            fail(f"{where}: timeout_s: must be positive")
    if action == "run":
        if not isinstance(value, list) or not value:
            fail(f"{key}: must be a non-empty list of strings, e.g. [\"/bin/memhog\", \"64M\"]")
        for item in value:
            if not isinstance(item, str):
                fail(f"{key}: every item must be a string, not {toml_type(item)} ({item!r})")
            if "\n" in item or "\x1f" in item or "\0" in item:
                fail(f"{key}: {short_repr(item)}: arguments cannot hold newlines, NUL or 0x1f")
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
        value = _checked(lambda: number_value(value, key, minimum=0), fail)
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
        if not spec.balloon_features & BALLOON_FEATURES["RECLAIM_CACHE_FIRST"]:
            fail(f"{where}: hint: needs the balloon feature RECLAIM_CACHE_FIRST")
    if action == "wait":
        if value not in WAITS:
            fail(f"{key}: unknown wait {value!r} (one of {', '.join(repr(w) for w in WAITS)})")
        if spec.balloon_features is None:
            fail(f"{key}: this machine has no balloon to wait for")
    elif action == "sleep":
        value = _checked(lambda: number_value(value, key, minimum=0, maximum=MAX_GUEST_SECONDS), fail)
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
