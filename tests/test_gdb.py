"""gdb on guest programs: `ballast run --gdb` driven by Debian's real gdb in batch mode, and by a
raw remote-protocol client for what batch gdb cannot do (Ctrl-C, kill, unmapped reads)."""
import json
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from ballast_testlib import REPO

pytestmark = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")

TIMEOUT_S = 120

PROGRAM = r"""
#include <stdio.h>

static unsigned char array[4] = {0xde, 0xad, 0xbe, 0xef};

int add(int a, int b)
{
    return a + b;
}

int main(void)
{
    int local = 7;
    local = add(local, 35);
    printf("local=%d array=%02x\n", local, array[1]);
    return local - 40;
}
"""

SPIN = r"""
int main(void)
{
    volatile unsigned long n = 0;
    for (;;)
        n++;
}
"""


_started = []


@pytest.fixture(autouse=True)
def _no_stray_guests():
    """A failed test leaves no guest running: every ballast it started is killed at teardown."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=TIMEOUT_S)


class Ballast:
    """`ballast run --gdb ADDR ...` in the background, with the port it printed."""

    def __init__(self, program, address="127.0.0.1:0", extra=()):
        self.proc = subprocess.Popen([sys.executable, "-m", "vmm.cli", "run", "--gdb", address, *extra, str(program)],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _started.append(self.proc)
        line = self.proc.stderr.readline().decode()
        match = re.match(r"Waiting for gdb on 127\.0\.0\.1:(\d+)$", line.strip())
        if not match:
            self.proc.kill()
            pytest.fail(f"no port announced: {line!r} {self.proc.communicate(timeout=TIMEOUT_S)}")
        self.port = int(match.group(1))

    def finish(self):
        try:
            out, err = self.proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return self.proc.returncode, out.decode(), err.decode()


def gdb_batch(program, port, *commands) -> str:
    args = ["gdb", "-batch", "-nx", str(program), "-ex", f"target remote 127.0.0.1:{port}"]
    for command in commands:
        args += ["-ex", command]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S)
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def debug_program(compile_c):
    return compile_c(PROGRAM.lstrip(), name="prog", flags=("-static", "-g", "-O0"))


def test_break_next_print_examine_monitor_continue(debug_program):
    native = subprocess.run([str(debug_program)], capture_output=True, timeout=TIMEOUT_S)
    ballast = Ballast(debug_program)
    out = gdb_batch(debug_program, ballast.port, "break main", "continue", "next", "print local",
                    "x/4xb &array", "print/x $pc", "stepi", "print/x $pc", "monitor meminfo", "monitor ps",
                    "monitor page 0x100", "continue")
    code, stdout, stderr = ballast.finish()
    # stopped at main after its prologue, as gdb on Linux does (file:line shown)
    assert "Breakpoint 1, main () at " in out and "prog.c:12" in out, out
    assert re.search(r"^13\s+local = add\(local, 35\);$", out, re.M), out          # next advanced a line
    assert "$1 = 7" in out, out                                                      # the local's value
    assert re.search(r"<array>:\s+0xde\s+0xad\s+0xbe\s+0xef", out), out              # memory at a virtual address
    before, after = (int(v, 16) for v in re.findall(r"^\$[23] = (0x[0-9a-f]+)$", out, re.M))
    assert 0 < after - before < 16, out                                              # stepi: one instruction on
    assert re.search(r"^MemTotal:\s+\d+ kB$", out, re.M), out                        # monitor output
    assert re.search(r"^\s+1\s+0 R\s+\d+\s+prog \*$", out, re.M), out
    assert "page 0x100 (phys 0x100000)" in out and "_refcount" in out, out
    # the program ran to its end with its status, as natively
    assert native.returncode == 2
    assert "[Inferior 1 (Remote target) exited with code 02]" in out, out
    assert code == native.returncode, stderr
    assert stdout.endswith(native.stdout.decode()), stdout


ABORT = r"""
#include <stdlib.h>
#include <unistd.h>

int main(void)
{
    write(1, "before\n", 7);
    abort();
}
"""


def test_killed_by_a_signal_is_reported_to_gdb(compile_c):
    program = compile_c(ABORT.lstrip(), name="abort", flags=("-static", "-g", "-O0"))
    ballast = Ballast(program)
    out = gdb_batch(program, ballast.port, "break write", "continue", "stepi 40", "bt", "continue")
    code, stdout, stderr = ballast.finish()
    assert "Breakpoint 1, " in out and "in write ()" in out, out
    assert re.search(r"^#1 .* in main \(\) at .*abort\.c:7$", out, re.M), out   # stepped on into abort()
    assert "Program terminated with signal SIGABRT, Aborted." in out, out
    assert code == 128 + 6 and stdout.endswith("before\n"), (code, stdout, stderr)


def _metrics(path) -> dict:
    m = json.loads(path.read_text())
    return {"exit": m["exit"], "instructions": m["instructions"], "virtual_ns": m["virtual_ns"],
            "page_faults": m["page_faults"], "console_bytes": m["console_bytes"],
            "vmstat": m["guest"]["vmstat"], "meminfo": m["guest"]["meminfo_kb"]}


def test_breakpoint_session_leaves_the_run_unchanged(debug_program, tmp_path):
    """Stopping at a breakpoint and going on changes nothing the guest computes: same output,
    same instruction count, virtual time and memory counters as a run without gdb."""
    plain = subprocess.run([sys.executable, "-m", "vmm.cli", "run", "--json", str(tmp_path / "plain.json"),
                            str(debug_program)], cwd=REPO, capture_output=True, timeout=TIMEOUT_S)
    ballast = Ballast(debug_program, "localhost:0", ("--json", str(tmp_path / "gdb.json")))
    out = gdb_batch(debug_program, ballast.port, "break add", "continue", "continue")
    code, stdout, _ = ballast.finish()
    assert "Breakpoint 1, add (a=7, b=35) at " in out, out
    assert code == plain.returncode == 2
    assert stdout.encode() == plain.stdout
    assert _metrics(tmp_path / "gdb.json") == _metrics(tmp_path / "plain.json")


@pytest.mark.parametrize("address", ["0.0.0.0:1234", "192.168.1.1:1234", "example.com:1", "127.0.0.1", "localhost:x"])
def test_only_loopback_addresses(address, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vmm.cli", "run", "--gdb", address, "/bin/true"],
                          cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ballast: --gdb {address}: "), proc.stderr


class RemoteClient:
    """The client side of the remote serial protocol, as gdb speaks it."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""
        self.ack = True

    def _read(self):
        data = self.sock.recv(65536)
        assert data, "the stub closed the connection"
        self.buffer += data

    def send(self, payload: str) -> None:
        data = payload.encode()
        self.sock.sendall(b"$%s#%02x" % (data, sum(data) & 0xFF))
        if self.ack:
            while not self.buffer:
                self._read()
            assert self.buffer[:1] == b"+", self.buffer
            self.buffer = self.buffer[1:]

    def receive(self) -> str:
        while b"#" not in self.buffer or len(self.buffer) < self.buffer.index(b"#") + 3:
            self._read()
        start, end = self.buffer.index(b"$"), self.buffer.index(b"#")
        payload = self.buffer[start + 1:end]
        assert self.buffer[end + 1:end + 3] == b"%02x" % (sum(payload) & 0xFF)
        self.buffer = self.buffer[end + 3:]
        if self.ack:
            self.sock.sendall(b"+")
        return payload.decode()

    def ask(self, payload: str) -> str:
        self.send(payload)
        return self.receive()


def test_protocol_interrupt_unmapped_memory_and_kill(compile_c):
    program = compile_c(SPIN, name="spin", flags=("-static", "-O0"))
    ballast = Ballast(program)
    client = RemoteClient(ballast.port)
    assert "QStartNoAckMode+" in client.ask("qSupported:swbreak+")
    assert client.ask("QStartNoAckMode") == "OK"
    client.ack = False
    assert client.ask("?").startswith("T05")
    assert client.ask("qC") == "QC1"
    registers = bytes.fromhex(client.ask("g"))
    rip = int.from_bytes(registers[128:136], "little")
    assert client.ask("p10") == registers[128:136].hex()                 # rip alone, as in 'g'
    assert client.ask(f"m{rip:x},1")                                       # the entry point reads
    assert client.ask("m0,4") == "E14"                                     # page 0 is never mapped
    assert client.ask("m1000,8") == "E14"
    client.send("c")
    time.sleep(0.2)                                                        # let it spin (any moment will do)
    client.sock.sendall(b"\x03")                                           # Ctrl-C
    stop = client.receive()
    assert stop.startswith("T02"), stop                                    # SIGINT
    now = int.from_bytes(bytes.fromhex(client.ask("p10")), "little")
    assert now != rip and client.ask(f"m{now:x},1")                        # it ran, and stopped in mapped code
    assert bytes.fromhex(client.ask("qRcmd," + b"ps".hex())[1:]).decode().startswith("  PID")
    client.send("k")
    code, _, stderr = ballast.finish()
    assert code == 137 and "killed by gdb" in stderr, stderr
