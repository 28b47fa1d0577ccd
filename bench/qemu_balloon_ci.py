"""The balloon CI test of bench/balloon_ci.py on a real Linux under QEMU TCG: the optional baseline.

The same steps as the Ballast side: boot a 512 MiB guest (a Debian cloud kernel, 6.1 on Debian 12, with a tiny
busybox initramfs that loads virtio_pci, virtio_blk and virtio_balloon from /lib/modules), mount the same ext2
root read-only, read /data/stream.bin (64 MiB) with `dd bs=64k`, shrink the guest to 384 MiB with QMP's
`balloon`, poll `query-balloon` until actual equals the target, then let the guest print MemTotal and Cached
and power off. The figure is the CPU time (user + sys, all threads) of the qemu process, from os.wait4.

Needs qemu-system-x86_64, a /boot/vmlinuz-*-cloud-amd64 with its /lib/modules tree, and a static busybox
(Debian: apt-get install qemu-system-x86 linux-image-cloud-amd64 busybox-static). available() says why not."""
from __future__ import annotations

import glob
import gzip
import json
import os
import selectors
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
GUEST_MIB, TARGET_MIB = 512, 384
FILE = "/data/stream.bin"
WANTED_MODULES = ("virtio_pci", "virtio_blk", "virtio_balloon")     # and what modules.dep says they need
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
TIMEOUT_S = 300

INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /mnt /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko || echo "BALLAST-FAIL insmod $m"; done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 500 ]; do sleep 0.01; n=$((n + 1)); done
mount -t ext2 -o ro /dev/vda /mnt || echo "BALLAST-FAIL mount"
dd if=/mnt/FILE of=/dev/null bs=64k 2>/dev/null || echo "BALLAST-FAIL dd"
grep -E '^MemTotal:' /proc/meminfo | sed 's/^/BALLAST-BEFORE /'
echo BALLAST-READ-DONE
read go
grep -E '^(MemTotal|Cached):' /proc/meminfo | sed 's/^/BALLAST-AFTER /'
echo BALLAST-DONE
poweroff -f
""".replace("FILE", FILE.lstrip("/"))


def kernel() -> tuple[str, str] | None:
    """(vmlinuz, its /lib/modules directory) of the newest installed Debian cloud kernel."""
    for vmlinuz in sorted(glob.glob("/boot/vmlinuz-*-cloud-amd64"), reverse=True):
        release = Path(vmlinuz).name[len("vmlinuz-"):]
        modules = Path("/lib/modules") / release
        if (modules / "modules.dep").exists():
            return vmlinuz, str(modules)
    return None


def busybox() -> str | None:
    for path in BUSYBOX_CANDIDATES:
        if os.path.exists(path) and b"ld-linux" not in Path(path).read_bytes()[:4096]:
            return path
    return None


def available() -> str | None:
    """None when the baseline can run here, else what is missing."""
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
    if kernel() is None:
        return "no /boot/vmlinuz-*-cloud-amd64 with modules (apt-get install linux-image-cloud-amd64)"
    if busybox() is None:
        return "no static busybox (apt-get install busybox-static)"
    return None


def _module_paths(modules_dir: str) -> list:
    """[(name, path)] of the modules to load, dependencies first, as modprobe would order them."""
    deps = {}
    with open(os.path.join(modules_dir, "modules.dep")) as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[_module_name(path)] = (os.path.join(modules_dir, path), [_module_name(d) for d in rest.split()])
    order = []

    def visit(name):
        if name not in deps:
            raise RuntimeError(f"kernel module {name} not found in {modules_dir}/modules.dep")
        for dep in reversed(deps[name][1]):     # modules.dep lists the deepest dependency last
            visit(dep)
        if name not in order:
            order.append(name)

    for name in WANTED_MODULES:
        visit(name)
    for name in order:
        if not deps[name][0].endswith(".ko"):
            raise RuntimeError(f"{deps[name][0]}: compressed modules are not supported here")
    return [(name, deps[name][0]) for name in order]


def _module_name(path: str) -> str:
    return os.path.basename(path).split(".ko", 1)[0].replace("-", "_")


def _cpio_newc(entries) -> bytes:
    """A newc cpio archive of [(name, mode, data)] (directories have mode 0o40755 and no data)."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate(list(entries) + [("TRAILER!!!", 0, b"")], start=1):
        raw = name.encode() + b"\0"
        header = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0))
        out += header.encode() + raw
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def make_initramfs(path: str) -> None:
    _, modules_dir = kernel()
    entries = [(d, 0o40755, b"") for d in ("bin", "lib", "lib/modules", "proc", "sys", "dev", "mnt")]
    entries.append(("bin/busybox", 0o100755, Path(busybox()).read_bytes()))
    entries.append(("init", 0o100755, INIT.encode()))
    modules = _module_paths(modules_dir)
    for name, ko in modules:
        entries.append((f"lib/modules/{name}.ko", 0o100644, Path(ko).read_bytes()))
    entries.append(("lib/modules/order", 0o100644, " ".join(name for name, _ in modules).encode()))
    Path(path).write_bytes(gzip.compress(_cpio_newc(entries), compresslevel=1))


class _Qmp:
    def __init__(self, path: str, deadline: float):
        self.sock = socket.socket(socket.AF_UNIX)
        while True:
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise RuntimeError("QMP socket never appeared") from None
                time.sleep(0.01)
        self.file = self.sock.makefile("rw")
        self._reply()                                   # the greeting
        self.execute("qmp_capabilities")

    def _reply(self) -> dict:
        while True:
            line = self.file.readline()
            if not line:
                raise RuntimeError("QMP closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def execute(self, command: str, **arguments):
        self.file.write(json.dumps({"execute": command, "arguments": arguments}) + "\n")
        self.file.flush()
        reply = self._reply()
        if "error" in reply:
            raise RuntimeError(f"QMP {command}: {reply['error']}")
        return reply.get("return")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def run(root_image: str) -> dict:
    """One run of the test under QEMU; returns cpu_s (qemu's user + sys), wall_s and the guest's meminfo."""
    vmlinuz, _ = kernel()
    with tempfile.TemporaryDirectory(prefix="ballast-qemu-") as tmp:
        initrd = os.path.join(tmp, "initrd.gz")
        make_initramfs(initrd)
        qmp_path = os.path.join(tmp, "qmp.sock")
        argv = ["qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none", "-accel", "tcg",
                "-m", str(GUEST_MIB), "-smp", "1", "-no-reboot", "-kernel", vmlinuz, "-initrd", initrd,
                "-append", "console=ttyS0 quiet panic=-1", "-serial", "stdio",
                "-qmp", f"unix:{qmp_path},server=on,wait=off",
                "-drive", f"file={root_image},if=none,id=root,format=raw,readonly=on,cache=writeback",
                "-device", "virtio-blk-pci,drive=root", "-device", "virtio-balloon-pci"]
        start = time.monotonic()
        deadline = start + TIMEOUT_S
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        console = bytearray()
        qmp = None
        try:
            qmp = _Qmp(qmp_path, deadline)
            _wait_console(proc, console, b"BALLAST-READ-DONE", deadline)
            qmp.execute("balloon", value=TARGET_MIB * MiB)
            while qmp.execute("query-balloon")["actual"] != TARGET_MIB * MiB:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the balloon never reached its target: {qmp.execute('query-balloon')} {bytes(console)[-800:]!r}")
                time.sleep(0.01)
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            _wait_console(proc, console, b"BALLAST-DONE", deadline)
            qmp.close()
            qmp = None
            proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            if qmp is not None:
                qmp.close()
        wall = time.monotonic() - start
    text = console.decode(errors="replace")
    if "BALLAST-FAIL" in text:
        raise RuntimeError(f"the QEMU guest failed: {text[-600:]}")
    before, after = {}, {}
    for line in text.splitlines():
        for tag, into in (("BALLAST-BEFORE ", before), ("BALLAST-AFTER ", after)):
            if line.startswith(tag):
                name, value = line.split()[1:3]
                into[name.rstrip(":")] = int(value)
    fell_kib = before.get("MemTotal", 0) - after.get("MemTotal", 0)
    if fell_kib != (GUEST_MIB - TARGET_MIB) * 1024 or after.get("Cached", 0) < 64 * 1024:
        raise RuntimeError(f"QEMU guest: MemTotal fell by {fell_kib} kB, Cached {after.get('Cached')} kB")
    return dict(cpu_s=usage.ru_utime + usage.ru_stime, wall_s=wall, memtotal_fell_kib=fell_kib,
                cached_kib=after["Cached"])


def _wait_console(proc, console: bytearray, marker: bytes, deadline: float) -> None:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while marker not in console:
            if b"BALLAST-FAIL" in console:
                raise RuntimeError(f"the QEMU guest failed: {bytes(console[-600:])!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"QEMU guest: no {marker.decode()} on the console: {bytes(console[-600:])!r}")
            if sel.select(timeout=min(left, 1.0)):
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError(f"QEMU exited ({proc.wait()}): {proc.stderr.read().decode()[-400:]} "
                                       f"{bytes(console[-600:])!r}")
                console += chunk
    finally:
        sel.unregister(proc.stdout)
