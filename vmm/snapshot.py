"""What a snapshot records: guest memory (/proc/meminfo, /proc/vmstat), the balloon and its
statistics, the policy counters, the host (RSS, page cache, the oracle's duplication) and time.
Everything except the host's RSS and wall time comes from the virtual machine."""
import copy

from devices.virtio_balloon import FEATURES_BY_NAME

from . import oracle
from .memory import process_rss_bytes
from .units import PAGE_SIZE

STATS_TIMEOUT_S = 5                  # guest seconds to wait for fresh balloon statistics
POLICY_COUNTERS = ("unmapped_wakeups", "unmapped_balance_runs", "pgscan_unmapped", "pgsteal_unmapped",
                   "balloon_cache_first_calls", "pgsteal_cache_first", "host_cache_queries", "pgsteal_dedup")
ORACLE_KEYS = ("duplicated_pages", "estimated_duplicated_pages", "files")


def machine_part(session) -> dict:
    """What a snapshot records of one guest; with STATS_VQ it asks the driver for fresh statistics."""
    balloon = session.machine.balloon
    ballooned = {}
    if balloon is not None:
        with_stats = balloon.features & FEATURES_BY_NAME["STATS_VQ"]
        stats = session.balloon_stats(STATS_TIMEOUT_S) if with_stats else {}
        ballooned = {"target_pages": balloon.target_pages, "actual_pages": balloon.actual_pages,
                     "stats": dict(stats)}
    vmstat = dict(session.vmstat())
    kernel = session.machine.kernel
    policy = {"unmapped_page_control": kernel.unmapped_policy, "pagecache_dedup": kernel.pagecache_dedup,
              **{name: vmstat[name] for name in POLICY_COUNTERS}}
    cpu = oracle.cpu_times(session.machine)
    out = {"guest": dict(session.meminfo()), "vmstat": vmstat, "balloon": ballooned, "policy": policy,
           "ram": {"resident_pages": session.machine.ram.resident_pages()},   # frames the host holds (mincore)
           "cpu": {name: cpu[name] for name in ("user_ns", "system_ns", "idle_ns")} if cpu else {}}
    if session.machine.disks:
        backend = session.machine.disks[0][1]
        stats = backend.stats
        # pages the root disk read from its image (a miss of the host cache, or every read without one)
        reads = stats.host_misses if backend.mode.host_cache else stats.bytes_read // PAGE_SIZE
        out["disk"] = {"reads_pages": reads, "host_hits_pages": stats.host_hits}
    return out


def host_part(sessions: dict, host) -> tuple:
    """The host's side, and the oracle's duplication report for every guest on it."""
    cache = host.cache
    report = oracle.duplication(host, [s.machine for s in sessions.values()])
    return {"rss_bytes": process_rss_bytes(), "cache_pages": cache.nr_pages,
            "cache_capacity_pages": cache.capacity_pages, "duplicated_pages": report["duplicated_pages"],
            "pages_in_several_guests": report["host_pages_in_several_guests"],
            "demoted_pages": cache.demoted}, report


def snapshot(session, wall_s: float) -> dict:
    """One guest's snapshot (the format of a single-machine scenario)."""
    out = machine_part(session)
    out["host"], report = host_part({"guest": session}, session.machine.host)
    vm = report["vms"][session.machine.vm_id]
    out["oracle"] = {k: vm[k] for k in ORACLE_KEYS}
    out["time"] = {"virtual_ns": session.virtual_ns(), "wall_s": round(wall_s, 3)}
    return out


def snapshot_all(sessions: dict, host, wall_s: float) -> dict:
    """Every guest of a multi-machine scenario, and the host they share."""
    machines = {}
    host_out, report = host_part(sessions, host)
    for name, session in sessions.items():
        part = machine_part(session)
        vm = report["vms"][session.machine.vm_id]
        part["oracle"] = {k: vm[k] for k in ORACLE_KEYS}
        part["time"] = {"virtual_ns": session.virtual_ns()}
        machines[name] = part
    return {"machines": machines, "host": host_out, "time": {"wall_s": round(wall_s, 3)}}


def without_host_noise(result: dict) -> dict:
    """The result without what depends on the host machine (RSS and wall time): what must repeat."""
    clean = copy.deepcopy(result)
    for snap in clean["snapshots"].values():
        snap["host"].pop("rss_bytes", None)
        snap["time"].pop("wall_s", None)
    return clean
