"""Reclaim policies by name (guestos/mm/reclaim_policy.py, docs/policies.md): the registry, a policy a test
registers plugging into reclaim, and the dedup policy asking reclaim's one rule which pages may go."""
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from devices.host import Host
from guestos.kernel.cmdline import KernelParams, ParamError, check_params, parse_cmdline
from guestos.mm import pagecache_control, reclaim_policy, vmscan
from guestos.mm.lru import LRU_INACTIVE_FILE
from guestos.mm.mm_types import PG_dirty, PG_locked, PG_writeback
from test_science import MAPPED_PAGES, pages_read
from vmm.machine import MachineConfig
from vmm.rootfs import builtin_root
from vmm.session import GuestSession

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20


@pytest.fixture(scope="module")
def root():
    return builtin_root()


def test_the_builtin_policies_are_registered_under_the_names_users_choose():
    assert reclaim_policy.names() == ["v4-2011-01", "rfc-2010-06", "shrink_list", "cache_first", "dedup"]
    # unmapped_page_control's words come from the policies that vm.unmapped_page_control selects
    assert reclaim_policy.cmdline_words("unmapped_page_control") == {
        "": "v4-2011-01", "1": "v4-2011-01", "kswapd": "v4-2011-01", "v4": "v4-2011-01", "rfc": "rfc-2010-06",
        "shrink_list": "shrink_list"}
    hooks = {name: [h for h in reclaim_policy.HOOKS if reclaim_policy.lookup(name).provides(h)]
             for name in reclaim_policy.names()}
    assert hooks == {"v4-2011-01": ["allocator_fastpath", "balance_pgdat_pass"],
                     "rfc-2010-06": ["allocator_fastpath", "balance_pgdat_pass"], "shrink_list": ["keep_page"],
                     "cache_first": ["balloon_pages"], "dedup": ["kswapd_pass", "direct_reclaim_pass"]}


def _params(cmdline: str) -> KernelParams:
    params = parse_cmdline(cmdline)[0]
    check_params(params, 64 * MiB)
    return params


def test_reclaim_policy_takes_registered_names_only():
    assert _params("reclaim_policy=dedup,shrink_list").value("reclaim_policy") == ("dedup", "shrink_list")
    assert _params("unmapped_page_control=rfc").value("unmapped_page_control") == "rfc-2010-06"
    assert _params("unmapped_page_control").value("unmapped_page_control") == "v4-2011-01"
    with pytest.raises(ParamError, match=r"^reclaim_policy=nope: unknown reclaim policy 'nope' \(one of v4-2011-01, "):
        _params("reclaim_policy=nope")
    with pytest.raises(ParamError, match="v4-2011-01 and rfc-2010-06 are both vm.unmapped_page_control"):
        _params("reclaim_policy=v4-2011-01,rfc-2010-06")


@pytest.mark.parametrize("cmdline, message", [
    ("reclaim_policy=nope", "ballast: --cmdline: reclaim_policy=nope: unknown reclaim policy 'nope' (one of "
                            "v4-2011-01, rfc-2010-06, shrink_list, cache_first, dedup)"),
    ("unmapped_page_control=nope", "ballast: --cmdline: unmapped_page_control=nope: not one of '', 1, kswapd, v4, "
                                   "rfc, shrink_list"),
])
def test_an_unknown_policy_name_is_a_one_line_error_from_the_cli(cmdline, message):
    r = subprocess.run([sys.executable, "-m", "vmm.cli", "run", "--mem", "32M", "--root", "builtin", "--cmdline",
                        cmdline, "/bin/seqread", "/data/mapped.bin"], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [message]


def test_a_sysctl_write_switches_the_selected_policies(root):
    with Host() as host:
        s = GuestSession(MachineConfig(mem=64 * MiB, cmdline="reclaim_policy=dedup"), root=root, host=host).start()
        k = s.machine.kernel
        assert "dedup" in k.policies and k.sysctl_vm["pagecache_dedup"] == 1       # its knob, set at boot
        k.set_sysctl_vm("unmapped_page_control", b"2\n")
        assert [p.name for p in k.policies.selected] == ["shrink_list", "dedup"]
        assert vmscan.plain_policy(k) == "shrink_list"
        k.set_sysctl_vm("pagecache_dedup", b"0\n")
        k.set_sysctl_vm("unmapped_page_control", b"0\n")
        assert k.policies.selected == [] and vmscan.plain_policy(k) == "none"
        s.close()


def _docs_example() -> str:
    """The policy that docs/policies.md shows under "Writing a policy"."""
    doc = (REPO / "docs" / "policies.md").read_text()
    return re.search(r"## Writing a policy.*?```python\n(.*?)```", doc, re.S).group(1)


@pytest.fixture
def keep_mapped():
    module = types.ModuleType("keep_mapped_policy")
    exec(compile(_docs_example(), "docs/policies.md", "exec"), module.__dict__)
    yield module.KeepMapped
    reclaim_policy.unregister("keep_mapped")


def test_a_policy_registered_by_a_test_plugs_into_reclaim_by_name(root, keep_mapped):
    """docs/policies.md's example: squeezed to 48 MiB, a 16 MiB mapping used beside a 64 MiB stream is read
    again from outside the guest on every pass by plain reclaim; with the policy it stays. Unregistered, its
    name is unknown again."""
    passes = 3
    assert reclaim_policy.lookup("keep_mapped").provides("keep_page")
    plain = pages_read(root, "", passes)
    kept = pages_read(root, "reclaim_policy=keep_mapped", passes)
    assert plain - kept >= (passes - 1) * MAPPED_PAGES // 2
    reclaim_policy.unregister("keep_mapped")
    with pytest.raises(ParamError, match="unknown reclaim policy 'keep_mapped'"):
        _params("reclaim_policy=keep_mapped")


# --- dedup asks reclaim's one rule (Reclaim.page_check_clean) ---

def _dedup_guest(host, root):
    """A guest whose inactive file list holds pages the host caches too; the clean ones, from the tail."""
    s = GuestSession(MachineConfig(mem=64 * MiB, cmdline="pagecache_dedup"), root=root, host=host).start()
    s.run(["/bin/seqread", "/data/random.bin"])
    k = s.machine.kernel
    k.host_cached_at = -1                   # a fresh view of the host cache
    pagecache_control.refresh_host_cached(k)
    hot = vmscan._hot(k, vmscan.ScanControl(nr_to_reclaim=0, current_is_kswapd=False))
    tail = [pfn for pfn in k.lru.from_tail(LRU_INACTIVE_FILE)      # the clean copies of host-cached pages
            if hot.page_check_clean(pfn) == 0
            and pagecache_control.host_caches(k, k.address_spaces[k.mem_map.mapping(pfn)], pfn)]
    assert len(tail) >= 64
    return s, k, tail


def test_dedup_leaves_the_pages_reclaims_rule_refuses(root):
    """Locked, under writeback, dirty or held by someone: the one rule says no, so dedup frees none of these
    though the host caches them all, and frees the clean ones beside them."""
    with Host() as host:
        s, k, tail = _dedup_guest(host, root)
        mem_map = k.mem_map
        locked, writeback, dirty, held = tail[:4]
        mem_map.set(locked, PG_locked)
        mem_map.set(writeback, PG_writeback)
        mem_map.set(dirty, PG_dirty)
        mem_map.set_refcount(held, mem_map.refcount(held) + 1)
        hot = vmscan._hot(k, vmscan.ScanControl(nr_to_reclaim=0, current_is_kswapd=False))
        reasons = [k.mem_map.hotpath.REASONS[hot.page_check_clean(pfn)] for pfn in tail[:5]]
        assert reasons == ["locked", "writeback", "dirty-deferred", "held", "clean"]
        k.host_cached_at = -1
        freed = pagecache_control.shrink_duplicates(k, 16)
        for pfn, bit in ((locked, PG_locked), (writeback, PG_writeback), (dirty, PG_dirty)):
            assert mem_map.mapping(pfn) and mem_map.test(pfn, bit)             # still in its page cache
            mem_map.clear(pfn, bit)
        assert mem_map.mapping(held)
        mem_map.set_refcount(held, mem_map.refcount(held) - 1)
        assert freed == 16 and all(not mem_map.mapping(pfn) for pfn in tail[4:20])
        s.close()


def test_dedup_frees_exactly_what_the_rule_allows(root, monkeypatch):
    """The rule is changed to refuse every other page: dedup follows it, because it has no test of its own."""
    with Host() as host:
        s, k, tail = _dedup_guest(host, root)
        refused = set(tail[:40:2])
        hot_reclaim = vmscan._hot
        held = k.mem_map.hotpath.REASONS.index("held")

        class Refusing:
            def __init__(self, hot):
                self.hot = hot

            def page_check_clean(self, pfn):
                return held if pfn in refused else self.hot.page_check_clean(pfn)
        monkeypatch.setattr(vmscan, "_hot", lambda k, sc: Refusing(hot_reclaim(k, sc)))
        k.host_cached_at = -1
        assert pagecache_control.shrink_duplicates(k, 20) == 20
        assert all(k.mem_map.mapping(pfn) for pfn in refused)
        assert not any(k.mem_map.mapping(pfn) for pfn in tail[1:40:2])
        s.close()


def kept_reasons(root, cmdline: str) -> dict:
    """{reason: count} of the pages ordinary reclaim kept or activated because a policy said so, in the
    squeezed mapping-beside-a-stream run (one pass)."""
    from collections import Counter
    reasons = Counter()

    def sink(event):
        if event["name"] == "mm_vmscan_page_decision" and event["decision"] in ("rotated", "activated", "kept"):
            reasons[event["reason"]] += 1

    with Host(cache_capacity=128 * MiB // 4096) as host:
        s = GuestSession(MachineConfig(mem=128 * MiB, cmdline=cmdline, balloon_features=1), root=root,
                         host=host).start()
        try:
            s.set_balloon_mib(80)
            assert s.wait_balloon()
            s.machine.add_trace_sink(sink)
            assert s.run(["/bin/mmapread", "/data/mapped.bin", "1", "--beside", "/data/stream.bin"]).exit_code == 0
        finally:
            s.close()
    return reasons


def test_a_page_a_policy_keeps_is_traced_with_that_policys_reason(root, keep_mapped):
    """The trace says which policy kept a page: the review's bias keeps mapped pages as `unmapped-first`, the
    docs' example policy as its name (keep_reason's default), and plain reclaim gives neither."""
    assert kept_reasons(root, "unmapped_page_control=shrink_list")["unmapped-first"] > 0
    mine = kept_reasons(root, "reclaim_policy=keep_mapped")
    assert mine["keep_mapped"] > 0 and mine["unmapped-first"] == 0
    plain = kept_reasons(root, "")
    assert plain["keep_mapped"] == plain["unmapped-first"] == 0
