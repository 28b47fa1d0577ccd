"""pytest plugin (entry point `pytest11`): boot Ballast guests in tests, for balloon CI.

Fixtures:
  ballast_vm   a factory: ballast_vm(**options) boots a guest and returns a started vmm.lab.LabSession;
               every guest it made is shut down after the test. Options and their defaults: DEFAULTS.
  balloon_vm   one guest with the defaults.
`@pytest.mark.ballast(**options)` changes the defaults for every guest of a test, e.g. the root:
`root="builtin"`, a directory (made into an ext2 image) or an ext2 image; a relative path is relative to
the test file. Timeouts (`timeout_s`, and run(..., timeout_s) and wait_balloon(timeout_s)) are in guest time.
`trace="FILE"` (with `trace_format="jsonl"` or `"perfetto"`) streams the guest's kernel trace to FILE
(relative to the current directory; docs/trace.md), closed at teardown.

When a test fails, the report gets a section per guest: its balloon, /proc/meminfo and the console's last
lines. Under pytest-xdist every worker process boots its own guests.

Importing this module has no side effects: Ballast itself is imported when a fixture is first used
(pytest loads the plugin into every run of every project where Ballast is installed)."""
import pytest

# The options of a guest and their defaults (the README's plugin section lists the same).
DEFAULTS = {"mem": "128M", "balloon": ["MUST_TELL_HOST", "STATS_VQ"], "root": "builtin", "swap": None, "cmdline": "",
            "cache": "writeback", "stats_interval_s": 0, "on_violation": "record", "host_memory": None,
            "timeout_s": None, "trace": None, "trace_format": "jsonl"}
OPTIONS = tuple(DEFAULTS)
GUESTS = pytest.StashKey[list]()
CONSOLE_LINES = 20


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"ballast(**options): options of the guests a test boots ({', '.join(OPTIONS)}); "
                   "root='builtin', a directory or an ext2 image (relative to the test file)")


@pytest.fixture
def ballast_vm(request):
    """A factory of started guests; all of them are shut down at teardown."""
    # deliberately lazy: a project that has Ballast installed but does not use it pays nothing
    from vmm.errors import BallastError
    from vmm.machine_spec import MachineSpec, boot
    from vmm.trace import TraceWriter, check_format

    marked = _marker_options(request)
    guests = request.node.stash.setdefault(GUESTS, [])
    traces = []

    def make(**options):
        _check_names(options, "ballast_vm")
        options = {**DEFAULTS, **marked, **options}
        timeout_s = options.pop("timeout_s")
        trace_path, trace_format = options.pop("trace"), options.pop("trace_format")
        try:
            spec = MachineSpec.from_options(**options, base_dir=str(request.path.parent))
            if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                          or timeout_s <= 0):
                raise BallastError(f"timeout_s: must be a positive number of guest seconds, not {timeout_s!r}")
            check_format(trace_format, "trace_format")
            if trace_path is not None:
                if any(str(trace_path) == t.path for t in traces):
                    raise BallastError(f"trace: {trace_path} already traces another guest of this test")
                try:
                    trace = TraceWriter(str(trace_path), trace_format)
                except OSError as e:
                    raise BallastError(f"trace: {trace_path}: {e.strerror}") from None
                traces.append(trace)
            session = boot(spec, before_start=None if trace_path is None else
                           lambda machine: trace.attach(machine, request.node.name))
        except BallastError as e:
            error = str(e)
        else:
            if timeout_s is not None:
                session.run_timeout_s = session.wait_timeout_s = timeout_s
            guests.append(session)
            return session
        pytest.fail(f"ballast: {error}", pytrace=False)     # outside the except: no chained traceback

    yield make
    for session in reversed(guests):
        session.close()
    for trace in traces:
        trace.close()


@pytest.fixture
def balloon_vm(ballast_vm):
    """A started guest with a balloon (MUST_TELL_HOST and STATS_VQ unless a ballast marker says otherwise)."""
    return ballast_vm()


def _marker_options(request) -> dict:
    marker = request.node.get_closest_marker("ballast")
    if marker is None:
        return {}
    if marker.args:
        pytest.fail("ballast marker: give options by name, e.g. @pytest.mark.ballast(mem=\"256M\")", pytrace=False)
    _check_names(marker.kwargs, "ballast marker")
    return dict(marker.kwargs)


def _check_names(options: dict, who: str) -> None:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        pytest.fail(f"{who}: unknown option '{unknown[0]}' (one of {', '.join(OPTIONS)})", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report gets each guest's state, as pytest adds captured output."""
    report = yield
    guests = item.stash.get(GUESTS, ())
    if report.failed and call.when == "call":
        for number, session in enumerate(guests, 1):
            title = "ballast guest" + (f" {number} of {len(guests)}" if len(guests) > 1 else "")
            report.sections.append((title, session.report(CONSOLE_LINES)))
    return report
