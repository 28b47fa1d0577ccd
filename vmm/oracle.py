"""The oracle: read-only measurements that look at host and guest at once.

It never changes behaviour; everything else keeps to its side of the hardware
interface."""
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
    if kernel is not None:
        vmstat = kernel.vmstat_snapshot()
        out["page_faults"] = vmstat["pgfault"]
        out["guest"] = {"meminfo_kb": kernel.meminfo(), "vmstat": vmstat,
                        "unknown_syscalls": {str(k): v for k, v in sorted(kernel.unknown_syscalls.items())}}
        if kernel.last_fatal:
            signame, what, rip, insn = kernel.last_fatal
            out["fatal"] = {"signal": signame, "what": what, "rip": rip, "instruction": insn}
    return out


def decode_wait_status(status: int) -> dict:
    """A wait status as the shell sees it: the exit code, or 128 + the signal."""
    if status & 0x7F:
        sig = status & 0x7F
        return {"signaled": True, "signal": sig, "core_dumped": bool(status & 0x80), "code": 128 + sig}
    return {"signaled": False, "code": (status >> 8) & 0xFF}


def init_wait_status(machine) -> int:
    return machine.exit_status
