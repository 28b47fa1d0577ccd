"""gdb on guest programs: a GDB remote serial protocol stub (`ballast run --gdb 127.0.0.1:PORT`).

The stub lives on the host side, as QEMU's gdbstub does: it sits in the vCPU's run loop
(Vcpu.debugger), reads registers and the current process's memory through its page tables,
plants int3 for software breakpoints and single-steps with the trap flag. The kernel never
sees a stop: a breakpoint's int3 and the step trap are taken before the guest's trap handler
(traps.py would make them SIGTRAP), and the int3 is not counted as a retired instruction, so a
session that only stops and continues leaves the guest's virtual time exactly as it was.
`monitor` commands are read-only views into the kernel (meminfo, ps, page PFN).

No maintained Python library implements the stub side of the protocol (PyPI has clients and
type stubs), so the packet layer is here: $data#checksum framing, +/- acks, QStartNoAckMode.
"""
import socket
import sys

from .errors import BallastError, MachineStopped

PAGE_SIZE = 4096
PTE_PRESENT, PTE_USER, PTE_PSE = 1, 4, 0x80
PTE_ADDR_MASK = 0x000FFFFFFFFFF000
X86_EFLAGS_TF = 0x100
INT3 = 0xCC
SIGINT, SIGTRAP = 2, 5
TRAP_DEBUG, TRAP_BREAKPOINT = 1, 3          # vectors
PACKET_SIZE = 0x4000
ACK_TIMEOUT_S = 5.0
EFAULT_REPLY = "E14"                         # errno 14, as gdbserver answers an unreadable address

# gdb's i386:x86-64 register numbers and the 'g' packet layout (gdb/features/i386/64bit-core.xml,
# 64bit-sse.xml): 16 GPRs, rip, eflags, six segment selectors, st0-7, the x87 control registers,
# xmm0-15, mxcsr.
GPR_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
SEGMENTS = ("cs", "ss", "ds", "es", "fs", "gs")
X87_CONTROL = ("fpcw", "fpsw", "fptag", None, None, None, None, None)   # fctrl fstat ftag fiseg fioff foseg fooff fop
REGISTERS = ([(n, 8) for n in GPR_NAMES] + [("rip", 8), ("eflags", 4)] + [(s, 4) for s in SEGMENTS]
             + [(f"st{i}", 10) for i in range(8)] + [(c or "", 4) for c in X87_CONTROL]
             + [(f"xmm{i}", 16) for i in range(16)] + [("mxcsr", 4)])
# registers of the amd64-linux description that follow the 'g' packet; answered by 'p' only
EXTRA_REGISTERS = {len(REGISTERS): ("orig_rax", 8), len(REGISTERS) + 1: ("fs_base", 8),
                   len(REGISTERS) + 2: ("gs_base", 8)}
WRITABLE = set(GPR_NAMES) | {"rip", "eflags", "fs_base", "gs_base", "mxcsr"} | {f"xmm{i}" for i in range(16)}

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def parse_address(spec: str) -> tuple:
    """`HOST:PORT` for --gdb: loopback only (the stub reads and writes guest memory for whoever
    connects). Returns (host, port)."""
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise BallastError(f"--gdb {spec}: expected HOST:PORT, e.g. 127.0.0.1:1234 (port 0 picks a free one)")
    if host not in LOOPBACK_NAMES:
        raise BallastError(f"--gdb {spec}: gdb listens on loopback only (127.0.0.1, localhost or [::1])")
    host = {"localhost": "127.0.0.1", "[::1]": "::1"}.get(host, host)
    return host, int(port)


def _checksum(data: bytes) -> bytes:
    return b"%02x" % (sum(data) & 0xFF)


def _hex_le(value: int, size: int) -> str:
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little").hex()


class GdbConnectionLost(Exception):
    pass


class RemoteSerial:
    """The packet layer over one connected socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()
        self.ack = True
        self.interrupted = False              # a 0x03 came while we were reading

    def _fill(self, timeout) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise GdbConnectionLost("gdb did not answer") from None
        except OSError as e:
            raise GdbConnectionLost(str(e)) from None
        if not data:
            raise GdbConnectionLost("gdb closed the connection")
        self.buffer += data

    def poll_interrupt(self) -> bool:
        """While the guest runs: has gdb sent Ctrl-C (0x03)? Never blocks."""
        try:
            data = self.sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            raise GdbConnectionLost(str(e)) from None
        if not data:
            raise GdbConnectionLost("gdb closed the connection")
        self.buffer += data
        if b"\x03" in self.buffer:
            self.buffer = self.buffer.replace(b"\x03", b"", 1)
            return True
        return False

    def read_packet(self, timeout=None) -> str:
        """The next packet's payload (acked), skipping acks; 0x03 sets `interrupted`."""
        while True:
            while self.buffer[:1] in (b"+", b"-", b"\x03"):
                if self.buffer[:1] == b"\x03":
                    self.interrupted = True
                del self.buffer[:1]
            start = self.buffer.find(b"$")
            end = self.buffer.find(b"#", start + 1) if start >= 0 else -1
            if start >= 0 and end >= 0 and len(self.buffer) >= end + 3:
                payload = bytes(self.buffer[start + 1:end])
                sent = bytes(self.buffer[end + 1:end + 3]).lower()
                del self.buffer[:end + 3]
                if self.ack:
                    good = sent == _checksum(payload)
                    self.sock.sendall(b"+" if good else b"-")
                    if not good:
                        continue
                return _unescape(payload).decode("latin-1")
            if start > 0:
                del self.buffer[:start]
            self._fill(timeout)

    def send_packet(self, text: str) -> None:
        data = text.encode("latin-1")
        frame = b"$" + data + b"#" + _checksum(data)
        for _ in range(5):
            try:
                self.sock.sendall(frame)
            except OSError as e:
                raise GdbConnectionLost(str(e)) from None
            if not self.ack:
                return
            while not self.buffer[:1] or self.buffer[:1] == b"\x03":
                if self.buffer[:1] == b"\x03":
                    self.interrupted = True
                    del self.buffer[:1]
                    continue
                self._fill(ACK_TIMEOUT_S)
            answer = self.buffer[:1]
            del self.buffer[:1]
            if answer == b"+":
                return
        raise GdbConnectionLost("gdb keeps rejecting our packets")


def _unescape(data: bytes) -> bytes:
    if b"}" not in data:
        return data
    out, i = bytearray(), 0
    while i < len(data):
        if data[i] == 0x7D and i + 1 < len(data):
            out.append(data[i + 1] ^ 0x20)
            i += 2
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


class GdbStub:
    """One gdb session on a machine's guest program."""

    def __init__(self, host: str, port: int, announce=None, accept_timeout_s: float = 600.0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind((host, port))
        except OSError as e:
            self.listener.close()
            raise BallastError(f"--gdb {host}:{port}: {e.strerror}") from None
        self.listener.listen(1)
        self.host, self.port = host, self.listener.getsockname()[1]
        self.accept_timeout_s = accept_timeout_s
        (announce or _stderr)(f"Waiting for gdb on {host}:{self.port}")
        self.machine = None
        self.conn = None
        self.active = True                 # False after detach or a lost connection
        self.breakpoints = {}              # vaddr -> original byte while planted, None while not
        self.stepping = False
        self.stop_pending = None           # a stop to report before the next instruction (signal)
        self.last_stop = f"S{SIGTRAP:02x}"
        self.stops = 0

    # --- wiring ---
    def attach(self, machine) -> None:
        self.machine = machine
        machine.cpu.debugger = self

    @property
    def kernel(self):
        return self.machine.kernel

    @property
    def cpu(self):
        return self.machine.cpu

    # --- called by the vCPU's run loop ---
    def before_run(self, cpu) -> None:
        """Before the guest runs on: the first time, wait for gdb and stop; report a step that
        ended in a system call and a Ctrl-C; plant breakpoints on pages mapped since."""
        if not self.active:
            return
        try:
            if self.conn is None:
                self._accept()
                self._stop(SIGTRAP, report=False)         # gdb asks with '?'

            elif self.stop_pending is not None:
                signal, self.stop_pending = self.stop_pending, None
                self._stop(signal)
            elif self.conn.poll_interrupt():
                self._stop(SIGINT)
            self._plant_breakpoints()
        except GdbConnectionLost:
            self._detach()

    def after_exit(self, cpu, exit) -> bool:
        """An exit of the vCPU: True when it was ours (a breakpoint or the end of a step) and the
        guest should run on after the stop, without the kernel seeing it."""
        if not self.active:
            return False
        from .cpu import ExitReason
        try:
            if exit.reason == ExitReason.TRAP and exit.vector == TRAP_BREAKPOINT and \
                    self.breakpoints.get(exit.rip - 1) is not None:
                # the int3 is ours: it did not happen (no retired instruction, RIP back on the breakpoint)
                native = cpu.native
                native.icount -= 1
                cpu.clock.instructions = native.icount
                cpu.set_reg("rip", exit.rip - 1)
                self._stop(SIGTRAP, swbreak=True)
                return True
            if self.stepping and exit.reason == ExitReason.TRAP and exit.vector == TRAP_DEBUG:
                self._stop(SIGTRAP)
                return True
            if self.stepping and exit.reason == ExitReason.SYSCALL:
                # the step is the system call: report it when the kernel has run it
                self.stop_pending = SIGTRAP
        except GdbConnectionLost:
            self._detach()
            return exit.reason == ExitReason.TRAP and exit.vector in (TRAP_BREAKPOINT, TRAP_DEBUG)
        return False

    def inferior_exited(self, status) -> None:
        """init is gone: tell gdb how (W exit code, X signal) and end the session."""
        if self.active and self.conn is not None:
            try:
                self.conn.send_packet(f"X{status & 0x7F:02x}" if status & 0x7F else f"W{(status >> 8) & 0xFF:02x}")
            except GdbConnectionLost:
                pass
        self.close()

    def close(self) -> None:
        self.active = False
        if self.machine is not None and getattr(self.machine.cpu, "debugger", None) is self:
            self.machine.cpu.debugger = None
        for sock in (self.conn.sock if self.conn else None, self.listener):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        self.conn = None

    # --- connection ---
    def _accept(self) -> None:
        self.listener.settimeout(self.accept_timeout_s)
        try:
            sock, _ = self.listener.accept()
        except socket.timeout:
            raise BallastError(f"no gdb connected to {self.host}:{self.port} "
                               f"within {self.accept_timeout_s:g} s") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = RemoteSerial(sock)

    def _detach(self) -> None:
        """gdb went away or detached: take our breakpoints out and let the guest run alone."""
        self._lift_breakpoints()
        self.breakpoints.clear()
        self._clear_step()
        self.stop_pending = None
        self.close()

    # --- stops ---
    def _stop(self, signal: int, swbreak: bool = False, report: bool = True) -> None:
        """Report a stop (the answer to the resume) and serve gdb until it resumes the guest."""
        self._clear_step()
        self.stops += 1
        self._lift_breakpoints()
        tid = self._tid()
        self.last_stop = f"T{signal:02x}" + ("swbreak:;" if swbreak else "") + f"thread:{tid:x};"
        if report:
            self.conn.send_packet(self.last_stop)
        self._serve()

    def _serve(self) -> None:
        conn = self.conn
        while True:
            packet = conn.read_packet()
            if conn.interrupted:              # Ctrl-C while already stopped: nothing to do
                conn.interrupted = False
            reply = self._dispatch(packet)
            if reply is _RESUME:
                return
            if reply is _DETACHED:
                raise GdbConnectionLost("detached")
            conn.send_packet(reply)

    def _dispatch(self, packet: str):
        head = packet[:1]
        if head == "?":
            return self.last_stop
        if head == "g":
            return self._read_registers()
        if head == "G":
            return self._write_registers(bytes.fromhex(packet[1:]))
        if head == "p":
            return self._read_register(int(packet[1:], 16))
        if head == "P":
            number, _, value = packet[1:].partition("=")
            return self._write_register(int(number, 16), bytes.fromhex(value))
        if head == "m":
            addr, _, length = packet[1:].partition(",")
            return self._read_memory(int(addr, 16), min(int(length, 16), PACKET_SIZE // 2))
        if head == "M":
            where, _, data = packet[1:].partition(":")
            addr, _, _ = where.partition(",")
            return self._write_memory(int(addr, 16), bytes.fromhex(data))
        if head in "Zz" and packet[1:2] == "0":
            _, addr, _ = packet[2:].split(",", 2) if packet.count(",") >= 2 else (None, packet[3:], None)
            return self._insert_breakpoint(int(addr, 16)) if head == "Z" else self._remove_breakpoint(int(addr, 16))
        if head in "cC":
            return self._resume(step=False, packet=packet)
        if head in "sS":
            return self._resume(step=True, packet=packet)
        if packet.startswith("vCont?"):
            return "vCont;c;C;s;S"
        if packet.startswith("vCont;"):
            action = packet[6:7]
            return self._resume(step=action in "sS", packet="")
        if head == "k" or packet.startswith("vKill"):
            if head == "v":                   # vKill is answered; k is not
                self.conn.send_packet("OK")
            self._kill()
        if head == "D":
            self._lift_breakpoints()
            self.breakpoints.clear()
            try:
                self.conn.send_packet("OK")
            except GdbConnectionLost:
                pass
            return _DETACHED
        if head == "H" or head == "T":
            return "OK"
        if packet.startswith("qSupported"):
            return f"PacketSize={PACKET_SIZE:x};QStartNoAckMode+;swbreak+;vContSupported+"
        if packet == "QStartNoAckMode":
            self.conn.send_packet("OK")
            self.conn.ack = False
            return self._serve_next()
        if packet == "qC":
            return f"QC{self._tid():x}"
        if packet == "qfThreadInfo":
            return f"m{self._tid():x}"
        if packet == "qsThreadInfo":
            return "l"
        if packet.startswith("qAttached"):
            return "0"                        # we started it: gdb kills it when it quits
        if packet.startswith("qSymbol"):
            return "OK"
        if packet.startswith("qRcmd,"):
            return self._monitor(bytes.fromhex(packet[6:]).decode("utf-8", "replace"))
        if packet.startswith("qThreadExtraInfo,"):
            task = self._task()
            return (f"{task.comm}" if task else "").encode().hex()
        return ""                             # not supported: gdb falls back or does without

    def _serve_next(self):
        """A reply already sent in place (QStartNoAckMode): read on."""
        return self._dispatch(self.conn.read_packet())

    def _resume(self, step: bool, packet: str):
        if len(packet) > 1 and packet[0] in "cs":          # c ADDR / s ADDR: resume there
            self.cpu.set_reg("rip", int(packet[1:], 16))
        self.stepping = step
        if step:
            self.cpu.set_reg("eflags", self.cpu.reg("eflags") | X86_EFLAGS_TF)
        self._plant_breakpoints()
        return _RESUME

    def _clear_step(self) -> None:
        if self.stepping and self.machine is not None and self.cpu.native is not None:
            self.cpu.set_reg("eflags", self.cpu.reg("eflags") & ~X86_EFLAGS_TF)
        self.stepping = False

    def _kill(self):
        self._lift_breakpoints()
        self.close()
        self.machine.stop_reason = "killed by gdb"
        raise MachineStopped("killed by gdb")

    # --- the current process ---
    def _task(self):
        kernel = self.kernel
        return getattr(getattr(kernel, "scheduler", None), "current", None) if kernel is not None else None

    def _tid(self) -> int:
        task = self._task()
        return task.pid if task is not None else 1

    # --- registers ---
    def _register_value(self, name: str, size: int) -> str:
        from unicorn import x86_const as x86
        uc = self.cpu.uc
        if not name:
            return "00" * size
        if name in ("rip", "eflags", "fs_base", "gs_base") or name in GPR_NAMES:
            return _hex_le(self.cpu.reg(name), size)
        if name == "orig_rax":
            return "ff" * size
        if name.startswith("st"):
            value = uc.reg_read(getattr(x86, f"UC_X86_REG_ST{name[2:]}"))
            if isinstance(value, tuple):                    # (mantissa, exponent) in this binding
                mantissa, exponent = value
                return _hex_le(mantissa, 8) + _hex_le(exponent, 2)
            return "00" * size
        return _hex_le(uc.reg_read(getattr(x86, "UC_X86_REG_" + name.upper())), size)

    def _read_registers(self) -> str:
        return "".join(self._register_value(name, size) for name, size in REGISTERS)

    def _write_registers(self, data: bytes) -> str:
        offset = 0
        for name, size in REGISTERS:
            if offset + size > len(data):
                break
            if name in WRITABLE:
                self._set_register(name, int.from_bytes(data[offset:offset + size], "little"))
            offset += size
        return "OK"

    def _register(self, number: int):
        if number < len(REGISTERS):
            return REGISTERS[number]
        return EXTRA_REGISTERS.get(number)

    def _read_register(self, number: int) -> str:
        reg = self._register(number)
        if reg is None:
            return "E45"
        return self._register_value(*reg)

    def _write_register(self, number: int, data: bytes) -> str:
        reg = self._register(number)
        if reg is None:
            return "E45"
        if reg[0] in WRITABLE:
            self._set_register(reg[0], int.from_bytes(data, "little"))
        return "OK"

    def _set_register(self, name: str, value: int) -> None:
        if name in ("rip", "eflags", "fs_base", "gs_base") or name in GPR_NAMES:
            self.cpu.set_reg(name, value)
            return
        from unicorn import x86_const as x86
        self.cpu.uc.reg_write(getattr(x86, "UC_X86_REG_" + name.upper()), value)

    # --- memory: the current process's, through its page tables ---
    def translate(self, vaddr: int):
        """The guest-physical address behind a user virtual address, walking the 4-level tables
        in guest RAM as the CPU would, but setting no accessed or dirty bit; None if not mapped."""
        if vaddr >> 47:                        # the kernel half and non-canonical: not the process's
            return None
        ram = self.machine.ram
        table = self.cpu.cr3 & PTE_ADDR_MASK
        for shift in (39, 30, 21, 12):
            slot = table + ((vaddr >> shift) & 0x1FF) * 8
            if slot + 8 > ram.size:
                return None
            entry = int.from_bytes(ram.view[slot:slot + 8], "little")
            if not entry & PTE_PRESENT or not entry & PTE_USER:
                return None
            if shift in (30, 21) and entry & PTE_PSE:
                paddr = (entry & PTE_ADDR_MASK & ~((1 << shift) - 1)) | (vaddr & ((1 << shift) - 1))
                return paddr if paddr < ram.size else None
            table = entry & PTE_ADDR_MASK
        paddr = table | (vaddr & 0xFFF)
        return paddr if paddr < ram.size else None

    def _runs(self, vaddr: int, length: int):
        """[(paddr, length)] per page of a user range, or stop at the first unmapped page."""
        while length > 0:
            n = min(length, PAGE_SIZE - (vaddr & 0xFFF))
            paddr = self.translate(vaddr)
            if paddr is None:
                return
            yield paddr, n
            vaddr += n
            length -= n

    def _unfaulted_page(self, page: int):
        """A page of the process that is not faulted in yet, as its first read will see it, found
        without faulting it in (ptrace would; the guest's state must not change): zeros for
        anonymous memory, the file's page when the page cache holds it; None if it cannot be read."""
        from guestos.mm.mmap import VM_READ
        task = self._task()
        mm = task.mm if task is not None else None
        vma = mm.find_vma(page) if mm is not None else None
        if vma is None or vma.vm_start > page or not vma.vm_flags & VM_READ:
            return None
        if vma.vm_file is None:
            return bytes(PAGE_SIZE)
        mapping = getattr(vma.vm_file, "mapping", vma.vm_file)          # an open file or an inode
        pfn = getattr(mapping, "pages", {}).get(vma.pgoff_of(page))
        if pfn is None:
            return None
        return bytes(self.machine.ram.view[pfn << 12:(pfn + 1) << 12])

    def read_memory(self, vaddr: int, length: int) -> bytes:
        """What the process sees at vaddr (our breakpoints hidden), up to the first unreadable page."""
        view = self.machine.ram.view
        out = bytearray()
        end = vaddr + length
        while vaddr < end:
            n = min(end - vaddr, PAGE_SIZE - (vaddr & 0xFFF))
            paddr = self.translate(vaddr)
            if paddr is not None:
                out += view[paddr:paddr + n]
            else:
                page = self._unfaulted_page(vaddr & ~0xFFF) if not vaddr >> 47 else None
                if page is None:
                    break
                out += page[vaddr & 0xFFF:(vaddr & 0xFFF) + n]
            vaddr += n
        vaddr = end - length
        for addr, original in self.breakpoints.items():
            if original is not None and vaddr <= addr < vaddr + len(out):
                out[addr - vaddr] = original
        return bytes(out)

    def _read_memory(self, vaddr: int, length: int) -> str:
        data = self.read_memory(vaddr, length)
        return data.hex() if data or not length else EFAULT_REPLY

    def _write_memory(self, vaddr: int, data: bytes) -> str:
        runs = list(self._runs(vaddr, len(data)))
        if sum(n for _, n in runs) < len(data):
            return EFAULT_REPLY
        offset = 0
        for paddr, n in runs:
            self.machine.ram.write(paddr, data[offset:offset + n])
            offset += n
        self.cpu.flush_code(vaddr, vaddr + len(data))     # translated code does not see host writes
        return "OK"

    # --- software breakpoints ---
    def _insert_breakpoint(self, vaddr: int) -> str:
        if vaddr >> 47:
            return EFAULT_REPLY
        self.breakpoints.setdefault(vaddr, None)         # planted when the guest runs on
        return "OK"

    def _remove_breakpoint(self, vaddr: int) -> str:
        if vaddr in self.breakpoints:
            self._lift(vaddr)
            del self.breakpoints[vaddr]
        return "OK"

    def _plant_breakpoints(self) -> None:
        """int3 on every breakpoint whose page is mapped now (a page not yet faulted in gets its
        int3 on the first run after it is)."""
        ram = self.machine.ram
        for vaddr, original in self.breakpoints.items():
            if original is not None:
                continue
            paddr = self.translate(vaddr)
            if paddr is None:
                continue
            self.breakpoints[vaddr] = ram.view[paddr]
            ram.view[paddr] = INT3
            self.cpu.flush_code(vaddr, vaddr + 1)

    def _lift(self, vaddr: int) -> None:
        original = self.breakpoints.get(vaddr)
        if original is None:
            return
        paddr = self.translate(vaddr)
        if paddr is not None and self.machine.ram.view[paddr] == INT3:
            self.machine.ram.view[paddr] = original
            self.cpu.flush_code(vaddr, vaddr + 1)
        self.breakpoints[vaddr] = None

    def _lift_breakpoints(self) -> None:
        """Memory as the program wrote it while gdb looks (and before it goes on without us)."""
        if self.machine is None or self.cpu.native is None:
            return
        for vaddr in list(self.breakpoints):
            self._lift(vaddr)

    # --- monitor: read-only views into the kernel ---
    def _monitor(self, command: str) -> str:
        try:
            text = monitor(self.kernel, command)
        except MonitorError as e:
            text = f"{e}\n"
        for start in range(0, len(text), 1024):
            self.conn.send_packet("O" + text[start:start + 1024].encode().hex())
        return "OK"


_RESUME = object()
_DETACHED = object()


class MonitorError(Exception):
    pass


MONITOR_HELP = ("monitor meminfo       the guest's /proc/meminfo\n"
                "monitor ps            processes: pid, ppid, state, rss, command\n"
                "monitor page PFN      struct page of frame PFN: flags, LRU, mapping and index, counts\n")


def monitor(kernel, command: str) -> str:
    """The text of a `monitor` command (also usable without gdb)."""
    words = command.split()
    if not words or words[0] == "help":
        return MONITOR_HELP
    if kernel is None:
        raise MonitorError("the guest kernel has not booted")
    if words == ["meminfo"]:
        from guestos.fs.proc import _render_meminfo
        return _render_meminfo(kernel, None)
    if words == ["ps"]:
        return _ps(kernel)
    if words[0] == "page" and len(words) == 2:
        try:
            pfn = int(words[1], 0)
        except ValueError:
            raise MonitorError(f"page: '{words[1]}' is not a page frame number") from None
        return page_view(kernel, pfn)
    raise MonitorError(f"unknown monitor command '{command}'\n{MONITOR_HELP}")


def _ps(kernel) -> str:
    from guestos.fs.proc import _state
    lines = [f"{'PID':>5} {'PPID':>5} S {'RSS kB':>8}  COMMAND"]
    current = getattr(kernel.scheduler, "current", None)
    for pid, task in sorted(kernel.tasks.items()):
        mm = task.mm
        rss = (mm.rss_anon + mm.rss_file) * (PAGE_SIZE >> 10) if mm is not None else 0
        ppid = task.parent.pid if task.parent is not None else 0
        mark = " *" if task is current else ""
        lines.append(f"{pid:>5} {ppid:>5} {_state(kernel, task)[:1]} {rss:>8}  {task.comm}{mark}")
    return "\n".join(lines) + "\n"


def page_view(kernel, pfn: int) -> str:
    """struct page of a frame, as mem_map holds it."""
    from guestos.mm import mm_types
    mem_map = kernel.mem_map
    if not 0 <= pfn < mem_map.nr_pages:
        raise MonitorError(f"page: pfn {pfn:#x} is outside guest RAM (0..{mem_map.nr_pages - 1:#x})")
    flags = mem_map.flags(pfn)
    names = sorted((value, name[3:]) for name, value in vars(mm_types).items()
                   if name.startswith("PG_") and isinstance(value, int) and name != "PG_reported")
    set_names = [name for bit, name in names if flags >> bit & 1]
    if flags >> mm_types.PG_lru & 1:
        kind = "anon" if flags >> mm_types.PG_swapbacked & 1 else "file"
        lru = ("active_" if flags >> mm_types.PG_active & 1 else "inactive_") + kind
        if flags >> mm_types.PG_unevictable & 1:
            lru = "unevictable"
    else:
        lru = "none"
    mapping = mem_map.mapping(pfn)
    if mapping == 0:
        owner = "none"
    elif mapping & mm_types.PAGE_MAPPING_ANON:
        owner = f"anon_vma {mapping >> 1:#x}"
    else:
        owner = f"address_space {mapping:#x}"
    nxt, prev = mem_map.lru_next(pfn), mem_map.lru_prev(pfn)
    link = lambda v: "-" if v == mm_types.NIL else f"{v:#x}"
    return (f"page {pfn:#x} (phys {pfn << 12:#x})\n"
            f"  flags     {flags:#x} {'|'.join(set_names) or '-'}\n"
            f"  lru       {lru} (next {link(nxt)}, prev {link(prev)})\n"
            f"  mapping   {owner}, index {mem_map.index(pfn):#x}\n"
            f"  _refcount {mem_map.refcount(pfn)}\n"
            f"  _mapcount {mem_map.mapcount(pfn) - 1} (mapped {mem_map.mapcount(pfn)} times)\n")


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
