"""What the debugger shows when the guest is stopped: a page, the LRU lists, the zone, meminfo, the
tasks, the balloon and the host. Read-only, like the oracle: looking never changes what the guest
computes (no accessed bit is cleared, no list is touched)."""
from guestos.fs.proc import _render_meminfo
from guestos.mm import mm_types
from guestos.mm.lru import LRU_NAMES, NR_LRU_LISTS, page_lru
from guestos.mm.mm_types import NIL, PAGE_MAPPING_ANON, PG_buddy, PG_lru
from guestos.mm.pgtable import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW, pte_pfn

from . import oracle
from .memory import process_rss_bytes

PAGE_FLAG_NAMES = {getattr(mm_types, n): n[3:] for n in dir(mm_types)
                   if n.startswith("PG_") and n != "PG_reported"}
LIST_NAMES = tuple(name[3:] for name in LRU_NAMES)          # inactive_anon, active_anon, ...


class ViewError(Exception):
    """A user mistake in a view's argument (a bad PFN): one line, and the session goes on."""


def decode_flags(flags: int) -> str:
    names = [PAGE_FLAG_NAMES.get(bit, f"bit{bit}") for bit in range(64) if flags >> bit & 1]
    return "|".join(names) or "none"


def parse_pfn(text: str, kernel) -> int:
    try:
        pfn = int(text, 0)
    except ValueError:
        raise ViewError(f"page: '{text}' is not a page frame number (decimal or 0x hex)") from None
    if not 0 <= pfn < kernel.max_pfn:
        raise ViewError(f"page: no frame {pfn:#x} (this guest has frames 0x0 to {kernel.max_pfn - 1:#x})")
    return pfn


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def lru_position(kernel, pfn: int):
    """(list, place from the tail counting from 1, list length) of a page on an LRU list, or None."""
    mem_map = kernel.mem_map
    if not mem_map.test(pfn, PG_lru):
        return None
    lru = page_lru(mem_map, pfn)
    place, p = 1, kernel.lru.tail[lru]
    while p != NIL and p != pfn and place <= kernel.lru.nr[lru]:
        p = mem_map.lru_prev(p)
        place += 1
    if p != pfn:
        return None                               # isolated by the scan in progress
    return lru, place, kernel.lru.nr[lru]


def page_owners(kernel, pfn: int) -> list:
    """[(pid, comm, vaddr, pte)] of every PTE that maps pfn, found as rmap finds them (read only)."""
    mem_map, q = kernel.mem_map, kernel.mm.q
    mapping, index = mem_map.mapping(pfn), mem_map.index(pfn)
    owners = {id(t.mm): t for t in sorted(kernel.tasks.values(), key=lambda t: t.pid) if t.mm is not None}
    found = []

    def check(mm, vaddr):
        slot = kernel.mm.pte_offset(mm, vaddr)
        if slot is not None and q[slot] & _PAGE_PRESENT and pte_pfn(q[slot]) == pfn:
            task = owners.get(id(mm))
            found.append((task.pid if task else 0, task.comm if task else "?", vaddr, q[slot]))

    for mm in list(kernel.live_mms):
        if mapping & PAGE_MAPPING_ANON:
            check(mm, index << 12)
            continue
        for vma in mm.vmas:
            if getattr(vma.vm_file, "mapping_id", None) != mapping:
                continue
            if vma.vm_pgoff <= index < vma.vm_pgoff + ((vma.vm_end - vma.vm_start) >> 12):
                check(mm, vma.vm_start + ((index - vma.vm_pgoff) << 12))
    return found


def mapping_name(kernel, mapping_id: int):
    space = kernel.address_spaces.get(mapping_id)
    return None if space is None else oracle._mapping_name(kernel, space)


def file_name(kernel, mapping_id: int) -> str:
    """The path of the file behind a page->mapping id (even: a file; odd: anonymous memory)."""
    if mapping_id & PAGE_MAPPING_ANON:
        return None
    name = mapping_name(kernel, mapping_id)
    if name is None:
        ino = mapping_id >> 1
        name = (getattr(kernel.vfs, "names", None) or {}).get(ino, f"inode {ino}")
    return name


def host_caches(machine, pfn: int):
    """True/False: the host's page cache holds the disk page this guest page holds; None: not a disk page."""
    kernel = machine.kernel
    space = kernel.address_spaces.get(kernel.mem_map.mapping(pfn))
    sector = kernel.mem_map.disk_sector(pfn)
    if space is None or sector is None:
        return None
    key = oracle._disk_keys(machine).get(id(space.blk))
    if key is None:
        return None
    return (sector >> 3) in machine.host.cache.pages_of(key)


def describe_event(event: dict, skip=("name", "ts", "pid", "comm")) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in event.items() if k not in skip)


def _value(v) -> str:
    return f"'{v}'" if isinstance(v, str) else str(v)


def page(machine, pfn: int, last_decision=None) -> str:
    kernel = machine.kernel
    mem_map = kernel.mem_map
    flags = mem_map.flags(pfn)
    lines = [f"page {pfn:#x} ({pfn}): flags {flags:#x} [{decode_flags(flags)}]  "
             f"refcount {mem_map.refcount(pfn)}  mapcount {mem_map.mapcount(pfn)}"]
    if flags >> PG_buddy & 1:
        lines.append(f"  free: in the buddy allocator, order {mem_map.private(pfn)}")
    where = lru_position(kernel, pfn)
    if where is not None:
        lru, place, total = where
        lines.append(f"  lru: {LIST_NAMES[lru]}, {_ordinal(place)} from the tail of {total:,} "
                     f"(reclaim scans from the tail)")
    elif flags >> PG_lru & 1:
        lines.append("  lru: isolated (taken off its list by the scan in progress)")
    else:
        lines.append("  lru: on no list")
    mapping, index = mem_map.mapping(pfn), mem_map.index(pfn)
    if mapping & PAGE_MAPPING_ANON:
        lines.append(f"  anonymous: anon_vma {mapping >> 1}, user address {index << 12:#x}")
    elif mapping:
        name = mapping_name(kernel, mapping)
        sector = mem_map.disk_sector(pfn)
        lines.append(f"  file: {name or '(gone)'} offset {index << 12:#x} (page {index})"
                     + (f", disk sector {sector}" if sector is not None else ""))
    owners = page_owners(kernel, pfn) if mapping else []
    if owners:
        lines.append("  mapped by:")
        for pid, comm, vaddr, pte in owners:
            lines.append(f"    {comm}[{pid}] {vaddr:#x}  pte {pte:#018x}  accessed {int(bool(pte & _PAGE_ACCESSED))} "
                         f"dirty {int(bool(pte & _PAGE_DIRTY))} writable {int(bool(pte & _PAGE_RW))}")
    elif mapping:
        lines.append("  mapped by: no process")
    cached = host_caches(machine, pfn) if mapping and not mapping & PAGE_MAPPING_ANON else None
    if cached is not None:
        lines.append(f"  host cache: {'holds this disk page too (duplicated)' if cached else 'does not hold it'}")
    if last_decision is not None:
        lines.append(f"  last decision: {last_decision.get('decision', '?')}"
                     + (f" ({last_decision['reason']})" if last_decision.get("reason") else "")
                     + f" at {last_decision['ts'] / 1e9:.9f} s by {last_decision['comm']}[{last_decision['pid']}] "
                     f"in {last_decision['name']}: {describe_event(last_decision)}")
    else:
        lines.append("  last decision: none seen since the debugger attached")
    return "\n".join(lines)


def lru(machine, tail: int = 4) -> str:
    kernel = machine.kernel
    lines = [f"{'list':<16}{'pages':>8}  next to scan (tail first)"]
    for lru_list in range(NR_LRU_LISTS):
        pfns = []
        p = kernel.lru.tail[lru_list]
        while p != NIL and len(pfns) < tail:
            pfns.append(f"{p:#x}")
            p = kernel.mem_map.lru_prev(p)
        lines.append(f"{LIST_NAMES[lru_list]:<16}{kernel.lru.nr[lru_list]:>8}  {' '.join(pfns)}")
    return "\n".join(lines)


RECLAIM_COUNTERS = ("pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd", "pgsteal_direct", "pgactivate",
                    "pgdeactivate", "pgrefill", "kswapd_runs", "allocstall", "pswpout", "oom_kill",
                    "pgscan_unmapped", "pgsteal_unmapped", "pgscan_cache_first", "pgsteal_cache_first",
                    "pgscan_dedup", "pgsteal_dedup")


def zone(machine) -> str:
    kernel = machine.kernel
    z = kernel.page_alloc.zone
    wmin, wlow, whigh = z.watermark
    vm = kernel.vmstat_snapshot()
    lines = [f"Node 0, zone Normal  (pfns {z.zone_start_pfn:#x}-{z.zone_start_pfn + z.spanned_pages - 1:#x})",
             f"  pages free     {z.nr_free_pages}",
             f"        min      {wmin}",
             f"        low      {wlow}",
             f"        high     {whigh}",
             f"        present  {kernel.totalram_pages}",
             "  free blocks by order: " + " ".join(str(a.nr_free) for a in z.free_area)]
    lines += [f"  {name:<20}{vm.get(name, 0)}" for name in RECLAIM_COUNTERS if name in vm]
    policy = getattr(kernel, "unmapped_policy", None)
    if policy is not None:
        lines.append(f"  {'page-cache policy':<20}{policy}")
    return "\n".join(lines)


def meminfo(machine) -> str:
    return _render_meminfo(machine.kernel, None).rstrip("\n")


def ps(machine) -> str:
    kernel = machine.kernel
    current = getattr(getattr(kernel, "scheduler", None), "current", None)
    lines = [f"{'PID':>5} {'PPID':>5} {'STATE':<12} {'MINFLT':>7} {'MAJFLT':>7}  COMMAND"]
    for pid in sorted(kernel.tasks):
        t = kernel.tasks[pid]
        mark = "*" if t is current else " "
        ppid = t.parent.pid if t.parent is not None else 0
        lines.append(f"{pid:>5} {ppid:>5} {str(t.state):<12} {t.min_flt:>7} {t.maj_flt:>7} {mark}{t.comm}")
    return "\n".join(lines)


def balloon(machine) -> str:
    device = machine.balloon
    if device is None:
        return "balloon: this machine has no balloon device"
    driver = getattr(machine.kernel, "balloon", None)
    lines = [f"device:  target {device.target_pages} pages ({device.target_pages * 4096 >> 20} MiB), "
             f"actual {device.actual_pages} pages ({device.actual_pages * 4096 >> 20} MiB)"]
    if driver is not None:
        lines.append(f"driver:  {driver.num_pages} pages in the balloon, {driver.submitted} PFN arrays sent, "
                     f"{driver.acked} acknowledged" + (", backing off" if driver.backing_off else ""))
    resident = machine.ram.resident_pages()
    lines.append(f"host:    {resident} guest frames resident of {machine.ram.nr_frames}")
    return "\n".join(lines)


def host(machine) -> str:
    cache = machine.host.cache
    report = oracle.duplication(machine.host, [machine])
    vm = report["vms"][machine.vm_id]
    lines = [f"host RSS        {process_rss_bytes() >> 20} MiB (this process); guest frames resident "
             f"{machine.ram.resident_pages()} of {machine.ram.nr_frames}",
             f"host cache      {cache.nr_pages} pages of {cache.capacity_pages} "
             f"(hits {cache.hits}, misses {cache.misses}, evictions {cache.evictions}); "
             f"this guest's charge {cache.usage_pages(machine.vm_id)}",
             f"duplicated      {vm['duplicated_pages']} of the guest's {vm['guest_disk_pages']} clean disk pages "
             f"are in the host cache too"]
    for name, n in list(vm["files"].items())[:5]:
        lines.append(f"    {n:>7}  {name}")
    return "\n".join(lines)
