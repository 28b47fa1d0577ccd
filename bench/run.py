#!/usr/bin/env python3
"""Ballast benchmarks: compute-loop speed, fault rate, boot time, disk and page-cache reads, reclaim, balloon,
and the whole balloon CI test against QEMU TCG + Linux.

    python3 bench/run.py [--quick] [--write] [--runs N] [--only NAMES] [--profile CASE]

Every figure is the median of N runs (5 by default, 2 with --quick) and is
reported beside a baseline measured in the same process, in the same run, so
that the ratios mean something on any host. Nothing here is a test: targets
are printed as met / missed, never asserted. See bench/README.md.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import mmap
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from guestos.fs.binfmt_elf import find_symbol, parse_elf  # noqa: E402
from vmm.machine import Machine, MachineConfig  # noqa: E402

FIRMWARE = ROOT / "firmware" / "bin"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

MiB = 1 << 20
PAGE = 4096

TARGET_COMPUTE_RATIO = 0.4        # candidate speed / raw Unicorn speed
TARGET_FAULT_RATE = 200_000       # first-touch faults per wall second
TARGET_BOOT_S = 0.2               # Machine() to the first user instruction of hello
TARGET_BLK_RATIO = 0.25           # guest /dev/vda sequential read / host pread loop, host cache hot
TARGET_PAGECACHE_RATIO = 0.30     # guest read() of a file in its page cache / host memcpy of the same bytes
TARGET_INFLATE_RATE = 500_000     # balloon pages per wall second, inflating 1 GiB of a 2 GiB guest

ITER_FULL = 100_000_000
ITER_QUICK = 20_000_000

BENCHMARKS = ("compute", "faults", "boot", "blk", "pagecache", "reclaim", "balloon", "syscalls", "ci", "ext2dir")
TARGET_CI_RATIO = 0.1             # the whole balloon CI test's CPU time / the same test on QEMU TCG + Linux
TARGET_RECLAIM_RATE = 1_000_000   # pages scanned per second, compiled, 1 GiB guest of clean page cache
TARGET_RECLAIM_RATIO = 20         # compiled / uncompiled reclaim scan rate
PROFILE_CASES = ("compute", "compute-q1m", "faults", "faults-slow", "boot")


def firmware(name: str) -> bytes:
    return (FIRMWARE / name).read_bytes()


def release() -> None:
    """Drop the last machine (its 256-512 MiB of RAM) before the next run."""
    gc.collect()


# --- 1. compute loop ---------------------------------------------------------

RAW_STACK_TOP = 0x7FFF_F000_0000
RAW_STACK_SIZE = 1 * MiB
RAW_STOP_PAGE = 0x10000           # a page of int3: if `until` ever failed, the run would trap, not hang


def raw_compute(data: bytes, iterations: int) -> tuple[float, int]:
    """compute_loop(iterations) on bare Unicorn: no paging, no hooks, default TLB.
    Returns (seconds spent in emu_start, rax)."""
    from unicorn import UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, Uc
    from unicorn import x86_const as x86

    image = parse_elf(data)
    loop = find_symbol(data, "compute_loop")
    if loop is None:
        raise SystemExit("firmware/bin/compute has no compute_loop symbol")
    loop += image.load_bias
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    # PT_LOADs may share a page: map the page-aligned union, then copy file bytes
    spans = sorted((s.vaddr & ~(PAGE - 1), (s.end + PAGE - 1) & ~(PAGE - 1)) for s in image.segments)
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    for lo, hi in merged:
        if lo <= RAW_STOP_PAGE < hi:
            raise SystemExit("compute's segments overlap the benchmark's stop page")
        uc.mem_map(lo, hi - lo, UC_PROT_ALL)
    for s in image.segments:
        uc.mem_write(s.vaddr, data[s.offset:s.offset + s.filesz])
    uc.mem_map(RAW_STOP_PAGE, PAGE, UC_PROT_ALL)
    uc.mem_write(RAW_STOP_PAGE, b"\xcc" * PAGE)
    uc.mem_map(RAW_STACK_TOP - RAW_STACK_SIZE, RAW_STACK_SIZE, UC_PROT_ALL)
    rsp = RAW_STACK_TOP - 0x1000
    uc.mem_write(rsp, RAW_STOP_PAGE.to_bytes(8, "little"))       # the return address of the call
    uc.reg_write(x86.UC_X86_REG_RSP, rsp)
    uc.reg_write(x86.UC_X86_REG_RDI, iterations)
    start = time.perf_counter()
    uc.emu_start(loop, RAW_STOP_PAGE)
    seconds = time.perf_counter() - start
    rip = uc.reg_read(x86.UC_X86_REG_RIP)
    if rip != RAW_STOP_PAGE:
        raise SystemExit(f"raw compute stopped at {rip:#x}, not at the return address {RAW_STOP_PAGE:#x}")
    return seconds, uc.reg_read(x86.UC_X86_REG_RAX)


_COMPUTE_RE = re.compile(rb"compute: (\d+) iterations, result 0x([0-9a-fA-F]+)")


def guest_compute(data: bytes, iterations: int, cmdline: str = "") -> dict:
    """The whole machine (MMU, clock, preemption) booting /bin/compute ITER."""
    m = Machine(MachineConfig(mem=256 * MiB, cmdline=cmdline))
    m.load(data, "/bin/compute", [str(iterations)])
    status = m.boot()
    out = bytes(m.console_output)
    match = _COMPUTE_RE.search(out)
    if status != 0 or match is None or int(match.group(1)) != iterations:
        raise SystemExit(f"guest compute failed (status {status:#x}): {out[-300:]!r}")
    result = dict(seconds=m.wall_s, rax=int(match.group(2), 16), icount=m.cpu.icount,
                  preemptions=m.kernel.scheduler.preemptions, quantum=m.kernel.scheduler.quantum,
                  exits=m.cpu.exits)
    m.close()
    del m
    release()
    return result


def bench_compute(runs: int, iterations: int) -> list[dict]:
    data = firmware("compute")
    raw, q8, q1, q0 = [], [], [], []
    raw_rax = None
    for _ in range(runs):            # interleaved, so drift in host speed hits all three alike
        seconds, rax = raw_compute(data, iterations)
        raw.append(seconds)
        raw_rax = rax
        q8.append(guest_compute(data, iterations))
        q1.append(guest_compute(data, iterations, "sched_quantum=1000000"))
        q0.append(guest_compute(data, 0)["seconds"])       # fixed cost: boot, startup, printf, exit
        release()
    for r in q8 + q1:
        if r["rax"] != raw_rax:
            raise SystemExit(f"compute result differs: raw Unicorn rax={raw_rax:#x}, guest printed {r['rax']:#x}")
    raw_s = statistics.median(raw)
    raw_speed = iterations / raw_s
    fixed_s = statistics.median(q0)
    rows = [dict(bench="compute", name=f"raw Unicorn, compute_loop({iterations:,})",
                 value=f"{raw_speed / 1e6:.2f} M iter/s", detail=f"{raw_s:.3f} s in emu_start; rax={raw_rax:#018x}",
                 key="compute.raw_iter_per_s", number=raw_speed)]
    for label, cases, key in (("guest, quantum 8M (default)", q8, "q8m"), ("guest, sched_quantum=1000000", q1, "q1m")):
        seconds = statistics.median(r["seconds"] for r in cases)
        speed = iterations / seconds
        ratio = speed / raw_speed
        r0 = cases[0]
        loop_s = seconds - fixed_s
        loop_ratio = f"{raw_s / loop_s:.3f}" if loop_s > 0 else "n/a"
        rows.append(dict(bench="compute", name=label, value=f"{speed / 1e6:.2f} M iter/s",
                         detail=(f"{seconds:.3f} s boot; icount {r0['icount']:,}; "
                                 f"{r0['preemptions']} preemptions (quantum {r0['quantum']:,}); "
                                 f"{r0['exits']} vCPU exits; result verified; "
                                 f"loop-only ratio {loop_ratio} after taking off the "
                                 f"{fixed_s * 1e3:.1f} ms of a `compute 0` run (information only)"),
                         ratio=ratio, target=f">= {TARGET_COMPUTE_RATIO}", met=ratio >= TARGET_COMPUTE_RATIO,
                         key=f"compute.ratio_{key}", number=ratio))
        if r0["preemptions"] == 0:
            raise SystemExit(f"{label}: no quantum preemption happened; the benchmark would not be measuring it")
    return rows


# --- 2. anonymous first-touch faults ----------------------------------------

def guest_memhog(size: str, cmdline: str = "") -> tuple[float, int]:
    """(wall seconds from boot to the program's exit call, pgfault) of `memhog SIZE 1` in a
    512 MiB guest. The teardown of the address space after exit is not a fault: it is timed
    separately (see teardown_seconds)."""
    import guestos.kernel.exit as kexit
    m = Machine(MachineConfig(mem=512 * MiB, cmdline=cmdline))
    m.load(firmware("memhog"), "/bin/memhog", [size, "1"])
    stamps = []
    real_exit = kexit.exit_with_status        # where exit(2) and exit_group(2) both end

    def stamped_exit(kernel, task, *args, **kwargs):
        stamps.append(time.perf_counter())
        return real_exit(kernel, task, *args, **kwargs)

    kexit.exit_with_status = stamped_exit
    try:
        start = time.perf_counter()
        status = m.boot()
    finally:
        kexit.exit_with_status = real_exit
    teardown_seconds.setdefault((size, cmdline), []).append(start + m.wall_s - stamps[0])
    m.wall_s = stamps[0] - start
    if status != 0 or b"pages verified" not in m.console_output:
        raise SystemExit(f"guest memhog {size} failed (status {status:#x}): {bytes(m.console_output)[-300:]!r}")
    result = (m.wall_s, m.kernel.vmstat_snapshot()["pgfault"])
    m.close()
    del m
    release()
    return result


teardown_seconds = {}   # (size, cmdline) -> seconds of exit_mmap after each run


def native_memhog(size: str) -> tuple[float, int]:
    """(wall seconds, minor faults) of firmware/bin/memhog run on the host."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(FIRMWARE / "memhog"), size, "1"], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"native memhog {size} exited with {proc.returncode}")
    return seconds, usage.ru_minflt


def _fault_rate(pairs) -> tuple[float, int, float]:
    """pairs: [((t_small, f_small), (t_big, f_big))] -> (median faults/s, faults, median extra seconds)."""
    extra = [big[0] - small[0] for small, big in pairs]
    faults = [big[1] - small[1] for small, big in pairs]
    rates = [f / t for f, t in zip(faults, extra)]
    return statistics.median(rates), int(statistics.median(faults)), statistics.median(extra)


def bench_faults(runs: int) -> list[dict]:
    fast, slow, native = [], [], []
    for _ in range(runs):
        fast.append((guest_memhog("4K"), guest_memhog("256M")))
        slow.append((guest_memhog("4K", "nofastfault"), guest_memhog("256M", "nofastfault")))
        native.append((native_memhog("4K"), native_memhog("256M")))
    fast_rate, fast_faults, fast_s = _fault_rate(fast)
    slow_rate, slow_faults, slow_s = _fault_rate(slow)
    nat_rate, nat_faults, nat_s = _fault_rate(native)
    pages = 256 * MiB // PAGE
    thp = _thp_mode()
    rows = [
        dict(bench="faults", name="guest, native fast path (default)", value=f"{fast_rate:,.0f} faults/s",
             detail=f"{fast_faults:,} faults in {fast_s:.3f} s (256M run minus 4K run)",
             ratio=fast_rate / slow_rate, ratio_of="nofastfault",
             target=f">= {TARGET_FAULT_RATE:,}/s", met=fast_rate >= TARGET_FAULT_RATE,
             key="faults.fast_per_s", number=fast_rate),
        dict(bench="faults", name="guest, nofastfault (Python slow path)", value=f"{slow_rate:,.0f} faults/s",
             detail=f"{slow_faults:,} faults in {slow_s:.3f} s; baseline of the ratio above",
             key="faults.slow_per_s", number=slow_rate),
        dict(bench="faults", name="native Linux host, same binary", value=f"{nat_rate:,.0f} faults/s",
             detail=(f"{nat_faults:,} minor faults (ru_minflt) in {nat_s:.4f} s; "
                     f"{pages / nat_s:,.0f} pages/s touched; THP {thp}; context only"),
             key="faults.native_per_s", number=nat_rate),
    ]
    teardown = statistics.median(teardown_seconds[("256M", "")])
    rows.append(dict(bench="faults", name="guest, exit teardown of 256 MiB (not faults)",
                     value=f"{pages / teardown:,.0f} pages/s",
                     detail=f"exit_mmap: {pages:,} pages unmapped and freed in {teardown:.3f} s, reported apart",
                     key="faults.teardown_pages_per_s", number=pages / teardown))
    if min(fast_faults, slow_faults) < pages - 1:       # the 4K run's one page is subtracted
        rows[0]["detail"] += f" (WARNING: fewer faults than the {pages - 1:,} extra pages touched)"
    return rows


def _thp_mode() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
        match = re.search(r"\[(\w+)\]", text)
        return match.group(1) if match else "?"
    except OSError:
        return "n/a"


# --- 3. boot time ------------------------------------------------------------

def boot_to_first_insn(hello: bytes) -> tuple[float, float]:
    """(Machine() -> first vcpu.run() call, Machine() -> power off) for hello in a 512 MiB guest."""
    first = []
    start = time.perf_counter()
    m = Machine(MachineConfig(mem=512 * MiB))
    real_run = m.cpu.run

    def run_and_note():               # benchmark-only instrumentation: note the first KVM_RUN
        if not first:
            first.append(time.perf_counter())
        return real_run()

    m.cpu.run = run_and_note
    m.load(hello, "/bin/hello", [])
    status = m.boot()
    total = time.perf_counter() - start
    if status != 0 or b"Hello from the Ballast guest!" not in m.console_output or not first:
        raise SystemExit(f"guest hello failed (status {status:#x}): {bytes(m.console_output)[-300:]!r}")
    m.close()
    del m
    release()
    return first[0] - start, total


def bare_unicorn_512m() -> float:
    """Uc() creation plus mapping a 512 MiB host mmap into it, as the VMM does."""
    from unicorn import UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, Uc
    start = time.perf_counter()
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    mem = mmap.mmap(-1, 512 * MiB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    anchor = ctypes.c_char.from_buffer(mem)
    uc.mem_map_ptr(0, 512 * MiB, UC_PROT_ALL, ctypes.addressof(anchor))
    seconds = time.perf_counter() - start
    uc.mem_unmap(0, 512 * MiB)
    del uc, anchor
    mem.close()
    release()
    return seconds


def bench_boot(runs: int) -> list[dict]:
    hello = firmware("hello")
    to_user, total, bare = [], [], []
    for _ in range(runs):
        a, b = boot_to_first_insn(hello)
        to_user.append(a)
        total.append(b)
        bare.append(bare_unicorn_512m())
    boot_s = statistics.median(to_user)
    bare_s = statistics.median(bare)
    return [
        dict(bench="boot", name="Machine() to first user instruction (hello, 512M)", value=f"{boot_s * 1e3:.1f} ms",
             detail=f"whole run to power off {statistics.median(total) * 1e3:.1f} ms",
             ratio=boot_s / bare_s, ratio_of="bare Uc", target=f"< {TARGET_BOOT_S * 1e3:.0f} ms",
             met=boot_s < TARGET_BOOT_S, key="boot.first_user_insn_s", number=boot_s),
        dict(bench="boot", name="bare Uc() + 512 MiB mmap + mem_map_ptr", value=f"{bare_s * 1e3:.2f} ms",
             detail="context: the floor any machine pays", key="boot.bare_unicorn_s", number=bare_s),
    ]


# --- 4. virtio-blk sequential read, host cache hot -------------------------------

BLK_IMAGE_MIB = 64


def blk_image() -> Path:
    """A 64 MiB image of deterministic bytes, made once per run in a temporary directory."""
    import hashlib
    import tempfile
    path = Path(tempfile.gettempdir()) / f"ballast-bench-{os.getpid()}.img"
    if not path.exists():
        path.write_bytes(hashlib.shake_256(b"ballast bench").digest(BLK_IMAGE_MIB * MiB))
    return path


def guest_blk_read(host, image: Path, read_size: int, cmdline: str, passes: int = 1) -> tuple[float, int]:
    """(wall seconds of the guest run, boot included, virtio IN requests) for vdread over /dev/vda."""
    from vmm.machine import DiskConfig
    m = Machine(MachineConfig(mem=256 * MiB, cmdline=cmdline, disks=[DiskConfig(str(image))]), host=host)
    m.load(firmware("vdread"), "/bin/vdread", ["/dev/vda", str(read_size), str(passes)])
    status = m.boot()
    if status != 0 or not m.console_output.startswith(b"%d bytes" % (passes * BLK_IMAGE_MIB * MiB)):
        raise SystemExit(f"guest vdread failed (status {status:#x}): {bytes(m.console_output)[-300:]!r}")
    requests = m.disks[0][2].counters.requests["in"]
    seconds = m.wall_s
    m.close()
    return seconds, requests


def host_pread_loop(image: Path, size: int = 64 << 10) -> float:
    fd = os.open(image, os.O_RDONLY)
    try:
        start = time.perf_counter()
        offset = 0
        while True:
            data = os.pread(fd, size, offset)
            if not data:
                break
            offset += len(data)
        return time.perf_counter() - start
    finally:
        os.close(fd)


def bench_blk(runs: int) -> list[dict]:
    """Sequential reads of the image through /dev/vda with the host cache hot. The figure is one pass of
    the read loop (a 3-pass run minus a 1-pass run, halved: boot and exit cancel out), as the host's
    pread loop is timed without starting a process; the whole 1-pass run, boot included, is in the detail."""
    from devices.host import Host
    image = blk_image()
    host = Host()
    cases = (("guest /dev/vda, 64 KiB read() calls", "read64k", 64 << 10, ""),
             ("guest /dev/vda, 1 MiB read() calls in 64 KiB requests", "read1m", 1 << 20,
              "virtio_blk.max_sectors_kb=64"))
    try:
        guest_blk_read(host, image, 64 << 10, "")          # warm the host cache (and the host's own)
        samples = {key: ([], [], []) for _, key, _, _ in cases}     # per pass, whole 1-pass run, requests
        host_s = []
        for _ in range(runs):
            for _, key, size, cmdline in cases:
                one, requests = guest_blk_read(host, image, size, cmdline, passes=1)
                three, _ = guest_blk_read(host, image, size, cmdline, passes=3)
                samples[key][0].append((three - one) / 2)
                samples[key][1].append(one)
                samples[key][2].append(requests)
            host_s.append(host_pread_loop(image))
        if host.cache.misses != BLK_IMAGE_MIB * MiB // PAGE:
            raise SystemExit("blk benchmark: the host cache was not hot after the first pass")
    finally:
        host.close()
        image.unlink()
    nbytes = BLK_IMAGE_MIB * MiB
    base_s = statistics.median(host_s)
    rows = [dict(bench="blk", name="host pread loop, 64 KiB reads (baseline)", value=f"{nbytes / base_s / 1e9:.2f} GB/s",
                 detail=f"{BLK_IMAGE_MIB} MiB in {base_s * 1e3:.1f} ms, os.pread on the image in the host's page cache",
                 key="blk.host_pread_gb_s", number=nbytes / base_s / 1e9)]
    for label, key, _, _ in cases:
        per_pass, whole, requests = samples[key]
        secs, whole_s = statistics.median(per_pass), statistics.median(whole)
        ratio = base_s / secs
        rows.append(dict(bench="blk", name=label, value=f"{nbytes / secs / 1e9:.2f} GB/s",
                         detail=f"{requests[0]} virtio requests in {secs * 1e3:.1f} ms per pass "
                                f"(3 passes minus 1, halved); host cache hot; the whole 1-pass run with boot "
                                f"{whole_s * 1e3:.1f} ms ({base_s / whole_s:.2f}x host pread, information only)",
                         ratio=ratio, ratio_of="host pread", target=f">= {TARGET_BLK_RATIO}",
                         met=ratio >= TARGET_BLK_RATIO, key=f"blk.ratio_{key}", number=ratio))
    return rows


# --- 5. reading a file already in the guest page cache ----------------------------

def guest_vdread_passes(image: str, passes: int, read_size: int = 64 << 10) -> float:
    from vmm.machine import DiskConfig
    m = Machine(MachineConfig(mem=256 * MiB, disks=[DiskConfig(image, snapshot=True)]))
    m.load(None, "/bin/vdread", ["/data/stream.bin", str(read_size), str(passes)], root_device="/dev/vda")
    status = m.boot()
    if status != 0 or not m.console_output.startswith(b"%d bytes" % (passes * 64 * MiB)):
        raise SystemExit(f"guest vdread failed (status {status:#x}): {bytes(m.console_output)[-300:]!r}")
    seconds = m.wall_s
    m.close()
    return seconds


def host_memcpy(nbytes: int) -> float:
    import ctypes
    src, dst = bytearray(nbytes), bytearray(nbytes)
    s = ctypes.addressof(ctypes.c_char.from_buffer(src))
    d = ctypes.addressof(ctypes.c_char.from_buffer(dst))
    ctypes.memmove(d, s, nbytes)                   # touch both once
    start = time.perf_counter()
    ctypes.memmove(d, s, nbytes)
    return time.perf_counter() - start


def bench_pagecache(runs: int) -> list[dict]:
    """Wall time of one extra pass over a 64 MiB file the guest already caches: (4 passes - 2 passes) / 2.
    Passes 1 and 2 read the file in and activate its pages (mark_page_accessed); passes 3 and 4 are
    the steady state of a cached file that keeps being read."""
    from vmm.rootfs import builtin_root
    image = builtin_root()
    cached, copies = [], []
    for _ in range(runs):
        two = guest_vdread_passes(image, 2)
        four = guest_vdread_passes(image, 4)
        cached.append((four - two) / 2)
        copies.append(host_memcpy(64 * MiB))
    pass_s, copy_s = statistics.median(cached), statistics.median(copies)
    ratio = copy_s / pass_s
    return [
        dict(bench="pagecache", name="host memcpy of 64 MiB (baseline)", value=f"{64 / 1024 / copy_s:.2f} GiB/s",
             detail=f"{copy_s * 1e3:.1f} ms", key="pagecache.memcpy_gib_s", number=64 / 1024 / copy_s),
        dict(bench="pagecache", name="guest read() of a page-cached 64 MiB file, 64 KiB reads",
             value=f"{64 / 1024 / pass_s:.2f} GiB/s", ratio=ratio, ratio_of="host memcpy",
             target=f">= {TARGET_PAGECACHE_RATIO}", met=ratio >= TARGET_PAGECACHE_RATIO,
             detail=f"{pass_s * 1e3:.1f} ms per pass (4 passes minus 2, halved); ext2 root, built-in image",
             key="pagecache.ratio", number=ratio),
    ]


# --- ext2 directory of a build's objects ----------------------------------------

EXT2DIR_FILES = 3072        # one object file per source of the paper's tree


def ext2_flat_dir(cache_blocks: int) -> float:
    """Seconds to create EXT2DIR_FILES files in one directory of an in-memory 4 KiB-block ext2 (mke2fs,
    no dir_index) and look each up once, with `cache_blocks` parsed directory blocks kept."""
    from guestos.fs import ext2
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "fs.img"
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", "4096", "-O", "^dir_index", str(image), "64M"],
                       check=True, capture_output=True)
        mem = bytearray(image.read_bytes())
    saved, ext2.DIR_BLOCK_CACHE = ext2.DIR_BLOCK_CACHE, cache_blocks
    try:
        fs = ext2.Ext2Fs.mount(ext2.FileBlockIO(mem), now=lambda: 0)
        d = fs.mkdir(ext2.EXT2_ROOT_INO, "obj")
        started = time.perf_counter()
        for i in range(EXT2DIR_FILES):
            fs.create(d, f"object-{i:05d}.o")
        for i in range(EXT2DIR_FILES):
            fs.lookup(d, f"object-{i:05d}.o")
        return time.perf_counter() - started
    finally:
        ext2.DIR_BLOCK_CACHE = saved


def host_flat_dir() -> float:
    """The same creates and lookups on the host's own file system (a temporary directory)."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        for i in range(EXT2DIR_FILES):
            os.close(os.open(f"{tmp}/object-{i:05d}.o", os.O_CREAT | os.O_WRONLY, 0o644))
        for i in range(EXT2DIR_FILES):
            os.stat(f"{tmp}/object-{i:05d}.o")
        return time.perf_counter() - started


def bench_ext2dir(runs: int) -> list[dict]:
    host = statistics.median(host_flat_dir() for _ in range(runs))
    cached = statistics.median(ext2_flat_dir(1024) for _ in range(runs))
    parsed = ext2_flat_dir(0)
    n = 2 * EXT2DIR_FILES
    return [
        dict(bench="ext2dir", name=f"host: {EXT2DIR_FILES} creates + lookups in one directory (baseline)",
             value=f"{n / host:,.0f} ops/s", detail=f"{host * 1e3:.1f} ms; the host's own file system",
             key="ext2dir.host_ops_s", number=n / host),
        dict(bench="ext2dir", name="ext2: the same in one directory of an in-memory image",
             value=f"{n / cached:,.0f} ops/s", ratio=host / cached, ratio_of="host",
             detail=(f"{cached:.2f} s; every directory block parsed on each scan instead (the cache off, "
                     f"one run): {parsed:.2f} s, {parsed / cached:.1f}x slower"),
             key="ext2dir.ops_s", number=n / cached),
    ]


# --- 6. reclaim scan rate -----------------------------------------------------

def reclaim_scan_rate(pure: bool) -> tuple[float, int]:
    """A 1 GiB guest whose memory is filled with clean, unmapped page-cache pages (added
    directly, no I/O), then one direct reclaim asked to free all of them: pages scanned per second.
    pure: the guest's reclaim hot path (cython_ext.reclaim) runs as its Python source."""
    import cython_ext
    from guestos.mm import vmscan
    from guestos.mm.filemap import AddressSpace
    from guestos.mm.mm_types import PG_uptodate

    class _Aops:
        def i_size(self):
            return 1 << 40

    saved, cython_ext.PURE = cython_ext.PURE, pure       # the kernel loads the hot path at boot
    try:
        m = Machine(MachineConfig(mem=1024 * MiB))
        m.load(firmware("hello"), "/bin/hello", [])
        m.boot()
    finally:
        cython_ext.PURE = saved
    k = m.kernel
    if k.mem_map.hotpath.__file__.endswith(".py") != pure:
        raise SystemExit(f"reclaim benchmark: wanted pure={pure}, the kernel loaded {k.mem_map.hotpath.__file__}")
    mapping = AddressSpace(k, 0x5A5A << 1, _Aops(), None)
    n = 0
    while k.page_alloc.nr_free_pages > k.page_alloc.zone.watermark[2] + 64:
        k.mem_map.set(mapping.add_to_page_cache(n), PG_uptodate)
        n += 1
    before = k.vmstat["pgscan_direct"]
    start = time.perf_counter()
    vmscan.try_to_free_pages(k, n)
    seconds = time.perf_counter() - start
    scanned = k.vmstat["pgscan_direct"] - before
    if k.vmstat["pgsteal_direct"] != scanned or mapping.nrpages:
        raise SystemExit(f"reclaim benchmark: {scanned} pages scanned, {k.vmstat['pgsteal_direct']} freed, "
                         f"{mapping.nrpages} left in the page cache")
    m.close()
    del m, k, mapping
    release()
    return scanned / seconds, scanned


def bench_reclaim(runs: int) -> list[dict]:
    fast, slow = [], []
    for _ in range(max(1, runs // 2)):       # interleaved, so drift in host speed hits both alike
        fast.append(reclaim_scan_rate(pure=False))
        slow.append(reclaim_scan_rate(pure=True))
    rate = statistics.median(r for r, _ in fast)
    pure_rate = statistics.median(r for r, _ in slow)
    ratio = rate / pure_rate
    return [dict(bench="reclaim", name="reclaim scan, 1 GiB of clean page cache, compiled",
                 value=f"{rate:,.0f} pages/s", ratio=ratio, ratio_of="uncompiled",
                 target=f">= {TARGET_RECLAIM_RATE:,}/s and >= {TARGET_RECLAIM_RATIO}x",
                 met=rate >= TARGET_RECLAIM_RATE and ratio >= TARGET_RECLAIM_RATIO,
                 detail=(f"{fast[0][1]:,} pages scanned and freed by one try_to_free_pages() in "
                         f"{fast[0][1] / rate * 1e3:.1f} ms; cython_ext.reclaim compiled; median of {len(fast)} "
                         f"runs of each, interleaved"),
                 key="reclaim.pages_per_s", number=rate),
            dict(bench="reclaim", name="reclaim scan, same, uncompiled (baseline)",
                 value=f"{pure_rate:,.0f} pages/s",
                 detail=(f"{slow[0][1]:,} pages in {slow[0][1] / pure_rate:.2f} s; the same source run as "
                         f"Python (BALLAST_PURE=1); baseline of the ratio above"),
                 key="reclaim.pure_pages_per_s", number=pure_rate)]


# --- 7. balloon inflate rate ---------------------------------------------------

def balloon_inflate_rate() -> tuple[float, float, float]:
    """A 2 GiB guest that dirtied 1.5 GiB and freed it inflates a 1 GiB balloon, end to end (the
    driver's allocations and PFN arrays, the queue, the device, madvise). Beside it the host's own
    madvise(MADV_DONTNEED) of 1 GiB of dirty memory. -> (pages/s, RSS fall in MiB, host pages/s)"""
    from vmm.memory import process_rss_bytes
    from vmm.session import GuestSession

    session = GuestSession(MachineConfig(mem=2048 * MiB, balloon_features=1),
                           initramfs={"/bin/memhog": firmware("memhog")}).start()
    session.run(["/bin/memhog", "1536M"])
    rss = process_rss_bytes()
    start = time.perf_counter()
    session.set_balloon_mib(1024)
    if not session.wait_balloon():
        raise SystemExit("the balloon did not reach 1 GiB")
    seconds = time.perf_counter() - start
    fallen = (rss - process_rss_bytes()) / MiB
    pages = session.balloon.actual_pages
    session.close()
    release()
    area = mmap.mmap(-1, 1024 * MiB)
    area.write(b"\1" * (1024 * MiB))
    start = time.perf_counter()
    area.madvise(mmap.MADV_DONTNEED)
    host = (1024 * MiB // PAGE) / (time.perf_counter() - start)
    area.close()
    return pages / seconds, fallen, host


def bench_balloon(runs: int) -> list[dict]:
    results = [balloon_inflate_rate() for _ in range(max(1, runs // 2))]
    rate = statistics.median(r for r, _, _ in results)
    host = statistics.median(h for _, _, h in results)
    return [dict(bench="balloon", name="balloon inflate, 1 GiB of a 2 GiB guest (dirtied first)",
                 value=f"{rate:,.0f} pages/s", target=f">= {TARGET_INFLATE_RATE:,}/s",
                 met=rate >= TARGET_INFLATE_RATE,
                 detail=f"RSS fell {results[0][1]:,.0f} MiB; the host's own madvise of 1 GiB: {host:,.0f} pages/s "
                        f"({rate / host:.2f}x of it)",
                 key="balloon.inflate_pages_per_s", number=rate)]


# --- 8. the whole balloon CI test, one process, against QEMU TCG + Linux -------------

REFERENCE_QEMU_CPU_S = 3.9        # the team's REFERENCE.md: Linux 6.1 under QEMU 7.2 TCG, same test


def ci_child_env(pycache: str) -> dict:
    """The child's environment: bytecode caching on (as an installed package has its .pyc files), in a
    directory of this run's own, so the checkout is not written to."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def ballast_ci_run(env: dict) -> dict:
    """bench/balloon_ci.py as a process of its own: its CPU time (user + sys, from wait4)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parent / "balloon_ci.py")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    # communicate() reaped it: its usage is in the children's total, taken around the call below
    return dict(out=out.decode(errors="replace"), err=err.decode(errors="replace"), status=proc.returncode,
                wall_s=time.perf_counter() - start)


def _child_cpu(run) -> tuple[float, object]:
    """(user + sys seconds of the children reaped while run() ran, its result)."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), result


def bench_ci(runs: int) -> list[dict]:
    """The balloon CI test of bench/balloon_ci.py (boot 512 MiB on the built-in ext2 root, read 64 MiB,
    shrink to 384 MiB, wait for actual == target, check MemTotal and Cached) against the same test on QEMU
    TCG with a Debian cloud kernel (bench/qemu_balloon_ci.py), in turn; QEMU only where it is installed."""
    import tempfile
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import qemu_balloon_ci
    from vmm.rootfs import builtin_root

    missing = qemu_balloon_ci.available()
    root = builtin_root()
    ballast, qemu, qemu_wall, walls = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="ballast-pyc-") as pycache:
        env = ci_child_env(pycache)

        def one_ballast():
            cpu, r = _child_cpu(lambda: ballast_ci_run(env))
            if r["status"] != 0 or "balloon_ci: ok" not in r["out"]:
                raise SystemExit(f"balloon CI test failed ({r['status']}): {r['out'][-300:]} {r['err'][-600:]}")
            return cpu, r

        one_ballast()                   # untimed: writes the .pyc files and the built-in root's note
        if missing is None:
            qemu_balloon_ci.run(root)   # untimed: the host's page cache holds the kernel and the image
        for _ in range(runs):
            cpu, r = one_ballast()
            ballast.append(cpu)
            walls.append(r["wall_s"])
            if missing is None:
                got = qemu_balloon_ci.run(root)
                qemu.append(got["cpu_s"])
                qemu_wall.append(got["wall_s"])
    b = statistics.median(ballast)
    rows = [dict(bench="ci", name="balloon CI test, one Ballast process (512M, read 64 MiB, shrink to 384M)",
                 value=f"{b:.3f} s CPU",
                 detail=f"user + sys of `python bench/balloon_ci.py` (start-up and imports included), "
                        f"{statistics.median(walls):.2f} s wall; runs {', '.join(f'{c:.3f}' for c in ballast)} s",
                 key="ci.ballast_cpu_s", number=b)]
    if qemu:
        q = statistics.median(qemu)
        rows[0].update(ratio=b / q, ratio_of="QEMU", target=f"<= {TARGET_CI_RATIO:.2f}x QEMU",
                       met=b / q <= TARGET_CI_RATIO)
        kernel = Path(qemu_balloon_ci.kernel()[0]).name
        rows.append(dict(bench="ci", name="the same test on QEMU TCG + Linux (baseline)", value=f"{q:.2f} s CPU",
                         detail=f"qemu-system-x86_64 {_qemu_version()}, {kernel}, busybox initramfs, `dd bs=64k`, "
                                f"QMP balloon + query-balloon; user + sys of qemu (all threads), "
                                f"{statistics.median(qemu_wall):.1f} s wall; runs {', '.join(f'{c:.2f}' for c in qemu)} s",
                         key="ci.qemu_cpu_s", number=q))
    else:
        rows[0].update(target=f"<= {TARGET_CI_RATIO * REFERENCE_QEMU_CPU_S:.2f} s (0.1x QEMU's reference)",
                       detail=rows[0]["detail"] + f"; QEMU baseline skipped: {missing} (REFERENCE.md: "
                                                  f"{REFERENCE_QEMU_CPU_S} s CPU on QEMU 7.2 TCG + Linux 6.1)")
    return rows


def _qemu_version() -> str:
    try:
        out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout
        return out.split("version", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


# --- warm-up and profile -----------------------------------------------------

def warm_up() -> None:
    """One untimed pass of each path, so that first-use costs (imports, lazily
    loaded code, the allocator's first large mappings) are not in any median."""
    data = firmware("compute")
    raw_compute(data, 10_000)
    guest_compute(data, 10_000)
    guest_memhog("4K")
    boot_to_first_insn(firmware("hello"))
    bare_unicorn_512m()


def profile(case: str, iterations: int) -> None:
    import cProfile
    import pstats
    data = firmware("compute")
    calls = {
        "compute": lambda: guest_compute(data, iterations),
        "compute-q1m": lambda: guest_compute(data, iterations, "sched_quantum=1000000"),
        "faults": lambda: guest_memhog("256M"),
        "faults-slow": lambda: guest_memhog("256M", "nofastfault"),
        "boot": lambda: boot_to_first_insn(firmware("hello")),
    }
    warm_up()
    prof = cProfile.Profile()
    prof.enable()
    calls[case]()
    prof.disable()
    print(f"cProfile of {case!r}, top 15 by cumulative time:")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(15)


# --- report --------------------------------------------------------------------

def host_info() -> dict:
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if model == "?":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    try:
        cpus = len(os.sched_getaffinity(0))          # what `nproc` prints
    except AttributeError:
        cpus = os.cpu_count()
    import unicorn
    return {"cpu": model, "nproc": cpus, "python": platform.python_version(),
            "unicorn": unicorn.__version__, "os": f"{platform.system()} {platform.release()}",
            "thp": _thp_mode()}


def _fmt_ratio(row: dict) -> str:
    if "ratio" not in row:
        return ""
    of = row.get("ratio_of", "raw")
    return f"{row['ratio']:.2f}x {of}" if of != "raw" else f"{row['ratio']:.3f}"


def _status(row: dict) -> str:
    if "met" not in row:
        return ""
    return "met" if row["met"] else "MISSED"


def print_table(rows: list[dict], title: str) -> None:
    """The figures as a table, then one note per row with the details."""
    headers = ("#", "Benchmark", "Measure", "Value", "Ratio", "Target", "Status")
    cells = [(str(i), r["bench"], r["name"], r["value"], _fmt_ratio(r), r.get("target", ""), _status(r))
             for i, r in enumerate(rows, 1)]
    notes = [f"[{i}] {r['detail']}" for i, r in enumerate(rows, 1)]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        print("  ".join("-" * w for w in widths))
        for c in cells:
            print("  ".join(v.ljust(w) for v, w in zip(c, widths)))
        print()
        print("\n".join(notes))
        return
    console = Console() if sys.stdout.isatty() else Console(width=160)
    table = Table(title=title)
    for h in headers:
        table.add_column(h, overflow="fold", justify="right" if h in ("#", "Value", "Ratio") else "left")
    for c in cells:
        style = {"met": "green", "MISSED": "bold red"}.get(c[6], "")
        table.add_row(*c[:6], f"[{style}]{c[6]}[/]" if style else c[6])
    console.print(table)
    for note in notes:
        console.print(note, markup=False, highlight=False)


BEGIN = "<!-- bench-run {key} -->"
END = "<!-- /bench-run -->"
HEADER = """# Ballast benchmark results

Written by `python3 bench/run.py --write`; see `bench/README.md` for what each
figure means. Each section is one run (medians of N repetitions); a re-run on
the same day, host and mode replaces its section, other sections are kept.
Ratios are against a baseline measured in the same run, so they compare
across hosts better than the absolute figures do.
"""


def write_results(rows: list[dict], info: dict, args, iterations: int) -> None:
    today = datetime.date.today().isoformat()
    mode = "quick" if args.quick else "full"
    key = f"{today}|{info['cpu']}|{info['nproc']}|{mode}|runs={args.runs}|{','.join(args.only)}"
    lines = [BEGIN.format(key=key),
             f"## {today}, {mode} mode ({args.runs} runs each, median; compute ITER={iterations:,})",
             "",
             f"- CPU: {info['cpu']} (`nproc` {info['nproc']})",
             f"- Python {info['python']}, Unicorn {info['unicorn']}, {info['os']}, THP {info['thp']}",
             "",
             "| Benchmark | Measure | Value | Ratio | Target | Status | Detail |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = (r["bench"], r["name"], r["value"], _fmt_ratio(r), r.get("target", ""), _status(r), r["detail"])
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    lines.append(END)
    section = "\n".join(lines) + "\n"

    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    pattern = re.compile(re.escape(BEGIN.format(key=key)) + r".*?" + re.escape(END) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


# --- 8. the system call path, untraced and under strace ----------------------------

SYSCALLS_N = 100_000


def guest_syscalls(n: int, cmdline: str = "", debugcon=None) -> float:
    """Wall seconds of /bin/syscalls N (N getppid calls) as the machine's init."""
    m = Machine(MachineConfig(mem=64 * MiB, cmdline=cmdline), debugcon_sink=debugcon)
    m.load(firmware("syscalls"), "/bin/syscalls", [str(n)])
    status = m.boot()
    if status != 0 or not m.console_output.startswith(b"syscalls: %d" % n):
        raise SystemExit(f"guest syscalls failed (status {status:#x}): {bytes(m.console_output)[-300:]!r}")
    seconds = m.wall_s
    m.close()
    release()
    return seconds


def bench_syscalls(runs: int) -> list[dict]:
    """System calls per wall second: untraced (the baseline), and with `strace` writing every line
    (to a sink that drops them): the price of a trace, and the untraced rate is what the
    tracer must not change."""
    plain, traced = [], []
    for _ in range(runs):
        plain.append(guest_syscalls(SYSCALLS_N))
        traced.append(guest_syscalls(SYSCALLS_N, "strace", debugcon=lambda data: None))
    plain_s, traced_s = statistics.median(plain), statistics.median(traced)
    return [
        dict(bench="syscalls", name=f"getppid() x {SYSCALLS_N:,}, untraced (baseline)",
             value=f"{SYSCALLS_N / plain_s / 1000:.0f}k/s", detail=f"{plain_s * 1e6 / SYSCALLS_N:.2f} us per call",
             key="syscalls.untraced_per_s", number=SYSCALLS_N / plain_s),
        dict(bench="syscalls", name=f"getppid() x {SYSCALLS_N:,}, under strace",
             value=f"{SYSCALLS_N / traced_s / 1000:.0f}k/s", ratio=plain_s / traced_s, ratio_of="untraced",
             detail=f"{traced_s * 1e6 / SYSCALLS_N:.2f} us per call", key="syscalls.traced_ratio",
             number=plain_s / traced_s),
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 runs each and a shorter compute loop")
    p.add_argument("--runs", type=int, help="repetitions per figure (default 5, or 2 with --quick)")
    p.add_argument("--write", action="store_true", help="add or update this run's section in bench/RESULTS.md")
    p.add_argument("--only", default=",".join(BENCHMARKS),
                   help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--iterations", type=int, help="compute loop iterations (default 20M, 5M with --quick)")
    p.add_argument("--profile", choices=PROFILE_CASES,
                   help="instead of benchmarking, print a cProfile (top 15, cumulative) of one case")
    args = p.parse_args(argv)
    args.runs = args.runs or (2 if args.quick else 5)
    args.only = [b.strip() for b in args.only.split(",") if b.strip()]
    for b in args.only:
        if b not in BENCHMARKS:
            p.error(f"unknown benchmark {b!r} (choose from {', '.join(BENCHMARKS)})")
    iterations = args.iterations or (ITER_QUICK if args.quick else ITER_FULL)

    if args.profile:
        profile(args.profile, iterations)
        return 0

    info = host_info()
    print(f"{info['cpu']}, nproc {info['nproc']}, Python {info['python']}, Unicorn {info['unicorn']}; "
          f"{args.runs} runs each", flush=True)
    warm_up()
    rows = []
    started = time.perf_counter()
    if "compute" in args.only:
        rows += bench_compute(args.runs, iterations)
    if "faults" in args.only:
        rows += bench_faults(args.runs)
    if "boot" in args.only:
        rows += bench_boot(args.runs)
    if "blk" in args.only:
        rows += bench_blk(args.runs)
    if "pagecache" in args.only:
        rows += bench_pagecache(args.runs)
    if "reclaim" in args.only:
        rows += bench_reclaim(args.runs)
    if "balloon" in args.only:
        rows += bench_balloon(args.runs)
    if "syscalls" in args.only:
        rows += bench_syscalls(args.runs)
    if "ci" in args.only:
        rows += bench_ci(args.runs)
    if "ext2dir" in args.only:
        rows += bench_ext2dir(args.runs)
    print_table(rows, f"Ballast benchmarks (median of {args.runs}; {time.perf_counter() - started:.0f} s)")
    if args.write:
        write_results(rows, info, args, iterations)
    return 0


if __name__ == "__main__":
    sys.exit(main())
