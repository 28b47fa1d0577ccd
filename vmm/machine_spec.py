"""A guest as a user describes it (MachineSpec: sizes, root, swap, cache mode, balloon features),
checked up front, and the one way to boot it: assemble() turns a spec into a MachineConfig with its
root, disks, swap and host; boot() starts a LabSession on it (scenarios, the pytest plugin, the
demo); `ballast run` loads its own program into a Machine made from the same assembly."""
import os
from dataclasses import dataclass, field

from devices.host import Host
from devices.virtio_balloon import FEATURES_BY_NAME as BALLOON_FEATURES

from .errors import BallastError
from .hostinput import MAX_GUEST_SECONDS, disk_name, kernel_cmdline, regular_file
from .lab import LabSession
from .machine import CACHE_MODES, MAX_MEM, MIN_MEM, DiskConfig, MachineConfig, root_disk
from .rootfs import builtin_spec, root_image
from .swapdisk import MAX_SWAP, MIN_SWAP, make_swap_image
from .units import PAGE_SIZE, mib_text, number_value, short_repr, size_value, toml_type, typed_value

DEFAULT_BALLOON = ("MUST_TELL_HOST", "STATS_VQ")
DEFAULT_START_TIMEOUT_S = 60         # guest seconds for the agent to come up


@dataclass
class MachineSpec:
    """A guest to boot, checked: sizes in bytes, features as the device's bitmask (None: no balloon)."""
    mem: int = 128 << 20
    cmdline: str = ""
    root: str | None = "builtin"     # "builtin", a directory, an ext2 image, or None (the agent only)
    swap: int | None = None
    cache: str = "writeback"
    balloon_features: int | None = BALLOON_FEATURES["MUST_TELL_HOST"] | BALLOON_FEATURES["STATS_VQ"]
    stats_interval_s: float = 0
    on_violation: str = "record"
    host_memory: int | None = None   # guest RSS + host page cache
    root_read_only: bool = False     # attach the root read-only: guests on one host then share its cache
    root_writable: bool = False      # writes go to the root image itself (`ballast run --root IMG`)
    disks: list = field(default_factory=list)    # more DiskConfigs after the root (`ballast run --disk`)

    @classmethod
    def from_options(cls, mem="128M", cmdline="", root="builtin", swap=None, cache="writeback",
                     balloon=DEFAULT_BALLOON, stats_interval_s=0, on_violation="record",
                     host_memory=None, base_dir=".", where=None) -> "MachineSpec":
        """Check options given as a user writes them ("256M", feature names) and name the bad one.
        `where(key)` says how to name a key in errors; `base_dir` anchors a relative root."""
        where = where or (lambda key: key)
        spec = cls()
        spec.mem = size_value(mem, where("mem"))
        if spec.mem < MIN_MEM:
            raise BallastError(f"{where('mem')}: {mib_text(spec.mem)} is too small (a guest needs at least "
                               f"{MIN_MEM >> 20} MiB)")
        if spec.mem > MAX_MEM:
            raise BallastError(f"{where('mem')}: {mib_text(spec.mem)} is too large (at most {MAX_MEM >> 20} MiB)")
        if spec.mem % PAGE_SIZE:
            raise BallastError(f"{where('mem')}: must be a multiple of 4K")
        spec.cmdline = typed_value(cmdline, str, where("cmdline"), "a string")
        kernel_cmdline(spec.cmdline, spec.mem, where("cmdline"))
        if root is not None:
            root = typed_value(root, str, where("root"), "a string")
            if builtin_spec(root) is None:
                root = os.path.join(base_dir, os.path.expanduser(root))
                if not os.path.exists(root):
                    raise BallastError(f"{where('root')}: {root} does not exist "
                                       "(give 'builtin', a directory or an ext2 image)")
                regular_file(root, where("root"), allow_dir=True)
        spec.root = root
        if swap is not None:
            spec.swap = size_value(swap, where("swap"))
            if spec.swap < MIN_SWAP or spec.swap % PAGE_SIZE:
                raise BallastError(f"{where('swap')}: must be a multiple of 4K and at least {MIN_SWAP >> 10}K")
            if spec.swap > MAX_SWAP:
                raise BallastError(f"{where('swap')}: at most {MAX_SWAP >> 30} GiB")
        spec.cache = typed_value(cache, str, where("cache"), "a string")
        if spec.cache not in CACHE_MODES:
            raise BallastError(f"{where('cache')}: unknown cache mode '{spec.cache}' "
                               f"(one of {', '.join(CACHE_MODES)})")
        spec.balloon_features = None if balloon is None else feature_bits(balloon, where("features"))
        spec.stats_interval_s = number_value(stats_interval_s, where("stats_interval_s"), minimum=0,
                                             maximum=MAX_GUEST_SECONDS)
        if 0 < spec.stats_interval_s < 0.01:           # an event per nanosecond would stall the run
            raise BallastError(f"{where('stats_interval_s')}: at least 0.01 s of guest time (or 0: off)")
        if spec.stats_interval_s and not (spec.balloon_features or 0) & BALLOON_FEATURES["STATS_VQ"]:
            raise BallastError(f"{where('stats_interval_s')}: needs a balloon with the STATS_VQ feature")
        if not isinstance(on_violation, str) or on_violation not in ("record", "stop"):
            raise BallastError(f"{where('on_violation')}: must be 'record' or 'stop', not {on_violation!r}")
        spec.on_violation = on_violation
        if host_memory is not None:
            spec.host_memory = size_value(host_memory, where("host_memory"))
            if spec.host_memory - spec.mem < PAGE_SIZE:
                raise BallastError(f"{where('host_memory')}: {mib_text(spec.host_memory)} leaves no host page "
                                   f"cache beside the guest's {mib_text(spec.mem)} (it bounds guest RSS + host "
                                   "page cache)")
        return spec

    def features_text(self) -> str:
        if self.balloon_features is None:
            return "no balloon"
        names = [n for n, bit in BALLOON_FEATURES.items() if self.balloon_features & bit]
        return "balloon " + ("+".join(names) if names else "(no features)")


def feature_bits(names, what: str) -> int:
    """The device's feature bits for a list of feature names."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise BallastError(f"{what}: must be a list of feature names (of {', '.join(BALLOON_FEATURES)})")
    bits = 0
    for name in names:
        if not isinstance(name, str) or name not in BALLOON_FEATURES:     # a table is not hashable
            shown = name if isinstance(name, str) else \
                short_repr(name) if isinstance(name, (int, float)) else toml_type(name)
            raise BallastError(f"{what}: unknown balloon feature '{shown}' (one of {', '.join(BALLOON_FEATURES)})")
        bits |= BALLOON_FEATURES[name]
    return bits


@dataclass
class HostSpec:
    """The host the machines of a scenario share: its memory budget and cache policy."""
    memory: int | None = None        # every guest's RSS + the host page cache
    exclusive: bool = False          # the host keeps only pages several guests read


class Resources:
    """What assemble() made for a machine besides the machine itself: a swap image, a host of its own."""

    def __init__(self):
        self.swap_image = None
        self.host = None

    def release(self) -> None:
        host, self.host = self.host, None
        if host is not None:
            host.close()
        swap, self.swap_image = self.swap_image, None
        if swap is not None:
            try:
                os.unlink(swap)
            except FileNotFoundError:
                pass


def assemble(spec: MachineSpec, resources: Resources, host=None) -> tuple:
    """(MachineConfig, root image or None, host or None) for spec: the root attached as the spec says
    (a private snapshot unless read-only or writable), its extra disks, a swap disk made with mkswap
    and, with host_memory, a host of its own; what it makes goes into resources for the caller to release."""
    root = root_image(spec.root) if spec.root is not None else None
    cmdline = spec.cmdline
    disks = [] if root is None else [root_disk(root, cache=spec.cache, read_only=spec.root_read_only,
                                               writable=spec.root_writable)]
    disks += spec.disks
    if spec.swap is not None:
        resources.swap_image = make_swap_image(spec.swap)
        disks.append(DiskConfig(resources.swap_image))
        cmdline = f"{cmdline} swap=/dev/{disk_name(len(disks) - 1)}".strip()
    if host is None and spec.host_memory is not None:
        host = resources.host = Host(memory_budget_bytes=spec.host_memory,
                                     cache_capacity=(spec.host_memory - spec.mem) // PAGE_SIZE)
    config = MachineConfig(mem=spec.mem, cmdline=cmdline, disks=disks, balloon_features=spec.balloon_features,
                           balloon_stats_interval_s=spec.stats_interval_s, on_violation=spec.on_violation)
    return config, root, host


def boot(spec: MachineSpec, console_sink=None, start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
         host=None, before_start=None) -> LabSession:
    """A started LabSession for spec; on `host` (shared with other guests, not closed with it)
    or on a host of its own. before_start(machine), when given, is called before the guest boots
    (to attach a tracer)."""
    resources = Resources()
    try:
        config, root, host = assemble(spec, resources, host)
        session = LabSession(config, root, resources, host=host, console_sink=console_sink)
    except BaseException:
        resources.release()
        raise
    try:
        if before_start is not None:
            before_start(session.machine)
        return session.start(start_timeout_s)
    except BaseException:
        session.close()
        raise
