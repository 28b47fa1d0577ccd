"""The design's import boundaries (DESIGN.md, docs/threat-model.md): the guest kernel reaches the machine only
through the Hardware object it is given, and devices only through guest RAM, registers and interrupts."""
import ast
from pathlib import Path

import pytest

from ballast_testlib import REPO

RULES = {"guestos": ("vmm", "devices"), "devices": ("guestos",)}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@pytest.mark.parametrize("package", sorted(RULES))
def test_a_package_never_imports_across_its_boundary(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files
    crossing = [f"{f.relative_to(REPO)} imports {name}" for f in files for name in _imports(f)
                if name.split(".")[0] in RULES[package]]
    assert crossing == []
