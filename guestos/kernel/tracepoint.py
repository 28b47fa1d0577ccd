"""Kernel tracepoints: events named as Linux's (mm_vmscan_kswapd_wake, mm_vmscan_lru_shrink_inactive, ...)
with named fields, delivered to the sinks that subscribed (the trace writers, the debugger, the live view).

Off, a call site costs one attribute test and nothing else:

    if k.tracepoints is not None:
        k.tracepoints.emit("mm_vmscan_kswapd_wake", nid=0, order=order)

Every event carries `ts` (guest virtual ns), `pid` (the task or kernel thread doing the work, 0 for none)
and `comm`; the remaining fields are the tracepoint's own. The schema is in docs/trace.md.
"""


class Tracepoints:
    def __init__(self, kernel):
        self.kernel = kernel
        self.sinks = []

    def subscribe(self, sink) -> None:
        """sink(event: dict) is called for every event, in order."""
        self.sinks.append(sink)

    def unsubscribe(self, sink) -> None:
        self.sinks.remove(sink)

    def emit(self, name: str, **fields) -> None:
        k = self.kernel
        task = k.scheduler.current if k.scheduler is not None else None
        event = {"name": name, "ts": k.hw.clock.now_ns(),
                 "pid": task.pid if task is not None else 0,
                 "comm": task.comm if task is not None else "swapper"}
        event.update(fields)
        for sink in self.sinks:
            sink(event)


def enable(kernel) -> Tracepoints:
    """Turn tracing on for this kernel (idempotent) and return its tracepoints."""
    if kernel.tracepoints is None:
        kernel.tracepoints = Tracepoints(kernel)
    return kernel.tracepoints
