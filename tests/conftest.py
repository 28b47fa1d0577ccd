"""Shared fixtures: the repository on sys.path and a session-wide C compiler with a cache."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ballast_testlib import Compiler  # noqa: E402


@pytest.fixture(scope="session")
def compile_c(tmp_path_factory):
    """compile_c(source, name="prog", cc="gcc", flags=("-static", "-O0")) -> Path of the binary."""
    return Compiler(tmp_path_factory.mktemp("cc"))
