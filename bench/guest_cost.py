"""What a guest of the pytest plugin costs: the time to boot one (the balloon_vm fixture's defaults:
128 MiB, MUST_TELL_HOST+STATS_VQ, the built-in root) and the host memory it holds, idle and after a
program dirtied 64 MiB. Prints one line per figure; the README's plugin section quotes them.

    python3 bench/guest_cost.py [--guests N]"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

from vmm.machine_spec import MachineSpec, boot
from vmm.memory import process_rss_bytes
from vmm.rootfs import root_image

MiB = 1 << 20


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guests", type=int, default=8)
    opts = ap.parse_args()
    root_image("builtin")                   # built once and cached: not a per-guest cost
    spec = MachineSpec()
    boot(spec).close()                      # warm the code paths

    walls, cpus = [], []
    for _ in range(opts.guests):
        w, c = time.perf_counter(), cpu_s()
        boot(spec).close()
        walls.append(time.perf_counter() - w)
        cpus.append(cpu_s() - c)
    print(f"boot to a ready agent (median of {opts.guests}): {statistics.median(walls) * 1e3:.1f} ms wall, "
          f"{statistics.median(cpus) * 1e3:.1f} ms CPU")

    before = process_rss_bytes()
    guests = [boot(spec) for _ in range(opts.guests)]
    idle = (process_rss_bytes() - before) / opts.guests
    for g in guests:
        g.run_ok(["/bin/memhog", "64M"])
    dirtied = (process_rss_bytes() - before) / opts.guests
    for g in guests:
        assert g.resize_balloon(64)
    ballooned = (process_rss_bytes() - before) / opts.guests
    for g in guests:
        g.close()
    print(f"host memory per guest ({opts.guests} alive): idle {idle / MiB:.1f} MiB, after memhog 64M "
          f"{dirtied / MiB:.1f} MiB, with a 64 MiB balloon then {ballooned / MiB:.1f} MiB")

    code = "import time; t = time.perf_counter(); from vmm.machine_spec import MachineSpec, boot; " \
           "boot(MachineSpec()).close(); print(time.perf_counter() - t)"
    w = time.perf_counter()
    first = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env={**os.environ}).stdout)
    print(f"first guest of a fresh process (imports included): {first * 1e3:.0f} ms "
          f"({(time.perf_counter() - w) * 1e3:.0f} ms with interpreter start-up)")


if __name__ == "__main__":
    main()
