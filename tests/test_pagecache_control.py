"""The 2010 policies under test: unmapped page-cache control keeps MemFree high after a stream
and never takes mapped, dirty or anonymous pages; the review's variant biases ordinary reclaim;
cache-first balloon pages come out of unmapped page cache; dedup reclaim drops what the host
also caches."""
from pathlib import Path

import pytest

from devices.host import Host
from vmm import oracle
from vmm.machine import MachineConfig
from vmm.rootfs import builtin_root
from vmm.session import GuestSession

MiB = 1 << 20
PROGRAMS = Path(__file__).resolve().parent / "programs"
MUST_TELL_HOST, CACHE_FIRST_HINT = 1, 1 << 16


@pytest.fixture(scope="module")
def root(compile_c):
    programs = {name: compile_c((PROGRAMS / f"{name}.c").read_text(), name, flags=("-static", "-O1")).read_bytes()
                for name in ("holdpages", "writefile")}
    return builtin_root(programs)


def guest(root, cmdline="", mem=128, features=MUST_TELL_HOST, host=None, **kw):
    return GuestSession(MachineConfig(mem=mem * MiB, cmdline=cmdline, balloon_features=features),
                        root=root, host=host, **kw).start()


def stream(s):
    assert s.run(["/bin/seqread", "/data/stream.bin"]).exit_code == 0
    return s.meminfo(), s.vmstat(), s.virtual_ns()


def test_unmapped_control_reproduces_the_2010_result_in_kind(root):
    with guest(root) as plain, guest(root, "unmapped_page_control") as controlled:
        mi_plain, vm_plain, t_plain = stream(plain)
        mi, vm, t = stream(controlled)
    assert mi["MemFree"] > mi_plain["MemFree"] + 24 * 1024          # much more free memory
    assert mi["Cached"] < mi_plain["Cached"] / 2                    # much less page cache
    assert abs(t - t_plain) < 0.1 * t_plain                         # at similar runtime
    assert vm["unmapped_balance_runs"] > 0 and vm["pgsteal_unmapped"] > 0
    assert vm_plain["pgsteal_unmapped"] == 0
    # it stops near vm.max_unmapped_ratio of the zone
    zone_kb = controlled.machine.kernel.page_alloc.zone.present_pages * 4
    assert mi["Cached"] <= 0.17 * zone_kb + 2048


def test_the_policy_switches_at_run_time_through_proc_sys_vm(root):
    """Morton's objection to a boot option: here the knob is a sysctl as well."""
    with guest(root) as s:
        assert s.run(["/bin/writefile", "/proc/sys/vm/unmapped_page_control", "1"]).exit_code == 0
        assert s.machine.kernel.unmapped_policy == "kswapd"
        mi, vm, _ = stream(s)
        assert vm["pgsteal_unmapped"] > 0 and mi["Cached"] < 40 * 1024
        assert s.run(["/bin/writefile", "/proc/sys/vm/max_unmapped_ratio", "40"]).exit_code == 0
        assert s.run(["/bin/writefile", "/proc/sys/vm/unmapped_page_control", "0"]).exit_code == 0
        assert s.machine.kernel.unmapped_policy == "none"


def _held(s):
    """(mapped file pages, dirty page-cache pages, anonymous pages) by identity, right now."""
    k = s.machine.kernel
    mem_map = k.mem_map
    mapped, dirty = set(), set()
    for mapping in k.address_spaces.values():
        for index, pfn in mapping.pages.items():
            if mem_map.mapcount(pfn):
                mapped.add((mapping.mapping_id, index, pfn))
        for index in mapping.dirty:
            dirty.add((mapping.mapping_id, index, mapping.pages[index]))
    return mapped, dirty, k.vmstat["nr_anon_pages"]


@pytest.mark.parametrize("policy", ["unmapped_page_control", "unmapped_page_control=shrink_list"])
def test_unmapped_control_never_takes_mapped_dirty_or_anonymous_pages(root, policy):
    """The series' pass takes clean unmapped cache only; the review's bias keeps mapped and
    anonymous pages from ordinary reclaim while unmapped cache lasts."""
    with guest(root, policy, mem=96) as s:
        trace = []
        s.machine.add_trace_sink(trace.append)
        s.spawn(["/bin/holdpages"])
        assert s.wait_output("setup")
        mapped, dirty, anon = _held(s)
        assert len(mapped) >= 4096 and len(dirty) >= 1024 and anon >= 4096
        if policy.endswith("shrink_list"):
            s.set_balloon_mib(40)                                   # ordinary reclaim under pressure
        assert s.wait_output("holding")
        mapped2, dirty2, anon2 = _held(s)
        assert mapped <= mapped2 and anon2 >= anon
        # the background pass leaves dirty pages alone; ordinary reclaim may clean and free them
        background = not policy.endswith("shrink_list")
        assert dirty <= dirty2 or not background
        result = s.wait_program()
        assert result.exit_code == 0 and "ok" in result.output
        decisions = [e for e in trace if e["name"] == "mm_vmscan_page_decision"]
        reclaimed = [e for e in decisions if e["decision"] in ("reclaimed", "swapped-out")]
        reasons = {"clean"} if background else {"clean", "written-back"}
        assert reclaimed and all(e["lru"] == "file" and not e["mapped"] and e["reason"] in reasons
                                 for e in reclaimed)
        # the policy's passes are labelled as the policy's, not as plain reclaim
        labelled = "unmapped" if background else "shrink_list"
        assert {e["policy"] for e in reclaimed} >= {labelled}
        if background:
            assert all(e["policy"] == "unmapped" and e["by"] == "kswapd" for e in reclaimed)
            passes = [e for e in trace if e["name"] == "mm_vmscan_reclaim_pass_end" and e["policy"] == "unmapped"]
            assert sum(e["nr_reclaimed"] for e in passes) == len(reclaimed)


def test_cache_first_balloon_takes_unmapped_cache_before_free_memory(root):
    results = {}
    for name, cmdline in (("plain", ""), ("cache_first", "virtio_balloon.cache_first=1")):
        with guest(root, cmdline, mem=160) as s:
            before, _, _ = stream(s)
            s.set_balloon_mib(32)
            assert s.wait_balloon()
            results[name] = (before, s.meminfo(), s.vmstat())
    before, after, vm = results["cache_first"]
    assert before["Cached"] - after["Cached"] >= 30 * 1024          # the balloon's 32 MiB came from cache
    assert abs(before["MemFree"] - after["MemFree"]) <= 2 * 1024      # free memory is still there
    assert vm["pgsteal_cache_first"] >= 30 * 256
    before, after, vm = results["plain"]
    assert abs(before["Cached"] - after["Cached"]) <= 1024           # Linux takes free memory first
    assert vm["pgsteal_cache_first"] == 0


def test_cache_first_as_a_per_target_host_hint(root):
    with guest(root, mem=160, features=MUST_TELL_HOST | CACHE_FIRST_HINT) as s:
        before, _, _ = stream(s)
        s.balloon.set_target_pages(16 * 256)                         # no hint: free memory first
        assert s.wait_balloon()
        middle = s.meminfo()
        assert abs(before["Cached"] - middle["Cached"]) <= 1024
        s.balloon.set_target_pages(48 * 256, hint="cache")           # the host asks for cache first
        assert s.wait_balloon()
        assert middle["Cached"] - s.meminfo()["Cached"] >= 30 * 1024


def test_the_hint_needs_its_feature(root):
    with guest(root, mem=64) as s:
        with pytest.raises(ValueError, match="RECLAIM_CACHE_FIRST"):
            s.balloon.set_target_pages(256, hint="cache")
