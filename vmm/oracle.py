"""The oracle: read-only measurements that look at host and guest at once.

It never changes behaviour; everything else keeps to its side of the hardware
interface."""
import dataclasses

from .memory import process_rss_bytes


def run_metrics(machine, program: str) -> dict:
    kernel = machine.kernel
    status = machine.exit_status
    out = {
        "program": program,
        "exit": decode_wait_status(status),
        "instructions": machine.cpu.icount,
        "virtual_ns": machine.clock.now_ns(),
        "wall_s": round(machine.wall_s, 6),
        "vcpu": {"exits": machine.cpu.exits, **machine.cpu.native.counters()},
        "host": {"rss_bytes": process_rss_bytes(), "guest_ram_bytes": machine.ram.size},
        "console_bytes": len(machine.console_output),
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


TRACE_FIELDS = ("virtual_ns", "pfn", "kind", "mapped", "referenced", "flags", "decision", "reason", "by")


def write_reclaim_trace(machine, path: str) -> int:
    """The guest's reclaim trace as JSON lines; returns how many decisions."""
    import json
    records = list(machine.kernel.reclaim_trace or ())
    with open(path, "w") as f:
        for record in records:
            f.write(json.dumps(dict(zip(TRACE_FIELDS, record))) + "\n")
    return len(records)
