"""Shared helpers for the Ballast tests: compiling guest programs and booting machines.

Plain functions (imported by test modules); the fixtures that wrap them live in conftest.py."""
import gc
import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware" / "bin"

# the environment the guest kernel gives init (guestos/kernel/main.py: run_init)
GUEST_ENV = {"HOME": "/", "TERM": "linux", "PATH": "/sbin:/bin:/usr/sbin:/usr/bin"}


def firmware(name: str) -> bytes:
    return (FIRMWARE / name).read_bytes()


class Compiler:
    """Compiles C sources once per session into a private directory (cached by content)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.cache = {}

    def __call__(self, source: str, name: str = "prog", cc: str = "gcc", flags=("-static", "-O0")) -> Path:
        if shutil.which(cc) is None:
            pytest.skip(f"{cc} is not on PATH")
        key = hashlib.sha256(repr((source, cc, tuple(flags))).encode()).hexdigest()[:16]
        if key in self.cache:
            return self.cache[key]
        d = self.workdir / key
        d.mkdir(parents=True, exist_ok=True)
        src = d / f"{name}.c"
        src.write_text(source)
        out = d / name
        proc = subprocess.run([cc, *flags, "-o", str(out), str(src)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"{cc} {' '.join(flags)} failed for {name}:\n{proc.stderr}")
        self.cache[key] = out
        return out


@dataclass
class GuestRun:
    status: int                  # init's wait status
    code: int                    # as the shell sees it (128 + signal when killed)
    output: bytes                # everything on the console (program output and printk)
    icount: int
    now_ns: int
    vmstat: dict
    pcp_count: int
    meminfo: dict
    last_fatal: object
    extra: dict = field(default_factory=dict)


def boot(program: bytes, args=(), mem: int = 64 << 20, cmdline: str = "", name: str = "prog",
         console_sink=None, inspect=None) -> GuestRun:
    """Boot a fresh machine with `program` as init and run it to the end.

    `inspect(machine)` may look at the machine after the run; its result lands in GuestRun.extra.
    The machine is dropped afterwards (its RAM is a large anonymous mapping)."""
    from vmm.machine import Machine, MachineConfig
    from vmm.oracle import decode_wait_status

    machine = Machine(MachineConfig(mem=mem, cmdline=cmdline), console_sink=console_sink)
    try:
        machine.load(program, "/bin/" + name, list(args))
        status = machine.boot()
        kernel = machine.kernel
        run = GuestRun(status=status, code=decode_wait_status(status)["code"],
                       output=bytes(machine.console_output), icount=machine.cpu.icount,
                       now_ns=machine.clock.now_ns(), vmstat=kernel.vmstat_snapshot(),
                       pcp_count=kernel.pcp.count, meminfo=kernel.meminfo(), last_fatal=kernel.last_fatal)
        if inspect is not None:
            run.extra = inspect(machine) or {}
        return run
    finally:
        machine.close()
        del machine
        gc.collect()


def console_text(output: bytes) -> str:
    """The program's output: console bytes without the kernel's printk lines."""
    lines = output.decode(errors="replace").splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("["))
