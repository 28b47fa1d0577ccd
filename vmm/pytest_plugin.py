"""pytest plugin (entry point `pytest11`): boot Ballast guests in tests, for balloon CI.

Fixtures:
  ballast_vm   a factory: ballast_vm(mem="128M", balloon=["MUST_TELL_HOST", "STATS_VQ"], root="builtin",
               swap=None, cmdline="", cache="writeback", stats_interval_s=0, on_violation="record",
               host_memory=None) boots a guest and returns a started vmm.scenario.LabSession; every guest
               it made is shut down after the test.
  balloon_vm   one guest with the factory's defaults; `@pytest.mark.ballast(**options)` changes them.

Importing this module has no side effects: Ballast itself is imported when a fixture is first used."""
import pytest

OPTIONS = ("mem", "balloon", "root", "swap", "cmdline", "cache", "stats_interval_s", "on_violation", "host_memory")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"ballast(**options): options of the guest the balloon_vm fixture boots ({', '.join(OPTIONS)})")


@pytest.fixture
def ballast_vm():
    """A factory of started guests; all of them are shut down at teardown."""
    from vmm.errors import BallastError
    from vmm import scenario

    sessions = []

    def boot(**options):
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            pytest.fail(f"ballast_vm: unknown option '{unknown[0]}' (one of {', '.join(OPTIONS)})", pytrace=False)
        try:
            session = scenario.boot(scenario.MachineSpec.from_options(**options))
        except BallastError as e:
            error = str(e)
        else:
            sessions.append(session)
            return session
        pytest.fail(f"ballast: {error}", pytrace=False)     # outside the except: no chained traceback

    yield boot
    for session in reversed(sessions):
        session.close()


@pytest.fixture
def balloon_vm(request, ballast_vm):
    """A started guest with a balloon (MUST_TELL_HOST and STATS_VQ unless a ballast marker says otherwise)."""
    marker = request.node.get_closest_marker("ballast")
    if marker is not None and marker.args:
        pytest.fail("ballast marker: give options by name, e.g. @pytest.mark.ballast(mem=\"256M\")", pytrace=False)
    return ballast_vm(**(marker.kwargs if marker is not None else {}))
