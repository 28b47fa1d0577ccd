"""The cost model: what each piece of work costs in virtual nanoseconds, in one table.

The guest's clock advances by retired instructions x cpi / cpu_ghz (user time) plus the costs below,
charged where the work happens (system time of the task or kernel thread doing it). Each constant
names its source: a native Linux measurement on this kind of machine (a 2-core AMD EPYC VM, Linux
6.18) made with bench/kernel_costs.c, or a published figure. docs/cost-model.md explains the table
and bench/RESULTS.md holds the measurement runs. The host sets any of them with `--cost NAME=VALUE`;
the kernel's own ones (`kernel=True`) can also be set on the kernel command line with
`cost.NAME=VALUE` (guestos/kernel/cmdline.py)."""
from dataclasses import dataclass, field, fields

BENCH = "bench/kernel_costs.c"


def _cost(default, source: str, kernel: bool = True):
    return field(default=default, metadata={"source": source, "kernel": kernel})


@dataclass(frozen=True)
class CostModel:
    """Defaults are medians of three runs of bench/kernel_costs.c (bench/RESULTS.md)."""
    # --- the machine (host side: the VMM's clock) ---
    cpu_ghz: float = _cost(2.0, "the modelled guest core clock (a choice)", kernel=False)
    cpi: float = _cost(1.0, "cycles per retired user instruction (a choice)", kernel=False)
    vm_exit_ns: int = _cost(3_000, "a trap to the VMM for MMIO or port I/O: a few us under KVM "
                                   "(published KVM exit round trips are 1-5 us)", kernel=False)
    # --- entry, faults, copies ---
    syscall_ns: int = _cost(270, f"{BENCH} syscall_round_trip: getppid() round trip, 266 ns")
    page_fault_ns: int = _cost(2_200, f"{BENCH} anon_page_fault (2,303 ns) minus page_zero: exception "
                                      "entry, fault handling, PTE install, return")
    page_zero_ns: int = _cost(76, f"{BENCH} page_zero: memset of 4 KiB, 76 ns")
    copy_ns_per_kib: int = _cost(21, f"{BENCH} copy_per_kib: memcpy of 64 KiB, 21 ns per KiB")
    # --- the page cache ---
    pagecache_lookup_ns: int = _cost(150, f"{BENCH} pread_cached_64k - pread_cached_4k, per extra page, "
                                          "minus its 4 KiB copy (80-214 ns in the runs)")
    pagecache_insert_ns: int = _cost(650, f"{BENCH} write_new_page on tmpfs (2,156 ns) minus a syscall, a "
                                          "4 KiB copy and an allocation (populate_per_page)")
    # --- reclaim (mm/vmscan.c), per page; the total of a mapped clean page is measured, its parts apportioned ---
    reclaim_isolate_ns: int = _cost(150, f"{BENCH} pageout_mapped_per_page (MADV_PAGEOUT runs "
                                         "shrink_page_list: 1,132 ns per mapped clean page) apportioned: "
                                         "isolate_lru_pages' list move")
    reclaim_scan_ns: int = _cost(300, "the same measurement apportioned: shrink_page_list's tests of one page")
    rmap_walk_ns: int = _cost(390, "the same measurement apportioned: one mapping walked by page_referenced "
                                   "or try_to_unmap (vma lookup, PTE walk, young bit)")
    reclaim_unmap_ns: int = _cost(140, f"{BENCH} unmap_per_page (munmap, 272-306 ns per page) halved: "
                                       "clearing one PTE")
    reclaim_free_ns: int = _cost(150, f"{BENCH} unmap_per_page, the other half: freeing the page "
                                      "(remove_from_page_cache, free_hot_cold_page)")
    reclaim_rotate_ns: int = _cost(150, "as reclaim_isolate_ns: putback_lru_page's list move")
    # --- the balloon driver (drivers/virtio/virtio_balloon.c), per page ---
    balloon_inflate_ns: int = _cost(1_200, f"{BENCH} populate_per_page (1,245-1,348 ns) minus page_zero: "
                                           "alloc_page without zeroing, the PFN stored")
    balloon_deflate_ns: int = _cost(300, f"{BENCH} unmap_per_page: a page freed (272-306 ns)")
    # --- the scheduler ---
    context_switch_ns: int = _cost(1_200, f"{BENCH} yield_switch (1,435-1,498 ns: a sched_yield and a "
                                          "switch) minus a syscall")

    @classmethod
    def names(cls) -> list:
        return [f.name for f in fields(cls)]

    @classmethod
    def kernel_names(cls) -> list:
        """The costs the guest kernel charges (settable with cost.NAME= on its command line)."""
        return [f.name for f in fields(cls) if f.metadata["kernel"]]

    @classmethod
    def sources(cls) -> dict:
        return {f.name: f.metadata["source"] for f in fields(cls)}
