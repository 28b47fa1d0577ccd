"""Swap: anonymous working sets larger than RAM run and verify every byte; forked children share
swapped pages through the swap cache; slots all come back."""
import os
import subprocess
import sys

import pytest

from ballast_testlib import FIRMWARE, REPO
from test_reclaim import check_lru_invariants
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.swapdisk import make_swap_image

MiB = 1 << 20

FORKSWAP = r'''
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#define SIZE (40 << 20)
static int check(volatile unsigned long *p, unsigned long salt) {
    for (long i = 0; i < SIZE / 8; i += 512) if (p[i] != (unsigned long)i * 2654435761u + salt) return 0;
    return 1;
}
int main(void) {
    volatile unsigned long *p = mmap(0, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (long i = 0; i < SIZE / 8; i += 512) p[i] = (unsigned long)i * 2654435761u + 1;
    pid_t pid = fork();
    if (pid == 0) {
        int ok = check(p, 1);
        for (long i = 0; i < SIZE / 8; i += 512) p[i] = (unsigned long)i * 2654435761u + 2;
        _exit(ok && check(p, 2) ? 0 : 1);
    }
    int st; waitpid(pid, &st, 0);
    printf("child %s, parent %s\n", WEXITSTATUS(st) == 0 ? "ok" : "BAD", check(p, 1) ? "ok" : "BAD");
    return 0;
}
'''


@pytest.fixture
def swap_image():
    path = make_swap_image(128 * MiB)
    yield path
    os.unlink(path)


def run(program: bytes, args, swap_image, mem=32 * MiB):
    m = Machine(MachineConfig(mem=mem, cmdline="swap=/dev/vda", disks=[DiskConfig(swap_image)]))
    m.load(program, "/bin/prog", args)
    status = m.boot()
    return m, status


def test_anonymous_working_set_twice_ram_with_swap(swap_image):
    m, status = run((FIRMWARE / "memhog").read_bytes(), ["64M", "2"], swap_image)
    k = m.kernel
    assert status == 0
    assert m.console_output == b"memhog: 67108864 bytes, 2 passes, 16384 pages verified\n"
    vmstat = k.vmstat_snapshot()
    assert vmstat["pswpout"] > 16384 // 2 and vmstat["pswpin"] > 0
    assert vmstat["pgmajfault"] == vmstat["pswpin"]
    assert vmstat["oom_kill"] == 0
    assert k.swap.nr_free == k.swap.pages - 1 and not k.swap.cache     # every slot came back
    assert k.meminfo()["SwapTotal"] == 128 * 1024 - 4
    check_lru_invariants(k)
    m.close()


def test_fork_shares_swapped_pages(swap_image, compile_c):
    exe = compile_c(FORKSWAP, "forkswap", flags=("-static", "-O1"))
    m, status = run(exe.read_bytes(), [], swap_image)
    assert status == 0
    assert m.console_output == b"child ok, parent ok\n"
    k = m.kernel
    assert k.vmstat_snapshot()["pswpout"] > 0
    assert k.swap.nr_free == k.swap.pages - 1
    m.close()


def test_without_swap_the_same_program_is_oom_killed():
    m = Machine(MachineConfig(mem=32 * MiB))
    m.load((FIRMWARE / "memhog").read_bytes(), "/bin/memhog", ["64M"])
    assert m.boot() & 0x7F == 9
    m.close()


@pytest.mark.parametrize("size,message", [("1K", "at least 64K"), ("lots", "cannot read 'lots'")])
def test_bad_swap_sizes_are_one_line_errors(size, message):
    proc = subprocess.run([sys.executable, "-m", "vmm.cli", "run", "--swap", size, str(FIRMWARE / "hello")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_the_trace_of_a_swapping_run_is_json_lines_and_deterministic(tmp_path):
    traces = []
    for i in range(2):
        out = tmp_path / f"trace{i}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "vmm.cli", "run", "--mem", "32M", "--swap", "64M",
                               "--trace", str(out), str(FIRMWARE / "memhog"), "48M"],
                              cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        traces.append(out.read_text())
    assert traces[0] == traces[1]
    import json
    events = [json.loads(line) for line in traces[0].splitlines()]
    decisions = [e for e in events if e["name"] == "mm_vmscan_page_decision"]
    assert {"name", "ts", "pid", "comm", "pfn", "lru", "mapped", "referenced", "flags", "decision", "reason",
            "by", "policy", "priority", "pass_nr"} == set(decisions[0])
    assert {"swapped-out", "deactivated"} <= {e["decision"] for e in decisions}
    assert all(e["lru"] in ("anon", "file") for e in decisions)
    # each write to swap is one decision to page the page out and one writepage; the page is freed later
    swapped = [e for e in events if e["name"] == "mm_swap_out"]
    assert len(swapped) == sum(1 for e in decisions if e["reason"] == "pageout") == \
        sum(1 for e in events if e["name"] == "mm_vmscan_writepage")
    assert [e for e in events if e["name"] == "mm_swap_in"]


def test_tracing_is_off_by_default():
    m = Machine(MachineConfig(mem=32 * MiB))
    m.load((FIRMWARE / "hello").read_bytes(), "/bin/hello", [])
    m.boot()
    assert m.kernel.tracepoints is None
    m.close()
