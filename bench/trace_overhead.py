#!/usr/bin/env python3
"""What the kernel's tracepoints cost with tracing off: the same reclaim-heavy work run from a checkout
without them (the baseline, e.g. main before the trace) and from this one, in turn, each in a fresh process;
and, for the reader, what tracing on costs (jsonl to a file).

    python3 bench/trace_overhead.py --baseline DIR [--runs N]

DIR is another checkout with its native modules built in place (`python3 setup.py build_ext --inplace`).
Figures are CPU seconds of the work (process time, imports and boot excluded), medians of N runs; the
ratio is this checkout's over the baseline's. Nothing is asserted."""
import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The work, run in a child whose sys.path starts at the tree under test. Prints CPU seconds.
CASES = {
    # one direct reclaim of 1 GiB of clean page cache: the compiled hot path, page by page
    "reclaim scan": """
from bench.run import Machine, MachineConfig, firmware, MiB
from guestos.mm import vmscan
from guestos.mm.filemap import AddressSpace
from guestos.mm.mm_types import PG_uptodate
class Aops:
    def i_size(self): return 1 << 40
m = Machine(MachineConfig(mem=1024 * MiB)); m.load(firmware("hello"), "/bin/hello", []); m.boot()
k = m.kernel
TRACE(m)
mapping = AddressSpace(k, 0x5A5A << 1, Aops(), None)
n = 0
while k.page_alloc.nr_free_pages > k.page_alloc.zone.watermark[2] + 64:
    k.mem_map.set(mapping.add_to_page_cache(n), PG_uptodate); n += 1
t = time.process_time(); vmscan.try_to_free_pages(k, n); print(time.process_time() - t)
""",
    # a program swapping: anonymous reclaim through the Python path, kswapd, swap out and in
    "memhog swapping": """
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.swapdisk import make_swap_image
swap = make_swap_image(64 << 20)
m = Machine(MachineConfig(mem=32 << 20, cmdline="swap=/dev/vda", disks=[DiskConfig(swap)]))
TRACE(m)
m.load(open("firmware/bin/memhog", "rb").read(), "/bin/memhog", ["48M", "2"])
t = time.process_time(); m.boot(); print(time.process_time() - t)
os.unlink(swap)
""",
}
TRACE_OFF = "def TRACE(m): pass\n"
TRACE_ON = """def TRACE(m):
    from vmm.trace import TraceWriter
    import atexit, tempfile
    w = TraceWriter(tempfile.mktemp(suffix=".jsonl"), "jsonl"); w.attach(m); atexit.register(w.close)
"""


def measure(tree: Path, case: str, trace: bool) -> float:
    code = "import os, sys, time\nsys.path.insert(0, os.getcwd())\n" + (TRACE_ON if trace else TRACE_OFF) + \
        CASES[case]
    env = {**os.environ, "PYTHONPATH": str(tree), "BALLAST_PURE": "0"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{case} in {tree}: {proc.stderr.strip()[-2000:]}")
    return float(proc.stdout.split()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, type=Path, help="a checkout without the tracepoints, built")
    ap.add_argument("--runs", type=int, default=5)
    opts = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    for case in CASES:
        base, off, on = [], [], []
        for _ in range(opts.runs):                  # interleaved: drift in host speed hits all alike
            base.append(measure(opts.baseline, case, False))
            off.append(measure(ROOT, case, False))
            on.append(measure(ROOT, case, True))
        b, f, n = (statistics.median(x) for x in (base, off, on))
        print(f"| {case} | {b:.3f} s | {f:.3f} s | {f / b:.3f}x | {n:.3f} s | {n / b:.2f}x | "
              f"baseline {', '.join(f'{x:.3f}' for x in base)}; off {', '.join(f'{x:.3f}' for x in off)} |")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
