"""Kernel tracepoints: events named as Linux's (mm_vmscan_kswapd_wake, mm_vmscan_lru_shrink_inactive, ...)
with named fields, delivered to the sinks that subscribed (the trace writers, the debugger, the live view).

Off, a call site costs one attribute test and nothing else:

    if k.tracepoints is not None:
        k.tracepoints.emit("mm_vmscan_kswapd_wake", nid=0, order=order)

Every event carries `ts` (guest virtual ns), `pid` (the task or kernel thread doing the work, 0 for none)
and `comm` (its name: a kernel thread's is kswapd0, vballoon, ...; swapper for none); the remaining
fields are the tracepoint's own. EVENTS below is the schema: docs/trace.md is checked against it and
check_event() is made from it.
"""
from dataclasses import dataclass

# field types as they appear in an event (bool is not an int here)
TYPES = {"int": int, "str": str, "bool": bool}

COMMON_FIELDS = {
    "name": ("str", "the tracepoint's name"),
    "ts": ("int", "guest virtual time in ns"),
    "pid": ("int", "the task or kernel thread doing the work (0: none, at boot or in an interrupt)"),
    "comm": ("str", "its name (a kernel thread's: kswapd0, vballoon, flush-254:0; swapper for none)"),
}

# fields every reclaim event carries: where in which pass of which policy it happened
_PASS = {
    "policy": ("str", "who reclaims: none (plain reclaim), unmapped (the series' kswapd pass), "
                      "shrink_list (the review's bias), cache_first (balloon pages), dedup (host-cached pages)"),
    "priority": ("int", "scan priority, 12 (DEF_PRIORITY, gentle) down to 0"),
    "pass_nr": ("int", "the reclaim pass, counted from 1 since tracing began (0: outside a pass)"),
}


@dataclass(frozen=True, eq=False)
class Event:
    """One tracepoint in the schema: what it reports and its own fields (nothing compares two)."""
    doc: str
    fields: dict            # name -> (type, meaning)


EVENTS = {
    # --- kswapd and the allocator ---
    "mm_vmscan_wakeup_kswapd": Event("the allocator woke a sleeping kswapd (zone below its low watermark, "
                                     "or too much unmapped page cache)", {
        "nid": ("int", "node id (always 0)"), "zid": ("int", "zone id (always 0: one zone)"),
        "order": ("int", "the allocation's order"),
        "reason": ("str", "low-watermark, or unmapped-high (the series' trigger)"),
        "nr_free_pages": ("int", "free pages in the zone"),
        "watermark_low": ("int", "the zone's low watermark in pages")}),
    "mm_vmscan_kswapd_wake": Event("kswapd starts a run", {
        "nid": ("int", "node id (always 0)"), "order": ("int", "the order it balances for"),
        "nr_free_pages": ("int", "free pages in the zone"),
        "watermark_min": ("int", "min watermark in pages"), "watermark_low": ("int", "low watermark in pages"),
        "watermark_high": ("int", "high watermark in pages: kswapd balances up to it")}),
    "mm_vmscan_kswapd_sleep": Event("kswapd goes back to sleep", {
        "nid": ("int", "node id (always 0)"), "nr_free_pages": ("int", "free pages in the zone"),
        "watermark_high": ("int", "high watermark in pages"),
        "nr_reclaimed": ("int", "pages freed by this run, every pass")}),
    "mm_vmscan_direct_reclaim_begin": Event("an allocating task reclaims itself (try_to_free_pages)", {
        "order": ("int", "the allocation's order"), "may_writepage": ("bool", "reclaim may write dirty pages"),
        "nr_to_reclaim": ("int", "pages wanted"), "pass_nr": _PASS["pass_nr"]}),
    "mm_vmscan_direct_reclaim_end": Event("direct reclaim is done", {
        "nr_reclaimed": ("int", "pages freed"), "pass_nr": _PASS["pass_nr"]}),
    # --- reclaim passes (ours: a pass is one call of a reclaim entry, with its policy) ---
    "mm_vmscan_reclaim_pass_begin": Event("a reclaim pass starts: plain reclaim (kswapd or direct) or a policy's", {
        "pass_nr": _PASS["pass_nr"], "policy": _PASS["policy"],
        "by": ("str", "kswapd, direct or balloon: whose context it runs in"),
        "nr_to_reclaim": ("int", "pages wanted"), "nr_free_pages": ("int", "free pages in the zone")}),
    "mm_vmscan_reclaim_pass_end": Event("the pass is over", {
        "pass_nr": _PASS["pass_nr"], "policy": _PASS["policy"],
        "by": ("str", "kswapd, direct or balloon"),
        "nr_scanned": ("int", "pages scanned on the inactive lists"), "nr_reclaimed": ("int", "pages freed"),
        "nr_free_pages": ("int", "free pages in the zone")}),
    # --- the LRU scans ---
    "mm_vmscan_lru_isolate": Event("pages taken from the tail of an LRU list for a scan", {
        "order": ("int", "the allocation order (always 0)"),
        "nr_requested": ("int", "pages asked for"), "nr_scanned": ("int", "pages looked at"),
        "nr_taken": ("int", "pages isolated"),
        "isolate_mode": ("int", "0: from an inactive list, 1: from an active list"),
        "file": ("int", "1: a file list, 0: an anon list"),
        "lru": ("str", "inactive_anon, active_anon, inactive_file or active_file"), **_PASS}),
    "mm_vmscan_lru_shrink_inactive": Event("shrink_inactive_list() is done with its isolated pages", {
        "nid": ("int", "node id (always 0)"),
        "nr_scanned": ("int", "pages scanned"), "nr_reclaimed": ("int", "pages freed"),
        "file": ("int", "1: the file list, 0: the anon list"),
        "lru": ("str", "inactive_anon or inactive_file"), **_PASS}),
    "mm_vmscan_lru_shrink_active": Event("shrink_active_list() moved pages toward the inactive list", {
        "nid": ("int", "node id (always 0)"),
        "nr_taken": ("int", "pages isolated"), "nr_active": ("int", "pages kept active"),
        "nr_deactivated": ("int", "pages moved to the inactive list"),
        "nr_referenced": ("int", "pages kept active because referenced"),
        "file": ("int", "1: the file list, 0: the anon list"),
        "lru": ("str", "active_anon or active_file"), **_PASS}),
    "mm_vmscan_page_decision": Event("what reclaim did with one page, and why (ours: one event per page scanned)", {
        "pfn": ("int", "the page frame"), "lru": ("str", "file or anon"),
        "mapped": ("bool", "mapped into a process when scanned"),
        "referenced": ("bool", "found referenced (PG_referenced or a PTE's accessed bit)"),
        "flags": ("int", "page->flags when it was scanned (guestos/mm/mm_types.py bits)"),
        "decision": ("str", "reclaimed, swapped-out, rotated, activated, deactivated, kept-active, kept or skipped"),
        "reason": ("str", "why: clean, written-back, cold, referenced, referenced-twice, pte-referenced, "
                          "dirty-deferred, pageout (its write started), pageout-keep, pageout-activate, writeback "
                          "(a write in flight), unmapped-first, held, locked, metadata, still-mapped, no-swap, "
                          "a policy's keep_reason (keep_page; default: its name), "
                          "swap-full, inactive-low, executable, host-cached, guest-only, dirty, mapped"),
        "by": ("str", "kswapd, direct or balloon"), **_PASS}),
    "mm_vmscan_writepage": Event("reclaim writes a dirty page before freeing it (pageout)", {
        "pfn": ("int", "the page frame"),
        "reclaim_flags": ("str", "RECLAIM_WB_FILE or RECLAIM_WB_ANON (to swap), with RECLAIM_WB_SYNC or "
                                 "RECLAIM_WB_ASYNC, joined by |")}),
    # --- the page cache ---
    "mm_filemap_add_to_page_cache": Event("a page enters a file's page cache", {
        "pfn": ("int", "the page frame"), "mapping": ("int", "page->mapping id of the file"),
        "index": ("int", "page index in the file")}),
    "mm_filemap_delete_from_page_cache": Event("a page leaves a file's page cache", {
        "pfn": ("int", "the page frame"), "mapping": ("int", "page->mapping id of the file"),
        "index": ("int", "page index in the file")}),
    "mm_filemap_readahead": Event("a readahead window is read (ondemand_readahead)", {
        "mapping": ("int", "page->mapping id"), "offset": ("int", "the page the reader wanted"),
        "req_size": ("int", "pages the reader asked for"), "start": ("int", "window start (page index)"),
        "size": ("int", "window size in pages"),
        "async_size": ("int", "pages of it left when the next window starts (the PG_readahead mark)"),
        "pattern": ("str", "initial (a new window), subsequent (grown from the last), marker (the reader reached "
                           "the mark), context (from cached history) or random (only the pages asked for)")}),
    # --- swap ---
    "mm_swap_out": Event("an anonymous page is written to swap (swap_writepage)", {
        "pfn": ("int", "the page frame"), "slot": ("int", "swap slot")}),
    "mm_swap_in": Event("an anonymous page is read back from swap (swap_readpage)", {
        "pfn": ("int", "the new page frame"), "slot": ("int", "swap slot")}),
    # --- the balloon (ours: virtio_balloon's fill_balloon / leak_balloon) ---
    "virtio_balloon_fill": Event("one inflate batch: pages allocated and given to the host", {
        "nr_requested": ("int", "pages asked for (at most 256)"), "nr_pages": ("int", "pages given"),
        "first_pfn": ("int", "the first page given (-1: none)"), "cache_first": ("bool", "__GFP_FREE_CACHE asked"),
        "num_pages": ("int", "balloon size in pages after the batch")}),
    "virtio_balloon_leak": Event("one deflate batch: pages taken back from the host", {
        "nr_requested": ("int", "pages asked for"), "nr_pages": ("int", "pages taken back"),
        "reason": ("str", "target (the host lowered it) or oom (DEFLATE_ON_OOM notifier)"),
        "num_pages": ("int", "balloon size in pages after the batch")}),
    # --- OOM ---
    "mark_victim": Event("the OOM killer chose a task (oom:mark_victim)", {
        "victim": ("int", "the killed task's pid"), "victim_comm": ("str", "its name"),
        "rss_pages": ("int", "its resident anonymous pages")}),
}


def _check_schema() -> None:
    for name, event in EVENTS.items():
        for field, (kind, meaning) in event.fields.items():
            assert kind in TYPES and meaning and field not in COMMON_FIELDS, (name, field)


_check_schema()


def check_event(event: dict) -> list:
    """What is wrong with one event against EVENTS (an empty list: nothing)."""
    problems = []
    declared = EVENTS.get(event.get("name"))
    if declared is None:
        return [f"unknown event {event.get('name')!r}"]
    fields = {**COMMON_FIELDS, **declared.fields}
    for field, (kind, _) in fields.items():
        if field not in event:
            problems.append(f"{event['name']}: no field {field}")
        elif type(event[field]) is not TYPES[kind]:
            problems.append(f"{event['name']}.{field}: {type(event[field]).__name__}, not {kind}")
    for field in event.keys() - fields.keys():
        problems.append(f"{event['name']}: undeclared field {field}")
    return problems


class Tracepoints:
    def __init__(self, kernel):
        self.kernel = kernel
        self.sinks = []
        self.passes = 0                 # reclaim passes begun since tracing began

    def subscribe(self, sink) -> None:
        """sink(event: dict) is called for every event, in order."""
        self.sinks.append(sink)

    def unsubscribe(self, sink) -> None:
        self.sinks.remove(sink)

    def emit(self, name: str, **fields) -> None:
        k = self.kernel
        task = k.scheduler.current if getattr(k, "scheduler", None) is not None else None
        pid, comm = (task.pid, task.comm) if task is not None else (0, "swapper")
        event = {"name": name, "ts": k.hw.clock.now_ns(), "pid": pid, "comm": comm}
        event.update(fields)
        for sink in self.sinks:
            sink(event)

    def next_pass(self) -> int:
        self.passes += 1
        return self.passes


def enable(kernel) -> Tracepoints:
    """Turn tracing on for this kernel (idempotent) and return its tracepoints."""
    if kernel.tracepoints is None:
        kernel.tracepoints = Tracepoints(kernel)
    return kernel.tracepoints


def disable(kernel) -> None:
    """Back to no tracing (one attribute test per call site)."""
    kernel.tracepoints = None
