"""`ballast demo`: the June 2010 LKML debate run as an experiment.

The same workloads run under every page-cache policy — plain Linux, host cache=none, the series'
unmapped_page_control, the review's shrink_page_list bias, cache-first balloon pages, our
duplication-aware reclaim and exclusive host caching — while the host squeezes the guest with a
balloon. The oracle measures what no real host can see: exactly which pages both caches hold.

Every figure in the table comes from the virtual clock and the guest's and host's counters, so a
run gives the same table on any machine; wall time and the process's RSS are not in it."""
import json
from dataclasses import dataclass, field

from devices.host import Host
from devices.virtio_balloon import FEATURES_BY_NAME, VIRTIO_BALLOON_F_RECLAIM_CACHE_FIRST

from . import oracle
from .errors import BallastError
from .machine_spec import MachineSpec, boot
from .rootfs import root_image

MiB = 1 << 20
PAGE = 4096
BALLOON_FEATURES = FEATURES_BY_NAME["MUST_TELL_HOST"] | FEATURES_BY_NAME["STATS_VQ"]
RECLAIM_CACHE_FIRST = 1 << VIRTIO_BALLOON_F_RECLAIM_CACHE_FIRST


@dataclass(frozen=True)
class Policy:
    name: str
    what: str
    cmdline: str = ""
    cache: str = "writeback"
    exclusive_host: bool = False
    balloon_hint: str = None


POLICIES = (
    Policy("linux", "plain Linux 2.6.35 reclaim (the baseline)"),
    Policy("cache=none", "no host page cache at all (Chinner's question)", cache="none"),
    Policy("unmapped", "unmapped_page_control: kswapd trims unmapped cache (the 2010 series)",
           cmdline="unmapped_page_control"),
    Policy("shrink_list", "the same bias inside shrink_page_list (Morton's review)",
           cmdline="unmapped_page_control=shrink_list"),
    Policy("cache-first", "balloon pages taken from unmapped cache first, by host hint (patch 2/2, v3)",
           balloon_hint="cache"),
    Policy("dedup", "the guest drops pages the host also caches first (our host cache query)",
           cmdline="pagecache_dedup"),
    Policy("exclusive", "the host forgets what exactly one guest read (DEMOTE)", exclusive_host=True),
)

WORKLOADS = {
    "stream": ("a streaming read of a 64 MiB file", ["/bin/seqread", "/data/stream.bin"]),
    "hotset": ("skewed random reads (Zipf 1.1) over 32 MiB", ["/bin/randread", "/data/random.bin", "{reads}",
                                                              "--zipf", "1.1"]),
    "mapped": ("a 16 MiB file read through mmap, 3 passes", ["/bin/mmapread", "/data/mapped.bin", "3"]),
    "mixed": ("the mixed workload: read a source tree, compute, write objects", ["/bin/mixed", "/src"]),
}


@dataclass(frozen=True)
class DemoConfig:
    mem_mib: int = 192
    sweep: tuple = (0, 64, 128)           # balloon sizes (MiB) the host steps through
    workloads: tuple = tuple(WORKLOADS)
    policies: tuple = tuple(p.name for p in POLICIES)
    host_cache_mib: int = 48              # the host page cache's share of host memory
    reads: int = 20000                    # randread calls per run
    sample_s: float = 0.02                # oracle samples, in guest seconds

    @classmethod
    def quick(cls) -> "DemoConfig":
        return cls(mem_mib=128, sweep=(0, 80), workloads=("stream", "hotset"), host_cache_mib=32, reads=4000)


@dataclass
class Cell:
    policy: str
    workload: str
    runtime_ns: int = 0
    disk_reads_pages: int = 0
    host_hits_pages: int = 0
    majfaults: int = 0
    duplicated_pages: int = 0
    estimated_duplicated_pages: int = 0
    host_memory_pages: int = 0
    guest_cached_pages: int = 0
    guest_free_pages: int = 0
    balloon_reached: bool = True
    failures: list = field(default_factory=list)
    series: list = field(default_factory=list)   # (virtual_ns, host MiB, duplicated MiB, guest Cached MiB)


def host_memory_pages(session, host) -> int:
    """What the host spends on this guest: the guest frames it really holds (touched and not
    given back, by mincore), plus the host page cache."""
    return session.machine.ram.resident_pages() + host.cache.nr_pages


def run_cell(policy: Policy, workload: str, config: DemoConfig, root: str) -> Cell:
    cell = Cell(policy.name, workload)
    argv = [a.format(reads=config.reads) for a in WORKLOADS[workload][1]]
    features = BALLOON_FEATURES | (RECLAIM_CACHE_FIRST if policy.balloon_hint else 0)
    spec = MachineSpec(mem=config.mem_mib * MiB, cmdline=policy.cmdline, root=root, cache=policy.cache,
                       balloon_features=features)
    with Host(cache_capacity=config.host_cache_mib * 256, exclusive_cache=policy.exclusive_host) as host:
        session = boot(spec, host=host)
        try:
            m = session.machine
            backend = m.disks[0][1]

            def sample():
                report = oracle.duplication(host, [m])
                meminfo = m.kernel.meminfo()
                cell.series.append((m.clock.now_ns(), host_memory_pages(session, host) * PAGE / MiB,
                                    report["duplicated_pages"] * PAGE / MiB, meminfo["Cached"] / 1024))
            session.add_sampler(sample, config.sample_s)
            for balloon_mib in config.sweep:
                if balloon_mib:
                    m.balloon.set_target_pages(balloon_mib * 256, hint=policy.balloon_hint)
                    if not session.wait_balloon(timeout_s=10):
                        cell.balloon_reached = False
                start = m.clock.now_ns()
                result = session.run(argv, timeout_s=600)
                cell.runtime_ns += m.clock.now_ns() - start
                if result.exit_code != 0:
                    cell.failures.append(f"{argv[0]} at balloon {balloon_mib} MiB: exit {result.exit_code}")
            sample()
            report = oracle.duplication(host, [m])["vms"][m.vm_id]
            meminfo, vmstat = m.kernel.meminfo(), m.kernel.vmstat_snapshot()
            stats = backend.stats
            cell.disk_reads_pages = stats.host_misses if backend.mode.host_cache else stats.bytes_read // PAGE
            cell.host_hits_pages = stats.host_hits
            cell.majfaults = vmstat["pgmajfault"]
            cell.duplicated_pages = report["duplicated_pages"]
            cell.estimated_duplicated_pages = report["estimated_duplicated_pages"]
            cell.host_memory_pages = host_memory_pages(session, host)
            cell.guest_cached_pages = meminfo["Cached"] // 4
            cell.guest_free_pages = meminfo["MemFree"] // 4
        finally:
            session.close()
    return cell


def run_demo(config: DemoConfig, progress=None) -> list:
    """Every policy on every workload; progress(cell_done, total, label) after each."""
    unknown = [w for w in config.workloads if w not in WORKLOADS]
    if unknown:
        raise BallastError(f"unknown workload {unknown[0]!r} (one of {', '.join(WORKLOADS)})")
    policies = {p.name: p for p in POLICIES}
    unknown = [p for p in config.policies if p not in policies]
    if unknown:
        raise BallastError(f"unknown policy {unknown[0]!r} (one of {', '.join(policies)})")
    if max(config.sweep) >= config.mem_mib:
        raise BallastError(f"a balloon of {max(config.sweep)} MiB does not fit a {config.mem_mib} MiB guest")
    root = root_image("builtin")
    cells = []
    total = len(config.policies) * len(config.workloads)
    for workload in config.workloads:
        for name in config.policies:
            if progress is not None:
                progress(len(cells), total, f"{workload} / {name}")
            cells.append(run_cell(policies[name], workload, config, root))
    if progress is not None:
        progress(total, total, "done")
    return cells


COLUMNS = (
    ("policy", "policy"), ("workload", "workload"),
    ("host MiB", "host memory at the end: guest frames the host holds + host page cache"),
    ("dup MiB", "pages both caches hold (the oracle, exact)"),
    ("host est. MiB", "what the host would guess from its per-VM cache stat"),
    ("guest Cached", "guest Cached at the end (MiB)"),
    ("runtime s", "guest virtual time of the workload runs"),
    ("disk reads MiB", "read from the disk image"),
    ("host hits MiB", "served from the host page cache"),
    ("majflt", "guest major faults"),
    ("balloon", "every balloon target reached"),
)


def _mib(pages: int) -> str:
    return f"{pages * PAGE / MiB:,.1f}"


def cell_row(c: Cell) -> list:
    mib = _mib
    return [c.policy, c.workload, mib(c.host_memory_pages), mib(c.duplicated_pages),
            mib(c.estimated_duplicated_pages), mib(c.guest_cached_pages), f"{c.runtime_ns / 1e9:.3f}",
            mib(c.disk_reads_pages), mib(c.host_hits_pages), str(c.majfaults),
            ("yes" if c.balloon_reached else "no") + ("" if not c.failures else " (failed)")]


def render_table(cells, config: DemoConfig):
    from rich.table import Table
    table = Table(title=f"Ballast demo: {config.mem_mib} MiB guest, {config.host_cache_mib} MiB host page cache, "
                        f"balloon sweep {' -> '.join(str(s) for s in config.sweep)} MiB", title_justify="left")
    for name, _ in COLUMNS:
        table.add_column(name, justify="left" if name in ("policy", "workload", "balloon") else "right")
    previous = None
    for c in cells:
        if previous is not None and c.workload != previous:
            table.add_section()
        previous = c.workload
        table.add_row(*cell_row(c))
    return table


def write_json(cells, config: DemoConfig, path: str) -> None:
    out = {"config": {"mem_mib": config.mem_mib, "host_cache_mib": config.host_cache_mib,
                      "sweep_mib": list(config.sweep), "workloads": list(config.workloads),
                      "policies": list(config.policies)},
           "policies": {p.name: p.what for p in POLICIES if p.name in config.policies},
           "cells": [{k: v for k, v in vars(c).items()} for c in cells]}
    text = json.dumps(out, indent=1)
    if path == "-":
        print(text)
    else:
        with open(path, "w") as f:
            f.write(text + "\n")


def write_png(cells, config: DemoConfig, path: str) -> None:
    """Host memory and duplicated memory over guest time, one panel per workload, one line per policy."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    workloads = list(dict.fromkeys(c.workload for c in cells))
    fig, axes = plt.subplots(2, len(workloads), figsize=(5.5 * len(workloads), 7), squeeze=False, sharex="col")
    for col, workload in enumerate(workloads):
        top, bottom = axes[0][col], axes[1][col]
        for c in (c for c in cells if c.workload == workload):
            t = [s[0] / 1e9 for s in c.series]
            top.plot(t, [s[1] for s in c.series], label=c.policy, linewidth=1.2)
            bottom.plot(t, [s[2] for s in c.series], label=c.policy, linewidth=1.2)
        top.set_title(f"{workload}: host memory (guest frames + host cache)")
        top.set_ylabel("MiB")
        bottom.set_title(f"{workload}: pages both caches hold")
        bottom.set_ylabel("MiB")
        bottom.set_xlabel("guest time (s)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
