"""The guest's balloon driver against the device: the host sets a target, the guest gives pages,
its MemTotal and MemFree fall, the host's frames are released, and deflating gives them back."""
import re
from pathlib import Path


from vmm.machine import Machine, MachineConfig

PROGRAM = Path(__file__).resolve().parent / "programs" / "balloonwatch.c"
MiB = 1 << 20
MUST_TELL_HOST, STATS_VQ, DEFLATE_ON_OOM = 1, 2, 4


def run(compile_c, features, target_pages=16384):
    exe = compile_c(PROGRAM.read_text(), "balloonwatch", flags=("-static", "-O1"))
    m = Machine(MachineConfig(mem=256 * MiB, balloon_features=features))
    m.load(exe.read_bytes(), "/bin/balloonwatch", [])
    seen = {}
    m.clock.schedule(1_000_000_000, lambda: m.balloon.set_target_pages(target_pages))
    m.clock.schedule(2_500_000_000, lambda: seen.update(unbacked=m.ram.backed.count(0)))
    if features & STATS_VQ:
        m.clock.schedule(2_600_000_000, m.balloon.request_stats)
    m.clock.schedule(3_000_000_000, lambda: m.balloon.set_target_pages(0))
    status = m.boot()
    lines = {name: tuple(map(int, nums)) for name, *nums in
             (re.match(r"(\w+): MemTotal (\d+) MemFree (\d+)", ln).groups()
              for ln in m.console_output.decode().splitlines())}
    result = status, lines, seen, m.balloon
    m.close()
    return result


def test_inflate_takes_memory_out_of_the_guest_and_deflate_returns_it(compile_c):
    status, lines, seen, balloon = run(compile_c, MUST_TELL_HOST | STATS_VQ)
    assert status == 0
    before, inflated, deflated = lines["before"], lines["inflated"], lines["deflated"]
    assert before[0] - inflated[0] == 64 * 1024                 # MemTotal falls by exactly the balloon
    assert before[1] - inflated[1] >= 0.85 * 64 * 1024           # and MemFree by at least 85% of it
    assert deflated == before
    assert seen["unbacked"] == 16384                             # the host really got the frames back
    assert balloon.actual_pages == 0
    assert balloon.counters.inflated_pages == balloon.counters.deflated_pages == 16384
    stats = balloon.latest_stats
    assert stats["total-memory"] == inflated[0] * 1024
    assert 0 < stats["free-memory"] < stats["total-memory"]


def test_with_deflate_on_oom_memtotal_stays(compile_c):
    status, lines, _, _ = run(compile_c, MUST_TELL_HOST | DEFLATE_ON_OOM)
    assert status == 0
    assert lines["inflated"][0] == lines["before"][0]
    assert lines["before"][1] - lines["inflated"][1] >= 0.85 * 64 * 1024
