"""Trace writers: the guest kernel's tracepoint events (guestos/kernel/tracepoint.py) streamed to a file
as they happen, with no cap, for `ballast run/scenario --trace FILE --trace-format jsonl|perfetto` and
the pytest plugin. The schema is docs/trace.md.

- jsonl: one JSON object per event, its fields by name (and "machine" when a scenario has several guests).
- perfetto: the Chrome JSON trace event format that ui.perfetto.dev and chrome://tracing open: a process
  per guest, a thread track per task and kernel thread ("M" metadata names them), an instant event ("i")
  per decision, slices ("B"/"E") for kswapd runs, reclaim passes and direct reclaim, and counters ("C")
  for free pages, the file and anon LRU sizes, the balloon, the host cache and duplicated pages, sampled
  every COUNTER_INTERVAL_NS of guest time (when events come) and at each reclaim pass. Timestamps are
  microseconds of guest time. The file is closed into valid JSON however the run ends.

Both only look: a traced run computes exactly what an untraced one does, and the same run gives the
same file, byte for byte."""
import json

from guestos.kernel import tracepoint
from guestos.mm.lru import LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE

from .errors import BallastError
from .oracle import duplication

FORMATS = ("jsonl", "perfetto")
COUNTER_INTERVAL_NS = 10_000_000            # 10 ms of guest time
# begin/end pairs that become slices on their thread's track (the rest are instants)
SLICES = {"mm_vmscan_kswapd_wake": ("B", "kswapd"), "mm_vmscan_kswapd_sleep": ("E", "kswapd"),
          "mm_vmscan_reclaim_pass_begin": ("B", "reclaim pass"), "mm_vmscan_reclaim_pass_end": ("E", "reclaim pass"),
          "mm_vmscan_direct_reclaim_begin": ("B", "direct reclaim"),
          "mm_vmscan_direct_reclaim_end": ("E", "direct reclaim")}
KTHREAD_TID_BASE = 1 << 22                  # above any guest pid (PID_MAX_LIMIT): kernel threads' tracks


def check_format(fmt: str, what: str = "--trace-format") -> str:
    if fmt not in FORMATS:
        raise BallastError(f"{what}: unknown format '{fmt}' (one of {', '.join(FORMATS)})")
    return fmt


class TraceWriter:
    """One trace file for one or more guests: attach() each before it boots (or later: the events from
    then on), close() at the end (idempotent)."""

    def __init__(self, path: str, fmt: str = "jsonl"):
        self.path = path
        self.format = check_format(fmt)
        self.f = open(path, "w", encoding="utf-8")
        self.machines = []                  # (name, machine)
        self.nr_events = 0
        self.closed = False
        self.tracks = []                    # perfetto: one per guest
        self._first = True
        if self.format == "perfetto":
            self.f.write('{"displayTimeUnit": "ns", "traceEvents": [\n')

    def attach(self, machine, name: str = "guest", labelled: bool = False) -> None:
        """Trace this guest: a process named `name` in perfetto; with `labelled` (a scenario with
        several guests) each jsonl event also names its machine."""
        pid = len(self.machines) + 1
        self.machines.append((name, machine))
        if self.format == "jsonl":
            sink = self._jsonl_sink(name if labelled else None)
        else:
            self._write({"name": "process_name", "ph": "M", "ts": 0, "pid": pid, "tid": 0, "args": {"name": name}})
            track = _PerfettoTrack(self, machine, pid)
            self.tracks.append(track)
            sink = track.event
        machine.add_trace_sink(sink)

    def _jsonl_sink(self, machine_name):
        write = self.f.write

        def sink(event: dict) -> None:
            if machine_name is not None:
                event = {**event, "machine": machine_name}
            write(json.dumps(event, separators=(", ", ": ")) + "\n")
            self.nr_events += 1
        return sink

    def _write(self, record: dict) -> None:
        if self.closed:
            return
        if not self._first:
            self.f.write(",\n")
        self._first = False
        self.f.write(json.dumps(record, separators=(",", ":")))

    def close(self) -> None:
        if self.closed:
            return
        if self.format == "perfetto":
            for track in self.tracks:
                track.finish()
            self.f.write("\n]}\n")
        self.closed = True
        self.f.close()


class _PerfettoTrack:
    """The events of one guest, as a process in the Chrome trace event format."""

    def __init__(self, writer: TraceWriter, machine, pid: int):
        self.writer, self.machine, self.pid = writer, machine, pid
        self.threads = {}                   # (pid, comm) for kernel threads / pid -> tid, named
        self.kthreads = {}                  # comm -> tid
        self.next_sample_ns = 0
        self.next_duplication_ns = 0
        self.duplicated = 0
        self.last_ts = 0
        self.open_slices = []               # (tid, name) of the slices begun and not ended, in order

    def tid(self, event: dict) -> int:
        pid, comm = event["pid"], event["comm"]
        if pid > 0:
            tid = pid
            known = self.threads.get(pid)
        else:
            tid = self.kthreads.get(comm)
            if tid is None:
                tid = self.kthreads[comm] = 0 if comm == "swapper" else KTHREAD_TID_BASE + len(self.kthreads)
            known = self.threads.get(-tid - 1)
            pid = -tid - 1
        if known != comm:                   # a new track, or a task that exec'd: (re)name it
            self.threads[pid] = comm
            self.writer._write({"name": "thread_name", "ph": "M", "ts": 0, "pid": self.pid, "tid": tid,
                                "args": {"name": f"{comm} [{event['pid']}]" if event["pid"] else comm}})
        return tid

    def event(self, event: dict) -> None:
        name = event["name"]
        ts = event["ts"] / 1000
        self.last_ts = event["ts"]
        args = {key: value for key, value in event.items() if key not in ("name", "ts", "pid", "comm")}
        tid = self.tid(event)
        slice_ = SLICES.get(name)
        if slice_ is not None:
            record = {"name": slice_[1], "cat": name, "ph": slice_[0], "ts": ts, "pid": self.pid, "tid": tid,
                      "args": args}
            if slice_[0] == "B":
                self.open_slices.append((tid, slice_[1]))
            elif (tid, slice_[1]) in self.open_slices:
                self.open_slices.remove((tid, slice_[1]))
        else:
            record = {"name": name, "cat": name.split("_", 2)[1] if name.startswith("mm_") else name.split("_")[0],
                      "ph": "i", "s": "t", "ts": ts, "pid": self.pid, "tid": tid, "args": args}
        self.writer._write(record)
        self.writer.nr_events += 1
        self.sample(force=name.startswith("mm_vmscan_reclaim_pass"))

    def finish(self) -> None:
        """The run is over (perhaps in the middle of a pass): end what is open, sample once more."""
        for tid, name in reversed(self.open_slices):
            self.writer._write({"name": name, "cat": "end of trace", "ph": "E", "ts": self.last_ts / 1000,
                                "pid": self.pid, "tid": tid, "args": {}})
        self.open_slices.clear()
        self.sample(force=True)

    def sample(self, force: bool = False) -> None:
        """The counters at the last event's time: every COUNTER_INTERVAL_NS, at each reclaim pass."""
        now = self.last_ts
        if now < self.next_sample_ns and not force:
            return
        self.next_sample_ns = now + COUNTER_INTERVAL_NS
        k = self.machine.kernel
        if k is None or getattr(k, "lru", None) is None:
            return
        nr = k.lru.nr
        host = self.machine.host
        if now >= self.next_duplication_ns:         # the oracle's walk: at most once an interval
            self.next_duplication_ns = now + COUNTER_INTERVAL_NS
            report = duplication(host, [m for _, m in self.writer.machines])
            self.duplicated = report["vms"].get(self.machine.vm_id, {}).get("duplicated_pages", 0)
        balloon = self.machine.balloon
        values = {"nr_free_pages": k.page_alloc.zone.nr_free_pages,
                  "file_lru_pages": nr[LRU_ACTIVE_FILE] + nr[LRU_INACTIVE_FILE],
                  "anon_lru_pages": nr[LRU_ACTIVE_ANON] + nr[LRU_INACTIVE_ANON],
                  "balloon_pages": balloon.actual_pages if balloon is not None else 0,
                  "host_cache_pages": host.cache.nr_pages,
                  "duplicated_pages": self.duplicated}
        for name, value in values.items():
            self.writer._write({"name": name, "ph": "C", "ts": now / 1000, "pid": self.pid, "tid": 0,
                                "args": {"pages": value}})


def check_jsonl_event(event: dict) -> list:
    """An event of a jsonl trace against the schema (the kernel's, plus the writer's "machine")."""
    if "machine" in event:
        if type(event["machine"]) is not str:
            return ["machine: not a string"]
        event = {key: value for key, value in event.items() if key != "machine"}
    return tracepoint.check_event(event)


def schema_table() -> str:
    """docs/trace.md's table of events and fields, made from tracepoint.EVENTS (the doc is checked
    against it: `python -m vmm.trace` prints it)."""
    lines = ["| event | field | type | meaning |", "|---|---|---|---|"]
    for field, (kind, meaning) in tracepoint.COMMON_FIELDS.items():
        lines.append(f"| *(every event)* | `{field}` | {kind} | {meaning} |")
    for name, event in tracepoint.EVENTS.items():
        lines.append(f"| **`{name}`** | | | {event.doc} |")
        for field, (kind, meaning) in event.fields.items():
            lines.append(f"| | `{field}` | {kind} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(schema_table(), end="")
