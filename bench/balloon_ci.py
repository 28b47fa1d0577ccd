"""The whole balloon CI test as one process: boot a 512 MiB guest on the built-in ext2 root, read the
64 MiB /data/stream.bin, shrink the guest to 384 MiB with the balloon, wait until actual == target, and
check MemTotal and Cached. bench/run.py runs this file as a child process and takes its CPU time.

Exits 0 when every check holds and prints one line of facts; exits 1 with a reason otherwise."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmm import scenario  # noqa: E402

MiB = 1 << 20
FILE, FILE_MIB = "/data/stream.bin", 64


def main() -> int:
    vm = scenario.boot(scenario.MachineSpec.from_options(mem="512M", root="builtin"))
    try:
        out = vm.run_ok(["/bin/vdread", FILE])
        if f"{FILE_MIB * MiB} bytes" not in out:
            print(f"balloon_ci: seqread printed {out.strip()!r}")
            return 1
        total_before = vm.meminfo()["MemTotal"]
        vm.set_guest_mib(384)
        if not vm.wait_balloon(10):
            print(f"balloon_ci: the balloon did not reach its target (actual {vm.balloon_mib():.1f} MiB)")
            return 1
        info = vm.meminfo()
        shrunk_kib = total_before - info["MemTotal"]
        if shrunk_kib != 128 * 1024:
            print(f"balloon_ci: MemTotal fell by {shrunk_kib} kB, not {128 * 1024} kB")
            return 1
        if info["Cached"] < FILE_MIB * 1024:
            print(f"balloon_ci: Cached is {info['Cached']} kB after the shrink, less than the {FILE_MIB} MiB read")
            return 1
        print(f"balloon_ci: ok: MemTotal {total_before} -> {info['MemTotal']} kB, Cached {info['Cached']} kB, "
              f"balloon {vm.balloon_mib():.0f} MiB, guest time {vm.virtual_ns() / 1e9:.3f} s")
        return 0
    finally:
        vm.close()


if __name__ == "__main__":
    sys.exit(main())
