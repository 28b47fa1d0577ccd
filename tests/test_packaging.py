"""What an installed Ballast relies on: the guest programs found through the package, the version, and the
scenario modules' layout (no import circle with the CLI, imports at the top). The wheel itself is tried
outside the checkout by .ci/run."""
import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from ballast_testlib import REPO
from guestos.kernel.vdso import vdso_image
from vmm import firmware
from vmm.cli import main
from vmm.errors import BallastError
from vmm.rootfs import BUILTIN_PROGRAMS

SCENARIO_MODULES = ("units", "machine_spec", "lab", "snapshot", "scenario_file", "scenario_run", "summary",
                    "scenario", "firmware", "pytest_plugin")
LAZY_IMPORTS = {("summary", "rich.table"), ("scenario_file", "tomllib"), ("pytest_plugin", "vmm.errors"), ("pytest_plugin", "vmm.machine_spec"),
                ("pytest_plugin", "vmm.trace"), ("lab", "textwrap")}


def test_the_guest_programs_come_from_the_package():
    import ballast_firmware
    assert firmware.bin_dir() == Path(ballast_firmware.__file__).parent / "bin"
    assert firmware.bin_dir().resolve() == (REPO / "firmware" / "bin").resolve()     # installed from this checkout
    for name in BUILTIN_PROGRAMS + ("mkdata", "ballast-agent", "vdso.so"):
        assert firmware.read_program(name)[:4] == b"\x7fELF"
    assert vdso_image() == firmware.read_program("vdso.so")          # the kernel finds its vDSO the same way


def test_a_missing_guest_program_is_one_line():
    with pytest.raises(BallastError, match=r"guest program nope is missing from .*firmware/bin: run make -C firmware"):
        firmware.program_path("nope")


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"ballast {importlib.metadata.version('ballast')}\n"


def test_no_import_circle_and_imports_at_the_top():
    code = "import sys, vmm.scenario; print('vmm.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    local = set()
    for name in SCENARIO_MODULES:
        tree = ast.parse((REPO / "vmm" / f"{name}.py").read_text())
        for func in ast.walk(tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(func):
                    if isinstance(node, ast.ImportFrom):
                        local.add((name, node.module))
                    elif isinstance(node, ast.Import):
                        local.update((name, alias.name) for alias in node.names)
    assert local == LAZY_IMPORTS


def test_the_balloon_feature_names_are_declared_once():
    from devices.virtio_balloon import KNOWN_FEATURES, FEATURES_BY_NAME
    from vmm import scenario
    from vmm.machine_spec import BALLOON_FEATURES
    assert scenario.FEATURES is BALLOON_FEATURES is FEATURES_BY_NAME
    assert sum(FEATURES_BY_NAME.values()) == KNOWN_FEATURES        # a name for every bit the device knows
    for path in (REPO / "vmm").glob("*.py"):           # no second list of the names on the host side
        assert '"DEFLATE_ON_OOM"' not in path.read_text() and '"REPORTING"' not in path.read_text(), path.name
