"""Native code shared by the VMM and the guest kernel. Modules written in Cython's
pure-Python mode also run uncompiled: set BALLAST_PURE=1 to step through them in pdb."""
import importlib
import importlib.util
import os
from pathlib import Path

PURE = os.environ.get("BALLAST_PURE", "") not in ("", "0")


def load(name: str, pure: bool = None):
    """cython_ext.<name>, compiled unless pure (or BALLAST_PURE) asks for its Python source."""
    if not (PURE if pure is None else pure):
        return importlib.import_module(f"cython_ext.{name}")
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"cython_ext._pure_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
