"""The oracle: read-only measurements that look at host and guest at once.

It never changes behaviour; everything else keeps to its side of the hardware
interface."""
import dataclasses

from guestos.mm.mm_types import PG_dirty

from .memory import process_rss_bytes


def cpu_times(machine) -> dict:
    """The CPU's time split (user: retired instructions; system: charged kernel costs; idle), which
    adds up to the virtual clock, and each live task's and kernel thread's share, as /proc shows it."""
    from guestos.fs.proc import cpu_times_ns
    kernel = machine.kernel
    if kernel is None or getattr(kernel, "scheduler", None) is None:
        return {}
    sched = kernel.scheduler
    sched.account()                     # system time up to now (accounting only: nothing runs)
    user, system, idle = cpu_times_ns(kernel)
    costs = kernel.costs

    def utime(t):
        return int(t.instructions * costs.cpi / costs.cpu_ghz)
    tasks = sorted(list(kernel.tasks.values()) + sched.kthreads, key=lambda t: t.pid)
    return {"user_ns": user, "system_ns": system, "idle_ns": idle,
            "tasks": [{"pid": t.pid, "comm": t.comm, "kthread": t.kthread, "utime_ns": utime(t),
                       "stime_ns": t.stime_ns, "cutime_ns": int(t.cinstructions * costs.cpi / costs.cpu_ghz),
                       "cstime_ns": t.cstime_ns} for t in [sched.swapper] + tasks]}


def run_metrics(machine, program: str) -> dict:
    kernel = machine.kernel
    status = machine.exit_status
    out = {
        "program": program,
        # a machine the VMM stopped (a timeout) has no exit status, only the reason
        "exit": decode_wait_status(status) if status is not None else {"stopped": machine.stop_reason},
        "instructions": machine.cpu.icount,
        "virtual_ns": machine.clock.now_ns(),
        "wall_s": round(machine.wall_s, 6),
        "vcpu": {"exits": machine.cpu.exits, **machine.cpu.native.counters()},
        "host": {"rss_bytes": process_rss_bytes(), "guest_ram_bytes": machine.ram.size},
        "console_bytes": len(machine.console_output),
        "cpu": cpu_times(machine),
    }
    if machine.disks:
        cache = machine.host.cache
        out["host"]["cache"] = {name: getattr(cache, name) for name in (
            "hits", "misses", "disk_reads_pages", "disk_writes_pages", "evictions", "nr_pages", "nr_dirty",
            "nr_active", "nr_inactive", "capacity_pages")}
        out["host"]["cache"]["vm_usage_pages"] = cache.usage_pages(machine.vm_id)
        out["disks"] = []
        for (disk, backend, device), (base, irq, transport, _) in zip(machine.disks, machine.virtio):
            out["disks"].append({"path": disk.path, "cache": disk.cache, "read_only": backend.read_only,
                                 "backend": _as_dict(backend.stats), "device": _as_dict(device.counters),
                                 "transport": _as_dict(transport.counters)})
    if kernel is not None:
        vmstat = kernel.vmstat_snapshot()
        out["page_faults"] = vmstat["pgfault"]
        out["guest"] = {"meminfo_kb": kernel.meminfo(), "vmstat": vmstat,
                        "unknown_syscalls": {str(k): v for k, v in sorted(kernel.unknown_syscalls.items())}}
        if kernel.last_fatal:
            signame, what, rip, insn = kernel.last_fatal
            out["fatal"] = {"signal": signame, "what": what, "rip": rip, "instruction": insn}
    return out


def current_process(machine) -> tuple:
    """(pid, comm) of the task on the guest's CPU, (0, "") before there is one."""
    kernel = machine.kernel
    task = getattr(getattr(kernel, "scheduler", None), "current", None)
    return (task.pid, task.comm) if task is not None else (0, "")


def _as_dict(counters) -> dict:
    """Counters of any shape (dataclass, dict, object) as JSON-ready plain data."""
    if dataclasses.is_dataclass(counters):
        counters = {f.name: getattr(counters, f.name) for f in dataclasses.fields(counters)}
    elif not isinstance(counters, dict):
        counters = {k: v for k, v in vars(counters).items() if not k.startswith("_")}
    return {_key(k): _as_dict(v) if isinstance(v, dict) else v for k, v in counters.items()}


def _key(key) -> str:
    return "/".join(map(str, key)) if isinstance(key, tuple) else str(key)


def decode_wait_status(status: int) -> dict:
    """A wait status as the shell sees it: the exit code, or 128 + the signal."""
    if status & 0x7F:
        sig = status & 0x7F
        return {"signaled": True, "signal": sig, "core_dumped": bool(status & 0x80), "code": 128 + sig}
    return {"signaled": False, "code": (status >> 8) & 0xFF}


def init_wait_status(machine) -> int:
    return machine.exit_status


# --- double caching: which guest page-cache pages the host caches too ---

def _disk_keys(machine) -> dict:
    """The guest's block device objects -> the host image key behind each (vda is the first disk)."""
    kernel = machine.kernel
    return {id(blk): backend.image.key
            for blk, (_, backend, _) in zip(kernel.block_devices.values(), machine.disks)}


def _mapping_name(kernel, mapping) -> str:
    """A readable name for an address space: the file's path if the VFS knows it, else its inode."""
    vfs = kernel.vfs
    if mapping.unevictable_metadata:
        return "(metadata)"
    ino = mapping.mapping_id >> 1
    names = getattr(vfs, "names", None) or {}
    return names.get(ino, f"inode {ino}")


def guest_disk_pages(machine) -> dict:
    """{host image key: {disk page index: [(mapping name, pfn)]}} of the guest's clean page-cache
    pages that hold a disk page (a dirty page is newer than any copy on the host)."""
    kernel = machine.kernel
    keys = _disk_keys(machine)
    mem_map = kernel.mem_map
    out = {}
    for mapping in list(kernel.address_spaces.values()):
        key = keys.get(id(mapping.blk))
        if key is None:
            continue
        name = _mapping_name(kernel, mapping)
        pages = out.setdefault(key, {})
        for pfn in mapping.pages.values():
            sector = mem_map.disk_sector(pfn)
            if sector is None or mem_map.test(pfn, PG_dirty):
                continue
            pages.setdefault(sector >> 3, []).append((name, pfn))
    return out


def duplicated_pages(host, machines) -> int:
    """duplication()'s total alone (guest page-cache pages whose disk page the host caches too), counted
    over arrays of struct pages instead of page by page in Python: the time series takes one every
    interval, and a 2 GiB guest caches hundreds of thousands of pages."""
    import numpy as np
    cache = host.cache
    total = 0
    for machine in machines:
        kernel = machine.kernel
        keys = _disk_keys(machine)
        words = np.frombuffer(kernel.mem_map.q, dtype=np.uint64).reshape(-1, 8)
        per_key = {}
        for mapping in list(kernel.address_spaces.values()):
            key = keys.get(id(mapping.blk))
            if key is not None and mapping.pages:
                per_key.setdefault(key, []).append(
                    np.fromiter(mapping.pages.values(), dtype=np.int64, count=len(mapping.pages)))
        for key, parts in per_key.items():
            pfns = np.concatenate(parts)
            sector = words[pfns, 6]                       # disk sector + 1, 0: none (as disk_sector)
            clean = ((words[pfns, 0] >> np.uint64(PG_dirty)) & np.uint64(1)) == 0
            index = (sector[(sector != 0) & clean] - np.uint64(1)) >> np.uint64(3)
            cached = cache.pages_of(key)
            if cached and index.size:
                total += int(np.isin(index, np.fromiter(cached, dtype=np.uint64, count=len(cached))).sum())
    return total


def duplication(host, machines) -> dict:
    """Exactly which guest page-cache pages hold the same disk page as a host page-cache page: per
    VM, per file and in total; how many host pages several guests hold; and beside it the estimate
    a host can make from its per-VM cache stat alone (as the 2010 experiments did)."""
    cache = host.cache
    host_pages = {}
    report = {"vms": {}, "duplicated_pages": 0, "host_cache_pages": cache.nr_pages}
    holders = {}                                   # (key, index) -> VMs holding it
    for machine in machines:
        per_file = {}
        guest_pages = duplicated = 0
        for key, pages in guest_disk_pages(machine).items():
            if key not in host_pages:
                host_pages[key] = cache.pages_of(key)
            cached = host_pages[key]
            for index, holders_here in pages.items():
                guest_pages += len(holders_here)
                if index in cached:
                    duplicated += len(holders_here)
                    holders.setdefault((key, index), set()).add(machine.vm_id)
                    for name, _ in holders_here:
                        per_file[name] = per_file.get(name, 0) + 1
        meminfo = machine.kernel.meminfo()
        guest_cached = (meminfo["Cached"] + meminfo["Buffers"]) // 4
        host_charge = cache.usage_pages(machine.vm_id)
        report["vms"][machine.vm_id] = {
            "guest_disk_pages": guest_pages, "duplicated_pages": duplicated,
            "files": dict(sorted(per_file.items(), key=lambda kv: (-kv[1], kv[0]))),
            "guest_cached_pages": guest_cached, "host_charged_pages": host_charge,
            # what a host sees without looking inside: a VM's cache charge overlaps its guest's Cached
            "estimated_duplicated_pages": min(guest_cached, host_charge)}
        report["duplicated_pages"] += duplicated
    report["host_pages_in_several_guests"] = sum(1 for vms in holders.values() if len(vms) > 1)
    report["host_pages_duplicated"] = len(holders)
    return report
