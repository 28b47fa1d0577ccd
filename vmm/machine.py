"""A machine: RAM, vCPU, clock, serial console, an MMIO window; and booting the guest kernel.

The VMM is also the boot loader: it packs the program into an initramfs, writes
the zero page (command line, memory map, initrd) and calls the kernel's entry."""
import os
import time
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

from . import loading_modules, machine_built

with loading_modules():
    from guestos.fs.cpio import S_IFREG, pack_newc
    from guestos.kernel.bootparam import E820_RAM, E820_RESERVED, ZERO_PAGE_PADDR, build_boot_params
    from guestos.kernel.main import start_kernel

    from devices.host import Host
    from devices.virtio_balloon import VirtioBalloon
    from devices.virtio_blk import VirtioBlk
    from devices.virtio_mmio import VirtioMmioTransport

    from . import oracle
    from .clock import CostModel, VirtualClock
    from .cpu import Vcpu
    from .errors import BallastError, MachineStopped
    from .hardware import Hardware
    from .hostinput import check_disk_count, disk_name, kernel_cmdline, regular_file
    from .memory import PAGE_SIZE, GuestRAM
    from .serial import COM1, COM2, Serial16550

MMIO_BASE = 0xD000_0000
MMIO_SIZE = 0x1000_0000
MIN_MEM = 16 << 20
MAX_MEM = MMIO_BASE          # RAM sits below the MMIO window
CMDLINE_PADDR = 0x2000
CMDLINE_MAX = 0x1000
DEBUG_EXIT_PORT = 0x501
DEBUGCON_PORT = 0xE9         # QEMU's isa-debugcon: reads back 0xe9 when present; takes no virtual time
VIRTIO_SLOT_SIZE = 0x1000
VIRTIO_FIRST_IRQ = 5
COM2_IRQ = 3
CACHE_MODES = ("writeback", "none", "writethrough", "directsync", "unsafe")


@dataclass
class DiskConfig:
    """One virtio-blk disk: `IMG[,cache=MODE][,ro][,profile=NAME]` on the command line."""
    path: str
    cache: str = "writeback"
    read_only: bool = False
    profile: str = "nvme"
    snapshot: bool = False        # writes go to a private overlay; the image is never changed


def root_disk(image: str, cache: str = "writeback", read_only: bool = False, writable: bool = False) -> DiskConfig:
    """A root disk as Ballast attaches one: a private snapshot (runs never change the image) unless it is
    read-only (guests on one host then share its host cache) or writable (`ballast run --root IMG`)."""
    return DiskConfig(image, cache=cache, read_only=read_only, snapshot=not (read_only or writable))


@dataclass
class MachineConfig:
    """What a machine is made of: memory, command line, cost model, disks and the balloon."""
    mem: int = 256 << 20
    cmdline: str = ""
    costs: CostModel = field(default_factory=CostModel)
    disks: list = field(default_factory=list)
    balloon_features: int = None       # a virtio-balloon device with these features (None: no balloon)
    balloon_stats_interval_s: float = 0
    balloon_service_delay_ns: int = 0  # the host serves inflate/deflate buffers this late
    on_violation: str = "record"       # a guest touching a frame in the balloon: "record" or "stop"


class BalloonViolation(NamedTuple):
    """A guest access to a frame the host took back (it was in the balloon)."""
    pfn: int
    address: int                       # the virtual page the guest touched
    access: str                        # read, write or fetch
    rip: int
    instruction: str
    pid: int
    comm: str
    virtual_ns: int


_NO_IRQS = ()
ON_NEW_MACHINE = []                    # fn(machine) for every machine built: `ballast debug` and `watch` attach


def check_mem(mem: int, what: str = "--mem") -> int:
    """The guest's RAM size as the machine can hold it; returns it."""
    if mem < MIN_MEM:
        raise BallastError(f"{what} {mem >> 20}M is too small: a guest needs at least {MIN_MEM >> 20}M")
    if mem > MAX_MEM:
        raise BallastError(f"{what} must be at most {MAX_MEM >> 20}M (RAM lies below the MMIO window)")
    if mem % PAGE_SIZE:
        raise BallastError(f"{what} must be a multiple of 4K")
    return mem


class Machine:
    def __init__(self, config: MachineConfig, console_sink=None, host: Host = None, debugcon_sink=None):
        machine_built()
        check_mem(config.mem)
        kernel_cmdline(config.cmdline, config.mem, "cmdline")
        check_disk_count(len(config.disks), "disks")
        self.config = config
        self.ram = GuestRAM(config.mem)
        self.clock = VirtualClock(config.costs)
        self._vm_exit_ns = int(self.clock.costs.vm_exit_ns)
        self.cpu = Vcpu(self.ram, self.clock)
        self.console_output = bytearray()
        self._sink = console_sink
        self._debugcon = debugcon_sink    # bytes the guest writes to port 0xe9 (its strace)
        self.serial = Serial16550(self._console_write, COM1)
        self.agent_output = bytearray()   # what the guest wrote on COM2 (the agent's channel)
        self.serial2 = Serial16550(self.agent_output.extend, COM2, lambda: self.raise_irq(COM2_IRQ))
        self.controller = None            # a host session that takes over when the guest idles
        self.mmio_devices = []        # (base, size, device) in the MMIO window
        self._mmio_hits = {}          # address -> (base, device), filled by lookups
        self.exit_status = None
        self.irq_pending = set()      # interrupt lines raised and not yet taken by the kernel
        self.hw = Hardware(self)
        self.wall_s = 0.0
        self.own_host = host is None
        self.host = host if host is not None else Host()
        self.vm_id = self.host.new_vm_id()
        self.virtio = []              # (base, irq, transport, device)
        self.disks = []               # (DiskConfig, BlockBackend, VirtioBlk)
        for disk in config.disks:
            self.add_disk(disk)
        if config.on_violation not in ("record", "stop"):
            raise BallastError(f"on_violation must be 'record' or 'stop', not '{config.on_violation}'")
        self.violations = []
        self.stop_reason = None
        self.cpu.on_backing_violation = self._backing_violation
        self._debugger = None
        self.balloon = None
        if config.balloon_features is not None:
            self.balloon = VirtioBalloon(self.ram, self.clock, features=config.balloon_features,
                                         stats_interval_s=config.balloon_stats_interval_s,
                                         service_delay_ns=config.balloon_service_delay_ns)
            self.add_virtio_device(self.balloon)
        for hook in ON_NEW_MACHINE:
            hook(self)

    # --- debugging ---
    @property
    def debugger(self):
        """The guest kernel's debugger (vmm/debugger.py), attached on first use."""
        if self._debugger is None:
            from .debugger import Debugger
            self._debugger = Debugger()
            self._debugger.attach(self)
        return self._debugger

    @debugger.setter
    def debugger(self, debugger) -> None:
        self._debugger = debugger
        debugger.attach(self)


    # --- devices ---
    def add_virtio_device(self, device) -> VirtioMmioTransport:
        slot = len(self.virtio)
        base = MMIO_BASE + slot * VIRTIO_SLOT_SIZE
        irq = VIRTIO_FIRST_IRQ + slot
        transport = VirtioMmioTransport(device, self.ram, partial(self.raise_irq, irq))
        self.mmio_devices.append((base, VIRTIO_SLOT_SIZE, transport))
        self.virtio.append((base, irq, transport, device))
        return transport

    def add_disk(self, disk: DiskConfig) -> None:
        if disk.cache not in CACHE_MODES:
            raise BallastError(f"{disk.path}: unknown cache mode '{disk.cache}' (one of {', '.join(CACHE_MODES)})")
        if os.path.lexists(disk.path):      # a missing image: block_backend says so
            regular_file(disk.path, "--disk")
        try:
            backend = self.host.block_backend(disk.path, disk.cache, self.vm_id, disk.read_only, disk.profile,
                                              serial=f"ballast-{disk_name(len(self.disks))}".encode(),
                                              snapshot=disk.snapshot)
        except (OSError, ValueError) as e:
            raise BallastError(f"--disk {disk.path}: {getattr(e, 'strerror', None) or e}") from None
        device = VirtioBlk(backend, self.clock)
        self.add_virtio_device(device)
        self.disks.append((disk, backend, device))

    def _console_write(self, data: bytes) -> None:
        self.console_output += data
        if self._sink is not None:
            self._sink(data)

    # --- interrupts ---
    def raise_irq(self, line: int) -> None:
        self.irq_pending.add(line)

    def take_pending_irqs(self) -> list:
        if not self.irq_pending:               # the common case: the kernel looks more often than lines rise
            return _NO_IRQS
        lines = sorted(self.irq_pending)
        self.irq_pending.clear()
        return lines

    def arm_timer(self, delay_ns: int, line: int = 0) -> None:
        """A one-shot timer (the local APIC's): raises `line` after delay_ns of virtual time."""
        self.clock.schedule(delay_ns, lambda: self.raise_irq(line))

    def idle(self) -> bool:
        """hlt with interrupts on: jump the clock to the next event. False if none will come.
        With a host session attached, the host gets its turn here first."""
        if self.controller is not None:
            return self.controller.guest_idle()
        return self.clock.idle_until_next_event()

    def _backing_violation(self, pfn: int, address: int, rip: int, access: str) -> bool:
        """The guest touched a frame the host does not back: record it; in record mode the host
        backs the frame again (as anonymous memory is on touch) and the guest goes on."""
        pid, comm = oracle.current_process(self)
        violation = BalloonViolation(pfn, address, access, rip, self.cpu.instruction_at(rip), pid, comm,
                                     self.clock.now_ns())
        self.violations.append(violation)
        if self.config.on_violation == "stop":
            self.stop_reason = f"balloon violation: {comm}[{pid}] {access} of frame {pfn:#x} at {address:#x} " \
                               f"by {violation.instruction} at {rip:#x}"
            raise MachineStopped(self.stop_reason)
        self.ram.reback(pfn)
        return True

    def stop_at(self, virtual_ns: int, reason: str) -> None:
        """Stop the machine when the guest clock reaches virtual_ns (`ballast run --timeout`): an
        event like a timer's, so an idle guest is woken for it and a busy one preempted."""
        def stop():
            self.stop_reason = reason
            raise MachineStopped(reason)
        self.clock.schedule_at(virtual_ns, stop)

    # --- buses ---
    def port_in(self, port: int) -> int:
        if self.serial.owns(port):
            return self.serial.port_in(port)
        if self.serial2.owns(port):
            self.clock.charge(self.clock.costs.vm_exit_ns)
            return self.serial2.port_in(port)
        if port == DEBUGCON_PORT and self._debugcon is not None:
            return DEBUGCON_PORT
        return 0xFF                    # nothing there: the bus floats high

    def port_out(self, port: int, value: int) -> None:
        self.clock.charge(self.clock.costs.vm_exit_ns)
        if self.serial.owns(port):
            self.serial.port_out(port, value)
        elif self.serial2.owns(port):
            self.serial2.port_out(port, value)
        elif port == DEBUG_EXIT_PORT:
            self.exit_status = value

    def port_out_string(self, port: int, data: bytes) -> None:
        if port == DEBUGCON_PORT and self._debugcon is not None:
            self._debugcon(data)       # free, so that tracing a run does not change it
            return
        self.clock.charge(self.clock.costs.vm_exit_ns)
        if self.serial.owns(port):
            self.serial.write_bytes(data)
        elif self.serial2.owns(port):
            self.serial2.write_bytes(data)
        else:
            for b in data:
                self.port_out(port, b)

    def _mmio_device(self, addr: int):
        hit = self._mmio_hits.get(addr)
        if hit is not None:
            return hit
        for base, size, dev in self.mmio_devices:
            if base <= addr < base + size:
                self._mmio_hits[addr] = base, dev   # devices are only ever added, never moved
                return base, dev
        return None, None

    def mmio_read(self, addr: int, size: int) -> int:
        self.clock.charged_ns += self._vm_exit_ns       # clock.charge(vm_exit_ns), inline: per access
        base, dev = self._mmio_hits.get(addr) or self._mmio_device(addr)
        return dev.mmio_read(addr - base, size) if dev else (1 << (8 * size)) - 1

    def mmio_write(self, addr: int, size: int, value: int) -> None:
        self.clock.charged_ns += self._vm_exit_ns
        base, dev = self._mmio_hits.get(addr) or self._mmio_device(addr)
        if dev:
            dev.mmio_write(addr - base, size, value)

    # --- boot ---
    def load(self, program, guest_path: str, args: list[str], root_device: str = None,
             initramfs: dict = None) -> None:
        """Place the initramfs and the zero page, as a boot loader does. With a root device,
        init is a path on it and the initramfs is empty (program None). `initramfs` adds
        files ({guest path: bytes}), executable."""
        files = [] if program is None else [(guest_path.lstrip("/"), S_IFREG | 0o755, program)]
        files += [(path.lstrip("/"), S_IFREG | 0o755, data) for path, data in (initramfs or {}).items()]
        archive = pack_newc(files)
        initrd_paddr = (self.ram.size - len(archive)) & ~(PAGE_SIZE - 1)
        initrd_paddr -= PAGE_SIZE * 16      # leave the top pages to the kernel
        if initrd_paddr < (4 << 20) + self.ram.size // 64:
            raise BallastError(f"the program ({len(archive) >> 10}K) does not fit in {self.ram.size >> 20}M of RAM")
        self.ram.write(initrd_paddr, archive)
        devices = " ".join(f"virtio_mmio.device=4K@{base:#x}:{irq}" for base, irq, _, _ in self.virtio)
        root = f"root={root_device}" if root_device else ""
        # init= quoted: a program's name may hold spaces or quotes
        cmdline = " ".join(w for w in ("console=ttyS0", devices, root, f"init={_quote(guest_path)}", self.config.cmdline)
                           if w)
        if args:
            cmdline += " -- " + " ".join(_quote(a) for a in args)
        raw = cmdline.encode()
        if len(raw) >= CMDLINE_MAX:
            raise BallastError(f"kernel command line too long ({len(raw)} bytes, at most {CMDLINE_MAX - 1})")
        self.ram.write(CMDLINE_PADDR, raw + b"\0")
        e820 = [dict(addr=0, size=0x9F000, type=E820_RAM), dict(addr=0x9F000, size=0x61000, type=E820_RESERVED),
                dict(addr=0x100000, size=self.ram.size - 0x100000, type=E820_RAM)]
        zero_page = build_boot_params(e820, cmdline_paddr=CMDLINE_PADDR, cmdline_size=len(raw),
                                      initrd_paddr=initrd_paddr, initrd_size=len(archive))
        self.ram.write(ZERO_PAGE_PADDR, zero_page)

    def boot(self) -> int:
        """Run the kernel until it powers off; returns init's wait status."""
        start = time.perf_counter()
        try:
            status = start_kernel(self.hw)
        except MachineStopped:
            status = None
        finally:
            self.wall_s = time.perf_counter() - start
        self.exit_status = status
        return status

    @property
    def kernel(self):
        return self.hw.kernel

    def add_trace_sink(self, sink) -> None:
        """sink(event) gets every kernel tracepoint event (guestos/kernel/tracepoint.py) from now on,
        or from the kernel's start when it has not booted yet. Sinks only look."""
        if self.kernel is not None:
            from guestos.kernel import tracepoint
            tracepoint.enable(self.kernel).subscribe(sink)
        else:
            self.hw.trace_sinks.append(sink)

    def close(self) -> None:
        """Power off cleanly: disks are closed as their cache mode says; a private host is shut down."""
        for _, backend, _ in self.disks:
            backend.close()
        if self.own_host:
            self.host.close()
        self.cpu.close()


def _quote(arg: str) -> str:
    if arg and not any(c.isspace() or c in '"\\\'' for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
