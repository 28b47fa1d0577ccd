"""cython_ext.reclaim compiled and uncompiled (the same pure-Python-mode source) make the same
reclaim decisions: on random workloads over a small kernel-shaped harness, and in booted guests,
the reclaim trace, the vmstat counters, every struct page, the LRU lists and the free lists
come out identical."""
import collections
import hashlib
import os
import random
import shutil
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cython_ext
from ballast_testlib import FIRMWARE
from guestos.kernel.costs import CostModel
from guestos.kernel.errno import SyscallError
from guestos.fs.proc import SYSCTL_VM_DEFAULTS
from guestos.kernel.main import VMSTAT_ITEMS
from guestos.kernel.tracepoint import Tracepoints, check_event
from guestos.mm import lru as lru_mod
from guestos.mm import mm_types, page_alloc as page_alloc_mod, reclaim_policy, vmscan
from guestos.mm.filemap import AddressSpace, mark_page_accessed
from guestos.mm.lru import LRU_ACTIVE_ANON, LruLists
from guestos.mm.mm_types import PG_active, PG_locked, PG_reserved, PG_swapbacked, PG_uptodate, MemMap
from guestos.mm.page_alloc import GFP_KERNEL, MAX_ORDER, NIL, PageAllocator, PerCpuPages
from test_lru_properties import walk
from vmm.machine import DiskConfig, Machine, MachineConfig
from vmm.mkdisk import mkdisk
from vmm.swapdisk import make_swap_image

compiled = cython_ext.load("reclaim", pure=False)
pure = cython_ext.load("reclaim", pure=True)
MiB = 1 << 20


def test_the_compiled_module_is_native():
    assert compiled.__file__.endswith(".so") and pure.__file__.endswith(".py")


def test_the_layout_is_the_kernel_s():
    expected = {name: getattr(mm_types, name) for name in (
        "NIL", "PG_locked", "PG_referenced", "PG_reported", "PG_dirty", "PG_lru", "PG_active", "PG_buddy", "PG_swapbacked",
        "PG_unevictable", "OFF_FLAGS", "OFF_PRIVATE", "OFF_MAPPING", "OFF_INDEX", "OFF_DISK_SECTOR",
        "OFF_REFCOUNT", "OFF_MAPCOUNT", "OFF_LRU_NEXT", "OFF_LRU_PREV")}
    expected["MAX_ORDER"] = page_alloc_mod.MAX_ORDER
    expected["NOT_SIMPLE_FILE"] = (1 << mm_types.PG_swapbacked) | (1 << mm_types.PG_locked) | (1 << mm_types.PG_dirty)
    for module in (compiled, pure):
        assert module.constants() == expected
    assert lru_mod.LRU_UNEVICTABLE == 4 and lru_mod.LRU_INACTIVE_FILE == 2


# --- a small kernel: mem_map, buddy, LRU, page caches, no CPU ---------------------------

NPAGES = 256
MAPPINGS = (2, 4, 6)                  # address_space ids (even: files)


class Clock:
    def __init__(self):
        self.t = 0

    def now_ns(self) -> int:
        self.t += 1                   # each call is visible in the trace
        return self.t


class Aops:
    def i_size(self):
        return 1 << 30

    def map_page_for_write(self, mapping, index):
        return [(index << 12, 4096)]


class Blk:
    def transfer_runs(self, write, runs):
        return 0


class SmallKernel:
    """What vmscan, lru, page_alloc and filemap use of the kernel."""

    def __init__(self, pure_reclaim: bool, unmapped_policy: str = "none"):
        self.ram = memoryview(bytearray(NPAGES * mm_types.STRUCT_PAGE_SIZE))
        self.mem_map = MemMap(self.ram, 0, NPAGES, pure=pure_reclaim)
        for pfn in range(NPAGES):
            self.mem_map.set_flags(pfn, 1 << PG_reserved)
        self.vmstat = dict.fromkeys(VMSTAT_ITEMS, 0)
        self.page_alloc = PageAllocator(self.mem_map, 0, NPAGES, self.vmstat)
        self.page_alloc.free_bootmem_range(0, NPAGES)
        self.page_alloc.setup_per_zone_wmarks(64)                 # min 16, low 20, high 24 pages
        self.lru = LruLists(self.mem_map, self.vmstat)
        self.page_alloc.on_free = self.lru.remove_if_listed
        self.page_alloc.reclaim = lambda nr, *_: vmscan.try_to_free_pages(self, nr)
        self.page_alloc.wake_kswapd = lambda: None
        self.reports = 0                                          # page_reporting_notify_free() calls
        self.page_alloc.report_hook = self.page_reporting_notify_free
        self.page_alloc.zone.core.reporting_order = 4             # small blocks: this zone has 256 pages
        self.shrinkers = []
        self.pcp = PerCpuPages(self.page_alloc)
        self.address_spaces = {}
        self.scheduler = None
        self.trace = []                                           # every tracepoint event, in order
        self.tracepoints = Tracepoints(self)
        self.tracepoints.subscribe(self.trace.append)
        self.hw = SimpleNamespace(clock=Clock())
        self.swap = None
        self.sysctl_vm = dict(SYSCTL_VM_DEFAULTS)
        if unmapped_policy != "none":
            knob, value = reclaim_policy.lookup(unmapped_policy).sysctl
            self.sysctl_vm[knob] = value
        self.policies = reclaim_policy.PolicySet(self)
        self.live_mms = []
        self.mm = SimpleNamespace(q=None)
        self.dirty_mappings = {}                                  # in the order they became dirty, as the kernel's
        self.held = []
        self.anon = []
        for mid in MAPPINGS:
            AddressSpace(self, mid, Aops(), Blk())

    def flush_tlb(self):
        pass

    costs = CostModel()
    charged = 0                       # virtual ns charged: compiled and pure reclaim charge alike

    def charge(self, ns):
        self.charged += ns

    def charge_reclaim(self, isolated, freed, rotated):
        vmscan.charge_reclaim(self, isolated, freed, rotated)

    def page_reporting_notify_free(self):
        self.reports += 1

    def mark_mapping_dirty(self, mapping):
        self.dirty_mappings.setdefault(mapping)

    def state(self):
        zone = self.page_alloc.zone
        free_lists = []
        for order in range(MAX_ORDER):
            pfn, blocks = zone.free_area[order].head, []
            while pfn != NIL:
                blocks.append(pfn)
                pfn = self.mem_map.lru_next(pfn)
            free_lists.append(blocks)
        return dict(mem_map=bytes(self.mem_map.raw), lru=walk(self.lru, self.mem_map), heads=list(self.lru.head),
                    tails=list(self.lru.tail), nr=list(self.lru.nr), free_lists=free_lists,
                    nr_free=[a.nr_free for a in zone.free_area], nr_free_pages=zone.nr_free_pages,
                    vmstat=dict(self.vmstat), trace=list(self.trace), clock=self.hw.clock.t,
                    pages={mid: dict(m.pages) for mid, m in self.address_spaces.items()},
                    dirty={mid: sorted(m.dirty) for mid, m in self.address_spaces.items()},
                    pcp=list(self.pcp.pages), held=list(self.held), anon=list(self.anon), reports=self.reports,
                    charged=self.charged)


def apply(k: SmallKernel, op) -> object:
    """One step of a workload; returns what it returned (or the error), to be compared too."""
    name, a, b, kswapd = op
    mapping = k.address_spaces[MAPPINGS[a % len(MAPPINGS)]]
    pfn = mapping.pages.get(b)
    mm = k.mem_map
    sc = vmscan.ScanControl(nr_to_reclaim=b + 1, current_is_kswapd=kswapd)
    try:
        if name == "read":
            if pfn is None:
                mm.set(mapping.add_to_page_cache(b), PG_uptodate)
            else:
                mark_page_accessed(k, pfn)
        elif name == "dirty" and pfn is not None:
            mapping.set_page_dirty(b)
        elif name == "lock" and pfn is not None:
            (mm.clear if mm.test(pfn, PG_locked) else mm.set)(pfn, PG_locked)
        elif name == "hold" and pfn is not None:
            mm.set_refcount(pfn, mm.refcount(pfn) + 1)
            k.held.append(pfn)
        elif name == "release" and k.held:
            k.page_alloc.put_page(k.held.pop(b % len(k.held)))
        elif name == "map" and pfn is not None:
            mm.set_mapcount(pfn, 1 - mm.mapcount(pfn))
        elif name == "metadata":
            mapping.unevictable_metadata = not mapping.unevictable_metadata
        elif name == "drop" and pfn is not None and mm.refcount(pfn) == 1 and not mm.mapcount(pfn):
            mapping.remove_from_page_cache(b)
        elif name == "writeback":
            return mapping.writepages()
        elif name == "anon":
            new = []
            for _ in range(1 + b % 8):
                p = k.page_alloc.alloc_pages(GFP_KERNEL, 0)
                if p == NIL:
                    break
                mm.set_flags(p, 1 << PG_swapbacked)
                mm.set_mapping(p, 1, p)
                new.append(p)
            k.lru.add_batch(new, LRU_ACTIVE_ANON, 1 << PG_active)
            k.anon.extend(new)
        elif name == "free_anon" and k.anon:
            k.page_alloc.put_page(k.anon.pop(b % len(k.anon)))
        elif name == "shrink_inactive":
            return vmscan.shrink_inactive_list(k, 1 + b % 40, sc, (a % 2) * 2)
        elif name == "shrink_active":
            return vmscan.shrink_active_list(k, 1 + b % 40, sc, (a % 2) * 2 + 1)
        elif name == "try_to_free":
            return vmscan.try_to_free_pages(k, 1 + b)
        elif name == "balance":
            return vmscan.balance_pgdat(k)
        elif name == "drain":
            k.pcp.drain()
        elif name == "check_clean":         # reclaim's one rule (dedup asks it) on every page of a list
            hot = vmscan._hot(k, sc)
            return [hot.page_check_clean(p) for p in k.lru.from_tail((a % 4))]
    except SyscallError as e:
        return ("error", e.args)
    return None


KINDS = ("read", "dirty", "lock", "hold", "release", "map", "metadata", "drop", "writeback", "anon", "free_anon",
         "shrink_inactive", "shrink_active", "try_to_free", "balance", "drain", "check_clean")


def workload(seed: int, length: int, weights) -> list:
    """`length` random steps, each kind of step as likely as its weight (reads at least 1)."""
    rng = random.Random(seed)
    weights = [max(1, weights[0])] + list(weights[1:])
    return [(kind, rng.randrange(6), rng.randrange(120), rng.random() < 0.5)
            for kind in rng.choices(KINDS, weights, k=length)]


@settings(max_examples=60, deadline=None, database=None)
@given(seed=st.integers(0, 1 << 32), length=st.integers(1, 1500),
       weights=st.lists(st.integers(0, 12), min_size=len(KINDS), max_size=len(KINDS)),
       policy=st.sampled_from(["none", "shrink_list"]))
def test_random_workloads_compiled_equals_pure(seed, length, weights, policy):
    kernels = SmallKernel(pure_reclaim=False, unmapped_policy=policy), SmallKernel(pure_reclaim=True,
                                                                                   unmapped_policy=policy)
    assert kernels[0].mem_map.hotpath is compiled and kernels[1].mem_map.hotpath.__file__ == pure.__file__
    for step, op in enumerate(workload(seed, length, weights)):
        results = [apply(k, op) for k in kernels]
        assert results[0] == results[1], (step, op)
        if step % 50 == 0 or op[0] in ("shrink_inactive", "shrink_active", "try_to_free", "balance"):
            states = [k.state() for k in kernels]
            for key in states[0]:
                assert states[0][key] == states[1][key], (step, op, key)
    states = [k.state() for k in kernels]
    assert states[0] == states[1]


def test_a_long_workload_reclaims_on_every_path():
    """One fixed workload long enough that every kind of decision is taken, in both builds."""
    ops = []
    for i in range(600):
        ops.append(("read", i % 3, i % 97, False))
        if i % 5 == 0:                                                    # re-read: referenced, activated
            ops += [("read", i % 3, (i * 5) % 97, False)] * 2
        if i % 11 == 0:
            ops += [("dirty", i % 3, i % 97, False), ("lock", (i + 1) % 3, (i + 3) % 97, False),
                    ("hold", i % 3, (i + 7) % 97, False), ("map", i % 3, (i + 9) % 97, False)]
        if i % 13 == 0:
            ops += [("anon", 0, i, False), ("release", 0, i, False), ("shrink_inactive", 0, i, True),
                    ("shrink_active", 1, i, False), ("shrink_active", 0, i, False)]
        if i in (100, 300):
            ops.append(("metadata", 0, 0, False))
        if i % 29 == 0:
            ops += [("balance", 0, 0, True), ("drain", 0, 0, False), ("writeback", i, 0, False)]
    kernels = SmallKernel(pure_reclaim=False), SmallKernel(pure_reclaim=True)
    for op in ops:
        assert apply(kernels[0], op) == apply(kernels[1], op), op
    states = [k.state() for k in kernels]
    assert states[0] == states[1]
    decisions = collections.Counter((e["lru"], e["decision"], e["reason"]) for e in states[0]["trace"]
                                    if e["name"] == "mm_vmscan_page_decision")
    for expected in (("file", "reclaimed", "clean"), ("file", "reclaimed", "written-back"),
                     ("file", "rotated", "locked"), ("file", "rotated", "held"), ("file", "rotated", "still-mapped"),
                     ("file", "rotated", "metadata"), ("file", "rotated", "dirty-deferred"),
                     ("file", "deactivated", "inactive-low"), ("anon", "deactivated", "inactive-low"),
                     ("anon", "activated", "no-swap")):
        assert decisions[expected], (expected, decisions)
    assert states[0]["vmstat"]["pgsteal_direct"] and states[0]["vmstat"]["pgsteal_kswapd"]
    names = collections.Counter(e["name"] for e in states[0]["trace"])
    for name in ("mm_vmscan_lru_isolate", "mm_vmscan_lru_shrink_inactive", "mm_vmscan_lru_shrink_active",
                 "mm_vmscan_reclaim_pass_begin", "mm_vmscan_reclaim_pass_end", "mm_vmscan_direct_reclaim_begin",
                 "mm_vmscan_direct_reclaim_end", "mm_vmscan_writepage", "mm_filemap_add_to_page_cache",
                 "mm_filemap_delete_from_page_cache"):
        assert names[name], (name, names)
    assert not [p for e in states[0]["trace"] for p in check_event(e)]
    # every page freed by reclaim, in C or in Python, left its page cache first (and said so)
    deleted = set()
    for e in states[0]["trace"]:
        if e["name"] == "mm_filemap_delete_from_page_cache":
            deleted.add(e["pfn"])
        elif e["name"] == "mm_vmscan_page_decision" and e["decision"] == "reclaimed":
            assert e["pfn"] in deleted
            deleted.discard(e["pfn"])


# --- booted guests ------------------------------------------------------------------

def guest_state(m) -> dict:
    k = m.kernel
    zone = k.page_alloc.zone
    free_lists = []
    for order in range(MAX_ORDER):
        pfn, blocks = zone.free_area[order].head, []
        while pfn != NIL:
            blocks.append(pfn)
            pfn = k.mem_map.lru_next(pfn)
        free_lists.append(blocks)
    return dict(console=bytes(m.console_output), vmstat=k.vmstat_snapshot(), trace=m.trace_events,
                lru=walk(k.lru, k.mem_map), free_lists=free_lists,
                mem_map=hashlib.sha256(k.mem_map.raw).hexdigest(), ram=hashlib.sha256(k.ram).hexdigest())


def run_guest(monkeypatch, pure_reclaim: bool, make, argv, **load) -> dict:
    with monkeypatch.context() as mp:
        mp.setattr(cython_ext, "PURE", pure_reclaim)
        m = make()
        m.trace_events = []                 # every tracepoint event, from boot on
        m.add_trace_sink(m.trace_events.append)
        m.load(*argv, **load)
        status = m.boot()
    assert m.kernel.mem_map.hotpath.__file__.endswith(".py" if pure_reclaim else ".so")
    state = guest_state(m)
    state["status"] = status
    m.close()
    return state


@pytest.fixture(scope="module")
def files_image(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reclaim-diff")
    root = tmp / "root"
    (root / "bin").mkdir(parents=True)
    for name in ("vdread", "vdsha256"):
        shutil.copy(FIRMWARE / name, root / "bin" / name)
    (root / "big").write_bytes(hashlib.shake_256(b"big").digest(40 * MiB))
    img = tmp / "root.img"
    mkdisk(str(root), str(img))
    return img


def test_a_guest_streaming_a_file_twice_its_memory(monkeypatch, files_image):
    def make():
        return Machine(MachineConfig(mem=20 * MiB, disks=[DiskConfig(str(files_image), snapshot=True)]))
    argv = (None, "/bin/vdsha256", ["/big"])
    fast = run_guest(monkeypatch, False, make, argv, root_device="/dev/vda")
    slow = run_guest(monkeypatch, True, make, argv, root_device="/dev/vda")
    assert fast["status"] == 0 and fast["vmstat"]["pgsteal_direct"] + fast["vmstat"]["pgsteal_kswapd"] > 0
    assert len(fast["trace"]) > 5000
    assert not [p for e in fast["trace"] for p in check_event(e)]
    for key in fast:
        assert fast[key] == slow[key], key


def test_a_guest_swapping(monkeypatch):
    swap = make_swap_image(64 * MiB)
    try:
        def make():
            return Machine(MachineConfig(mem=24 * MiB, cmdline="swap=/dev/vda",
                                         disks=[DiskConfig(swap)]))
        argv = ((FIRMWARE / "memhog").read_bytes(), "/bin/memhog", ["32M", "1"])
        fast = run_guest(monkeypatch, False, make, argv)
        slow = run_guest(monkeypatch, True, make, argv)
    finally:
        os.unlink(swap)
    assert fast["status"] == 0 and fast["vmstat"]["pswpout"] > 0
    for key in fast:
        assert fast[key] == slow[key], key
