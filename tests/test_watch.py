"""`ballast watch`: the live view, headless (textual's pilot): at a breakpoint the screen shows the
stop, the guest's memory bars, the host and the trace; keys step and continue the guest; without
textual the command says so in one line."""
import asyncio
import html
import re
import subprocess
import sys

import pytest

from ballast_testlib import REPO

textual = pytest.importorskip("textual")

from vmm import scenario as sc              # noqa: E402
from vmm.watch import WatchApp              # noqa: E402

SCENARIO = REPO / "examples" / "why-evicted.toml"


def screen_text(app) -> str:
    """What the terminal shows, as text (from textual's own screenshot)."""
    svg = app.export_screenshot()
    lines = re.findall(r"<text[^>]*>(.*?)</text>", svg, flags=re.S)
    return html.unescape(" ".join(re.sub(r"<[^>]+>", "", line) for line in lines)).replace("\xa0", " ")


async def wait_for(pilot, predicate, seconds=120):
    for _ in range(int(seconds * 10)):
        if predicate():
            return True
        await pilot.pause(0.1)
    return predicate()


def test_watch_stops_at_a_breakpoint_shows_it_and_steps():
    spec = sc.load(str(SCENARIO))
    app = WatchApp(spec, ["mm_vmscan_page_decision if decision == 'reclaimed'"])

    async def drive():
        async with app.run_test(size=(140, 48)) as pilot:
            assert await wait_for(pilot, lambda: app.paused)
            await pilot.pause(0.2)
            first = app.status_text
            screen = screen_text(app)
            assert "Breakpoint 1, mm_vmscan_page_decision" in first and "decision='reclaimed'" in first
            assert "[paused] Breakpoint 1, mm_vmscan_page_decision" in screen
            for label in ("free", "active anon", "inactive file", "balloon", "kernel", "RSS", "page cache",
                          "duplicated"):
                assert label in screen, label
            assert "MiB RAM" in screen and "mm_vmscan_kswapd_wake" in screen     # the trace scrolled by
            await pilot.press("s")                                             # step: the very next event
            assert await wait_for(pilot, lambda: app.paused and app.status_text != first)
            assert "Breakpoint" not in app.status_text.splitlines()[0]
            stepped = app.status_text
            await pilot.press("c")                                             # continue: the next reclaimed page
            assert await wait_for(pilot, lambda: app.paused and app.status_text != stepped)
            assert "Breakpoint 1, mm_vmscan_page_decision" in app.status_text
            assert app.runner.debugger.breakpoints[0].hits == 2
            await pilot.press("q")
        app.runner.thread.join(60)
        assert not app.runner.thread.is_alive() and app.runner.error is None
    asyncio.run(drive())


def test_pause_key_stops_a_running_guest():
    spec = sc.load(str(SCENARIO))
    app = WatchApp(spec)

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.runner.debugger.events_seen > 0)
            await pilot.press("p")
            assert await wait_for(pilot, lambda: app.paused)
            assert "[paused] " in screen_text(app)
            await pilot.press("c")
            assert await wait_for(pilot, lambda: app.finished)
            screen = screen_text(app)
            assert "ok: 5 of 5 steps" in screen
            # the squeezed guest: the balloon holds 16 MiB, and the kernel's own frames stay its own
            assert re.search(r"balloon +[█· ]+16\.0 MiB", screen)
            assert float(re.search(r"kernel +[█· ]+?([0-9.]+) MiB", screen).group(1)) < 4
            await pilot.press("q")
    asyncio.run(drive())


def test_watch_without_textual_is_one_line(tmp_path):
    blocker = tmp_path / "textual.py"
    blocker.write_text("raise ImportError('no textual here')\n")
    r = subprocess.run([sys.executable, "-m", "vmm.cli", "watch", str(SCENARIO)], capture_output=True, text=True,
                       cwd=REPO, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert r.returncode == 2 and r.stderr == "ballast: watch needs textual: pip install 'ballast[watch]' " \
                                             "(or pip install textual)\n"
    r = subprocess.run([sys.executable, "-m", "vmm.cli", "watch", str(SCENARIO), "--break", "nosuch_event"],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 2 and "unknown event 'nosuch_event'" in r.stderr and r.stderr.count("\n") == 1
